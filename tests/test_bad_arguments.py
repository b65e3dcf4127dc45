"""Every public function and class of dsc_utils refuses every bad argument at the call.

For each argument of each public callable, hypothesis replaces that one argument of a valid call by
a value of a wrong type (a string where a number belongs, a float where an integer belongs, None, a
list, a boolean, a tensor, a module not yet initialised...) or by a value out of range. The call
must raise TypeError (wrong type) or ValueError (bad value), from dsc_utils itself (not from inside
another library), with a message that names the argument; it must never return.
"""
from __future__ import annotations

import math
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch import nn  # noqa: E402

import dsc_utils as du  # noqa: E402

DSC_UTILS = str(Path(du.__file__).resolve())
WRONG_TYPE, BAD_VALUE = TypeError, ValueError


# ------------------------------------------------------------------------------------------------
# The kinds of argument, each with its wrong types and its out-of-range values
# ------------------------------------------------------------------------------------------------

@dataclass
class Kind:
    """What an argument accepts; ``bad`` lists (value, exception) pairs it must refuse."""
    allows_none: bool = field(default=False, kw_only=True)

    def fixed(self) -> list:
        common = [("3", WRONG_TYPE), ([3], WRONG_TYPE), (object(), WRONG_TYPE)]
        return common + ([] if self.allows_none else [(None, WRONG_TYPE)])

    def generated(self):
        return st.nothing()

    def strategy(self):
        return st.one_of(st.sampled_from(self.fixed()), self.generated())


@dataclass
class Int(Kind):
    minimum: int = 1
    maximum: int | None = None
    words: bool = False          # also takes a few strings ('same', 'valid'): others are bad values
    tuples: bool = False         # also takes a tuple of one int per dimension

    def fixed(self):
        text = BAD_VALUE if self.words else WRONG_TYPE
        values = [(v, text if isinstance(v, str) else e) for v, e in super().fixed()
                  if not (self.tuples and v == [3])]
        values += [("8", text), (3.0, WRONG_TYPE), (2.5, WRONG_TYPE),
                                    (True, WRONG_TYPE), (torch.tensor(3), WRONG_TYPE),
                                    (self.minimum - 1, BAD_VALUE)]
        if self.maximum is not None:
            values.append((self.maximum + 1, BAD_VALUE))
        return values

    def generated(self):
        below = st.integers(max_value=self.minimum - 1).map(lambda v: (v, BAD_VALUE))
        floats = st.floats(allow_nan=True).map(lambda v: (v, WRONG_TYPE))
        strings = st.text(max_size=4).filter(lambda v: v not in ("same", "valid")).map(
            lambda v: (v, BAD_VALUE if self.words else WRONG_TYPE))
        above = (st.integers(min_value=self.maximum + 1).map(lambda v: (v, BAD_VALUE))
                 if self.maximum is not None else st.nothing())
        return st.one_of(below, floats, strings, above)


@dataclass
class Real(Kind):
    minimum: float = 0.0
    maximum: float = math.inf
    open_below: bool = False
    open_above: bool = True

    def allowed(self, v: float) -> bool:
        low = v > self.minimum if self.open_below else v >= self.minimum
        high = v < self.maximum if self.open_above else v <= self.maximum
        return math.isfinite(v) and low and high

    def fixed(self):
        values = super().fixed() + [("0.5", WRONG_TYPE), (True, WRONG_TYPE),
                                    (torch.tensor(0.5), WRONG_TYPE), (math.nan, BAD_VALUE),
                                    (math.inf, BAD_VALUE), (-math.inf, BAD_VALUE)]
        return values + [(v, BAD_VALUE) for v in (self.minimum - 1, self.maximum + 1)
                         if math.isfinite(v) and not self.allowed(v)]

    def generated(self):
        return st.floats(allow_nan=True).filter(lambda v: not self.allowed(v)).map(
            lambda v: (v, BAD_VALUE))


@dataclass
class Bool(Kind):
    def fixed(self):
        return super().fixed() + [("True", WRONG_TYPE), (1, WRONG_TYPE), (0, WRONG_TYPE),
                                  (1.0, WRONG_TYPE), (np.bool_(True), WRONG_TYPE)]


