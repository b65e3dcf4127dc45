"""Tests of the rebuilt networks: shapes, and counts against arithmetic done independently here."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import dsc_utils as du

# Table 1 of the MobileNet paper, written out again here (not read from dsc_utils): (out, stride).
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]


def expected_mobilenet(alpha=1.0, resolution=224, separable=True, classes=1000):
    """Mult-adds and parameters of MobileNet v1 by plain arithmetic, layer by layer."""
    size = math.floor((resolution + 2 - 3) / 2) + 1          # first conv: 3x3, stride 2, padding 1
    channels = int(32 * alpha)
    mults = 9 * 3 * channels * size * size
    params = 9 * 3 * channels + 2 * channels                 # weights, batch-norm scale and shift
    for out, stride in BLOCKS:
        out = int(out * alpha)
        size = math.floor((size + 2 - 3) / stride) + 1
        if separable:
            mults += 9 * channels * size * size + channels * out * size * size
            params += 9 * channels + 2 * channels + channels * out + 2 * out
        else:
            mults += 9 * channels * out * size * size
            params += 9 * channels * out + 2 * out
        channels = out
    mults += channels * classes
    params += channels * classes + classes
    return mults, params, size


@pytest.mark.parametrize("alpha", [1.0, 0.75, 0.5, 0.25])
@pytest.mark.parametrize("separable", [True, False])
def test_mobilenet_counts_at_every_width(alpha, separable):
    model = du.mobilenet_v1(alpha, separable=separable)
    mults, params, _ = expected_mobilenet(alpha, separable=separable)
    x = torch.zeros(1, 3, 224, 224)
    assert du.count_mults(model, x) == mults
    assert du.count_params(model) == params
    assert du.torch_flops(model, x) == 2 * mults


@pytest.mark.parametrize("resolution", [224, 192, 160, 128])
def test_mobilenet_counts_at_every_resolution(resolution):
    model = du.mobilenet_v1()
    mults, _, final = expected_mobilenet(resolution=resolution)
    x = torch.zeros(1, 3, resolution, resolution)
    assert du.count_mults(model, x) == mults
    assert model.features(x).shape == (1, 1024, final, final)


def test_mobilenet_shapes_and_structure():
    model = du.mobilenet_v1().eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)
        assert model.features(torch.zeros(2, 3, 224, 224)).shape == (2, 1024, 7, 7)
        assert du.mobilenet_v1(0.5, num_classes=10).eval()(torch.zeros(3, 3, 160, 160)).shape == (3, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 27 and all(c.bias is None for c in convs)
    assert sum(c.groups > 1 for c in convs) == 13
    assert model.classifier.bias is not None
    full = du.mobilenet_v1(separable=False)
    assert sum(isinstance(m, nn.Conv2d) for m in full.modules()) == 14
    assert all(m.groups == 1 for m in full.modules() if isinstance(m, nn.Conv2d))


def test_mobilenet_paper_figures_within_rounding():
    """The paper's Table 4/6/7 figures, in millions, agree with the built models to their rounding."""
    for alpha, published in [(1.0, 569), (0.75, 325), (0.5, 149), (0.25, 41)]:
        mults, _, _ = expected_mobilenet(alpha)
        assert abs(mults / 1e6 - published) < 1
    assert abs(du.count_params(du.mobilenet_v1()) / 1e6 - 4.2) < 0.05


@pytest.mark.parametrize("value, error, message", [
    (0, ValueError, "width_multiplier must be a number > 0 and <= 4, got 0"),
    (4.5, ValueError, "width_multiplier must be a number > 0 and <= 4, got 4.5"),
    (-0.5, ValueError, "got -0.5"),
    (float("nan"), ValueError, "got nan"),
    (float("inf"), ValueError, "got inf"),
    (0.01, ValueError, "width_multiplier=0.01 leaves a layer"),
    ("1.0", TypeError, "width_multiplier must be a number, got '1.0'"),
    (True, TypeError, "width_multiplier must be a number, got True"),
])
def test_mobilenet_bad_width_multiplier(value, error, message):
    with pytest.raises(error) as info:
        du.mobilenet_v1(value)
    assert message in str(info.value)


def test_mobilenet_other_bad_arguments():
    with pytest.raises(ValueError, match="num_classes must be positive, got 0"):
        du.mobilenet_v1(num_classes=0)
    with pytest.raises(TypeError, match="separable must be True or False, got 'no'"):
        du.mobilenet_v1(separable="no")
    with pytest.raises(ValueError, match="num_classes must be positive, got -1"):
        du.mobilenet_v2(num_classes=-1)


@pytest.mark.parametrize("in_channels, out_channels, stride, t", [(24, 24, 1, 6), (16, 24, 2, 6), (32, 16, 1, 1),
                                                                   (64, 96, 1, 6)])
def test_inverted_residual_cost(in_channels, out_channels, stride, t):
    h = w = 28
    block = du.InvertedResidual(in_channels, out_channels, stride, t)
    x = torch.zeros(1, in_channels, h, w)
    hidden = in_channels * t
    h2 = math.floor((h + 2 - 3) / stride) + 1
    expand = h * w * in_channels * hidden if t != 1 else 0
    expected = expand + h2 * h2 * hidden * (9 + out_channels)
    assert du.count_mults(block, x) == expected
    if stride == 1 and t != 1:  # the paper's h*w*d'*t*(d' + k^2 + d'')
        assert expected == h * w * in_channels * t * (in_channels + 9 + out_channels)
    assert block.use_shortcut == (stride == 1 and in_channels == out_channels)
    assert block(x).shape == (1, out_channels, h2, h2)


def test_inverted_residual_adds_its_input_and_projects_linearly():
    torch.manual_seed(0)
    block = du.InvertedResidual(8, 8, 1, 6).eval()
    x = torch.randn(1, 8, 10, 10)
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.layers(x))
        assert (block.layers(x) < 0).any()  # no ReLU after the projection
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in list(block.layers.children())[-2:])


def test_mobilenet_v2_counts():
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    size, channels = 112, 32
    mults = 9 * 3 * 32 * size * size
    for t, c, n, s in settings:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = channels * t
            expand = size * size * channels * hidden if t != 1 else 0
            size = math.floor((size + 2 - 3) / stride) + 1
            mults += expand + size * size * hidden * (9 + c)
            channels = c
    mults += size * size * channels * 1280 + 1280 * 1000
    model = du.mobilenet_v2()
    assert du.count_mults(model, torch.zeros(1, 3, 224, 224)) == mults
    assert abs(mults / 1e6 - 300) < 1.5
