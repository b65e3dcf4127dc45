"""Helpers for the book *Depthwise Separable Convolutions, Derived and Measured*.

The module reads top to bottom in the book's order:

1. arithmetic: the output size of a convolution;
2. convolution by hand: the loops that define it, instrumented to count multiplications;
3. counting: closed-form multiplication counts and ``count_mults`` for real PyTorch models;
4. layers: ``DepthwiseSeparableConv2d`` (a drop-in ``nn.Conv2d``), its 1-D twin, MobileNet's block;
5. parameters: ``count_params`` and ``param_table``;
6. networks: MobileNet v1 (and its full-convolution twin) and MobileNetV2, rebuilt from the papers;
7. measurement: ``prepare_for_inference`` (batch norm folded, channels-last, no autograd) and
   ``time_side_by_side`` (medians of interleaved ``torch.utils.benchmark`` timings);
8. beyond: a small digits experiment (``load_digits_split``, ``digits_cnn``, ``train_digits``) and
   ``separable_decomposition``, a standard convolution as a sum of separable ones;
9. runtimes: the same model in ONNX Runtime;
10. Keras: its layers and applications converted to PyTorch;
11. beyond inference: training cost and int8 quantization;
12. drawing: one colour per kind of layer (``LAYER_COLORS``) and the chapters' figures;
13. book helpers: showing this module's own source in the chapters.

Names say what things are (``in_channels``, ``out_channels``, ``kernel_size``, ``output_size``);
the book's notation table maps them to the symbols M, N, D_K and D_G used in the formulas.

Every public function checks its arguments: a value of the wrong type raises ``TypeError`` and a value
out of range raises ``ValueError``, and both messages name the argument and the value received.
"""

from __future__ import annotations

import ast
import copy
import inspect
import math
import numbers
import statistics
import sys
from collections import OrderedDict
from dataclasses import dataclass

try:
    import torch
    import torch.nn.functional as F
    from prettytable import PrettyTable
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    from torch.utils import benchmark
    from torch.utils.flop_counter import FlopCounterMode
except ModuleNotFoundError as error:  # pragma: no cover - exercised by hand on a bare interpreter
    raise ModuleNotFoundError(
        f"dsc_utils needs the package {error.name!r}, which is not installed in this Python "
        f"environment. Run `python3 book.py test` (it creates .venv with everything pinned), or "
        f"`pip install -r requirements.txt` in the environment you are using."
    ) from error

__all__ = [
    "conv_output_size",
    "conv2d_by_hand",
    "standard_conv_mults",
    "depthwise_conv_mults",
    "pointwise_conv_mults",
    "separable_conv_mults",
    "LayerCost",
    "layer_costs",
    "count_mults",
    "torch_flops",
    "cost_table",
    "DepthwiseSeparableConv2d",
    "DepthwiseSeparableConv1d",
    "to_standard_conv",
    "mobilenet_block",
    "count_params",
    "param_table",
    "MOBILENET_V1_BLOCKS",
    "MOBILENET_PAPER_TABLE_4",
    "mobilenet_v1_layer_shapes",
    "mobilenet_v1",
    "InvertedResidual",
    "MOBILENET_V2_SETTINGS",
    "mobilenet_v2",
    "randomize_batch_norms",
    "InferenceModel",
    "prepare_for_inference",
    "time_side_by_side",
    "load_digits_split",
    "digits_cnn",
    "train_digits",
    "kernel_slices",
    "separable_rank_limit",
    "separable_decomposition",
    "LAYER_COLORS",
    "layer_color",
    "show_source",
]


# ---------------------------------------------------------------------------------------------------
# Argument checking
# ---------------------------------------------------------------------------------------------------

