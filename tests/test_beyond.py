"""Tests of separable_decomposition: exact at full rank, optimal and monotone below it, bad input."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
import torch.nn.functional as F
from torch import nn

import dsc_utils as du


def relative_weight_error(conv: nn.Conv2d, layer) -> float:
    with torch.no_grad():
        approx = du.to_standard_conv(layer).weight
        return float((approx - conv.weight).norm() / conv.weight.norm())


@given(st.integers(1, 6), st.integers(1, 12), st.sampled_from([1, 2, 3, 5]), st.integers(1, 2),
       st.sampled_from([0, 1, "same"]), st.booleans())
def test_full_rank_reproduces_the_convolution(in_channels, out_channels, kernel_size, dilation, padding, bias):
    torch.manual_seed(in_channels * 31 + out_channels)
    stride = 1 if padding == "same" else 2
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias)
    layer = du.separable_decomposition(conv)
    assert layer.depth_multiplier == min(out_channels, kernel_size**2) == du.separable_rank_limit(conv)
    x = torch.randn(2, in_channels, 12, 12)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # 'same' with an even kernel: PyTorch's performance note
        assert torch.allclose(layer(x), conv(x), atol=1e-4)
    assert relative_weight_error(conv, layer) < 1e-5


def test_error_falls_monotonically_to_zero_with_rank():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 32, 3, padding=1)
    errors = [relative_weight_error(conv, du.separable_decomposition(conv, r)) for r in range(1, 10)]
    assert all(a > b for a, b in zip(errors, errors[1:]))
    assert errors[0] > 0.3 and errors[-1] < 1e-5


def test_rank_r_error_is_the_eckart_young_bound():
    """Per input channel, the error left at rank r is the root sum of squares of the dropped singular
    values: no separable layer with r kernels per channel can do better."""
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 16, 3, bias=False)
    for rank in (1, 3, 6):
        approx = du.to_standard_conv(du.separable_decomposition(conv, rank)).weight.detach()
        for m in range(4):
            target = conv.weight.detach()[:, m].reshape(16, 9).double()
            dropped = torch.linalg.svdvals(target)[rank:]
            error = (approx[:, m].reshape(16, 9).double() - target).norm()
            assert torch.isclose(error, dropped.norm(), atol=1e-5)
            for _ in range(5):  # any other separable layer of the same rank is no closer
                other = du.to_standard_conv(du.DepthwiseSeparableConv2d(4, 16, 3, bias=False, depth_multiplier=rank))
                assert (other.weight.detach()[:, m].reshape(16, 9).double() - target).norm() >= error - 1e-6


def test_a_separable_layer_is_recovered_at_rank_one():
    torch.manual_seed(2)
    original = du.DepthwiseSeparableConv2d(6, 10, 3, padding=1, bias=False)
    conv = du.to_standard_conv(original)
    layer = du.separable_decomposition(conv, 1)
    x = torch.randn(1, 6, 9, 9)
    with torch.no_grad():
        assert torch.allclose(layer(x), original(x), atol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_rank_one_parameters(bias):
    conv = nn.Conv2d(16, 32, 3, bias=bias)
    layer = du.separable_decomposition(conv, 1)
    assert du.count_params(layer) == 16 * 9 + 16 * 32 + (32 if bias else 0)
    assert layer.depthwise.bias is None
    assert (layer.pointwise.bias is not None) == bias
    assert du.count_params(du.separable_decomposition(conv, 4)) == 4 * (16 * 9 + 16 * 32) + (32 if bias else 0)


@pytest.mark.parametrize("conv, rank, error, message", [
    (nn.Conv2d(8, 8, 3, groups=4), None, ValueError, "groups=1), got groups=4"),
    (nn.Conv2d(8, 8, 3, groups=8), 1, ValueError, "got groups=8"),
    (nn.Conv2d(4, 16, 3), 0, ValueError, "rank must be positive, got 0"),
    (nn.Conv2d(4, 16, 3), -1, ValueError, "rank must be positive, got -1"),
    (nn.Conv2d(4, 16, 3), 10, ValueError, "rank must be at most min(out_channels, kernel taps) = 9 for this conv, got 10"),
    (nn.Conv2d(4, 5, 3), 6, ValueError, "= 5 for this conv, got 6"),
    (nn.Conv2d(4, 16, 3), 2.0, TypeError, "rank must be an integer, got 2.0"),
    (nn.Conv1d(4, 16, 3), None, TypeError, "conv must be an nn.Conv2d, got"),
    (du.DepthwiseSeparableConv2d(4, 4, 3), None, TypeError, "conv must be an nn.Conv2d, got"),
])
def test_bad_input(conv, rank, error, message):
    with pytest.raises(error) as info:
        du.separable_decomposition(conv, rank)
    assert message in str(info.value)


def test_to_standard_conv_keeps_a_pointwise_only_bias():
    torch.manual_seed(3)
    conv = nn.Conv2d(3, 7, 3, padding=1)
    layer = du.separable_decomposition(conv, 2)
    x = torch.randn(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.allclose(du.to_standard_conv(layer)(x), layer(x), atol=1e-5)


# --------------------------------------------------------------------------------------------------
# the digits experiment of the training chapter
# --------------------------------------------------------------------------------------------------

def test_digits_split_is_fixed_stratified_and_disjoint():
    x_train, y_train, x_test, y_test = du.load_digits_split()
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)
    assert 0 <= float(x_train.min()) and float(x_train.max()) <= 1
    totals = torch.bincount(torch.cat([y_train, y_test]))
    assert (torch.bincount(y_test) - totals * 0.25).abs().max() <= 1  # stratified: a quarter of every digit
    again = du.load_digits_split()
    assert torch.equal(again[1], y_train) and torch.equal(again[2], x_test)
    train_rows = {tuple(row.tolist()) for row in x_train.flatten(1)}
    assert sum(tuple(row.tolist()) in train_rows for row in x_test.flatten(1)) < 10  # (a few exact duplicates exist)


def test_digits_cross_validation_tests_every_image_once_per_repetition():
    from sklearn.datasets import load_digits

    totals = torch.bincount(torch.as_tensor(load_digits().target))
    splits = du.digits_cross_validation(200)
    assert len(splits) == 10 and [s["split"] for s in splits] == list(range(10))
    for repeat in range(2):
        tested = torch.cat([s["test_index"] for s in splits if s["repeat"] == repeat])
        assert torch.equal(tested.sort().values, torch.arange(1797))
    for s in splits:
        x_train, y_train, x_test, y_test = s["data"]
        assert x_train.shape == (200, 1, 8, 8) and x_train.dtype == torch.float64
        assert torch.bincount(y_train).tolist() == [20] * 10         # stratified exactly
        assert not torch.isin(s["train_index"], s["test_index"]).any()
        assert torch.isin(s["train_index"], s["pool_index"]).all()
        assert len(s["pool_index"]) + len(s["test_index"]) == 1797
        assert (torch.bincount(y_test, minlength=10) - totals / 5).abs().max() < 1  # stratified
        assert 359 <= len(y_test) <= 360
    again = du.digits_cross_validation(200)
    assert all(torch.equal(a["train_index"], b["train_index"]) for a, b in zip(splits, again))
    other = du.digits_cross_validation(200, seed=1)
    assert not torch.equal(other[0]["test_index"], splits[0]["test_index"])
    small = du.digits_cross_validation(100, folds=3, repeats=1, dtype=torch.float32)
    assert len(small) == 3 and small[0]["data"][0].dtype == torch.float32


@pytest.mark.parametrize("call, error, message", [
    (lambda: du.digits_cross_validation(105), ValueError, "train_size must be a multiple of 10 (one tenth per digit), got 105"),
    (lambda: du.digits_cross_validation("100"), TypeError, "train_size must be an integer, got '100'"),
    (lambda: du.digits_cross_validation(100.0), TypeError, "train_size must be an integer, got 100.0"),
    (lambda: du.digits_cross_validation(0), ValueError, "train_size must be at least 10, got 0"),
    (lambda: du.digits_cross_validation(100, folds=1), ValueError, "folds must be at least 2, got 1"),
    (lambda: du.digits_cross_validation(100, repeats=0), ValueError, "repeats must be positive, got 0"),
    (lambda: du.digits_cross_validation(100, seed=2**40), ValueError, "seed must be at most 2**32 - 1"),
    (lambda: du.digits_cross_validation(100, seed=None), TypeError, "seed must be an integer, got None"),
    (lambda: du.digits_cross_validation(100, dtype=torch.int64), ValueError, "dtype must be a floating-point"),
    (lambda: du.digits_cross_validation(1500), ValueError, "train_size=1500 needs 150 images of digit 0"),
])
def test_digits_cross_validation_bad_input(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_digits_cnn_twins():
    x = torch.zeros(2, 1, 8, 8, dtype=torch.float64)  # the digits experiment computes in float64
    standard, separable = du.digits_cnn(False), du.digits_cnn(True)
    assert standard(x).shape == separable(x).shape == (2, 10)
    assert isinstance(separable.block1.conv, du.DepthwiseSeparableConv2d)
    assert isinstance(separable.stem.conv, nn.Conv2d) and not isinstance(standard.block1.conv, du.DepthwiseSeparableConv2d)
    assert du.count_params(separable) < du.count_params(standard) / 3
    assert du.count_mults(separable, x) < du.count_mults(standard, x) / 3


def test_train_digits_is_deterministic_learns_and_reports_its_final_losses():
    data = du.load_digits_split()
    x_train, y_train, x_test, y_test = data
    models = [du.digits_cnn(True, width=8) for _ in range(2)]
    tracked, untracked = [du.train_digits(model, data, epochs=3, seed=5, track_train_accuracy=track,
                                          track_test_accuracy=track)
                          for model, track in zip(models, (True, False))]
    # the same seed gives the same training, to the last bit, whatever is measured in between
    assert untracked["train_loss"] == tracked["train_loss"] and len(tracked["train_loss"]) == 3
    assert len(tracked["train_accuracy"]) == len(tracked["test_accuracy"]) == 3
    assert untracked["test_accuracy"] == tracked["test_accuracy"][-1:]
    assert untracked["train_accuracy"] == tracked["train_accuracy"][-1:]
    assert tracked["test_accuracy"][-1] > 0.8
    assert tracked["train_loss"][-1] < tracked["train_loss"][0]
    model = models[1]
    assert not model.training                  # the final losses are those of the evaluation mode
    with torch.no_grad():
        assert untracked["final_train_loss"] == F.cross_entropy(model(x_train), y_train).item()
        assert untracked["final_test_loss"] == F.cross_entropy(model(x_test), y_test).item()
    assert untracked["final_test_loss"] == tracked["final_test_loss"]
    # the learning rate of each epoch: a cosine from lr (0.05 by default) down, one step an epoch
    assert tracked["lr"] == untracked["lr"] and len(tracked["lr"]) == 3
    assert tracked["lr"] == pytest.approx([0.05 * (1 + math.cos(math.pi * epoch / 3)) / 2
                                           for epoch in range(3)], rel=1e-12)



def test_reset_weights_draws_the_weights_train_digits_starts_from():
    seeded, other = du.digits_cnn(width=4), du.digits_cnn(width=4)
    assert du.reset_weights(seeded, seed=7) is seeded
    du.reset_weights(other, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(seeded.parameters(), other.parameters()))
    du.reset_weights(other, seed=8)
    assert not torch.equal(seeded.stem.conv.weight, other.stem.conv.weight)
    # lr = 0 trains nothing: what is left are the weights the run started from
    du.train_digits(other, du.load_digits_split(), epochs=1, lr=0.0, weight_decay=0.0, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(seeded.parameters(), other.parameters()))


@pytest.mark.parametrize("call, error, message", [
    (lambda: du.load_digits_split(test_fraction=1.5), ValueError, "test_fraction must be a number between 0 and 1, got 1.5"),
    (lambda: du.load_digits_split(seed=-1), ValueError, "seed must be at least 0, got -1"),
    (lambda: du.digits_cnn(separable="yes"), TypeError, "separable must be True or False, got 'yes'"),
    (lambda: du.digits_cnn(width=0), ValueError, "width must be positive, got 0"),
    (lambda: du.reset_weights("model"), TypeError, "model must be a torch.nn.Module, got 'model' of type str"),
    (lambda: du.reset_weights(nn.Linear(1, 1), seed=-2), ValueError, "seed must be at least 0, got -2"),
    (lambda: du.reset_weights(nn.Linear(1, 1), seed=1.5), TypeError, "seed must be an integer"),
    (lambda: du.train_digits("model", None), TypeError, "model must be a torch.nn.Module"),
    (lambda: du.train_digits(nn.Linear(1, 1), None, epochs=0), ValueError, "epochs must be positive, got 0"),
    (lambda: du.train_digits(nn.Linear(1, 1), (torch.zeros(1),) * 4, track_test_accuracy="no"), TypeError,
     "track_test_accuracy must be True or False, got 'no'"),
    (lambda: du.train_digits(nn.Linear(1, 1), None, lr=-0.1), ValueError,
     "lr must be a finite number >= 0, got -0.1"),
    (lambda: du.train_digits(nn.Linear(1, 1), None, weight_decay=float("nan")), ValueError,
     "weight_decay must be a finite number >= 0, got nan"),
    (lambda: du.train_digits(nn.Linear(1, 1), None, momentum=1), ValueError,
     "momentum must be a finite number >= 0 and < 1, got 1"),
    (lambda: du.train_digits(nn.Linear(1, 1), None, lr="0.1"), TypeError,
     "lr must be a number, got '0.1' of type str"),
])
def test_digits_bad_input(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_digits_cnn_blocks_come_from_one_builder_with_the_chapters_names():
    model = du.digits_cnn(separable=True, width=4, dtype=torch.float32)
    assert [name for name, _ in model.named_children()] == [
        "stem", "block1", "pool1", "block2", "pool2", "flatten", "classifier"]
    for part in ("stem", "block1", "block2"):
        assert [name for name, _ in getattr(model, part).named_children()] == ["conv", "bn", "relu"]
    assert model.classifier.weight.dtype == torch.float32
    assert list(du.digits_cnn().state_dict())[:3] == ["stem.conv.weight", "stem.bn.weight", "stem.bn.bias"]