@dataclass
class Choice(Kind):
    """A string among a few: any other string is a bad value."""
    values: tuple = ()

    def fixed(self):
        return [(7, WRONG_TYPE), (True, WRONG_TYPE), (["x"], WRONG_TYPE), (None, WRONG_TYPE),
                ("no such choice", BAD_VALUE), ("3", BAD_VALUE)]


@dataclass
class Text(Kind):
    def fixed(self):
        return [(3, WRONG_TYPE), (b"name", WRONG_TYPE), (["name"], WRONG_TYPE)] + (
            [] if self.allows_none else [(None, WRONG_TYPE)])


@dataclass
class Sizes(Int):
    """An int, or a tuple of ints (one per dimension, ``dims`` of them if given)."""
    dims: int | None = None

    def fixed(self):
        values = [(v, e) for v, e in super().fixed() if v != [3]]
        values += [((), BAD_VALUE), ((3, "3"), WRONG_TYPE), ((3, self.minimum - 1), BAD_VALUE)]
        return values + ([] if self.dims is None else [((3,) * (self.dims + 1), BAD_VALUE)])


@dataclass
class Module(Kind):
    """An nn.Module (of class ``of``); a lazy module not yet initialised is a bad value, except
    for the counters (``counts_lazy``), which count it on a copy."""
    of: type = nn.Module
    lazy: object = None         # a lazy module of that class, if there is one
    counts_lazy: bool = False

    def fixed(self):
        values = super().fixed() + [(torch.zeros(2, 2), WRONG_TYPE), (nn.Linear, WRONG_TYPE)]
        if self.of is nn.Module:
            return values + ([] if self.counts_lazy else [(nn.LazyLinear(3), BAD_VALUE)])
        values.append((nn.ReLU(), WRONG_TYPE))
        return values + ([] if self.lazy is None else [(self.lazy, BAD_VALUE)])


@dataclass
class ModelInput(Kind):
    """A model's input: a tensor, or a list of them; one the model cannot take is a bad value.
    Where only floating-point inputs make sense (``floating``), an integer tensor is a wrong type."""
    listed: bool = False
    floating: bool = False

    def fixed(self):
        def wrap(value):
            return [value] if self.listed else value
        values = [("x", WRONG_TYPE), (None, WRONG_TYPE), (wrap("x"), WRONG_TYPE),
                  (wrap(torch.zeros(2, 2, 2, 2, 2)), BAD_VALUE),
                  (wrap(torch.zeros(1, 3, 8, 8, dtype=torch.int64)),
                   WRONG_TYPE if self.floating else BAD_VALUE)]
        return values + ([([], BAD_VALUE), (image(), WRONG_TYPE)] if self.listed else [])


@dataclass
class Tensor(Kind):
    """A floating-point tensor of ``ndim`` dimensions."""
    ndim: int = 4
    numpy_ok: bool = False

    def fixed(self):
        wrong_rank = torch.zeros((2,) * (self.ndim + 1))
        values = super().fixed() + [([[1.0, 2.0]], WRONG_TYPE), (wrong_rank, BAD_VALUE),
                                    (torch.zeros((2,) * self.ndim, dtype=torch.int64),
                                     WRONG_TYPE)]
        return values + ([] if self.numpy_ok else [(np.zeros((2,) * self.ndim), WRONG_TYPE)])


@dataclass
class Dtype(Kind):
    def fixed(self):
        return super().fixed() + [("float64", WRONG_TYPE), (np.float64, WRONG_TYPE),
                                  (torch.int64, BAD_VALUE)]


@dataclass
class Axes(Kind):
    def fixed(self):
        return super().fixed() + [(plt.figure(), WRONG_TYPE)]


@dataclass
class Path_(Kind):
    def fixed(self):
        return [(3, WRONG_TYPE), (True, WRONG_TYPE), ([Path(".")], WRONG_TYPE)]


@dataclass
class Anything(Kind):
    """Arguments whose every type is acceptable: only the listed values are bad."""
    bad: list = field(default_factory=list)

    def fixed(self):
        return self.bad


SEED = Int(minimum=0, maximum=2**64 - 1)
THREADS = Int(minimum=1, maximum=1024)


# ------------------------------------------------------------------------------------------------
# A valid call of every public callable, and the kind of each argument
# ------------------------------------------------------------------------------------------------