def _check_int(name: str, value, minimum: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer >= ``minimum``; raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        bound = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return int(value)


def _check_sizes(name: str, value, minimum: int = 1) -> tuple[int, ...]:
    """An int (one size for every spatial dimension) or a tuple/list with one int per dimension."""
    if isinstance(value, (tuple, list)):
        if len(value) == 0:
            raise ValueError(f"{name} must not be empty, got {value!r}")
        return tuple(_check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(value))
    return (_check_int(name, value, minimum),)


def _spatial(kernel_size, output_size) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Check a kernel size and an output size and bring them to the same number of dimensions.

    Two ints mean a square 2-D convolution; a tuple fixes the number of dimensions and an int beside
    it is repeated to match.
    """
    kernel = _check_sizes("kernel_size", kernel_size)
    output = _check_sizes("output_size", output_size)
    ints = not isinstance(kernel_size, (tuple, list)) and not isinstance(output_size, (tuple, list))
    if ints:
        return kernel * 2, output * 2
    if not isinstance(kernel_size, (tuple, list)):
        kernel = kernel * len(output)
    if not isinstance(output_size, (tuple, list)):
        output = output * len(kernel)
    if len(kernel) != len(output):
        raise ValueError(
            f"kernel_size and output_size must have the same number of dimensions, "
            f"got kernel_size={kernel_size!r} and output_size={output_size!r}"
        )
    return kernel, output


# ---------------------------------------------------------------------------------------------------
# 1. Arithmetic: how big is the output?
# ---------------------------------------------------------------------------------------------------

def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1) -> int:
    r"""Length of a convolution's output along one spatial dimension.

    .. math:: o = \left\lfloor \frac{i + 2p - d(k - 1) - 1}{s} \right\rfloor + 1

    with ``p`` zeros added on *each* side, exactly as ``torch.nn.Conv2d`` does it.

    Args:
        size (int): input length ``i`` along the dimension (positive).
        kernel_size (int): kernel length ``k`` (positive).
        stride (int): step ``s`` between two kernel positions (positive). Default: 1.
        padding (int or str): zeros ``p`` added on each side (0 or more), or ``'valid'`` (no
            padding) or ``'same'`` (output as long as the input; only with ``stride=1``, as in
            PyTorch). Default: 0.
        dilation (int): spacing ``d`` between kernel taps (positive). Default: 1.

    Returns:
        int: the output length ``o``.

    Raises:
        TypeError: an argument is not an integer (or ``padding`` not an integer or string).
        ValueError: an argument is out of range, or the dilated kernel ``d(k-1)+1`` is longer than
            the padded input ``i + 2p``.

    Example:
        >>> conv_output_size(228, kernel_size=5, stride=2)
        112
        >>> conv_output_size(14, kernel_size=3, padding='same')
        14
    """
    size = _check_int("size", size, 1)
    kernel_size = _check_int("kernel_size", kernel_size, 1)
    stride = _check_int("stride", stride, 1)
    dilation = _check_int("dilation", dilation, 1)
    span = dilation * (kernel_size - 1) + 1  # how much input one kernel position covers
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same":
            if stride != 1:
                raise ValueError(f"padding='same' needs stride=1 (as in PyTorch), got stride={stride!r}")
            return size
        else:
            raise ValueError(f"padding must be an integer, 'valid' or 'same', got {padding!r}")
    padding = _check_int("padding", padding, 0)
    if span > size + 2 * padding:
        raise ValueError(
            f"kernel_size={kernel_size} with dilation={dilation} spans {span} input elements, but the padded "
            f"input has only size + 2*padding = {size} + {2 * padding}: the kernel does not fit"
        )
    return (size + 2 * padding - span) // stride + 1


# ---------------------------------------------------------------------------------------------------
# 2. Convolution by hand
# ---------------------------------------------------------------------------------------------------

def conv2d_by_hand(input, weight, stride=1, padding=0, dilation=1, groups=1):
    """A 2-D convolution (deep learning's cross-correlation) written as plain loops.

    It computes what ``torch.nn.functional.conv2d`` computes for one image, one multiplication at
    a time, and counts the multiplications it performs. It is slow on purpose: it is the definition,
    not an implementation to use.

    Args:
        input (Tensor): one image of shape ``(in_channels, height, width)``.
        weight (Tensor): kernels of shape ``(out_channels, in_channels // groups, kH, kW)``.
        stride (int): step between kernel positions. Default: 1.
        padding (int): zeros added on each side. Default: 0.
        dilation (int): spacing between kernel taps. Default: 1.
        groups (int): input and output channels are split into this many groups; each output
            channel sees only its own group's input channels. Default: 1.

    Returns:
        tuple: ``(output, multiplications)``: the output of shape
        ``(out_channels, out_height, out_width)`` and the number of scalar multiplications done.

    Example:
        >>> x, w = torch.ones(1, 4, 4), torch.ones(2, 1, 3, 3)
        >>> out, mults = conv2d_by_hand(x, w)
        >>> tuple(out.shape), mults
        ((2, 2, 2), 72)
    """
    if not isinstance(input, torch.Tensor) or input.dim() != 3:
        raise ValueError(f"input must be a tensor of shape (in_channels, height, width), got {_describe(input)}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ValueError(
            f"weight must be a tensor of shape (out_channels, in_channels // groups, kH, kW), got {_describe(weight)}"
        )
    groups = _check_int("groups", groups, 1)
    in_channels, height, width = input.shape
    out_channels, channels_per_group, kernel_h, kernel_w = weight.shape
    if in_channels != channels_per_group * groups or out_channels % groups != 0:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not fit input with {in_channels} channels "
            f"and groups={groups}"
        )
    out_h = conv_output_size(height, kernel_h, stride, padding, dilation)
    out_w = conv_output_size(width, kernel_w, stride, padding, dilation)
    x = F.pad(input, (padding, padding, padding, padding)).tolist()  # zeros on each side
    w = weight.tolist()
    outputs_per_group = out_channels // groups

    output = [[[0.0] * out_w for _ in range(out_h)] for _ in range(out_channels)]
    multiplications = 0
    for n in range(out_channels):                          # every kernel (output channel)
        first_input = (n // outputs_per_group) * channels_per_group
        for i in range(out_h):                             # every output row ...
            for j in range(out_w):                         # ... and column
                total = 0.0
                for c in range(channels_per_group):        # every input channel the kernel sees
                    channel = x[first_input + c]
                    for u in range(kernel_h):              # every kernel tap
                        for v in range(kernel_w):
                            total += channel[i * stride + u * dilation][j * stride + v * dilation] * w[n][c][u][v]
                            multiplications += 1
                output[n][i][j] = total
    return torch.tensor(output, dtype=input.dtype), multiplications


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{value!r} of type {type(value).__name__}"


# ---------------------------------------------------------------------------------------------------
# 3. Counting multiplications
# ---------------------------------------------------------------------------------------------------

def standard_conv_mults(in_channels, out_channels, kernel_size, output_size, groups=1) -> int:
    r"""Multiplications of a standard convolution: :math:`D_K^2 \cdot M \cdot N \cdot D_G^2`.

    Each of the ``out_channels`` kernels has ``kernel_size**2 * in_channels`` weights, and each
    weight is used once at every one of the ``output_size**2`` output positions. A grouped
    convolution's kernels see only ``in_channels / groups`` channels each, so it costs ``groups`` times
    less; ``groups = in_channels = out_channels`` is a depthwise convolution.

    Args:
        in_channels (int): input channels M.
        out_channels (int): output channels N (the number of kernels).
        kernel_size (int or tuple): kernel side D_K, or one length per spatial dimension.
        output_size (int or tuple): output side D_G (not the input side), or one length per dimension.
        groups (int): number of channel groups g; must divide both channel counts. Default: 1.

    Returns:
        int: the number of multiplications for one image (bias additions excluded).

    Example:
        >>> standard_conv_mults(3, 64, kernel_size=5, output_size=112)
        60211200
    """
    in_channels = _check_int("in_channels", in_channels, 1)
    out_channels = _check_int("out_channels", out_channels, 1)
    groups = _check_groups(groups, in_channels, out_channels)
    kernel, output = _spatial(kernel_size, output_size)
    return math.prod(kernel) * (in_channels // groups) * out_channels * math.prod(output)


def _check_groups(groups, in_channels: int, out_channels: int) -> int:
    groups = _check_int("groups", groups, 1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
        )
    return groups


def depthwise_conv_mults(in_channels, kernel_size, output_size, depth_multiplier=1) -> int:
    r"""Multiplications of a depthwise convolution: :math:`D_K^2 \cdot M \cdot D_G^2` (times the multiplier).

    Each input channel gets its own ``depth_multiplier`` kernels of a single channel each.

    Args:
        in_channels (int): input channels M.
        kernel_size (int or tuple): kernel side D_K, or one length per spatial dimension.
        output_size (int or tuple): output side D_G, or one length per dimension.
        depth_multiplier (int): kernels per input channel. Default: 1.

    Example:
        >>> depthwise_conv_mults(3, kernel_size=5, output_size=112)
        940800
    """
    in_channels = _check_int("in_channels", in_channels, 1)
    depth_multiplier = _check_int("depth_multiplier", depth_multiplier, 1)
    kernel, output = _spatial(kernel_size, output_size)
    return math.prod(kernel) * in_channels * depth_multiplier * math.prod(output)


def pointwise_conv_mults(in_channels, out_channels, output_size) -> int:
    r"""Multiplications of a pointwise (1x1) convolution: :math:`M \cdot N \cdot D_G^2`.

    Args:
        in_channels (int): input channels M.
        out_channels (int): output channels N.
        output_size (int or tuple): output side D_G, or one length per spatial dimension.

    Example:
        >>> pointwise_conv_mults(3, 64, output_size=112)
        2408448
    """
    return standard_conv_mults(in_channels, out_channels, 1, output_size)


def separable_conv_mults(in_channels, out_channels, kernel_size, output_size, depth_multiplier=1) -> int:
    r"""Multiplications of a depthwise separable convolution: depthwise plus pointwise.

    .. math:: D_K^2 \cdot M \cdot D_G^2 + M \cdot N \cdot D_G^2

    With a depth multiplier the pointwise layer sees ``in_channels * depth_multiplier`` channels.

    Example:
        >>> separable_conv_mults(3, 64, kernel_size=5, output_size=112)
        3349248
    """
    depthwise = depthwise_conv_mults(in_channels, kernel_size, output_size, depth_multiplier)
    hidden = _check_int("in_channels", in_channels, 1) * _check_int("depth_multiplier", depth_multiplier, 1)
    return depthwise + pointwise_conv_mults(hidden, out_channels, output_size)


@dataclass(frozen=True)
class LayerCost:
    """One call of one counted layer, as recorded by :func:`layer_costs`."""

    name: str                      #: the module's name inside the model (``''`` for the model itself)
    kind: str                      #: the module's class name, e.g. ``'Conv2d'``
    input_shape: tuple[int, ...]   #: shape of the input tensor, batch included
    output_shape: tuple[int, ...]  #: shape of the output tensor, batch included
    mults: int                     #: multiplications of this call (whole batch, bias excluded)
    params: int                    #: parameters of the module (weight and bias)


_NOT_COUNTED = (nn.RNNBase, nn.MultiheadAttention, nn.Bilinear, nn.Transformer)


def _mults_of_call(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    if isinstance(module, nn.Linear):
        # every output element is a dot product of length in_features
        return output.numel() * module.in_features
    if module.transposed:
        # every input element is multiplied by all the weights of its group's kernels
        (x,) = inputs[:1]
        return x.numel() * (module.out_channels // module.groups) * math.prod(module.kernel_size)
    # every output element is a dot product over (in_channels / groups) channels and k taps
    return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)


def layer_costs(model, *inputs) -> list[LayerCost]:
    """Run ``model`` once on ``inputs`` and record every convolution and linear layer it calls.

    Convolutions of any dimension (``nn.Conv1d``, ``nn.Conv2d``, ``nn.Conv3d`` and their transposed
    versions, any groups, stride, padding and dilation) and ``nn.Linear`` layers are counted as
    multiply-accumulates: one per weight use, bias additions excluded. Batch norm, activations and
    pooling are not counted, as in the MobileNet paper. The model runs without gradients and in
    evaluation mode (batch-norm statistics are not touched); its training flag is restored after.

    Args:
        model (nn.Module): the model to run.
        *inputs: the positional arguments of ``model.forward``.

    Returns:
        list of :class:`LayerCost`, in the order the layers ran; a layer called twice appears twice.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, or contains a layer whose multiplications this
            function cannot count (recurrent, attention, bilinear) and would otherwise miss.
        ValueError: no input was given.
    """
    _check_model_and_inputs(model, inputs, "layer_costs")
    for name, module in model.named_modules():
        if isinstance(module, _NOT_COUNTED):
            raise TypeError(
                f"model contains {name or '(model)'!r} of type {type(module).__name__}, whose "
                f"multiplications are not counted here; counting without it would be wrong"
            )

    records: list[LayerCost] = []

    def record(name):
        def hook(module, args, output):
            records.append(
                LayerCost(
                    name=name,
                    kind=type(module).__name__,
                    input_shape=tuple(args[0].shape),
                    output_shape=tuple(output.shape),
                    mults=_mults_of_call(module, args, output),
                    params=sum(p.numel() for p in module.parameters(recurse=False)),
                )
            )
        return hook

    counted = (nn.Linear, nn.modules.conv._ConvNd)
    handles = [
        module.register_forward_hook(record(name))
        for name, module in model.named_modules()
        if isinstance(module, counted)
    ]
    try:
        _run_untouched(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return records


def _check_model_and_inputs(model, inputs, caller: str) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    if not inputs:
        raise ValueError(f"{caller} needs at least one input for the model, got none")


def _run_untouched(model: nn.Module, inputs: tuple) -> None:
    """One forward pass in evaluation mode without gradients; the training flag is restored after."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)


def count_mults(model, *inputs) -> int:
    """Multiply-accumulates done by ``model``'s convolution and linear layers on ``inputs``.

    The sum of :func:`layer_costs`: run once, no gradients, bias excluded, whole batch.
    ``torch.utils.flop_counter.FlopCounterMode`` reports twice this number, since it counts a
    multiply-add as two floating-point operations.

    Example:
        >>> count_mults(nn.Conv2d(3, 64, 5, stride=2), torch.zeros(1, 3, 228, 228))
        60211200
    """
    return sum(cost.mults for cost in layer_costs(model, *inputs))


def torch_flops(model, *inputs) -> int:
    """Floating-point operations that PyTorch's own ``FlopCounterMode`` reports for ``model``.

    An independent check of :func:`count_mults`: PyTorch counts two FLOPs per multiply-add of
    convolutions and matrix products and nothing for bias, batch norm, activations or pooling, so for
    the layers :func:`count_mults` counts, ``torch_flops == 2 * count_mults``. Runs like
    :func:`layer_costs`: once, in evaluation mode, without gradients.

    Example:
        >>> torch_flops(nn.Conv2d(3, 64, 5, stride=2), torch.zeros(1, 3, 228, 228))
        120422400
    """
    _check_model_and_inputs(model, inputs, "torch_flops")
    with FlopCounterMode(display=False) as counter:
        _run_untouched(model, inputs)
    return counter.get_total_flops()


def cost_table(model, *inputs) -> PrettyTable:
    """:func:`layer_costs` as a table: one row per layer call (name, type, output shape,
    multiplications, parameters) and a total row. Integers are printed with thousands separators."""
    costs = layer_costs(model, *inputs)
    table = PrettyTable(["layer", "type", "output shape", "mults", "params"])
    table.align = "r"
    table.align["layer"] = table.align["type"] = "l"
    for index, cost in enumerate(costs):
        shape = "x".join(str(s) for s in cost.output_shape)
        table.add_row([cost.name or "(model)", cost.kind, shape, f"{cost.mults:,}", f"{cost.params:,}"],
                      divider=index == len(costs) - 1)  # a rule above the total
    table.add_row(["total", "", "", f"{sum(c.mults for c in costs):,}", f"{sum(c.params for c in costs):,}"])
    return table


# ---------------------------------------------------------------------------------------------------
# 4. Layers: the depthwise separable convolution as a PyTorch module
# ---------------------------------------------------------------------------------------------------

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _check_tuple(name: str, value, dims: int, minimum: int) -> tuple[int, ...]:
    """An int (the same for every spatial dimension) or a tuple of ``dims`` ints, as nn.ConvNd takes."""
    if isinstance(value, (tuple, list)):
        if len(value) != dims:
            raise ValueError(f"{name} must be an int or a tuple of {dims} ints, got {value!r}")
        return tuple(_check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(value))
    return (_check_int(name, value, minimum),) * dims


class _DepthwiseSeparableConvNd(nn.Module):
    """What the 1-D and 2-D layers share; ``_conv`` is nn.Conv1d or nn.Conv2d."""

    _conv: type[nn.Module]
    _dims: int

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, padding_mode="zeros", depth_multiplier=1, device=None, dtype=None):
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.out_channels = _check_int("out_channels", out_channels, 1)
        self.depth_multiplier = _check_int("depth_multiplier", depth_multiplier, 1)
        self.kernel_size = _check_tuple("kernel_size", kernel_size, self._dims, 1)
        self.stride = _check_tuple("stride", stride, self._dims, 1)
        self.dilation = _check_tuple("dilation", dilation, self._dims, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
            if padding == "same" and self.stride != (1,) * self._dims:
                raise ValueError(f"padding='same' needs stride=1 (as in PyTorch), got stride={stride!r}")
            self.padding = padding
        else:
            self.padding = _check_tuple("padding", padding, self._dims, 0)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        hidden = self.in_channels * self.depth_multiplier
        factory = {"device": device, "dtype": dtype}
        # One spatial filter (or depth_multiplier of them) per input channel: groups = in_channels.
        self.depthwise = self._conv(self.in_channels, hidden, self.kernel_size, self.stride, self.padding,
                                    self.dilation, groups=self.in_channels, bias=bias,
                                    padding_mode=padding_mode, **factory)
        # A 1x1 convolution that mixes the channels at every position.
        self.pointwise = self._conv(hidden, self.out_channels, 1, bias=bias, **factory)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(input))

    @classmethod
    def from_conv(cls, conv, depth_multiplier=1):
        """A new (freshly initialised) separable layer with the hyper-parameters of ``conv``,
        a standard (groups=1) convolution of the same dimension: the drop-in replacement."""
        standard = nn.Conv2d if cls._dims == 2 else nn.Conv1d
        if type(conv) is not standard:
            raise TypeError(f"conv must be an nn.{standard.__name__}, got {_describe(conv)}")
        if conv.groups != 1:
            raise ValueError(f"conv must be a standard convolution (groups=1), got groups={conv.groups}")
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                   conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                   depth_multiplier=depth_multiplier, device=conv.weight.device, dtype=conv.weight.dtype)


class DepthwiseSeparableConv2d(_DepthwiseSeparableConvNd):
    r"""A drop-in replacement for ``nn.Conv2d``: a depthwise convolution followed by a pointwise one.

    The depthwise part (``self.depthwise``) is an ``nn.Conv2d`` with ``groups=in_channels``: every input
    channel is filtered by its own ``kernel_size`` kernel (or ``depth_multiplier`` of them), with the
    layer's stride, padding and dilation. The pointwise part (``self.pointwise``) is a 1x1
    ``nn.Conv2d`` that mixes the ``in_channels * depth_multiplier`` filtered channels into
    ``out_channels``. It costs :math:`D_K^2 M D_G^2 + M N D_G^2` multiplications instead of
    :math:`D_K^2 M N D_G^2`, and has :math:`M(D_K^2 + N)` weights instead of :math:`D_K^2 M N`.

    Args:
        in_channels (int): channels M of the input.
        out_channels (int): channels N of the output.
        kernel_size (int or tuple): size of the depthwise kernels.
        stride (int or tuple): stride of the depthwise convolution. Default: 1.
        padding (int, tuple or str): padding of the depthwise convolution, as in ``nn.Conv2d``
            (``'same'`` only with stride 1). Default: 0.
        dilation (int or tuple): dilation of the depthwise kernels. Default: 1.
        bias (bool): whether both parts have a learnable bias. Default: True.
        padding_mode (str): ``'zeros'``, ``'reflect'``, ``'replicate'`` or ``'circular'``. Default: ``'zeros'``.
        depth_multiplier (int): depthwise kernels per input channel. Default: 1.
        device, dtype: passed to both parts, as in ``nn.Conv2d``.

    Shape:
        - Input: :math:`(B, M, H, W)` or :math:`(M, H, W)`.
        - Output: :math:`(B, N, H_{out}, W_{out})` or :math:`(N, H_{out}, W_{out})`, with the same
          :math:`H_{out}, W_{out}` as ``nn.Conv2d`` given the same arguments (see
          :func:`conv_output_size`).

    Raises:
        ValueError: a non-positive channel count, kernel size, stride, dilation or depth multiplier,
            a negative padding, or an unknown padding or padding mode.
        TypeError: an argument of the wrong type.

    Example:
        >>> layer = DepthwiseSeparableConv2d(3, 64, kernel_size=5, stride=2)
        >>> tuple(layer(torch.zeros(1, 3, 228, 228)).shape)
        (1, 64, 112, 112)
        >>> count_params(layer)  # 75 + 3 depthwise, 192 + 64 pointwise
        334
    """

    _conv = nn.Conv2d
    _dims = 2


class DepthwiseSeparableConv1d(_DepthwiseSeparableConvNd):
    """The 1-D version of :class:`DepthwiseSeparableConv2d`, a drop-in replacement for ``nn.Conv1d``.

    For sequences, as in the text encoders of QANet: the input is channels-first,
    :math:`(B, C, L)`, i.e. ``[batch, embedding, length]``; a ``[batch, length, embedding]`` tensor must
    be transposed first.

    Example:
        >>> layer = DepthwiseSeparableConv1d(128, 128, kernel_size=7, padding=3)
        >>> tuple(layer(torch.zeros(2, 128, 50)).shape)
        (2, 128, 50)
    """

    _conv = nn.Conv1d
    _dims = 1


def to_standard_conv(layer):
    r"""The standard convolution that computes exactly what a depthwise separable layer computes.

    A separable layer is a standard convolution whose kernel is constrained to
    :math:`W[n, m] = \sum_j P[n, m k + j] \, D[m k + j]` (``k`` the depth multiplier; for ``k = 1``,
    :math:`W[n, m] = P[n, m] D[m]`): every input channel's slice of every kernel is a multiple of one
    shared spatial filter. The bias is :math:`P b_D + b_P`.

    Args:
        layer (DepthwiseSeparableConv2d or DepthwiseSeparableConv1d): the layer to expand.

    Returns:
        ``nn.Conv2d`` (or ``nn.Conv1d``) with the same hyper-parameters and the expanded weights.
    """
    if not isinstance(layer, _DepthwiseSeparableConvNd):
        raise TypeError(f"layer must be a DepthwiseSeparableConv1d or 2d, got {_describe(layer)}")
    depthwise, pointwise = layer.depthwise, layer.pointwise
    m, k, n = layer.in_channels, layer.depth_multiplier, layer.out_channels
    d = depthwise.weight.reshape(m, k, *layer.kernel_size)           # D[m, j, ...]
    p = pointwise.weight.reshape(n, m, k)                            # P[n, m, j]
    has_bias = depthwise.bias is not None or pointwise.bias is not None
    conv = type(depthwise)(m, n, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                           bias=has_bias, padding_mode=layer.padding_mode, device=d.device, dtype=d.dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("nmj,mj...->nm...", p, d))
        if has_bias:
            conv.bias.zero_()
            if depthwise.bias is not None:  # the depthwise bias, mixed by the pointwise weights
                conv.bias.add_(p.reshape(n, m * k) @ depthwise.bias)
            if pointwise.bias is not None:
                conv.bias.add_(pointwise.bias)
    return conv


def mobilenet_block(in_channels, out_channels, stride=1) -> nn.Sequential:
    """MobileNet's depthwise separable block: 3x3 depthwise, BN, ReLU, 1x1 pointwise, BN, ReLU.

    As in Figure 3 of Howard et al. (2017); the convolutions have no bias, since batch norm follows.
    Xception's separable convolution differs: nothing between the depthwise and the pointwise part.

    Example:
        >>> [name for name, _ in mobilenet_block(32, 64).named_children()]
        ['depthwise', 'depthwise_bn', 'depthwise_relu', 'pointwise', 'pointwise_bn', 'pointwise_relu']
    """
    in_channels = _check_int("in_channels", in_channels, 1)
    out_channels = _check_int("out_channels", out_channels, 1)
    stride = _check_int("stride", stride, 1)
    return nn.Sequential(OrderedDict(
        depthwise=nn.Conv2d(in_channels, in_channels, 3, stride, padding=1, groups=in_channels, bias=False),
        depthwise_bn=nn.BatchNorm2d(in_channels),
        depthwise_relu=nn.ReLU(inplace=True),
        pointwise=nn.Conv2d(in_channels, out_channels, 1, bias=False),
        pointwise_bn=nn.BatchNorm2d(out_channels),
        pointwise_relu=nn.ReLU(inplace=True),
    ))


# ---------------------------------------------------------------------------------------------------
# 5. Parameters
# ---------------------------------------------------------------------------------------------------

def count_params(model) -> int:
    """Number of trainable parameters (elements of tensors with ``requires_grad``) of ``model``.

    Example:
        >>> count_params(nn.Conv2d(3, 64, 5))  # 5*5*3*64 weights + 64 biases
        4864
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def param_table(model) -> PrettyTable:
    """One row per trainable parameter tensor of ``model`` (name, shape, count) and a total row.

    The total equals :func:`count_params`. In Jupyter and in the book the table renders as HTML.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    table = PrettyTable(["parameter", "shape", "count"])
    table.align = "r"
    table.align["parameter"] = table.align["shape"] = "l"
    rows = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    for index, (name, p) in enumerate(rows):
        table.add_row([name, " x ".join(str(s) for s in p.shape), f"{p.numel():,}"], divider=index == len(rows) - 1)
    table.add_row(["total", "", f"{count_params(model):,}"])
    return table


# ---------------------------------------------------------------------------------------------------
# 6. Networks: MobileNet rebuilt
# ---------------------------------------------------------------------------------------------------

# MobileNet v1 (Howard et al., 2017, Table 1) after its first convolution: (output channels, stride)
# of the 13 depthwise separable blocks. The paper's table prints "s2" for the 13th depthwise layer,
# but also gives its input and the next layer's input as 7x7: the stride is 1 (see the MobileNet chapter).
MOBILENET_V1_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)


