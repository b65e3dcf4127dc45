"""Section 2 of dsc_utils: the convolution written as loops, against F.conv2d."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

import dsc_utils as du


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


BAD_INPUTS = [
    (du.conv2d_by_hand, dict(input=torch.zeros(1, 3, 5, 5), weight=torch.zeros(2, 3, 3, 3)), ValueError,
     "input must be a tensor of shape (in_channels, height, width), got a tensor of shape (1, 3, 5, 5)"),
    (du.conv2d_by_hand, dict(input=torch.zeros(3, 5, 5), weight=torch.zeros(2, 2, 3, 3)), ValueError,
     "does not fit input with 3 channels"),
    (du.conv2d_by_hand, dict(input=torch.zeros(3, 5, 5), weight=torch.zeros(2, 3, 3, 3), groups=0), ValueError,
     "groups must be positive, got 0"),
]


@pytest.mark.parametrize("function, kwargs, error, message", BAD_INPUTS,
                         ids=[f"{f.__name__}-{i}" for i, (f, *_) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_a_clear_error(function, kwargs, error, message):
    with pytest.raises(error) as info:
        function(**kwargs)
    assert message in str(info.value)


@given(
    channels=st.integers(1, 2), size_h=st.integers(1, 7), size_w=st.integers(1, 7),
    kernel_h=st.integers(1, 4), kernel_w=st.integers(1, 4), dilation=st.sampled_from([1, 2, (1, 2), (2, 1)]),
    padding=st.sampled_from(["same", "valid", 0, 1, (0, 2), (1, 0)]), stride=st.sampled_from([1, 2, (2, 1)]),
)
def test_conv2d_by_hand_takes_every_padding_pytorch_takes(channels, size_h, size_w, kernel_h, kernel_w,
                                                          dilation, padding, stride):
    """Issue case 6: padding='same' passed the check and then failed inside F.pad."""
    if padding == "same":
        stride = 1
    generator = torch.Generator().manual_seed(size_h * 13 + size_w)
    x = torch.randn(channels, size_h, size_w, dtype=torch.float64, generator=generator)
    w = torch.randn(3, channels, kernel_h, kernel_w, dtype=torch.float64, generator=generator)
    try:
        with warnings.catch_warnings():  # 'same' with an even kernel: PyTorch's performance note
            warnings.simplefilter("ignore", UserWarning)
            expected = F.conv2d(x[None], w, stride=stride, padding=padding, dilation=dilation)[0]
    except RuntimeError:             # the kernel does not fit the padded image
        with pytest.raises(ValueError, match="the kernel does not fit"):
            du.conv2d_by_hand(x, w, stride, padding, dilation)
        return
    out, mults = du.conv2d_by_hand(x, w, stride, padding, dilation)
    assert out.shape == expected.shape and torch.allclose(out, expected, atol=1e-10)
    assert mults == expected.numel() * channels * kernel_h * kernel_w


def test_conv2d_by_hand_same_with_an_even_kernel_pads_after_as_pytorch():
    x = torch.arange(16.0).reshape(1, 4, 4)
    w = torch.zeros(1, 1, 2, 2)
    w[0, 0, 0, 0] = 1.0  # picks the top-left tap: 'same' puts the extra zero after the image
    out, mults = du.conv2d_by_hand(x, w, padding="same")
    assert torch.equal(out, x) and mults == 16 * 4


def test_conv2d_by_hand_bad_arguments_more():
    x, w = torch.zeros(1, 5, 5), torch.zeros(1, 1, 3, 3)
    with pytest.raises(TypeError, match="input must be a tensor, got \\[1, 2\\] of type list"):
        du.conv2d_by_hand([1, 2], w)
    with pytest.raises(TypeError, match="weight must be a tensor, got None"):
        du.conv2d_by_hand(x, None)
    with pytest.raises(TypeError, match="same dtype, got torch.float64 and torch.float32"):
        du.conv2d_by_hand(x.double(), w)
    with pytest.raises(ValueError, match="padding='same' needs stride=1"):
        du.conv2d_by_hand(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="got 'full'"):
        du.conv2d_by_hand(x, w, padding="full")
    with pytest.raises(ValueError, match="padding must be at least 0, got -1"):
        du.conv2d_by_hand(x, w, padding=-1)
    with pytest.raises(ValueError, match="stride must be an int or a tuple of 2 ints, got \\(1, 1, 1\\)"):
        du.conv2d_by_hand(x, w, stride=(1, 1, 1))
    with pytest.raises(ValueError, match="the kernel does not fit"):
        du.conv2d_by_hand(x, torch.zeros(1, 1, 7, 7))
    with pytest.raises(ValueError, match="meta device"):
        du.conv2d_by_hand(x.to("meta"), w.to("meta"))
