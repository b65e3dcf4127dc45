"""Every conversion of dsc_utils either returns a model that computes what the original computes
(the int8 ones: runs, with the right shape and dtype) or refuses at the call, naming the layer and
why; none of them changes the model it is given (issue 33)."""
from __future__ import annotations

import copy
import traceback

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dsc_utils as du


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def snapshot(model: nn.Module):
    """Everything a conversion must leave alone: parameters and buffers (by value), training flags,
    requires_grad flags, the module tree (by identity)."""
    return ({name: tensor.detach().clone() for name, tensor in model.state_dict(keep_vars=True).items()},
            [(name, module.training, module) for name, module in model.named_modules()],
            [(name, p.requires_grad) for name, p in model.named_parameters()])


def assert_unchanged(model: nn.Module, before) -> None:
    state, modules, grads = snapshot(model)
    assert state.keys() == before[0].keys()
    for name, tensor in state.items():
        assert tensor.dtype == before[0][name].dtype and torch.equal(tensor, before[0][name]), name
    assert [(n, t, id(m)) for n, t, m in modules] == [(n, t, id(m)) for n, t, m in before[1]]
    assert grads == before[2]


def assert_refused(info, *names) -> None:
    """The error was raised by dsc_utils itself (not deep inside torch) and names every ``names``."""
    assert traceback.extract_tb(info.value.__traceback__)[-1].filename.endswith("dsc_utils.py")
    for name in names:
        assert name in str(info.value), (name, str(info.value))


def reference(model: nn.Module, *inputs):
    """The original's output in evaluation mode, computed on a copy (the original stays as it is)."""
    with torch.no_grad():
        return copy.deepcopy(model).eval()(*inputs)


def assert_same(got, expected, tolerance=1e-10) -> None:
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert torch.allclose(got, expected, rtol=tolerance, atol=tolerance), \
        (got - expected).abs().max().item()


# ------------------------------------------------------------------------------------------------
# Models, odd ones included (float64, batch norms with random statistics, in training mode)
# ------------------------------------------------------------------------------------------------

class LeNet(nn.Module):
    """PyTorch's tutorial LeNet: its forward reshapes with .view, which needs a contiguous tensor."""

    def __init__(self):
        super().__init__()
        self.conv1, self.pool, self.conv2 = nn.Conv2d(3, 6, 5), nn.MaxPool2d(2, 2), nn.Conv2d(6, 16, 5)
        self.bn = nn.BatchNorm2d(16)
        self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 12), nn.Linear(12, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.bn(self.conv2(x))))
        x = x.view(-1, 16 * 5 * 5)
        return self.fc2(F.relu(self.fc1(x)))


class SharedTwice(nn.Module):
    """One separable layer used twice: once followed by a batch norm (in a Sequential), once not."""

    def __init__(self):
        super().__init__()
        self.separable = du.DepthwiseSeparableConv2d(4, 4, 3, padding=1)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.block = nn.Sequential(self.separable, nn.BatchNorm2d(4), nn.ReLU(),
                                   self.conv, nn.BatchNorm2d(4), nn.ReLU())

    def forward(self, x):
        return self.conv(self.separable(self.block(x)))


class ConvPlusNorm(nn.Sequential):
    """A Sequential whose forward does not chain its children: conv(x) + bn(x)."""

    def forward(self, x):
        return self[0](x) + self[1](x)