# Table 4 of Howard et al. (2017), as published: ImageNet top-1 accuracy (%), mult-adds (millions) and
# parameters (millions) of the network with full convolutions and of MobileNet, both at width 1.0
# and resolution 224. Typed from the paper, never recomputed: the chapters compare them with counts.
MOBILENET_PAPER_TABLE_4 = {
    "Conv MobileNet": {"top1": 71.7, "mult_adds_millions": 4866, "params_millions": 29.3},
    "MobileNet": {"top1": 70.6, "mult_adds_millions": 569, "params_millions": 4.2},
}


def mobilenet_v1_layer_shapes(resolution=224) -> list[dict]:
    """The 13 depthwise separable layers of MobileNet v1 at a given input size, as plain numbers.

    Returns one dict per block: ``index`` (1 to 13), ``in_channels`` (M), ``out_channels`` (N),
    ``stride`` (s), ``input_size`` (D_F) and ``output_size`` (D_G), all with 3x3 kernels and padding 1.

    Example:
        >>> mobilenet_v1_layer_shapes()[1]
        {'index': 2, 'in_channels': 64, 'out_channels': 128, 'stride': 2, 'input_size': 112, 'output_size': 56}
    """
    resolution = _check_int("resolution", resolution, 1)
    shapes, channels = [], 32
    size = conv_output_size(resolution, 3, stride=2, padding=1)       # after the first, full convolution
    for index, (out_channels, stride) in enumerate(MOBILENET_V1_BLOCKS, 1):
        output = conv_output_size(size, 3, stride=stride, padding=1)
        shapes.append(dict(index=index, in_channels=channels, out_channels=out_channels, stride=stride,
                           input_size=size, output_size=output))
        channels, size = out_channels, output
    return shapes


