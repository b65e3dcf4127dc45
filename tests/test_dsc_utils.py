"""Unit tests of dsc_utils: formulas against PyTorch's own shapes and FlopCounterMode, bad input."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import dsc_utils as du


def flop_counter_macs(model, *inputs) -> int:
    """Multiply-accumulates according to PyTorch's own counter (which reports 2 FLOPs per MAC)."""
    flops = du.torch_flops(model, *inputs)
    assert flops % 2 == 0
    return flops // 2


def test_torch_flops_is_flop_counter_mode_and_leaves_the_model_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    assert du.torch_flops(net, x) == counter.get_total_flops() == 2 * 2 * 27 * 4 * 36
    assert net.training and torch.equal(net[1].running_mean, torch.zeros(4)) is False  # the direct run moved it
    before = net[1].running_mean.clone()
    du.torch_flops(net, x)
    assert torch.equal(net[1].running_mean, before) and net.training


# --------------------------------------------------------------------------------------------------
# conv_output_size
# --------------------------------------------------------------------------------------------------

@given(
    size=st.integers(1, 40),
    kernel_size=st.integers(1, 9),
    stride=st.integers(1, 5),
    padding=st.integers(0, 4),
    dilation=st.integers(1, 4),
)
def test_conv_output_size_matches_pytorch(size, kernel_size, stride, padding, dilation):
    x = torch.zeros(1, 1, size, size)
    w = torch.zeros(1, 1, kernel_size, kernel_size)
    fits = dilation * (kernel_size - 1) + 1 <= size + 2 * padding
    if fits:
        out = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
        assert du.conv_output_size(size, kernel_size, stride, padding, dilation) == out.shape[-1]
    else:
        with pytest.raises(RuntimeError):
            F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
        with pytest.raises(ValueError, match="kernel does not fit"):
            du.conv_output_size(size, kernel_size, stride, padding, dilation)


@given(size=st.integers(1, 30), kernel_size=st.integers(1, 7), dilation=st.integers(1, 3))
def test_conv_output_size_same_and_valid_match_pytorch(size, kernel_size, dilation):
    x = torch.zeros(1, 1, size)
    w = torch.zeros(1, 1, kernel_size)
    with warnings.catch_warnings():  # PyTorch warns that even kernels need an extra padded copy
        warnings.simplefilter("ignore", UserWarning)
        same = F.conv1d(x, w, padding="same", dilation=dilation).shape[-1]
    assert du.conv_output_size(size, kernel_size, padding="same", dilation=dilation) == same == size
    assume(dilation * (kernel_size - 1) < size)
    valid = F.conv1d(x, w, padding="valid", dilation=dilation).shape[-1]
    assert du.conv_output_size(size, kernel_size, padding="valid", dilation=dilation) == valid


def test_conv_output_size_worked_example():
    assert du.conv_output_size(228, 5, stride=2) == 112  # the book's worked example: floor(223/2)+1


# --------------------------------------------------------------------------------------------------
# the hand-written convolution
# --------------------------------------------------------------------------------------------------

@given(
    groups=st.integers(1, 3),
    channels_per_group=st.integers(1, 2),
    outputs_per_group=st.integers(1, 2),
    size=st.integers(3, 7),
    kernel_size=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    dilation=st.integers(1, 2),
)
def test_conv2d_by_hand_matches_pytorch_and_counts(groups, channels_per_group, outputs_per_group, size,
                                                   kernel_size, stride, padding, dilation):
    assume(dilation * (kernel_size - 1) + 1 <= size + 2 * padding)
    generator = torch.Generator().manual_seed(size * 31 + kernel_size)
    in_channels, out_channels = groups * channels_per_group, groups * outputs_per_group
    x = torch.randn(in_channels, size, size, dtype=torch.float64, generator=generator)
    w = torch.randn(out_channels, channels_per_group, kernel_size, kernel_size, dtype=torch.float64,
                    generator=generator)
    out, mults = du.conv2d_by_hand(x, w, stride, padding, dilation, groups)
    expected = F.conv2d(x[None], w, stride=stride, padding=padding, dilation=dilation, groups=groups)[0]
    assert out.shape == expected.shape
    assert torch.allclose(out, expected, atol=1e-10)
    output_size = expected.shape[-1]
    assert mults == kernel_size**2 * channels_per_group * out_channels * output_size**2
    if groups == 1:
        assert mults == du.standard_conv_mults(in_channels, out_channels, kernel_size, output_size)


def test_conv2d_by_hand_depthwise_count_is_the_depthwise_formula():
    x, w = torch.randn(4, 6, 6), torch.randn(4, 1, 3, 3)
    _, mults = du.conv2d_by_hand(x, w, padding=1, groups=4)
    assert mults == du.depthwise_conv_mults(4, 3, 6) == 9 * 4 * 36