def odd_models():
    """(name, model, input): the odd models every exact conversion is tried on."""
    torch.manual_seed(0)
    models = [
        ("conv-bn", nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU()), (2, 3, 8, 8)),
        ("transposed-groups-2", nn.Sequential(nn.ConvTranspose2d(4, 6, 3, groups=2), nn.BatchNorm2d(6)),
         (2, 4, 5, 5)),
        ("transposed-groups-4", nn.Sequential(
            nn.ConvTranspose2d(4, 8, 3, stride=2, output_padding=1, groups=4, bias=False),
            nn.BatchNorm2d(8)), (2, 4, 5, 5)),
        ("transposed-1d", nn.Sequential(nn.ConvTranspose1d(3, 6, 3, groups=3), nn.BatchNorm1d(6)),
         (2, 3, 7)),
        ("transposed-3d", nn.Sequential(nn.ConvTranspose3d(2, 3, 2), nn.BatchNorm3d(3, affine=False)),
         (1, 2, 3, 3, 3)),
        ("grouped-dilated", nn.Sequential(nn.Conv2d(4, 8, 3, padding=2, dilation=2, groups=2),
                                          nn.BatchNorm2d(8)), (2, 4, 9, 9)),
        ("conv-1d", nn.Sequential(nn.Conv1d(3, 5, 3, padding=1, padding_mode="reflect"),
                                  nn.BatchNorm1d(5), nn.ReLU()), (2, 3, 11)),
        ("bn-after-linear", nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5)), (4, 6)),
        ("view-lenet", LeNet(), (2, 3, 32, 32)),
        ("shared-twice", SharedTwice(), (2, 4, 6, 6)),
        ("sequential-own-forward", ConvPlusNorm(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)),
         (2, 4, 6, 6)),
        ("linear-after-flatten", nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                               nn.Flatten(), nn.Linear(4 * 4 * 4, 3)), (2, 2, 6, 6)),
        ("separable-digits", du.digits_cnn(separable=True), (2, 1, 8, 8)),
    ]
    result = []
    for name, model, shape in models:
        model = du.randomize_batch_norms(model.double(), seed=1).train()
        result.append(pytest.param(model, torch.randn(shape, dtype=torch.float64), id=name))
    return result


# ------------------------------------------------------------------------------------------------
# fold_batch_norms and prepare_for_inference
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, x", odd_models())
def test_fold_batch_norms_keeps_every_models_outputs(model, x):
    before = snapshot(model)
    expected = reference(model, x)
    folded = du.fold_batch_norms(model)
    assert_unchanged(model, before)
    with torch.no_grad():
        assert_same(folded(x), expected)
    assert not folded.training


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("model, x", odd_models())
def test_prepare_for_inference_keeps_every_models_outputs(model, x, memory_format):
    before = snapshot(model)
    expected = reference(model, x)
    prepared = du.prepare_for_inference(model, memory_format)
    assert_unchanged(model, before)
    assert_same(prepared(x), expected)
    assert_same(prepared(x), expected)                          # and again, after any fallback
    assert_unchanged(model, before)


def test_transposed_convolutions_are_folded_per_group():
    model = du.randomize_batch_norms(nn.Sequential(nn.ConvTranspose2d(4, 8, 3, groups=4),
                                                   nn.BatchNorm2d(8)).double()).eval()
    folded = du.fold_batch_norms(model)
    assert isinstance(folded[0], nn.ConvTranspose2d) and isinstance(folded[1], nn.Identity)
    assert folded[0].weight.shape == model[0].weight.shape


def test_a_view_model_falls_back_to_the_contiguous_format_and_says_why():
    model = LeNet().double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    prepared = du.prepare_for_inference(model)
    assert prepared.memory_format == torch.channels_last and prepared.channels_last_error is None
    assert_same(prepared(x), reference(model, x))
    assert prepared.memory_format == torch.contiguous_format
    assert "view" in prepared.channels_last_error
    # a channels-last model that runs keeps its format; a bad input is the input's fault
    plain = du.prepare_for_inference(nn.Sequential(nn.Conv2d(3, 4, 3)))
    with pytest.raises(RuntimeError):
        plain(torch.randn(1, 5, 8, 8))
    assert plain.memory_format == torch.channels_last and plain.channels_last_error is None
    assert plain.model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_shared_modules_keep_their_weights_where_no_batch_norm_follows():
    model = du.randomize_batch_norms(SharedTwice().double()).eval()
    folded = du.fold_batch_norms(model)
    assert folded.block[0] is not folded.separable and folded.block[3] is not folded.conv
    assert torch.equal(folded.separable.pointwise.weight, model.separable.pointwise.weight)
    assert torch.equal(folded.conv.weight, model.conv.weight)


def test_fold_batch_norms_refuses_a_mismatched_batch_norm_naming_it():
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, groups=2), nn.BatchNorm2d(4))
    with pytest.raises(ValueError) as info:
        du.fold_batch_norms(model)
    assert_refused(info, "model's 1 normalizes 4 channels", "follows 0 with 6")
    with pytest.raises(TypeError) as info:
        du.fold_batch_norms("net")
    assert_refused(info, "model")