def _check_multiplier(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _conv_bn_relu(in_channels, out_channels, kernel_size, stride, groups=1, activation=nn.ReLU):
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2,
                       groups=groups, bias=False),
        bn=nn.BatchNorm2d(out_channels),
        relu=activation(inplace=True),
    ))


def mobilenet_v1(width_multiplier=1.0, num_classes=1000, separable=True) -> nn.Module:
    r"""MobileNet v1 (Howard et al., 2017), built from its Table 1; returns logits.

    A full 3x3 convolution with stride 2, then 13 depthwise separable blocks
    (:func:`mobilenet_block`), global average pooling and a fully connected layer. Every convolution is
    followed by batch norm and ReLU and has no bias; the fully connected layer has one.

    Args:
        width_multiplier (float): the paper's alpha; every layer's channels become ``int(alpha * c)``
            (the input's 3 channels excepted). Default: 1.0.
        num_classes (int): outputs of the classifier. Default: 1000.
        separable (bool): ``False`` builds the paper's "Conv MobileNet": every depthwise separable
            block replaced by one full 3x3 convolution (with batch norm and ReLU) of the same stride and
            output channels. Default: True.

    Shape:
        - Input: :math:`(B, 3, H, W)`; the paper's resolutions are 224, 192, 160 and 128.
          Its resolution multiplier rho is a ratio, the input side over 224 (rho = 1 at 224,
          6/7 at 192); it is not an argument but applied by choosing the input size.
        - Output: :math:`(B, \text{num\_classes})`.

    Raises:
        ValueError: a width multiplier that is not positive and finite, or so small that a layer would
            have no channel; a non-positive ``num_classes``.
        TypeError: arguments of the wrong type.

    Example:
        >>> model = mobilenet_v1()
        >>> tuple(model(torch.zeros(1, 3, 224, 224)).shape)
        (1, 1000)
    """
    alpha = _check_multiplier("width_multiplier", width_multiplier)
    num_classes = _check_int("num_classes", num_classes, 1)
    if not isinstance(separable, bool):
        raise TypeError(f"separable must be True or False, got {separable!r}")

    def width(channels: int) -> int:
        thinned = int(channels * alpha)
        if thinned < 1:
            raise ValueError(f"width_multiplier={width_multiplier!r} leaves a layer of {channels} channels "
                             f"with {thinned}: use at least {1 / 32}")
        return thinned

    channels = width(32)
    layers = OrderedDict(conv1=_conv_bn_relu(3, channels, 3, stride=2))
    for index, (out_channels, stride) in enumerate(MOBILENET_V1_BLOCKS, 1):
        out_channels = width(out_channels)
        if separable:
            layers[f"block{index}"] = mobilenet_block(channels, out_channels, stride)
        else:
            layers[f"block{index}"] = _conv_bn_relu(channels, out_channels, 3, stride)
        channels = out_channels
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(layers),
        pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
        classifier=nn.Linear(channels, num_classes),
    ))