def conv():
    return nn.Conv2d(4, 6, 3, padding=1)


def net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.BatchNorm2d(4),
                         nn.Conv2d(4, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(5, 2)).eval()


def image():
    return torch.randn(1, 3, 8, 8)


def photo():
    return np.random.default_rng(0).integers(0, 256, (240, 250, 3), dtype=np.uint8)


def digits():
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=rng, dtype=torch.float64)
    y = torch.arange(16) % 10
    return x, y, x[:8], y[:8]


def log_axes():
    ax = plt.figure().add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    return ax


@dataclass
class Case:
    function: object
    valid: dict                      # argument name -> a factory of a valid value
    kinds: dict                      # argument name -> Kind
    cheap: bool = True               # the valid call is run as a check (not where it costs
                                     # seconds: other test files call those functions)

    def call(self, **overrides):
        arguments = {name: make() for name, make in self.valid.items()}
        arguments.update(overrides)
        if "*inputs" in arguments:
            positional = arguments.pop("*inputs")
            return self.function(arguments.pop("model"), positional, **arguments)
        return self.function(**arguments)


def same(value):
    return lambda: value


CASES = [
    Case(du.conv_output_size, dict(size=same(8), kernel_size=same(3), stride=same(1),
                                   padding=same(0), dilation=same(1)),
         dict(size=Int(1), kernel_size=Int(1), stride=Int(1), padding=Int(0, words=True),
              dilation=Int(1))),
    Case(du.conv2d_by_hand, dict(input=lambda: torch.randn(2, 5, 5),
                                 weight=lambda: torch.randn(4, 2, 3, 3), stride=same(1),
                                 padding=same(0), dilation=same(1), groups=same(1)),
         dict(input=Tensor(ndim=3), weight=Tensor(ndim=4), stride=Int(1, tuples=True),
              padding=Int(0, words=True, tuples=True),
              dilation=Int(1, tuples=True), groups=Int(1))),
    Case(du.standard_conv_mults, dict(in_channels=same(4), out_channels=same(6),
                                      kernel_size=same(3), output_size=same(8), groups=same(1)),
         dict(in_channels=Int(1), out_channels=Int(1), kernel_size=Sizes(1),
              output_size=Sizes(1), groups=Int(1))),
    Case(du.depthwise_conv_mults, dict(in_channels=same(4), kernel_size=same(3),
                                       output_size=same(8), depth_multiplier=same(1)),
         dict(in_channels=Int(1), kernel_size=Sizes(1), output_size=Sizes(1),
              depth_multiplier=Int(1))),
    Case(du.pointwise_conv_mults, dict(in_channels=same(4), out_channels=same(6),
                                       output_size=same(8)),
         dict(in_channels=Int(1), out_channels=Int(1), output_size=Sizes(1))),
    Case(du.separable_conv_mults, dict(in_channels=same(4), out_channels=same(6),
                                       kernel_size=same(3), output_size=same(8),
                                       depth_multiplier=same(1)),
         dict(in_channels=Int(1), out_channels=Int(1), kernel_size=Sizes(1),
              output_size=Sizes(1), depth_multiplier=Int(1))),
    Case(du.LayerCost, dict(name=same("conv"), kind=same("standard"),
                            input_shape=same((1, 3, 8, 8)), output_shape=same((1, 4, 8, 8)),
                            mults=same(10), params=same(5)),
         dict(name=Text(), kind=Text(), mults=Int(0), params=Int(0),
              input_shape=Anything(bad=[("1x3", WRONG_TYPE), (None, WRONG_TYPE),
                                        ((1, -3), BAD_VALUE)]),
              output_shape=Anything(bad=[(5, WRONG_TYPE), ((1, 2.5), WRONG_TYPE)]))),
    *[Case(function, {"model": net, "*inputs": image},
           {"model": Module(counts_lazy=True), "*inputs": ModelInput()},
           cheap=function is not du.torch_flops)
      for function in (du.layer_costs, du.count_mults, du.count_mults_with_hooks,
                       du.torch_flops, du.cost_table)],
    Case(du.module_mults, dict(module=conv, input=lambda: torch.randn(1, 4, 8, 8),
                               output=lambda: torch.randn(1, 6, 8, 8)),
         dict(module=Module(),
              input=Anything(bad=[("x", WRONG_TYPE), (None, WRONG_TYPE), (3, WRONG_TYPE)]),
              output=Anything(bad=[("x", WRONG_TYPE), (None, WRONG_TYPE)]))),
    *[Case(layer, dict(in_channels=same(4), out_channels=same(6), kernel_size=same(3),
                       stride=same(1), padding=same(0), dilation=same(1), bias=same(True),
                       padding_mode=same("zeros"), depth_multiplier=same(1),
                       device=same(None), dtype=same(None)),
           dict(in_channels=Int(1), out_channels=Int(1), kernel_size=Sizes(1, dims=layer._dims),
                stride=Sizes(1, dims=layer._dims), dilation=Sizes(1, dims=layer._dims),
                bias=Bool(),
                padding_mode=Choice(values=("zeros", "reflect", "replicate", "circular")),
                depth_multiplier=Int(1), dtype=Dtype(allows_none=True)))
      for layer in (du.DepthwiseSeparableConv2d, du.DepthwiseSeparableConv1d)],
    Case(du.to_standard_conv, dict(layer=lambda: du.DepthwiseSeparableConv2d(4, 6, 3)),
         dict(layer=Module(of=du.DepthwiseSeparableConv2d))),
    Case(du.mobilenet_block, dict(in_channels=same(4), out_channels=same(8), stride=same(1)),
         dict(in_channels=Int(1), out_channels=Int(1), stride=Int(1))),
    Case(du.count_params, dict(model=net), dict(model=Module())),
    Case(du.param_table, dict(model=net), dict(model=Module())),
    Case(du.mobilenet_v1_layer_shapes, dict(resolution=same(224)), dict(resolution=Int(1))),
    Case(du.mobilenet_v1, dict(width_multiplier=same(0.25), num_classes=same(10),
                               separable=same(True)),
         dict(width_multiplier=Real(0.0, 4.0, open_below=True, open_above=False),
              num_classes=Int(1), separable=Bool())),
    Case(du.InvertedResidual, dict(in_channels=same(4), out_channels=same(4), stride=same(1),
                                   expand_ratio=same(6)),
         dict(in_channels=Int(1), out_channels=Int(1), stride=Int(1),
              expand_ratio=Int(1))),
    Case(du.mobilenet_v2, dict(num_classes=same(10)), dict(num_classes=Int(1))),
    Case(du.pretrained_mobilenet_v2, dict(path=same(None)), dict(path=Path_()), cheap=False),
    Case(du.imagenet_preprocess, dict(image=photo, short_side=same(240),
                                      position=same((0.5, 0.5)), flip=same(False),
                                      dtype=same(torch.float32)),
         dict(image=Anything(bad=[("photo", WRONG_TYPE), (None, WRONG_TYPE),
                                  (np.zeros((4, 4), dtype=np.uint8), BAD_VALUE),
                                  (np.zeros((40, 50, 3), dtype=np.float32), WRONG_TYPE)]),
              short_side=Int(224), flip=Bool(), dtype=Dtype(),
              position=Anything(bad=[(0.5, WRONG_TYPE), ((0.5, 1.5), BAD_VALUE),
                                     (("0.5", 0.5), WRONG_TYPE), ((0.5,), WRONG_TYPE)]))),
    Case(du.top_k, dict(logits=lambda: torch.randn(1, 1000), k=same(5)),
         dict(logits=Tensor(ndim=2), k=Int(1, 1000))),
    Case(du.randomize_batch_norms, dict(model=net, seed=same(0)),
         dict(model=Module(), seed=SEED)),
    Case(du.InferenceModel, dict(model=net, memory_format=same(torch.contiguous_format),
                                 folded=same(0)),
         dict(model=Module(), folded=Int(0),
              memory_format=Anything(bad=[("channels_last", WRONG_TYPE), (None, WRONG_TYPE),
                                          (torch.preserve_format, BAD_VALUE)]))),
    Case(du.prepare_for_inference, dict(model=net, memory_format=same(torch.channels_last)),
         dict(model=Module(),
              memory_format=Anything(bad=[("channels_last", WRONG_TYPE), (None, WRONG_TYPE),
                                          (torch.channels_last_3d, BAD_VALUE)]))),
    *[Case(timer, dict(functions=lambda: {"a": lambda: None}, threads=same(1), rounds=same(1),
                       min_run_time=same(0.001), warmup=same(0)),
           dict(functions=Anything(bad=[(None, WRONG_TYPE), ([lambda: None], WRONG_TYPE),
                                        ({}, BAD_VALUE), ({"a": 3}, WRONG_TYPE)]),
                threads=THREADS, rounds=Int(1), warmup=Int(0),
                min_run_time=Real(0.0, 3600.0, open_below=True, open_above=False,
                                  allows_none=none_ok)))
      for timer, none_ok in ((du.time_blocks, True), (du.time_side_by_side, False))],
    Case(du.load_digits_split, dict(test_fraction=same(0.25), seed=same(0),
                                    dtype=same(torch.float64)),
         dict(test_fraction=Real(0.0, 1.0, open_below=True), seed=Int(0, 2**32 - 1),
              dtype=Dtype()), cheap=False),
    Case(du.digits_cross_validation, dict(train_size=same(100), folds=same(2), repeats=same(1),
                                          seed=same(0), dtype=same(torch.float64)),
         dict(train_size=Int(10, 1500), folds=Int(2), repeats=Int(1),
              seed=Int(0, 2**32 - 1), dtype=Dtype()), cheap=False),
    Case(du.digits_cnn, dict(separable=same(False), width=same(4), dtype=same(torch.float64)),
         dict(separable=Bool(), width=Int(1), dtype=Dtype())),
    Case(du.reset_weights, dict(model=net, seed=same(0)), dict(model=Module(), seed=SEED)),
    Case(du.train_digits, dict(model=lambda: du.digits_cnn(width=2), data=digits,
                               epochs=same(1), batch_size=same(8), lr=same(0.05),
                               weight_decay=same(5e-4), momentum=same(0.9), seed=same(0),
                               track_train_accuracy=same(False),
                               track_test_accuracy=same(False)),
         dict(model=Module(), epochs=Int(1), batch_size=Int(1),
              lr=Real(0.0), weight_decay=Real(0.0), momentum=Real(0.0, 1.0),
              seed=SEED, track_train_accuracy=Bool(), track_test_accuracy=Bool(),
              data=Anything(bad=[(None, WRONG_TYPE), ("data", WRONG_TYPE),
                                 ((torch.zeros(2, 1, 8, 8),), BAD_VALUE)])), cheap=False),
    Case(du.kernel_slices, dict(weight=lambda: torch.randn(6, 4, 3, 3)),
         dict(weight=Anything(bad=[("w", WRONG_TYPE), (None, WRONG_TYPE), ([[1.0]], WRONG_TYPE),
                                   (torch.zeros(4, 4), BAD_VALUE)]))),
    Case(du.separable_rank_limit, dict(conv=conv),
         dict(conv=Module(of=nn.Conv2d, lazy=nn.LazyConv2d(4, 3)))),
    Case(du.separable_decomposition, dict(conv=conv, rank=same(None)),
         dict(conv=Module(of=nn.Conv2d, lazy=nn.LazyConv2d(4, 3)),
              rank=Int(1, allows_none=True))),
    Case(du.onnxruntime_session, dict(model=net, example_input=image, threads=same(1)),
         dict(model=Module(), example_input=ModelInput(floating=True), threads=THREADS),
         cheap=False),
    Case(du.KerasSameConv2d, dict(in_channels=same(4), out_channels=same(6),
                                  kernel_size=same(3), stride=same(1), dilation=same(1),
                                  groups=same(1), bias=same(True)),
         dict(in_channels=Int(1), out_channels=Int(1), kernel_size=Sizes(1, dims=2),
              stride=Sizes(1, dims=2), dilation=Sizes(1, dims=2), groups=Int(1), bias=Bool())),
    Case(du.from_keras, dict(obj=same(None)),
         dict(obj=Anything(bad=[(None, WRONG_TYPE), ("model", WRONG_TYPE),
                                (nn.Linear(2, 2), WRONG_TYPE)])), cheap=False),
    Case(du.counter_reports, dict(model=net, input=image),
         dict(model=Module(counts_lazy=True), input=ModelInput()), cheap=False),
    Case(du.layer_kind, dict(module=conv), dict(module=Anything(bad=[
        (None, WRONG_TYPE), ("conv", WRONG_TYPE), (torch.zeros(2), WRONG_TYPE)]))),
    Case(du.training_mults, dict(model=net, input=image),
         dict(model=Module(counts_lazy=True), input=ModelInput())),
    Case(du.fake_quantize, dict(weight=lambda: torch.randn(6, 4, 3, 3), per_channel=same(False),
                                bits=same(8)),
         dict(weight=Anything(bad=[("w", WRONG_TYPE), (None, WRONG_TYPE), ([1.0], WRONG_TYPE),
                                   (torch.ones(4, 4, dtype=torch.int64), WRONG_TYPE)]),
              per_channel=Bool(), bits=Int(2, 16))),
    Case(du.sqnr_db, dict(reference=lambda: torch.randn(3, 4),
                          approximation=lambda: torch.randn(3, 4)),
         dict(reference=Anything(bad=[(None, WRONG_TYPE), ("x", WRONG_TYPE),
                                      (torch.zeros(4, 3), BAD_VALUE)]),
              approximation=Anything(bad=[(None, WRONG_TYPE), ([1.0], WRONG_TYPE),
                                          (torch.zeros(3, 5), BAD_VALUE)]))),
    Case(du.fold_batch_norms, dict(model=net), dict(model=Module())),
    Case(du.equalize_cross_layer, dict(model=net, sweeps=same(2)),
         dict(model=Module(), sweeps=Int(1))),
    Case(du.quantize_weights, dict(model=net, per_channel=same(False)),
         dict(model=Module(), per_channel=Bool())),
    Case(du.simulate_int8, dict(model=net, calibration=image, per_channel=same(False)),
         dict(model=Module(), calibration=ModelInput(floating=True), per_channel=Bool())),
    Case(du.onnxruntime_int8_session, dict(model=net, example_input=image,
                                           calibration=lambda: [image()],
                                           per_channel=same(False), threads=same(1),
                                           reduce_range=same(False)),
         dict(model=Module(), example_input=ModelInput(floating=True),
              calibration=ModelInput(listed=True, floating=True),
              per_channel=Bool(), threads=THREADS, reduce_range=Bool()), cheap=False),
    Case(du.depthwise_weight_decay, dict(model=net, weight_decay=same(5e-4),
                                         depthwise=same(0.0)),
         dict(model=Module(), weight_decay=Real(0.0), depthwise=Real(0.0))),
    Case(du.plain_log_ticks, dict(ax=log_axes, axis=same("y")),
         dict(ax=Axes(), axis=Choice(values=("x", "y", "both")))),
    Case(du.layer_color, dict(kind=same("depthwise")), dict(kind=Choice(values=()))),
    Case(du.draw_kernel_slide, dict(placements=same([(0, 0)]), size=same(5),
                                    kernel_size=same(3), stride=same(2), padding=same(1),
                                    ncols=same(2)),
         dict(size=Int(1), kernel_size=Int(1), stride=Int(1), padding=Int(0, words=True), ncols=Int(1),
              placements=Anything(bad=[(None, WRONG_TYPE), ("0,0", WRONG_TYPE),
                                       ([], BAD_VALUE), ([(0, 0, 0)], WRONG_TYPE)]))),
    Case(du.draw_filter_banks, dict(in_channels=same(3), out_channels=same(2),
                                    kernel_size=same(3), ax=same(None)),
         dict(in_channels=Int(1), out_channels=Int(1), kernel_size=Int(1),
              ax=Axes(allows_none=True))),
    Case(du.draw_dsc_data_flow, dict(in_channels=same(3), out_channels=same(4),
                                     kernel_size=same(3), size=same(5), ax=same(None)),
         dict(in_channels=Int(1), out_channels=Int(1), kernel_size=Int(1), size=Int(1),
              ax=Axes(allows_none=True))),
    Case(du.make_table, dict(header=same(["a", "b"]), rows=same([[1, 2]])),
         dict(header=Anything(bad=[(None, WRONG_TYPE), ("ab", WRONG_TYPE), ([], BAD_VALUE)]),
              rows=Anything(bad=[(None, WRONG_TYPE), ([[1]], BAD_VALUE), ([3], WRONG_TYPE)]))),
    Case(du.glue, dict(name=same("sweep-name"), value=same(1), display=same(False)),
         dict(name=Text(), display=Bool()), cheap=False),
    Case(du.glued, dict(key=same("sweep-name")), dict(key=Text()), cheap=False),
    Case(du.show_source, dict(obj=same(du.count_params), start=same(None), stop=same(None)),
         dict(obj=Anything(bad=[(None, WRONG_TYPE), (3, WRONG_TYPE), ("count", BAD_VALUE)]),
              start=Text(allows_none=True), stop=Text(allows_none=True))),
]
ARGUMENT_CASES = [(case, name) for case in CASES for name in case.kinds]


