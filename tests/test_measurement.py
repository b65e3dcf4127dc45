"""Tests of prepare_for_inference: same outputs, folded batch norms, the original left alone."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import dsc_utils as du


@pytest.mark.parametrize("build, batch_norms", [
    (lambda: du.mobilenet_v1(0.25), 27),
    (lambda: du.mobilenet_v1(0.25, separable=False), 14),
    (lambda: du.mobilenet_v2(), 52),
    (lambda: du.mobilenet_block(8, 16, stride=2), 2),
])
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_same_outputs_with_batch_norms_folded(build, batch_norms, memory_format):
    torch.manual_seed(0)
    model = du.randomize_batch_norms(build()).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    channels = model[0].in_channels if isinstance(model[0], nn.Conv2d) else 3
    x = torch.randn(2, channels, 64, 64)
    prepared = du.prepare_for_inference(model, memory_format)
    assert prepared.folded_batch_norms == batch_norms
    assert not any(isinstance(m, nn.BatchNorm2d) for m in prepared.modules())
    assert all(not p.requires_grad for p in prepared.parameters())
    # the original is untouched: same state, still in training mode
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        expected = model.eval()(x)
    output = prepared(x)
    assert torch.allclose(output, expected, atol=1e-4, rtol=1e-4)
    assert torch.allclose(prepared(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-4, rtol=1e-4)


def test_prepared_weights_use_the_memory_format():
    prepared = du.prepare_for_inference(du.mobilenet_v1(0.25))
    conv = prepared.model.features.conv1.conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not torch.is_grad_enabled() or prepared(torch.zeros(1, 3, 32, 32)).requires_grad is False


def test_prepare_for_inference_bad_arguments():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got 'net'"):
        du.prepare_for_inference("net")
    with pytest.raises(ValueError, match="memory_format must be torch.channels_last or torch.contiguous_format"):
        du.prepare_for_inference(nn.Conv2d(1, 1, 1), memory_format=torch.channels_last_3d)


def counted(*names):
    """Functions that count their calls: (name -> calls so far, name -> function)."""
    calls = dict.fromkeys(names, 0)

    def make(name):
        def function():
            calls[name] += 1
        return function

    return calls, {name: make(name) for name in names}


def test_time_side_by_side_times_every_function_and_restores_threads():
    calls, functions = counted("a", "b")
    threads = torch.get_num_threads()
    medians = du.time_side_by_side(functions, threads=1, rounds=2, min_run_time=0.01, warmup=2)
    assert set(medians) == {"a", "b"} and all(m > 0 for m in medians.values())
    assert calls["a"] > 2 and calls["b"] > 2  # warm-up calls plus the timed blocks
    assert torch.get_num_threads() == threads


def test_time_blocks_gives_every_block_of_every_round_and_restores_threads():
    threads = torch.get_num_threads()
    blocks = du.time_blocks(counted("a", "b")[1], threads=1, rounds=3, min_run_time=0.01, warmup=1)
    assert set(blocks) == {"a", "b"} and torch.get_num_threads() == threads
    for name in blocks:
        assert len(blocks[name]) == 3 and all(len(one_round) >= 1 for one_round in blocks[name])
        assert all(t > 0 for one_round in blocks[name] for t in one_round)
    # min_run_time=None: one call per round, read off the clock
    calls, functions = counted("a", "b")
    single = du.time_blocks(functions, threads=1, rounds=2, min_run_time=None, warmup=1)
    assert calls == {"a": 3, "b": 3}
    assert all(len(one_round) == 1 for rounds_ in single.values() for one_round in rounds_)


def test_time_side_by_side_is_the_median_of_time_blocks(monkeypatch):
    blocks = {"a": [[1.0, 5.0], [2.0]], "b": [[4.0], [3.0, 9.0, 8.0]]}
    monkeypatch.setattr(du, "time_blocks", lambda *args: blocks)
    assert du.time_side_by_side({"a": print, "b": print}) == {"a": 2.0, "b": 6.0}
    with pytest.raises(TypeError, match="min_run_time must be a number of seconds, got None"):
        du.time_side_by_side({"a": print}, min_run_time=None)


def test_time_blocks_bad_min_run_time():
    with pytest.raises(ValueError, match="min_run_time must be a number of seconds > 0 and <= 3600, got -1"):
        du.time_blocks({"f": lambda: None}, min_run_time=-1)
    # an infinite time would never return; an hour is the most a block may take
    with pytest.raises(ValueError, match="min_run_time must be a number of seconds > 0 and <= 3600, got inf"):
        du.time_blocks({"f": lambda: None}, min_run_time=float("inf"))
    with pytest.raises(TypeError, match="functions must be a dict of name -> callable"):
        du.time_blocks([lambda: None])


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(functions={}), ValueError, "functions must name at least one function"),
    (dict(functions={"x": 3}), TypeError, "functions['x'] must be callable, got 3"),
    (dict(functions={"f": lambda: None}, threads=0), ValueError, "threads must be positive, got 0"),
    (dict(functions={"f": lambda: None}, rounds=0), ValueError, "rounds must be positive, got 0"),
    (dict(functions={"f": lambda: None}, warmup=-1), ValueError, "warmup must be at least 0, got -1"),
    (dict(functions={"f": lambda: None}, min_run_time=0), ValueError, "min_run_time must be a number of seconds > 0"),
    (dict(functions={"f": lambda: None}, min_run_time=float("inf")), ValueError, "<= 3600, got inf"),
    (dict(functions={"f": lambda: None}, threads=2**40), ValueError, "threads must be at most 1024"),
])
def test_time_side_by_side_bad_arguments(kwargs, error, message):
    with pytest.raises(error) as info:
        du.time_side_by_side(**kwargs)
    assert message in str(info.value)


def test_layer_shapes_are_mobilenets():
    shapes = du.mobilenet_v1_layer_shapes()
    assert len(shapes) == 13
    assert [(s["in_channels"], s["out_channels"], s["stride"], s["input_size"]) for s in shapes][:2] == \
        [(32, 64, 1, 112), (64, 128, 2, 112)]
    assert shapes[-1]["input_size"] == shapes[-1]["output_size"] == 7
    mults = sum(du.separable_conv_mults(s["in_channels"], s["out_channels"], 3, s["output_size"]) for s in shapes)
    model_mults = sum(c.mults for c in du.layer_costs(du.mobilenet_v1(), torch.zeros(1, 3, 224, 224))
                      if c.name.startswith("features.block"))
    assert mults == model_mults
    assert du.mobilenet_v1_layer_shapes(160)[-1]["output_size"] == 5
    with pytest.raises(ValueError, match="resolution must be positive, got 0"):
        du.mobilenet_v1_layer_shapes(0)


def test_a_batch_norm_without_running_statistics_is_left_in_place():
    """Issue case 7: fuse_conv_bn_eval stopped with an internal AssertionError."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.ReLU(),
                          nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    du.randomize_batch_norms(model)
    prepared = du.prepare_for_inference(model)
    assert prepared.folded_batch_norms == 1 and prepared.unfolded_batch_norms == ["1"]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model.eval()(x), atol=1e-5)