class InvertedResidual(nn.Module):
    r"""MobileNetV2's block (Sandler et al., 2018): expand, filter, project, and add the input back.

    1x1 expansion by ``expand_ratio`` t with ReLU6 (omitted when t = 1), 3x3 depthwise with stride s and
    ReLU6, then a *linear* 1x1 projection (batch norm, no activation). The shortcut is added when the
    stride is 1 and the channel counts match.

    Shape:
        - Input: :math:`(B, d', H, W)`; output: :math:`(B, d'', \lceil H/s \rceil, \lceil W/s \rceil)`.

    Example:
        >>> block = InvertedResidual(24, 24, stride=1, expand_ratio=6)
        >>> tuple(block(torch.zeros(1, 24, 56, 56)).shape), block.use_shortcut
        ((1, 24, 56, 56), True)
    """

    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        in_channels = _check_int("in_channels", in_channels, 1)
        out_channels = _check_int("out_channels", out_channels, 1)
        stride = _check_int("stride", stride, 1)
        expand_ratio = _check_int("expand_ratio", expand_ratio, 1)
        hidden = in_channels * expand_ratio
        self.use_shortcut = stride == 1 and in_channels == out_channels
        layers = OrderedDict()
        if expand_ratio != 1:
            layers["expand"] = _conv_bn_relu(in_channels, hidden, 1, 1, activation=nn.ReLU6)
        layers["depthwise"] = _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6)
        layers["project"] = nn.Conv2d(hidden, out_channels, 1, bias=False)
        layers["project_bn"] = nn.BatchNorm2d(out_channels)  # linear bottleneck: no activation
        self.layers = nn.Sequential(layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = self.layers(input)
        return input + output if self.use_shortcut else output


# MobileNetV2's body (Sandler et al., 2018, Table 2): expansion t, output channels c, repeats n, stride s.
MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def mobilenet_v2(num_classes=1000) -> nn.Module:
    """MobileNetV2 at width 1.0 (Sandler et al., 2018, Table 2); returns logits.

    A 3x3 convolution with stride 2 and 32 channels, the inverted residual blocks of
    ``MOBILENET_V2_SETTINGS`` (the first of each group carries its stride), a 1x1 convolution to 1280
    channels, global average pooling and a fully connected classifier.

    Example:
        >>> tuple(mobilenet_v2()(torch.zeros(1, 3, 224, 224)).shape)
        (1, 1000)
    """
    num_classes = _check_int("num_classes", num_classes, 1)
    layers = OrderedDict(conv1=_conv_bn_relu(3, 32, 3, 2, activation=nn.ReLU6))
    channels, index = 32, 0
    for expand_ratio, out_channels, repeats, stride in MOBILENET_V2_SETTINGS:
        for repeat in range(repeats):
            index += 1
            layers[f"block{index}"] = InvertedResidual(channels, out_channels, stride if repeat == 0 else 1,
                                                       expand_ratio)
            channels = out_channels
    layers["conv_last"] = _conv_bn_relu(channels, 1280, 1, 1, activation=nn.ReLU6)
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(layers),
        pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
        classifier=nn.Linear(1280, num_classes),
    ))


