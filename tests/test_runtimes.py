"""Tests of onnxruntime_session: same outputs as PyTorch, silent, clear refusals."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import dsc_utils as du


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_same_output_as_the_model_in_evaluation_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                          nn.ReLU(inplace=True), du.mobilenet_block(8, 16, stride=2),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    model = du.randomize_batch_norms(model).train()
    x = torch.randn(2, 3, 32, 32)
    run = du.onnxruntime_session(model, x)
    assert model.training                                   # the caller's model is left as it was
    with torch.no_grad():
        expected = model.eval()(x)
    assert run(x).shape == expected.shape
    assert relative_error(run(x), expected) <= 1e-4
    other = torch.randn(2, 3, 32, 32)
    assert relative_error(run(other), model(other).detach()) <= 1e-4


def test_layers_and_full_convolution():
    torch.manual_seed(1)
    x = torch.randn(1, 16, 14, 14)
    for layer in (du.DepthwiseSeparableConv2d(16, 32, 3, stride=2, padding=1),
                  nn.Conv2d(16, 32, 3, padding=1)):
        with torch.no_grad():
            for threads in (1, 2):
                run = du.onnxruntime_session(layer, x, threads=threads)
                assert relative_error(run(x), layer(x)) <= 1e-4


def test_export_and_session_print_nothing(capfd):
    """capfd sees Python's and the C++ libraries' output (file descriptors 1 and 2)."""
    run = du.onnxruntime_session(du.mobilenet_block(8, 16), torch.randn(1, 8, 12, 12))
    run(torch.randn(1, 8, 12, 12))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_refusals_name_the_argument():
    x = torch.randn(1, 3, 8, 8)
    layer = nn.Conv2d(3, 4, 3)
    with pytest.raises(TypeError, match="model"):
        du.onnxruntime_session(lambda t: t, x)
    with pytest.raises(TypeError, match="example_input"):
        du.onnxruntime_session(layer, [[1.0]])
    with pytest.raises(ValueError, match="threads"):
        du.onnxruntime_session(layer, x, threads=0)
    with pytest.raises(TypeError, match="threads"):
        du.onnxruntime_session(layer, x, threads=1.5)
    run = du.onnxruntime_session(layer, x)
    with pytest.raises(TypeError, match="input"):
        run(x.numpy())
    with pytest.raises(ValueError, match="input"):
        run(torch.randn(2, 3, 8, 8))


class SingularValues(nn.Module):
    def forward(self, x):
        return torch.linalg.svdvals(x)


def test_unexportable_layer_is_named_with_the_reason(capfd):
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), SingularValues()))
    with pytest.raises(ValueError, match=r"layer '1\.1' \(SingularValues\).*svdvals"):
        du.onnxruntime_session(model, torch.randn(2, 4))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
