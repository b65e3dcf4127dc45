"""Helpers for the book *Depthwise Separable Convolutions, Derived and Measured*.

The module reads top to bottom in the book's order:

1. arithmetic: the output size of a convolution;
2. convolution by hand: the loops that define it, instrumented to count multiplications;
3. counting: closed-form multiplication counts and ``count_mults`` for real PyTorch models;
4. book helpers: showing this module's own source in the chapters.

Names say what things are (``in_channels``, ``out_channels``, ``kernel_size``, ``output_size``);
the book's notation table maps them to the symbols M, N, D_K and D_G used in the formulas.

Every public function checks its arguments: a value of the wrong type raises ``TypeError`` and a value
out of range raises ``ValueError``, and both messages name the argument and the value received.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass

try:
    import torch
    import torch.nn.functional as F
    from prettytable import PrettyTable
    from torch import nn
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

def standard_conv_mults(in_channels, out_channels, kernel_size, output_size) -> int:
    r"""Multiplications of a standard convolution: :math:`D_K^2 \cdot M \cdot N \cdot D_G^2`.

    Each of the ``out_channels`` kernels has ``kernel_size**2 * in_channels`` weights, and each
    weight is used once at every one of the ``output_size**2`` output positions.

    Args:
        in_channels (int): input channels M.
        out_channels (int): output channels N (the number of kernels).
        kernel_size (int or tuple): kernel side D_K, or one length per spatial dimension.
        output_size (int or tuple): output side D_G (not the input side), or one length per dimension.

    Returns:
        int: the number of multiplications for one image (bias additions excluded).

    Example:
        >>> standard_conv_mults(3, 64, kernel_size=5, output_size=112)
        60211200
    """
    in_channels = _check_int("in_channels", in_channels, 1)
    out_channels = _check_int("out_channels", out_channels, 1)
    kernel, output = _spatial(kernel_size, output_size)
    return math.prod(kernel) * in_channels * out_channels * math.prod(output)


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


def show_source(obj) -> _Source:
    """The source code of a function or class of this module, for display in a notebook.

    The chapters show the code they explain with this, so the book and the module cannot drift.

    Example:
        >>> print(show_source(pointwise_conv_mults).text.splitlines()[0])
        def pointwise_conv_mults(in_channels, out_channels, output_size) -> int:
    """
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        raise TypeError(f"obj must be a function or class, got {_describe(obj)}")
    return _Source(inspect.getsource(obj))