# --------------------------------------------------------------------------------------------------
# closed forms == count_mults == FlopCounterMode / 2
# --------------------------------------------------------------------------------------------------

conv2d_args = st.fixed_dictionaries({
    "groups": st.integers(1, 4),
    "channels_per_group": st.integers(1, 4),
    "outputs_per_group": st.integers(1, 4),
    "kernel_size": st.integers(1, 5),
    "stride": st.integers(1, 3),
    "padding": st.integers(0, 2),
    "dilation": st.integers(1, 2),
    "size": st.integers(5, 20),
    "batch": st.integers(1, 3),
    "bias": st.booleans(),
})


@given(conv2d_args)
def test_conv2d_formula_equals_count_mults_equals_flop_counter(a):
    assume(a["dilation"] * (a["kernel_size"] - 1) + 1 <= a["size"] + 2 * a["padding"])
    in_channels = a["groups"] * a["channels_per_group"]
    out_channels = a["groups"] * a["outputs_per_group"]
    conv = nn.Conv2d(in_channels, out_channels, a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                     groups=a["groups"], bias=a["bias"])
    x = torch.zeros(a["batch"], in_channels, a["size"], a["size"])
    output_size = du.conv_output_size(a["size"], a["kernel_size"], a["stride"], a["padding"], a["dilation"])
    counted = du.count_mults(conv, x)
    assert counted == flop_counter_macs(conv, x)
    if a["groups"] == 1:
        formula = du.standard_conv_mults(in_channels, out_channels, a["kernel_size"], output_size)
    else:  # each group is a standard convolution of its own channels
        formula = a["groups"] * du.standard_conv_mults(a["channels_per_group"], a["outputs_per_group"],
                                                       a["kernel_size"], output_size)
    assert counted == a["batch"] * formula


@given(
    in_channels=st.integers(1, 8),
    out_channels=st.integers(1, 8),
    kernel_size=st.integers(1, 5),
    depth_multiplier=st.integers(1, 3),
    stride=st.integers(1, 2),
    size=st.integers(5, 16),
)
def test_separable_formulas_equal_count_mults_and_flop_counter(in_channels, out_channels, kernel_size,
                                                              depth_multiplier, stride, size):
    hidden = in_channels * depth_multiplier
    depthwise = nn.Conv2d(in_channels, hidden, kernel_size, stride, padding=kernel_size // 2,
                          groups=in_channels, bias=False)
    pointwise = nn.Conv2d(hidden, out_channels, 1, bias=False)
    x = torch.zeros(1, in_channels, size, size)
    output_size = du.conv_output_size(size, kernel_size, stride, kernel_size // 2)
    assert du.count_mults(depthwise, x) == du.depthwise_conv_mults(in_channels, kernel_size, output_size,
                                                                    depth_multiplier)
    y = depthwise(x)
    assert du.count_mults(pointwise, y) == du.pointwise_conv_mults(hidden, out_channels, output_size)
    both = nn.Sequential(depthwise, pointwise)
    expected = du.separable_conv_mults(in_channels, out_channels, kernel_size, output_size, depth_multiplier)
    assert du.count_mults(both, x) == flop_counter_macs(both, x) == expected


@given(
    in_channels=st.integers(1, 6), out_channels=st.integers(1, 6), kernel_size=st.integers(1, 5),
    stride=st.integers(1, 3), groups=st.sampled_from([1, 2]), length=st.integers(5, 30),
)
def test_conv1d_count_matches_flop_counter(in_channels, out_channels, kernel_size, stride, groups, length):
    conv = nn.Conv1d(in_channels * groups, out_channels * groups, kernel_size, stride, groups=groups)
    x = torch.zeros(2, in_channels * groups, length)
    assume(kernel_size <= length)
    output_size = du.conv_output_size(length, kernel_size, stride)
    expected = 2 * groups * du.standard_conv_mults(in_channels, out_channels, (kernel_size,), (output_size,))
    assert du.count_mults(conv, x) == flop_counter_macs(conv, x) == expected


@given(in_features=st.integers(1, 50), out_features=st.integers(1, 50), batch=st.integers(1, 4))
def test_linear_count_matches_flop_counter(in_features, out_features, batch):
    layer = nn.Linear(in_features, out_features)
    x = torch.zeros(batch, in_features)
    assert du.count_mults(layer, x) == flop_counter_macs(layer, x) == batch * in_features * out_features


def test_transposed_conv_count_matches_flop_counter():
    layer = nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2)
    x = torch.zeros(1, 6, 7, 7)
    assert du.count_mults(layer, x) == flop_counter_macs(layer, x) == 6 * 49 * 2 * 9