@pytest.mark.parametrize("conv, bn, shape", [
    (nn.Conv1d(3, 4, 3, padding=1), nn.BatchNorm1d(4), (2, 3, 10)),
    (nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4), (2, 3, 5, 6, 7)),
    (nn.ConvTranspose2d(3, 4, 3, stride=2, output_padding=1), nn.BatchNorm2d(4), (2, 3, 5, 5)),
    (nn.ConvTranspose1d(3, 4, 3, groups=1), nn.BatchNorm1d(4), (2, 3, 6)),
    (nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.BatchNorm2d(4, affine=False), (2, 3, 6, 6)),
])
def test_batch_norms_of_every_dimension_are_folded(conv, bn, shape):
    """Issue case 8: a 1-D model was returned and failed on its first call (channels-last input)."""
    torch.manual_seed(0)
    model = du.randomize_batch_norms(nn.Sequential(conv, bn, nn.ReLU()))
    prepared = du.prepare_for_inference(model)
    assert prepared.folded_batch_norms == 1 and prepared.unfolded_batch_norms == []
    x = torch.randn(*shape)
    with torch.no_grad():
        assert torch.allclose(prepared(x), model.eval()(x), atol=1e-5)


def test_a_batch_norm_that_does_not_follow_its_convolution_is_not_folded():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1), nn.ReLU())
    model2 = nn.Sequential(nn.Conv1d(3, 4, 1), nn.BatchNorm2d(4))  # wrong dimension: left alone
    assert du.prepare_for_inference(model).folded_batch_norms == 0
    assert du.prepare_for_inference(model2).unfolded_batch_norms == ["1"]


def test_a_mismatched_batch_norm_is_refused_with_its_name():
    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5)))
    with pytest.raises(ValueError, match="model's 0.1 normalizes 5 channels but follows 0.0 with 4"):
        du.prepare_for_inference(model)


def test_prepared_model_takes_keyword_inputs():
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, *, image):
            return self.conv(image)

    x = torch.randn(1, 3, 4, 4)
    model = Keyword()
    with torch.no_grad():
        assert torch.allclose(du.prepare_for_inference(model)(image=x), model(image=x))


def test_randomize_batch_norms_ranges_and_bad_arguments():
    bn = du.randomize_batch_norms(nn.Sequential(nn.BatchNorm1d(50), nn.BatchNorm3d(50, affine=False)))
    assert 0.5 <= float(bn[0].running_var.min()) and float(bn[0].running_var.max()) <= 2
    assert 0.5 <= float(bn[0].weight.detach().min()) and float(bn[1].running_mean.abs().max()) > 0
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got 3"):
        du.randomize_batch_norms(3)
    with pytest.raises(ValueError, match="seed must be at least 0, got -1"):
        du.randomize_batch_norms(nn.BatchNorm1d(2), seed=-1)
