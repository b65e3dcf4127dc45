"""The output-size formula of the convolution chapter (eq-output-size) on a grid of 648 shapes.

Moved out of chapters/01_convolution.ipynb, which teaches the formula: wherever the kernel fits,
``dsc_utils.conv_output_size`` gives the side of the tensor ``F.conv2d`` returns and the number of
kernel placements counted one by one; wherever it does not fit, both refuse (``ValueError`` and
``RuntimeError``). The two refusals' messages are compared too: the helper's names its arguments.
"""
from __future__ import annotations

import collections
import itertools

import pytest
import torch
import torch.nn.functional as F

import dsc_utils

GRID = list(itertools.product([1, 2, 3, 5, 8, 13],   # size D_F
                              [1, 2, 3, 5],          # kernel_size D_K
                              [1, 2, 3],             # stride s
                              [0, 1, 2],             # padding p
                              [1, 2, 3]))            # dilation d


def both_sizes(size, kernel_size, stride, padding, dilation):
    """(conv_output_size, side of PyTorch's output), with None for a refusal."""
    try:
        ours = dsc_utils.conv_output_size(size, kernel_size, stride, padding, dilation)
    except ValueError:
        ours = None
    x_grid = torch.zeros(1, 1, size, size)
    w_grid = torch.zeros(1, 1, kernel_size, kernel_size)
    try:
        out = F.conv2d(x_grid, w_grid, stride=stride, padding=padding, dilation=dilation)
        theirs = out.shape[-1]
    except RuntimeError:
        theirs = None
    return ours, theirs


def placements(size, kernel_size, stride, padding, dilation):
    """The kernel placements that fit, counted one by one: placement q covers the padded
    positions q*s to q*s + d*(D_K - 1), which must end before D_F + 2p."""
    last = size + 2 * padding - 1
    return sum(1 for q in range(size + 2 * padding)
               if q * stride + dilation * (kernel_size - 1) <= last)


def outcome(ours, theirs):
    if ours is None and theirs is None:
        return "both refuse: the kernel does not fit"
    if ours is None or theirs is None:
        return "only one of the two refuses"
    return "same output size" if ours == theirs else "different output sizes"


def test_the_grid_has_648_combinations():
    assert len(GRID) == len(set(GRID)) == 648


def test_formula_and_pytorch_agree_on_every_combination():
    outcomes = collections.Counter()
    disagreements = []
    for shape in GRID:
        result = outcome(*both_sizes(*shape))
        outcomes[result] += 1
        if result not in ("same output size", "both refuse: the kernel does not fit"):
            disagreements.append((shape, result))
    assert not disagreements, f"{len(disagreements)} disagreements, e.g. {disagreements[:5]}"
    assert outcomes["different output sizes"] == 0
    assert outcomes["only one of the two refuses"] == 0
    fits = outcomes["same output size"]
    refused = outcomes["both refuse: the kernel does not fit"]
    assert fits > 0 and refused > 0 and fits + refused == len(GRID)
    assert (fits, refused) == (483, 165)


def test_formula_counts_the_placements():
    wrong = []
    for shape in GRID:
        counted = placements(*shape)
        ours, _ = both_sizes(*shape)
        if ours != (counted or None):       # no placement fits: the helper must refuse
            wrong.append((shape, counted, ours))
    assert not wrong, f"(shape, placements, conv_output_size): {wrong[:5]}"


def test_a_kernel_that_does_not_fit_is_refused_by_both_with_these_messages():
    with pytest.raises(ValueError) as ours:
        dsc_utils.conv_output_size(5, kernel_size=7)
    assert str(ours.value) == (
        "kernel_size=7 with dilation=1 spans 7 input elements, but the padded input has only "
        "size + 2*padding = 5 + 0: the kernel does not fit")
    with pytest.raises(RuntimeError) as theirs:
        F.conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 7, 7))
    assert str(theirs.value) == (
        "Calculated padded input size per channel: (5 x 5). Kernel size: (7 x 7). "
        "Kernel size can't be greater than actual input size")


def test_same_padding_with_a_stride_is_refused_by_both_with_these_messages():
    x1 = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
    w1 = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError) as theirs:
        F.conv2d(x1, w1, padding="same", stride=2)
    assert str(theirs.value) == "padding='same' is not supported for strided convolutions"
    with pytest.raises(ValueError) as ours:
        dsc_utils.conv_output_size(7, 3, stride=2, padding="same")
    assert str(ours.value) == "padding='same' needs stride=1 (as in PyTorch), got stride=2"