# ---------------------------------------------------------------------------------------------------
# 7. Measurement: preparing a model for fast inference
# ---------------------------------------------------------------------------------------------------

def _fold_batch_norms(module: nn.Module) -> int:
    """Fold every BatchNorm2d that directly follows a Conv2d (in a Sequential) into that convolution,
    with PyTorch's own ``fuse_conv_bn_eval``; the batch norm becomes ``nn.Identity``. Returns how many."""
    folded = 0
    names = list(module._modules)
    for name, following in zip(names, names[1:] + [None]):
        child = module._modules[name]
        after = module._modules.get(following) if following else None
        if isinstance(child, nn.Conv2d) and isinstance(after, nn.BatchNorm2d) and isinstance(module, nn.Sequential):
            module._modules[name] = fuse_conv_bn_eval(child, after)
            module._modules[following] = nn.Identity()
            folded += 1
        elif child is not None:
            folded += _fold_batch_norms(child)
    return folded


def randomize_batch_norms(model, seed=0):
    """Give every batch norm of ``model`` random running statistics and affine parameters, in place.

    A freshly built network's batch norms are identities (mean 0, variance 1, scale 1, shift 0), so
    folding them changes nothing and a test of folding would prove nothing. Random values make the
    test meaningful. Running means ~ 0.1 N(0, 1), variances in [0.5, 2], scales in [0.5, 1.5],
    shifts ~ 0.1 N(0, 1), drawn from a generator seeded with ``seed``.

    Args:
        model (nn.Module): the model; its ``BatchNorm1d/2d/3d`` modules are changed.
        seed (int): seed of the random values (0 or more). Default: 0.

    Returns:
        nn.Module: ``model`` itself.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``seed`` not an integer.
        ValueError: ``seed`` is negative.

    Example:
        >>> bn = randomize_batch_norms(nn.BatchNorm2d(4))
        >>> bool(bn.running_var.min() >= 0.5)
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    seed = _check_int("seed", seed, 0)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                shape = (layer.num_features,)
                if layer.running_mean is not None:
                    layer.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
                    layer.running_var.copy_(0.5 + 1.5 * torch.rand(shape, generator=generator))
                if layer.affine:
                    layer.weight.copy_(0.5 + torch.rand(shape, generator=generator))
                    layer.bias.copy_(0.1 * torch.randn(shape, generator=generator))
    return model


class InferenceModel(nn.Module):
    """What :func:`prepare_for_inference` returns: the prepared copy and the input conversion it needs."""

    def __init__(self, model: nn.Module, memory_format: torch.memory_format, folded: int):
        super().__init__()
        self.model = model
        self.memory_format = memory_format
        self.folded_batch_norms = folded

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(input.contiguous(memory_format=self.memory_format))


def prepare_for_inference(model, memory_format=torch.channels_last) -> InferenceModel:
    """An inference-ready copy of ``model``; the original is left unchanged.

    The copy is in evaluation mode, has every batch norm that follows a convolution folded into that
    convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``: one convolution instead of a convolution
    and a per-channel scale and shift), keeps its weights in ``memory_format`` (channels-last, NHWC,
    was the fastest for depthwise and pointwise convolutions on the CPUs the book was measured on),
    needs no gradients, and runs under ``torch.inference_mode``. It takes the same input as the
    original (an NCHW tensor in any memory format) and gives the same output up to rounding.

    Args:
        model (nn.Module): a model whose convolutions take 4-D (batch, channels, height, width) input.
        memory_format (torch.memory_format): ``torch.channels_last`` (default) or
            ``torch.contiguous_format``.

    Example:
        >>> fast = prepare_for_inference(mobilenet_v1())
        >>> fast.folded_batch_norms, tuple(fast(torch.zeros(1, 3, 224, 224)).shape)
        (27, (1, 1000))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    if memory_format not in (torch.channels_last, torch.contiguous_format):
        raise ValueError(
            f"memory_format must be torch.channels_last or torch.contiguous_format, got {memory_format!r}"
        )
    prepared = copy.deepcopy(model).eval()
    folded = _fold_batch_norms(prepared)
    prepared = prepared.to(memory_format=memory_format)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    return InferenceModel(prepared, memory_format, folded).eval()


