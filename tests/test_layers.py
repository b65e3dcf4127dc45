"""Tests of the layers: drop-in shapes, parameter counts, the equivalence with a standard convolution."""
from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn

import dsc_utils as du

pairs = st.one_of(st.integers(1, 4), st.tuples(st.integers(1, 4), st.integers(1, 4)))


@st.composite
def conv2d_arguments(draw):
    """Any combination nn.Conv2d accepts (groups=1), with an input the kernel fits."""
    kernel_size = draw(st.one_of(st.integers(1, 5), st.tuples(st.integers(1, 5), st.integers(1, 5))))
    dilation = draw(pairs)
    use_same = draw(st.booleans())
    stride = 1 if use_same else draw(pairs)
    padding = draw(st.sampled_from(["same", "valid"])) if use_same else draw(
        st.one_of(st.integers(0, 3), st.tuples(st.integers(0, 3), st.integers(0, 3))))
    if padding == "valid":
        stride = draw(pairs)
    return dict(
        in_channels=draw(st.integers(1, 6)),
        out_channels=draw(st.integers(1, 6)),
        kernel_size=kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=draw(st.booleans()),
        padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"])),
    )


def conv_forward(layer, x):
    with torch.no_grad(), warnings.catch_warnings():
        # PyTorch warns that 'same' with an even kernel needs a padded copy: a performance note
        warnings.simplefilter("ignore", UserWarning)
        return layer(x)


@given(conv2d_arguments(), st.integers(1, 12), st.integers(1, 12), st.integers(1, 3))
def test_same_output_shape_as_nn_conv2d(args, height, width, depth_multiplier):
    x = torch.randn(2, args["in_channels"], height, width)
    try:
        standard = nn.Conv2d(**args)
        expected = conv_forward(standard, x).shape
    except (RuntimeError, ValueError, NotImplementedError):
        # nn.Conv2d refuses this input (kernel larger than the input, padding larger than reflect allows...)
        assume(False)
    layer = du.DepthwiseSeparableConv2d(**args, depth_multiplier=depth_multiplier)
    assert conv_forward(layer, x).shape == expected
    assert conv_forward(layer, x[0]).shape == expected[1:]  # unbatched input, as nn.Conv2d accepts


@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 7), st.integers(1, 3), st.booleans())
def test_parameter_counts_equal_the_formulas(in_channels, out_channels, kernel_size, depth_multiplier, bias):
    layer = du.DepthwiseSeparableConv2d(in_channels, out_channels, kernel_size, bias=bias,
                                        depth_multiplier=depth_multiplier)
    hidden = in_channels * depth_multiplier
    weights = hidden * kernel_size**2 + hidden * out_channels
    assert du.count_params(layer) == weights + (hidden + out_channels if bias else 0)
    if depth_multiplier == 1 and not bias:
        assert du.count_params(layer) == in_channels * (kernel_size**2 + out_channels)
    standard = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)
    assert du.count_params(standard) == kernel_size**2 * in_channels * out_channels + (out_channels if bias else 0)


def test_the_worked_example_of_the_tutorial():
    standard = nn.Conv2d(3, 64, 5, stride=2)
    separable = du.DepthwiseSeparableConv2d(3, 64, 5, stride=2)
    assert du.count_params(standard) == 4864
    assert [p.numel() for p in separable.parameters()] == [75, 3, 192, 64]
    x = torch.zeros(1, 3, 228, 228)
    assert conv_forward(standard, x).shape == conv_forward(separable, x).shape == (1, 64, 112, 112)


@given(st.integers(1, 5), st.integers(1, 5), st.sampled_from([1, 2, 3, 5]), st.integers(1, 3), st.integers(1, 2),
       st.sampled_from([0, 1, "same"]), st.booleans(), st.sampled_from(["zeros", "reflect", "circular"]))
def test_equivalent_standard_convolution(in_channels, out_channels, kernel_size, depth_multiplier, dilation,
                                         padding, bias, padding_mode):
    stride = 1 if padding == "same" else 2
    torch.manual_seed(in_channels * 100 + out_channels * 10 + kernel_size)
    layer = du.DepthwiseSeparableConv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                                        bias=bias, padding_mode=padding_mode, depth_multiplier=depth_multiplier)
    x = torch.randn(2, in_channels, 11, 11)
    standard = du.to_standard_conv(layer)
    assert isinstance(standard, nn.Conv2d) and standard.groups == 1
    assert torch.allclose(conv_forward(standard, x), conv_forward(layer, x), atol=1e-5)
    assert du.count_params(standard) == kernel_size**2 * in_channels * out_channels + (out_channels if bias else 0)


def test_equivalent_kernel_is_rank_one_per_input_channel():
    torch.manual_seed(0)
    standard = du.to_standard_conv(du.DepthwiseSeparableConv2d(4, 16, 3))
    for m in range(4):
        assert torch.linalg.matrix_rank(standard.weight[:, m].reshape(16, 9)) == 1
    generic = nn.Conv2d(4, 16, 3)
    assert all(torch.linalg.matrix_rank(generic.weight[:, m].reshape(16, 9)) == 9 for m in range(4))