def label(case_and_name) -> str:
    case, name = case_and_name
    return f"{case.function.__name__}-{name.lstrip('*')}"


def test_every_public_callable_is_swept():
    swept = {case.function.__name__ for case in CASES}
    without_arguments = {"imagenet_class_names", "sample_photos", "import_keras",
                         "counter_versions"}
    public = {name for name in du.__all__ if callable(getattr(du, name))}
    assert public - without_arguments == swept
    for name in without_arguments:
        assert not [p for p in __import__("inspect").signature(getattr(du, name)).parameters]


@pytest.mark.parametrize("case", [case for case in CASES if case.cheap],
                         ids=lambda case: case.function.__name__)
def test_the_valid_call_succeeds(case):
    case.call()
    plt.close("all")


def check_refused(case: Case, name: str, value, expected: type) -> None:
    try:
        result = case.call(**{name: value})
    except (TypeError, ValueError) as error:
        where = traceback.extract_tb(error.__traceback__)[-1]
        assert where.filename == DSC_UTILS, (
            f"{type(error).__name__} raised inside {where.filename}:{where.lineno}: {error}")
        assert isinstance(error, expected), (
            f"{name}={value!r}: {type(error).__name__} instead of {expected.__name__}: {error}")
        shown = "input" if name == "*inputs" else name
        assert shown in str(error), f"the message does not name {shown!r}: {error}"
    else:
        pytest.fail(f"{case.function.__name__}({name}={value!r}) returned {type(result)}")
    finally:
        plt.close("all")