def test_worked_example_counts():
    conv = nn.Conv2d(3, 64, 5, stride=2)
    x = torch.zeros(1, 3, 228, 228)
    assert du.count_mults(conv, x) == flop_counter_macs(conv, x) == 5 * 5 * 3 * 64 * 112 * 112


def test_tuple_sizes_equal_products():
    assert du.standard_conv_mults(2, 3, (3, 5), (7, 11)) == 3 * 5 * 2 * 3 * 7 * 11
    assert du.depthwise_conv_mults(4, 3, (7, 11)) == 9 * 4 * 77
    assert du.pointwise_conv_mults(4, 5, (7, 11)) == 4 * 5 * 77


def test_separable_ratio_is_one_over_n_plus_one_over_k_squared():
    from fractions import Fraction

    for n in (1, 3, 32, 512, 1024):
        for k in (1, 3, 5, 7):
            ratio = Fraction(du.separable_conv_mults(16, n, k, 14), du.standard_conv_mults(16, n, k, 14))
            assert ratio == Fraction(1, n) + Fraction(1, k * k)


# --------------------------------------------------------------------------------------------------
# layer_costs / count_mults behaviour
# --------------------------------------------------------------------------------------------------

def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.Conv2d(8, 16, 1, bias=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def test_layer_costs_records_every_counted_layer():
    net = small_net()
    costs = du.layer_costs(net, torch.zeros(2, 3, 16, 16))
    assert [c.name for c in costs] == ["0", "3", "4", "7"]
    assert [c.kind for c in costs] == ["Conv2d", "Conv2d", "Conv2d", "Linear"]
    assert costs[0].output_shape == (2, 8, 8, 8)
    assert [c.mults for c in costs] == [2 * 27 * 8 * 64, 2 * 9 * 8 * 64, 2 * 8 * 16 * 64, 2 * 16 * 10]
    assert [c.params for c in costs] == [216, 72, 128, 170]
    assert du.count_mults(net, torch.zeros(2, 3, 16, 16)) == sum(c.mults for c in costs)


def test_count_mults_leaves_the_model_as_it_was():
    net = small_net().train()
    with torch.no_grad():
        net[1].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    du.count_mults(net, torch.randn(4, 3, 16, 16))
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_hooks for m in net.modules())


def test_shared_layer_is_counted_at_every_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    x = torch.zeros(1, 4, 8, 8)
    assert du.count_mults(Twice(), x) == 2 * du.standard_conv_mults(4, 4, 3, 8)


def test_cost_table_rows_and_total():
    table = du.cost_table(small_net(), torch.zeros(1, 3, 16, 16))
    assert len(table.rows) == 5
    total = du.count_mults(small_net(), torch.zeros(1, 3, 16, 16))
    assert table.rows[-1][0] == "total" and table.rows[-1][3] == f"{total:,}"


def test_show_source_is_the_module_source():
    source = du.show_source(du.conv_output_size)
    assert repr(source).startswith("def conv_output_size(")
    assert "return (size + 2 * padding - span) // stride + 1" in source.text
    assert source._repr_markdown_().startswith("```python\n")
    constant = du.show_source("MOBILENET_V1_BLOCKS").text
    assert constant.startswith("# MobileNet v1") and "MOBILENET_V1_BLOCKS = (" in constant
    assert eval(constant.split("= ", 1)[1]) == du.MOBILENET_V1_BLOCKS


# --------------------------------------------------------------------------------------------------
# bad input: each gets the right exception, naming the argument and its value
# --------------------------------------------------------------------------------------------------

def count_mults(model, inputs=(torch.zeros(1, 4, 4),)):
    """count_mults with its variadic inputs as one keyword, so it fits the table below."""
    return du.count_mults(model, *inputs)


