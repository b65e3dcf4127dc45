"""Section 1 of dsc_utils: the output size of a convolution, against PyTorch's shapes."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

import dsc_utils as du


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
]


@pytest.mark.parametrize("function, kwargs, error, message", BAD_INPUTS,
                         ids=[f"{f.__name__}-{i}" for i, (f, *_) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_a_clear_error(function, kwargs, error, message):
    with pytest.raises(error) as info:
        function(**kwargs)
    assert message in str(info.value)