def time_side_by_side(functions, threads=2, rounds=3, min_run_time=0.2, warmup=3) -> dict:
    """Median wall-clock time of each function, measured side by side with ``torch.utils.benchmark``.

    Every function is first called ``warmup`` times; then, ``rounds`` times over, each function in turn is
    timed with ``Timer.blocked_autorange`` (blocks of calls long enough for the clock, at least
    ``min_run_time`` seconds), on a fixed number of threads. Interleaving the functions exposes them to
    the same machine load, so their *ratios* are trustworthy even where the machine is shared and
    noisy; the median of all blocks is returned for each.

    Args:
        functions (dict): name -> callable taking no argument.
        threads (int): ``torch`` intra-op threads for the measurement. Default: 2.
        rounds (int): how many times each function is timed in turn. Default: 3.
        min_run_time (float): seconds per ``blocked_autorange``. Default: 0.2.
        warmup (int): untimed calls before measuring. Default: 3.

    Returns:
        dict: name -> median seconds per call.
    """
    if not isinstance(functions, dict) or not functions or not all(callable(f) for f in functions.values()):
        raise TypeError(f"functions must be a non-empty dict of callables, got {_describe(functions)}")
    threads = _check_int("threads", threads, 1)
    rounds = _check_int("rounds", rounds, 1)
    warmup = _check_int("warmup", warmup, 0)
    if isinstance(min_run_time, bool) or not isinstance(min_run_time, numbers.Real) or not min_run_time > 0:
        raise ValueError(f"min_run_time must be a positive number of seconds, got {min_run_time!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for function in functions.values():
            for _ in range(warmup):
                function()
        times = {name: [] for name in functions}
        for _ in range(rounds):
            for name, function in functions.items():
                timer = benchmark.Timer("f()", globals={"f": function}, num_threads=threads)
                times[name].extend(timer.blocked_autorange(min_run_time=min_run_time).times)
    finally:
        torch.set_num_threads(previous)
    return {name: statistics.median(values) for name, values in times.items()}


# ---------------------------------------------------------------------------------------------------
# 8. Beyond: does it learn as well, and every convolution as a sum of separable ones
# ---------------------------------------------------------------------------------------------------

def load_digits_split(test_fraction=0.25, seed=0, dtype=torch.float64):
    """scikit-learn's bundled UCI handwritten digits (1,797 images, 8x8, nothing downloaded), split once.

    The images are in float64 by default: the digits experiment computes in double precision so that
    training gives the same printed results on every CPU (see the training chapter).

    Args:
        test_fraction (float): share of the images kept for testing, strictly between 0 and 1.
            Default: 0.25.
        seed (int): seed of the stratified split (0 or more). Default: 0.
        dtype (torch.dtype): floating-point type of the images. Default: ``torch.float64``.

    Shape:
        ``x_train``: (n_train, 1, 8, 8), ``y_train``: (n_train,), likewise for the test set.

    Returns:
        tuple: ``(x_train, y_train, x_test, y_test)``: images scaled to [0, 1] (``dtype``), labels as
        int64 tensors. The split is stratified by digit and fixed by ``seed``.

    Raises:
        ValueError: ``test_fraction`` outside (0, 1), a negative ``seed``, or a ``dtype`` that is not
            a floating-point type.
        TypeError: ``seed`` not an integer.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number between 0 and 1, got {test_fraction!r}")
    seed = _check_int("seed", seed, 0)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=dtype).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    train, test = train_test_split(range(len(labels)), test_size=test_fraction, random_state=seed,
                                   stratify=digits.target)
    return images[train], labels[train], images[test], labels[test]


def digits_cnn(separable=False, width=16, dtype=torch.float64) -> nn.Sequential:
    """A small CNN for 8x8 digits: a standard 3x3 convolution, then two 3x3 blocks (standard or depthwise
    separable, each with batch norm and ReLU) with max pooling, and a linear classifier.

    As in MobileNet, the first layer stays a standard convolution in both versions: with one input
    channel a depthwise separable layer would still be cheaper, but all its output channels would be
    multiples of one filtered image (its outputs have rank 1), so it would act as a single filter.
    ``width`` is the channel count of the first layer; the blocks have ``2 * width``. The parameters
    are float64 by default, like the images of :func:`load_digits_split`.
    """
    if not isinstance(separable, bool):
        raise TypeError(f"separable must be True or False, got {separable!r}")
    width = _check_int("width", width, 1)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")

    def block(in_channels, out_channels):
        if separable:
            conv = DepthwiseSeparableConv2d(in_channels, out_channels, 3, padding=1, bias=False)
        else:
            conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_channels), relu=nn.ReLU()))

    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(OrderedDict(conv=nn.Conv2d(1, width, 3, padding=1, bias=False),
                                       bn=nn.BatchNorm2d(width), relu=nn.ReLU())),
        block1=block(width, 2 * width),
        pool1=nn.MaxPool2d(2),                      # 8x8 -> 4x4
        block2=block(2 * width, 2 * width),
        pool2=nn.MaxPool2d(2),                      # 4x4 -> 2x2
        flatten=nn.Flatten(),
        classifier=nn.Linear(2 * width * 4, 10),
    )).to(dtype)


def train_digits(model, data, epochs=12, batch_size=64, lr=0.05, weight_decay=5e-4, seed=0) -> dict:
    """Train ``model`` on ``data = load_digits_split()`` with SGD (momentum 0.9, cosine schedule) and
    return its history: per epoch the training loss, training accuracy and test accuracy.

    Reproducible on every CPU: the seed fixes the initial weights and the order of the mini-batches,
    and the model is trained in the floating-point type of the images (float64 from
    :func:`load_digits_split`), whose rounding differences between CPUs stay far below the printed
    digits. The model is converted to that type and left in evaluation mode.

    Args:
        model (nn.Module): the network (its weights are re-initialised from ``seed``).
        data (tuple): ``(x_train, y_train, x_test, y_test)`` as returned by :func:`load_digits_split`.
        epochs (int): passes over the training images. Default: 12.
        batch_size (int): images per SGD step. Default: 64.
        lr (float): initial learning rate. Default: 0.05.
        weight_decay (float): L2 penalty on every parameter. Default: 5e-4.
        seed (int): seed of the initial weights and of the batch order. Default: 0.

    Returns:
        dict: ``train_loss``, ``train_accuracy`` and ``test_accuracy``, one float per epoch
        (accuracies as fractions).

    Raises:
        TypeError: ``model`` not an ``nn.Module`` or an integer argument of the wrong type.
        ValueError: a non-positive ``epochs`` or ``batch_size``, a negative ``seed``, or ``data``
            not four tensors.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_int("seed", seed, 0)
    if not (isinstance(data, (tuple, list)) and len(data) == 4 and all(isinstance(d, torch.Tensor) for d in data)):
        raise ValueError(f"data must be (x_train, y_train, x_test, y_test) tensors, got {_describe(data)}")
    x_train, y_train, x_test, y_test = data
    model.to(x_train.dtype)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    for module in model.modules():  # initial weights drawn from the seed
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)

    def accuracy(x, y):
        model.eval()
        with torch.no_grad():
            return (model(x).argmax(1) == y).double().mean().item()

    history = {"train_loss": [], "train_accuracy": [], "test_accuracy": []}
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        schedule.step()
        history["train_loss"].append(total / len(order))
        history["train_accuracy"].append(accuracy(x_train, y_train))
        history["test_accuracy"].append(accuracy(x_test, y_test))
    model.eval()
    return history


def kernel_slices(weight) -> torch.Tensor:
    r"""Every input channel's slice of a convolution kernel, as a matrix: the :math:`A_m` of the book.

    For a kernel ``W`` of shape ``(N, M, *kernel)``, slice ``m`` is the :math:`N \times D_K^2` matrix
    whose row ``n`` is the filter ``W[n, m]`` flattened. Its rank is 1 for every slice of a depthwise
    separable layer's equivalent kernel (the PyTorch-layer chapter) and at most ``min(N, D_K^2)`` in
    general (the decomposition chapter); ``torch.linalg.svdvals(kernel_slices(w))`` gives every
    slice's singular values at once.

    Args:
        weight (Tensor): a standard convolution's kernel, ``(out_channels, in_channels, *kernel_size)``.

    Shape:
        Output: ``(in_channels, out_channels, prod(kernel_size))``, in ``weight``'s dtype, detached.

    Returns:
        Tensor: the M slices stacked.

    Raises:
        TypeError: ``weight`` is not a tensor.
        ValueError: ``weight`` has fewer than 3 dimensions.

    Example:
        >>> tuple(kernel_slices(torch.zeros(32, 16, 3, 3)).shape)
        (16, 32, 9)
    """
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a tensor, got {_describe(weight)}")
    if weight.dim() < 3:
        raise ValueError(f"weight must be (out_channels, in_channels, *kernel_size), got {_describe(weight)}")
    n, m = weight.shape[:2]
    return weight.detach().transpose(0, 1).reshape(m, n, -1)


def separable_rank_limit(conv) -> int:
    """The rank at which :func:`separable_decomposition` is exact: ``min(out_channels, kernel taps)``."""
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {_describe(conv)}")
    return min(conv.out_channels, math.prod(conv.kernel_size))


