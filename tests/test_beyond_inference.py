"""dsc_utils section 11: training cost, int8 quantization, weight decay for depthwise filters."""
from __future__ import annotations

import doctest
import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import dsc_utils as du

NAMES = ["layer_kind", "training_mults", "fake_quantize", "sqnr_db", "fold_batch_norms",
         "simulate_int8", "onnxruntime_int8_session", "depthwise_weight_decay"]


@pytest.mark.parametrize("name", NAMES)
def test_public_and_doctest(name):
    assert name in du.__all__
    function = getattr(du, name)
    assert function.__doc__ and ("Raises" in function.__doc__ or name == "layer_kind")
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(function, name, globs=vars(du).copy()):
        runner.run(test)
    assert runner.failures == 0


def test_layer_kind():
    assert du.layer_kind(nn.Conv2d(4, 8, 3)) == "standard"
    assert du.layer_kind(nn.Conv2d(4, 8, 3, groups=4)) == "depthwise"   # depth multiplier 2
    assert du.layer_kind(nn.Conv2d(4, 8, 1)) == "pointwise"
    assert du.layer_kind(nn.Conv2d(4, 8, 3, groups=2)) == "standard"
    assert du.layer_kind(nn.Linear(3, 2)) == "linear"
    assert du.layer_kind(nn.ReLU()) is None


@pytest.mark.parametrize("groups,kernel,stride", [(1, 3, 1), (1, 3, 2), (6, 3, 2), (6, 5, 1),
                                                  (1, 1, 1), (3, 3, 1)])
def test_training_mults_match_flop_counter(groups, kernel, stride):
    """Both gradients cost the forward count; FlopCounterMode overstates the weight gradient of a
    grouped convolution by the number of groups."""
    conv = nn.Conv2d(6, 12, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
    x = torch.randn(2, 6, 9, 9, requires_grad=True)
    (row,) = du.training_mults(conv, x)
    assert row["forward"] == row["grad_input"] == row["grad_weight"] == du.count_mults(conv, x)
    with FlopCounterMode(display=False) as counter:
        conv(x).sum().backward()
    counts = {str(op): n // 2 for op, n in counter.get_flop_counts()["Global"].items()}
    assert counts["aten.convolution"] == row["forward"]
    assert counts["aten.convolution_backward"] == row["grad_input"] + groups * row["grad_weight"]


def test_training_mults_first_layer_and_frozen_weights():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 1))
    model[1].weight.requires_grad_(False)
    first, second = du.training_mults(model, torch.zeros(1, 1, 6, 6))
    assert first["grad_input"] == 0 and first["grad_weight"] == first["forward"]
    assert second["grad_input"] == second["forward"] and second["grad_weight"] == 0
    with pytest.raises(TypeError, match="input"):
        du.training_mults(model, [1, 2])


def test_fake_quantize():
    w = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    w[3] *= 100                                            # an outlier channel
    for per_channel in (False, True):
        q = du.fake_quantize(w, per_channel)
        assert q.shape == w.shape and q.dtype == w.dtype
        ranges = w.abs().flatten(1).amax(1)
        scale = (ranges if per_channel else ranges.max().expand(8)) / 127
        assert torch.all((q - w).abs().flatten(1).amax(1) <= scale / 2 + 1e-15)
        levels = q.flatten(1) / scale[:, None]
        assert torch.allclose(levels, levels.round(), atol=1e-9)
    assert du.sqnr_db(w, du.fake_quantize(w, True)) > du.sqnr_db(w, du.fake_quantize(w))
    assert du.fake_quantize(torch.zeros(2, 3)).abs().sum() == 0
    with pytest.raises(ValueError, match="bits"):
        du.fake_quantize(w, bits=17)
    with pytest.raises(TypeError, match="weight"):
        du.fake_quantize(torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="per_channel"):
        du.fake_quantize(w, per_channel=1)


def test_sqnr_model_for_uniform_values():
    """eq-sqnr-model: about 6.02 dB per bit for values spread evenly over [-1, 1]."""
    w = torch.linspace(-1, 1, 100001, dtype=torch.float64)
    for bits in (6, 8):
        expected = 10 * math.log10(12 * (2 ** (bits - 1) - 1) ** 2 / 3)
        assert abs(du.sqnr_db(w, du.fake_quantize(w, bits=bits)) - expected) < 0.1
    assert du.sqnr_db(w, w) == math.inf
    with pytest.raises(ValueError, match="shape"):
        du.sqnr_db(w, w[:3])
    with pytest.raises(ValueError, match="zeros"):
        du.sqnr_db(torch.zeros(3), torch.ones(3))


def test_fold_batch_norms_keeps_the_function():
    torch.manual_seed(0)
    for separable in (False, True):
        model = du.randomize_batch_norms(du.digits_cnn(separable=separable)).eval()
        folded = du.fold_batch_norms(model)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
        assert torch.allclose(folded(x), model(x), atol=1e-10)
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())    # unchanged


def test_simulate_int8_close_to_float():
    torch.manual_seed(0)
    model = du.randomize_batch_norms(du.digits_cnn(separable=True)).eval()
    x = torch.rand(32, 1, 8, 8, dtype=torch.float64)
    for per_channel in (False, True):
        simulated = du.simulate_int8(model, x, per_channel)
        assert 25 < du.sqnr_db(model(x), simulated(x)) < math.inf


def test_onnxruntime_int8_session_agrees_with_simulation():
    torch.manual_seed(0)
    model = du.randomize_batch_norms(du.digits_cnn(separable=True)).eval()
    x = torch.rand(16, 1, 8, 8)
    run = du.onnxruntime_int8_session(model, x, [x], per_channel=True)
    reference = model.double()(x.double())
    assert du.sqnr_db(reference, run(x).double()) > 20
    with pytest.raises(ValueError, match="shape"):
        du.onnxruntime_int8_session(model, x, [x[:2]])


def test_depthwise_weight_decay_hooks():
    model = du.digits_cnn(separable=True)
    handles = du.depthwise_weight_decay(model, 0.1, depthwise=0.0)
    depthwise = [m.weight for m in model.modules() if du.layer_kind(m) == "depthwise"]
    assert len(handles) == sum(1 for _ in model.parameters()) - len(depthwise)
    model.zero_grad()
    (0 * model(torch.zeros(2, 1, 8, 8, dtype=torch.float64)).sum()).backward()
    for name, parameter in model.named_parameters():
        decayed = all(parameter is not w for w in depthwise)
        expected = 0.1 * parameter.detach() if decayed else torch.zeros_like(parameter)
        assert torch.allclose(parameter.grad, expected), name
    for handle in handles:
        handle.remove()
    with pytest.raises(ValueError, match="depthwise"):
        du.depthwise_weight_decay(model, depthwise=-1.0)


def test_stage_tables():
    assert [k for _, k, *_ in du.EFFICIENTNET_B0_STAGES] == [3, 3, 5, 3, 5, 5, 3]
    assert sum(layers for _, _, _, layers, _, _ in du.EFFICIENTNET_B0_STAGES) == 16
    assert [blocks for _, blocks, _ in du.CONVNEXT_T_STAGES] == [3, 3, 9, 3]