@pytest.mark.parametrize("case_and_name", ARGUMENT_CASES, ids=label)
def test_a_bad_argument_is_refused_at_the_call(case_and_name):
    """Every listed wrong type and out-of-range value of every argument."""
    case, name = case_and_name
    for value, expected in case.kinds[name].fixed():
        check_refused(case, name, value, expected)


GENERATED = [(case, name) for case, name in ARGUMENT_CASES
             if not case.kinds[name].generated().is_empty]


@pytest.mark.parametrize("case_and_name", GENERATED, ids=label)
@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_bad_values_are_refused_at_the_call(case_and_name, data):
    """Numbers below or above the range, floats for integers, any string: drawn by hypothesis."""
    case, name = case_and_name
    value, expected = data.draw(case.kinds[name].generated(), label=name)
    check_refused(case, name, value, expected)


@pytest.mark.parametrize("call, message", [
    (lambda: du.load_digits_split(seed=2**40), "seed must be at most 2**32 - 1"),
    (lambda: du.reset_weights(nn.Linear(2, 2), seed=2**70), "seed must be at most 2**64 - 1"),
    (lambda: du.time_blocks({"f": lambda: None}, threads=2**40), "threads must be at most 1024"),
    (lambda: du.time_side_by_side({"f": lambda: None}, min_run_time=math.inf),
     "min_run_time must be a number of seconds > 0 and <= 3600, got inf"),
    (lambda: du.mobilenet_v1(width_multiplier=1e6), "width_multiplier must be a number > 0"),
], ids=["digits-seed", "torch-seed", "threads", "infinite-time", "huge-width"])
def test_out_of_range_values_that_libraries_would_choke_on(call, message):
    """Each was accepted before and then failed inside scikit-learn or torch, hung, or ran out of
    memory: now refused at the call."""
    with pytest.raises(ValueError, match=re.escape(message)):
        call()
