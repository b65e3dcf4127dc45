"""Unit tests of dsc_utils section 10: Keras layers and models converted to PyTorch, and the
operation counters run side by side. Keras runs on the PyTorch backend."""
from __future__ import annotations

import doctest
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

import dsc_utils as du


class _Lazy:
    """Keras, or one of its modules, imported by the first test that uses it rather than when the
    file is collected: the import takes seconds, and both workers of `book.py test` collect it."""

    def __init__(self, *path: str):
        self._path = path

    def __getattr__(self, name: str):
        if name.startswith("_"):  # pytest probes every module attribute for fixture markers
            raise AttributeError(name)
        module = du.import_keras()
        for part in self._path:
            module = getattr(module, part)
        return getattr(module, name)


keras, L = _Lazy(), _Lazy("layers")


def keras_and_torch(layer_or_model, shape, seed=0):
    """Outputs of a Keras layer (NHWC) and of its conversion (NCHW, brought back to NHWC)."""
    x = np.random.default_rng(seed).standard_normal(shape).astype("float32")
    expected = torch.as_tensor(layer_or_model(x)).detach().cpu().numpy()
    module = du.from_keras(layer_or_model)
    with torch.no_grad():
        got = module(torch.from_numpy(x).permute(0, 3, 1, 2))
    if got.dim() == 4:
        got = got.permute(0, 2, 3, 1)
    return expected, got.numpy(), module


def assert_close(expected, got):
    assert expected.shape == got.shape
    scale = max(float(np.abs(expected).max()), 1e-12)
    assert float(np.abs(expected - got).max()) <= 1e-4 * scale


@pytest.mark.parametrize("name", ["import_keras", "from_keras"])  # test_doctests.py leaves them here
def test_docstring_examples_run(name):
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for test in finder.find(getattr(du, name), globs=vars(du)):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


# (kind, stride, padding, dilation, depth multiplier, kernel, height, width): every stride from 1
# to 3, both paddings, odd and even kernels and input sides, dilation and multiplier 1 and 2
GRID = [
    ("separable", 1, "same", 1, 1, 3, 7, 8), ("separable", 2, "same", 1, 2, 5, 9, 8),
    ("separable", 2, "valid", 2, 1, 3, 9, 9), ("separable", 3, "same", 2, 2, 2, 8, 7),
    ("separable", 1, "same", 2, 1, 4, 6, 6), ("separable", 2, "same", 1, 1, 1, 5, 6),
    ("depthwise", 1, "valid", 1, 2, 3, 7, 7), ("depthwise", 2, "same", 2, 1, 3, 8, 9),
    ("depthwise", 3, "valid", 1, 2, 4, 9, 8), ("depthwise", 2, "same", 1, 2, 2, 7, 6),
    ("conv", 2, "same", 1, 1, 3, 8, 8), ("conv", 1, "same", 2, 1, 3, 7, 9),
    ("conv", 3, "valid", 1, 1, 2, 9, 7), ("conv", 2, "same", 1, 1, 4, 7, 7),
]


@pytest.mark.parametrize("kind, stride, padding, dilation, multiplier, kernel, height, width",
                         GRID)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_layers_match_keras(kind, stride, padding, dilation, multiplier, kernel, height,
                                 width, bias):
    common = dict(strides=stride, padding=padding, dilation_rate=dilation, use_bias=bias,
                  bias_initializer="random_normal")
    if kind == "separable":
        layer = L.SeparableConv2D(4, kernel, depth_multiplier=multiplier, **common)
    elif kind == "depthwise":
        layer = L.DepthwiseConv2D(kernel, depth_multiplier=multiplier, **common)
    else:
        layer = L.Conv2D(4, kernel, **common)
    expected, got, module = keras_and_torch(layer, (2, height, width, 3))
    assert_close(expected, got)
    assert du.count_params(module) == layer.count_params()
    if kind == "separable":
        assert isinstance(module, du.DepthwiseSeparableConv2d)
        assert module.depthwise.bias is None


def test_seed_layer_is_a_separable_layer_with_one_bias():
    layer = L.SeparableConv2D(64, 5, strides=2, padding="same", bias_initializer="random_normal")
    expected, got, module = keras_and_torch(layer, (1, 228, 228, 3))
    assert_close(expected, got)
    assert got.shape == (1, 114, 114, 64)
    assert isinstance(module.depthwise, du.KerasSameConv2d)
    assert (layer.count_params(), du.count_params(module)) == (331, 331)


def test_grouped_conv_and_even_kernel_same_padding():
    layer = L.Conv2D(6, 2, padding="same", groups=3, bias_initializer="random_normal")
    expected, got, module = keras_and_torch(layer, (2, 7, 6, 6))
    assert_close(expected, got)
    assert isinstance(module, du.KerasSameConv2d) and module.groups == 3


def test_batch_norm_keeps_epsilon_and_converts_momentum():
    layer = L.BatchNormalization(epsilon=0.01, momentum=0.9)
    layer.build((None, 4, 4, 5))
    rng = np.random.default_rng(1)
    for variable, values in [(layer.moving_mean, rng.normal(size=5)),
                             (layer.moving_variance, rng.uniform(0.001, 0.01, 5)),
                             (layer.gamma, rng.uniform(0.5, 1.5, 5)),
                             (layer.beta, rng.normal(size=5))]:
        variable.assign(values.astype("float32"))
    expected, got, module = keras_and_torch(layer, (2, 4, 4, 5))
    assert_close(expected, got)
    assert module.eps == pytest.approx(0.01) and module.momentum == pytest.approx(0.1)