def test_conv1d_layer_and_its_equivalent():
    torch.manual_seed(0)
    layer = du.DepthwiseSeparableConv1d(8, 12, 5, padding=2, depth_multiplier=2)
    x = torch.randn(3, 8, 40)
    assert layer(x).shape == nn.Conv1d(8, 12, 5, padding=2)(x).shape == (3, 12, 40)
    assert torch.allclose(du.to_standard_conv(layer)(x), layer(x), atol=1e-5)
    assert du.count_mults(layer, x) == 3 * du.separable_conv_mults(8, 12, (5,), (40,), depth_multiplier=2)


def test_from_conv_is_a_drop_in_replacement():
    conv = nn.Conv2d(16, 32, (3, 5), stride=(2, 1), padding=(1, 2), dilation=1, bias=False, padding_mode="reflect")
    layer = du.DepthwiseSeparableConv2d.from_conv(conv, depth_multiplier=2)
    assert (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding) == \
        (16, 32, (3, 5), (2, 1), (1, 2))
    assert layer.padding_mode == "reflect" and layer.depthwise.bias is None and layer.depth_multiplier == 2
    x = torch.randn(1, 16, 20, 20)
    assert layer(x).shape == conv(x).shape
    with pytest.raises(ValueError, match="groups=4"):
        du.DepthwiseSeparableConv2d.from_conv(nn.Conv2d(8, 8, 3, groups=4))
    with pytest.raises(TypeError, match="nn.Conv2d"):
        du.DepthwiseSeparableConv2d.from_conv(nn.Conv1d(8, 8, 3))


def test_readable_parts_and_counts():
    layer = du.DepthwiseSeparableConv2d(32, 64, 3, padding=1)
    assert [name for name, _ in layer.named_children()] == ["depthwise", "pointwise"]
    assert layer.depthwise.groups == 32 and layer.pointwise.kernel_size == (1, 1)
    x = torch.zeros(1, 32, 14, 14)
    assert du.count_mults(layer, x) == du.separable_conv_mults(32, 64, 3, 14)


def test_mobilenet_block_costs():
    block = du.mobilenet_block(32, 64, stride=2)
    x = torch.zeros(1, 32, 112, 112)
    assert block(x).shape == (1, 64, 56, 56)
    assert du.count_mults(block, x) == du.separable_conv_mults(32, 64, 3, 56)
    assert du.count_params(block) == 32 * 9 + 32 * 64 + 2 * 32 + 2 * 64  # convolutions + BN scale and shift


BAD_LAYER_ARGUMENTS = [
    (dict(in_channels=0, out_channels=4, kernel_size=3), ValueError, "in_channels must be positive, got 0"),
    (dict(in_channels=-2, out_channels=4, kernel_size=3), ValueError, "in_channels must be positive, got -2"),
    (dict(in_channels=3, out_channels=0, kernel_size=3), ValueError, "out_channels must be positive, got 0"),
    (dict(in_channels=3, out_channels=4, kernel_size=0), ValueError, "kernel_size must be positive, got 0"),
    (dict(in_channels=3, out_channels=4, kernel_size=(3, -1)), ValueError, "kernel_size[1] must be positive, got -1"),
    (dict(in_channels=3, out_channels=4, kernel_size=(3, 3, 3)), ValueError, "kernel_size must be an int or a tuple of 2"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, stride=0), ValueError, "stride must be positive, got 0"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, stride=-1), ValueError, "stride must be positive, got -1"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, dilation=0), ValueError, "dilation must be positive, got 0"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding=-1), ValueError, "padding must be at least 0, got -1"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding="full"), ValueError, "got 'full'"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding="same"), ValueError, "stride=2"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, depth_multiplier=0), ValueError,
     "depth_multiplier must be positive, got 0"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding_mode="mirror"), ValueError, "got 'mirror'"),
    (dict(in_channels=3.0, out_channels=4, kernel_size=3), TypeError, "in_channels must be an integer, got 3.0"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, bias="yes"), TypeError, "bias must be True or False, got 'yes'"),
]


@pytest.mark.parametrize("kwargs, error, message", BAD_LAYER_ARGUMENTS)
def test_bad_layer_arguments(kwargs, error, message):
    with pytest.raises(error) as info:
        du.DepthwiseSeparableConv2d(**kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("function, argument, error, message", [
    (du.count_params, "model", TypeError, "model must be a torch.nn.Module, got 'model'"),
    (du.param_table, 3, TypeError, "model must be a torch.nn.Module, got 3"),
    (du.to_standard_conv, nn.Conv2d(2, 2, 3), TypeError, "layer must be a DepthwiseSeparableConv1d or 2d"),
    (du.mobilenet_block, 0, ValueError, "in_channels must be positive, got 0"),
])
def test_bad_arguments_of_the_helpers(function, argument, error, message):
    with pytest.raises(error) as info:
        function(argument) if function is not du.mobilenet_block else function(argument, 4)
    assert message in str(info.value)


def test_standard_conv_mults_with_groups():
    assert du.standard_conv_mults(64, 64, 3, 14, groups=64) == du.depthwise_conv_mults(64, 3, 14)
    assert du.standard_conv_mults(64, 128, 3, 14, groups=4) == 9 * 16 * 128 * 196
    conv = nn.Conv2d(64, 128, 3, padding=1, groups=4)
    assert du.count_mults(conv, torch.zeros(1, 64, 14, 14)) == du.standard_conv_mults(64, 128, 3, 14, groups=4)
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=64"):
        du.standard_conv_mults(64, 128, 3, 14, groups=3)