BAD_INPUTS = [
    (du.conv_output_size, dict(size=0, kernel_size=3), ValueError, "size must be positive, got 0"),
    (du.conv_output_size, dict(size=-5, kernel_size=3), ValueError, "size must be positive, got -5"),
    (du.conv_output_size, dict(size=10, kernel_size=0), ValueError, "kernel_size must be positive, got 0"),
    (du.conv_output_size, dict(size=10, kernel_size=3, stride=0), ValueError, "stride must be positive, got 0"),
    (du.conv_output_size, dict(size=10, kernel_size=3, dilation=-1), ValueError, "dilation must be positive, got -1"),
    (du.conv_output_size, dict(size=10, kernel_size=3, padding=-1), ValueError, "padding must be at least 0, got -1"),
    (du.conv_output_size, dict(size=5, kernel_size=7), ValueError, "kernel_size=7"),
    (du.conv_output_size, dict(size=5, kernel_size=3, dilation=3), ValueError, "the kernel does not fit"),
    (du.conv_output_size, dict(size=10, kernel_size=3, stride=2, padding="same"), ValueError, "stride=2"),
    (du.conv_output_size, dict(size=10, kernel_size=3, padding="full"), ValueError, "'full'"),
    (du.conv_output_size, dict(size=10.0, kernel_size=3), TypeError, "size must be an integer, got 10.0"),
    (du.conv_output_size, dict(size=10, kernel_size="3"), TypeError, "kernel_size must be an integer, got '3'"),
    (du.conv_output_size, dict(size=10, kernel_size=3, stride=True), TypeError, "stride must be an integer, got True"),
    (du.conv_output_size, dict(size=10, kernel_size=3, padding=1.5), TypeError, "padding must be an integer, got 1.5"),
    (du.standard_conv_mults, dict(in_channels=0, out_channels=4, kernel_size=3, output_size=8), ValueError,
     "in_channels must be positive, got 0"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=-4, kernel_size=3, output_size=8), ValueError,
     "out_channels must be positive, got -4"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=0, output_size=8), ValueError,
     "kernel_size must be positive, got 0"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=3, output_size=0), ValueError,
     "output_size must be positive, got 0"),
    (du.standard_conv_mults, dict(in_channels=3.5, out_channels=4, kernel_size=3, output_size=8), TypeError,
     "in_channels must be an integer, got 3.5"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=(3, 0), output_size=8), ValueError,
     "kernel_size[1] must be positive, got 0"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=(3, 3), output_size=(8, 8, 8)),
     ValueError, "same number of dimensions"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=(), output_size=8), ValueError,
     "kernel_size must not be empty"),
    (du.depthwise_conv_mults, dict(in_channels=3, kernel_size=3, output_size=8, depth_multiplier=0), ValueError,
     "depth_multiplier must be positive, got 0"),
    (du.depthwise_conv_mults, dict(in_channels=-3, kernel_size=3, output_size=8), ValueError,
     "in_channels must be positive, got -3"),
    (du.pointwise_conv_mults, dict(in_channels=3, out_channels=0, output_size=8), ValueError,
     "out_channels must be positive, got 0"),
    (du.pointwise_conv_mults, dict(in_channels=3, out_channels=4, output_size="8"), TypeError,
     "output_size must be an integer, got '8'"),
    (du.separable_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=3, output_size=8, depth_multiplier=-2),
     ValueError, "depth_multiplier must be positive, got -2"),
    (du.separable_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=None, output_size=8), TypeError,
     "kernel_size must be an integer, got None"),
    (count_mults, dict(model="not a model"), TypeError, "model must be a torch.nn.Module, got 'not a model'"),
    (count_mults, dict(model=nn.Linear(2, 2), inputs=()), ValueError, "at least one input"),
    (count_mults, dict(model=nn.LSTM(4, 4)), TypeError, "'(model)' of type LSTM"),
    (du.torch_flops, dict(model=[1, 2]), TypeError, "model must be a torch.nn.Module, got [1, 2]"),
    (du.conv2d_by_hand, dict(input=torch.zeros(1, 3, 5, 5), weight=torch.zeros(2, 3, 3, 3)), ValueError,
     "input must be a tensor of shape (in_channels, height, width), got a tensor of shape (1, 3, 5, 5)"),
    (du.conv2d_by_hand, dict(input=torch.zeros(3, 5, 5), weight=torch.zeros(2, 2, 3, 3)), ValueError,
     "does not fit input with 3 channels"),
    (du.conv2d_by_hand, dict(input=torch.zeros(3, 5, 5), weight=torch.zeros(2, 3, 3, 3), groups=0), ValueError,
     "groups must be positive, got 0"),
    (du.show_source, dict(obj=42), TypeError, "obj must be a function, a class or a constant's name, got 42"),
    (du.show_source, dict(obj="NO_SUCH_CONSTANT"), ValueError, "obj names no module-level constant of dsc_utils: 'NO_SUCH_CONSTANT'"),
]


@pytest.mark.parametrize("function, kwargs, error, message", BAD_INPUTS,
                         ids=[f"{f.__name__}-{i}" for i, (f, *_) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_a_clear_error(function, kwargs, error, message):
    with pytest.raises(error) as info:
        function(**kwargs)
    assert message in str(info.value)


def test_module_source_has_no_control_characters():
    """A lost backslash (a tab where \\times was meant) would show up in every chapter that shows the code."""
    import pathlib
    import re

    source = pathlib.Path(du.__file__).read_text()
    assert not re.search(r"[\x00-\x08\x0b-\x1f]", source)