def test_small_sequential_and_functional_models():
    sequential = keras.Sequential([
        keras.Input((9, 9, 3)), L.ZeroPadding2D(((0, 1), (0, 1))),
        L.DepthwiseConv2D(3, strides=2), L.BatchNormalization(), L.ReLU(6.0),
        L.Conv2D(8, 1, activation="relu"), L.GlobalAveragePooling2D(), L.Dropout(0.5),
        L.Dense(5), L.Activation("softmax")])
    expected, got, module = keras_and_torch(sequential, (2, 9, 9, 3))
    assert_close(expected, got)
    assert isinstance(module, nn.Sequential) and not module.training

    inputs = keras.Input((8, 8, 4))
    branch = L.Conv2D(4, 3, padding="same")(inputs)
    x = L.Add()([inputs, branch])
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    x = L.Conv2D(3, 1)(x)
    outputs = L.Softmax()(L.Reshape((3,))(x))
    functional = keras.Model(inputs, outputs)
    expected, got, _ = keras_and_torch(functional, (2, 8, 8, 4))
    assert_close(expected, got)


def test_small_mobilenet_v2_matches_keras():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                           classes=7)
    expected, got, module = keras_and_torch(model, (2, 32, 32, 3))
    assert_close(expected, got)
    assert du.count_params(module) == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_what_cannot_be_converted_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="Keras layer or model"):
        du.from_keras(nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="'unbuilt'"):
        du.from_keras(L.Conv2D(2, 3, name="unbuilt"))
    leaky = L.LeakyReLU(name="leaky")
    leaky.build((None, 4, 4, 2))
    with pytest.raises(TypeError, match="'leaky'"):
        du.from_keras(leaky)
    first = L.Conv2D(2, 3, data_format="channels_first", name="first")
    first.build((None, 2, 8, 8))
    with pytest.raises(TypeError, match="'first'.*channels_last"):
        du.from_keras(first)
    model = keras.Sequential([keras.Input((4, 4, 2)), L.Flatten(name="flat")])
    with pytest.raises(TypeError, match="'flat'"):
        du.from_keras(model)
    model = keras.Sequential([keras.Input((4, 4, 2)), L.Conv2D(2, 1, activation="elu",
                                                               name="elu_conv")])
    with pytest.raises(TypeError, match="'elu_conv'.*'elu'"):
        du.from_keras(model)


def test_import_keras_refuses_another_backend(monkeypatch):
    fake = types.SimpleNamespace(backend=types.SimpleNamespace(backend=lambda: "jax"))
    monkeypatch.setitem(sys.modules, "keras", fake)
    with pytest.raises(RuntimeError, match="'jax'"):
        du.import_keras()
    monkeypatch.delitem(sys.modules, "keras")
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    with pytest.raises(RuntimeError, match="KERAS_BACKEND='tensorflow'"):
        du.import_keras()


def test_keras_same_conv_pads_more_at_the_end():
    conv = du.KerasSameConv2d(1, 1, kernel_size=2, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(9.0).reshape(1, 1, 3, 3)
    # ceil(3 / 2) = 2 outputs, one padded row and column, at the bottom and the right
    assert conv(x).flatten().tolist() == [0 + 1 + 3 + 4, 2 + 5, 6 + 7, 8]


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight).mean((2, 3)) @ torch.ones(4, 2)


def test_counter_reports_are_silent_and_leave_the_model_alone(capsys):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, bias=True), nn.BatchNorm2d(8), nn.ReLU())
    x = torch.zeros(1, 3, 10, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reports = du.counter_reports(model, x)
    assert set(reports) == set(du.COUNTERS)
    macs = 8 * 27 * 64
    assert reports["count_mults"] == (macs, 8 * 28 + 16)
    assert reports["FlopCounterMode"] == (2 * macs, None)
    assert reports["fvcore"][0] >= macs and reports["ptflops"][0] > macs
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(hasattr(m, "total_ops") or hasattr(m, "__flops__") for m in model.modules())
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_counter_reports_bad_input():
    with pytest.raises(TypeError, match="model"):
        du.counter_reports("model", torch.zeros(1))
    with pytest.raises(TypeError, match="input"):
        du.counter_reports(nn.Identity(), [1, 2])


def test_counter_versions_name_every_package():
    versions = du.counter_versions()
    assert set(versions) == {"torch", "ptflops", "fvcore", "thop", "torchinfo"}
    assert all(isinstance(v, str) and v[0].isdigit() for v in versions.values())


def test_ptflops_backends_differ_as_the_chapter_says():
    # the aten backend counts the convolution and its bias, not batch norm or ReLU
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    reports = du.counter_reports(model, torch.zeros(1, 8, 10, 10))
    macs = 8 * 8 * 9 * 100
    assert reports["ptflops (aten)"][0] == macs + 800            # bias: 1 per output
    assert reports["ptflops"][0] > reports["ptflops (aten)"][0]  # plus BN and ReLU