def separable_decomposition(conv, rank=None) -> DepthwiseSeparableConv2d:
    r"""Rewrite a standard convolution as a sum of ``rank`` depthwise separable convolutions.

    For every input channel m, the slice :math:`W[:, m]` of the kernel, an
    :math:`N \times D_K^2` matrix, has a singular value decomposition
    :math:`\sum_i \sigma_i u_i v_i^\top`. Term i is a depthwise kernel :math:`v_i` (a
    :math:`D_K \times D_K` filter of channel m) followed by a pointwise column :math:`\sigma_i u_i`.
    Keeping the ``rank`` largest terms of every channel gives the best approximation of each slice in
    the Frobenius norm (Eckart-Young); keeping all ``min(N, D_K^2)`` reproduces the convolution.
    The sum of ``rank`` separable branches is one :class:`DepthwiseSeparableConv2d` with
    ``depth_multiplier=rank``: its pointwise layer adds the branches up.

    Args:
        conv (nn.Conv2d): a standard convolution (``groups=1``), with its trained weights and bias.
        rank (int, optional): separable terms kept per input channel, from 1 to
            :func:`separable_rank_limit`. Default: that limit (exact).

    Returns:
        DepthwiseSeparableConv2d with ``depth_multiplier=rank``, the same stride, padding, dilation and
        padding mode, no depthwise bias, and ``conv``'s bias (if any) as the pointwise bias. At
        ``rank=1`` it has exactly one depthwise and one pointwise layer's weights, plus the bias.

    Example:
        >>> conv = nn.Conv2d(8, 16, 3, padding=1)
        >>> exact = separable_decomposition(conv)
        >>> x = torch.randn(1, 8, 10, 10)
        >>> exact.depth_multiplier, bool(torch.allclose(exact(x), conv(x), atol=1e-4))
        (9, True)
    """
    limit = separable_rank_limit(conv)
    if conv.groups != 1:
        raise ValueError(f"conv must be a standard convolution (groups=1), got groups={conv.groups}")
    rank = limit if rank is None else _check_int("rank", rank, 1)
    if rank > limit:
        raise ValueError(f"rank must be at most min(out_channels, kernel taps) = {limit} for this conv, got {rank}")
    n, m = conv.out_channels, conv.in_channels
    weight = conv.weight.detach()
    slices = kernel_slices(weight).double()                               # A_m = W[:, m] as N x k^2
    u, sigma, vh = torch.linalg.svd(slices, full_matrices=False)          # batched over input channels
    depthwise = vh[:, :rank, :]                                           # [m, rank, k^2]
    pointwise = (u[:, :, :rank] * sigma[:, None, :rank]).permute(1, 0, 2)  # [n, m, rank]
    layer = DepthwiseSeparableConv2d(m, n, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                                     bias=False, padding_mode=conv.padding_mode, depth_multiplier=rank,
                                     device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        layer.depthwise.weight.copy_(depthwise.reshape(m * rank, 1, *conv.kernel_size))
        layer.pointwise.weight.copy_(pointwise.reshape(n, m * rank, 1, 1))
    if conv.bias is not None:
        layer.pointwise.bias = nn.Parameter(conv.bias.detach().clone())
    return layer


# ---------------------------------------------------------------------------------------------------
# 9. Runtimes: the same model in ONNX Runtime (speed chapter)
# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# 10. Keras: its layers and applications in PyTorch
# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# 11. Beyond inference: training cost and int8 quantization
# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# 12. Drawing: one colour per kind of layer across the book, and the chapters' figures
# ---------------------------------------------------------------------------------------------------

#: One colour per kind of layer, used by every figure of the book (Okabe-Ito, colour-blind safe).
LAYER_COLORS = {
    "standard": "#0072B2",     # blue: a standard (full) convolution
    "depthwise": "#E69F00",    # orange: a depthwise convolution
    "pointwise": "#009E73",    # green: a pointwise (1x1) convolution
    "separable": "#CC79A7",    # purple: a depthwise separable pair taken as a whole
    "linear": "#999999",       # grey: a fully connected layer
    "other": "#56B4E9",        # light blue: batch norm, activations, pooling, data movement
}


def layer_color(kind) -> str:
    """The book's colour for a kind of layer (a key of :data:`LAYER_COLORS`).

    Args:
        kind (str): ``'standard'``, ``'depthwise'``, ``'pointwise'``, ``'separable'``, ``'linear'`` or
            ``'other'``.

    Returns:
        str: a hex colour for matplotlib.

    Raises:
        TypeError: ``kind`` is not a string.
        ValueError: ``kind`` is not one of the kinds above.

    Example:
        >>> layer_color("depthwise")
        '#E69F00'
    """
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a string, got {_describe(kind)}")
    if kind not in LAYER_COLORS:
        raise ValueError(f"kind must be one of {', '.join(LAYER_COLORS)}, got {kind!r}")
    return LAYER_COLORS[kind]


# ---------------------------------------------------------------------------------------------------
# Book helpers
# ---------------------------------------------------------------------------------------------------

class _Source:
    """Source code that renders as a highlighted Python block in Jupyter and in the book."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def _repr_markdown_(self) -> str:
        return f"```python\n{self.text}```\n"


def show_source(obj, start=None, stop=None) -> _Source:
    """The source code of a function, class or constant of this module, for display in a notebook.

    The chapters show the code they explain with this, so the book and the module cannot drift. A
    string names a module-level constant: its assignment is shown with the comment lines above it.
    ``start`` and ``stop`` show an excerpt of a function or class instead of all of it: its signature,
    then the lines from the first one containing ``start`` up to (not including) the first later
    one containing ``stop``, with ``...`` where lines are left out (the argument checks, say).

    Args:
        obj: a function or class of this module, or the name of a module-level constant.
        start (str, optional): text of the first line of the excerpt.
        stop (str, optional): text of the first line after the excerpt. Default: to the end.

    Returns:
        an object that renders as a highlighted Python block (its ``text`` is the source).

    Raises:
        TypeError: ``obj`` is not a function, class or string, or ``start``/``stop`` not strings.
        ValueError: no such constant, or ``start``/``stop`` not found in the source.

    Example:
        >>> print(show_source(pointwise_conv_mults).text.splitlines()[0])
        def pointwise_conv_mults(in_channels, out_channels, output_size) -> int:
        >>> print(show_source("MOBILENET_V1_BLOCKS").text.splitlines()[-1])
        )
    """
    for name, value in (("start", start), ("stop", stop)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string or None, got {_describe(value)}")
    if isinstance(obj, str):
        source = inspect.getsource(sys.modules[__name__])
        lines = source.splitlines(keepends=True)
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == obj for t in node.targets):
                begin = node.lineno - 1
                while begin > 0 and lines[begin - 1].startswith("#"):
                    begin -= 1
                return _Source("".join(lines[begin:node.end_lineno]))
        raise ValueError(f"obj names no module-level constant of dsc_utils: {obj!r}")
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        raise TypeError(f"obj must be a function, a class or a constant's name, got {_describe(obj)}")
    source = inspect.getsource(obj)
    if start is None and stop is None:
        return _Source(source)
    lines = source.splitlines(keepends=True)
    node = ast.parse(source).body[0]
    signature_end = node.body[0].lineno - 1          # the signature ends where the body begins
    first = signature_end if start is None else _line_containing(lines, start, signature_end, "start")
    last = len(lines) if stop is None else _line_containing(lines, stop, first + 1, "stop")
    indent = " " * (len(lines[first]) - len(lines[first].lstrip()))
    shown = lines[:signature_end] + ([f"{indent}...\n"] if first > signature_end else []) + lines[first:last]
    if last < len(lines):
        shown.append(f"{indent}...\n")
    return _Source("".join(shown))


def _line_containing(lines: list[str], text: str, begin: int, name: str) -> int:
    for number in range(begin, len(lines)):
        if text in lines[number]:
            return number
    raise ValueError(f"{name}={text!r} is not in the source (after line {begin + 1})")
