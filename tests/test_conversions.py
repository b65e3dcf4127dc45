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


def convert_untouched(convert, model: nn.Module, x):
    """``convert(model)``, checked to leave ``model`` as it was, and the original's output on ``x``."""
    before = snapshot(model)
    expected = reference(model, x)
    converted = convert(model)
    assert_unchanged(model, before)
    return converted, expected


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
    folded, expected = convert_untouched(du.fold_batch_norms, model, x)
    with torch.no_grad():
        assert_same(folded(x), expected)
    assert not folded.training


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("model, x", odd_models())
def test_prepare_for_inference_keeps_every_models_outputs(model, x, memory_format):
    before = snapshot(model)
    prepared, expected = convert_untouched(
        lambda m: du.prepare_for_inference(m, memory_format), model, x)
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


# ------------------------------------------------------------------------------------------------
# quantize_weights, simulate_int8, equalize_cross_layer
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("model, x", odd_models())
def test_int8_conversions_run_with_the_right_shape_and_dtype(model, x, per_channel):
    before = snapshot(model)
    expected = reference(model, x)
    for converted in (du.quantize_weights(model, per_channel), du.simulate_int8(model, x, per_channel)):
        assert_unchanged(model, before)
        with torch.no_grad():
            got = converted(x)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        assert torch.isfinite(got).all() and du.sqnr_db(expected, got) > 15


def test_per_channel_weights_of_a_transposed_convolution_are_per_output_channel():
    # output channel j of group g is weight[g's inputs, j]: a tiny output channel keeps its precision
    conv = nn.ConvTranspose2d(4, 4, 1, groups=2, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0]], [[0.003]]], [[[-0.9]], [[0.002]]],
                                        [[[0.7]], [[0.5]]], [[[0.6]], [[-0.4]]]], dtype=torch.float64))
    rounded = du.quantize_weights(nn.Sequential(conv), per_channel=True)[0].weight
    assert torch.allclose(rounded, conv.weight, rtol=1 / 127, atol=0)


def test_simulate_int8_casts_a_float64_calibration_for_a_float32_network():
    model = du.digits_cnn(separable=True, dtype=torch.float32)
    x = torch.rand(8, 1, 8, 8, dtype=torch.float64)
    before = snapshot(model)
    simulated = du.simulate_int8(model, x)
    assert_unchanged(model, before)
    out = simulated(x.float())
    assert out.dtype == torch.float32 and out.shape == (8, 10)


@pytest.mark.parametrize("calibration, error, words", [
    (torch.rand(0, 1, 8, 8, dtype=torch.float64), ValueError, ["calibration", "(0, 1, 8, 8)"]),
    (torch.full((2, 1, 8, 8), float("nan"), dtype=torch.float64), ValueError, ["calibration", "NaN"]),
    (torch.ones(2, 1, 8, 8, dtype=torch.int64), TypeError, ["calibration", "floating-point"]),
    ([[1.0]], TypeError, ["calibration"]),
    (torch.rand(2, 3, 8, 8, dtype=torch.float64), ValueError, ["calibration", "fails"]),
])
def test_simulate_int8_refuses_a_bad_calibration_naming_it(calibration, error, words):
    with pytest.raises(error) as info:
        du.simulate_int8(du.digits_cnn(), calibration)
    assert_refused(info, *words)


class UnusedHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(4, 3), nn.Linear(3, 2)

    def forward(self, x):
        return self.body(x)


class UsedTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return self.linear(100 * x) + self.linear(x)         # the first call's range is the wider


def test_simulate_int8_refuses_a_layer_calibration_never_reaches():
    with pytest.raises(ValueError) as info:
        du.simulate_int8(UnusedHead().double(), torch.randn(4, 4, dtype=torch.float64))
    assert_refused(info, "'head'", "calibration")


def test_simulate_int8_ranges_a_shared_layer_over_all_its_calls_and_can_be_copied():
    torch.manual_seed(0)
    model = UsedTwice().double()
    x = torch.randn(64, 4, dtype=torch.float64)
    simulated = du.simulate_int8(model, x)
    with torch.no_grad():
        assert du.sqnr_db(model(x), simulated(x)) > 30
        assert torch.equal(copy.deepcopy(simulated)(x), simulated(x))


# ------------------------------------------------------------------------------------------------
# ONNX Runtime
# ------------------------------------------------------------------------------------------------

def test_onnxruntime_session_casts_a_float64_network_as_the_int8_session_does():
    model = du.randomize_batch_norms(du.digits_cnn()).eval()           # the module's own: float64
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    before = snapshot(model)
    run = du.onnxruntime_session(model, x)
    int8 = du.onnxruntime_int8_session(model, x, [x])
    assert_unchanged(model, before)
    expected = reference(model, x)
    got = run(x)
    assert got.dtype == torch.float32 and int8(x).dtype == torch.float32 and int8(x).shape == (4, 10)
    assert torch.allclose(got.double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model, x", [p for p in odd_models() if p.id in (
    "transposed-groups-2", "conv-1d", "view-lenet", "shared-twice", "linear-after-flatten",
    "bn-after-linear", "sequential-own-forward")])
def test_onnxruntime_session_keeps_every_models_outputs(model, x):
    run, expected = convert_untouched(lambda m: du.onnxruntime_session(m, x), model, x)
    got = run(x)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert torch.allclose(got.double(), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


def test_onnxruntime_sessions_refuse_bad_inputs_naming_them():
    model = nn.Sequential(nn.Conv2d(1, 2, 3))
    x = torch.rand(1, 1, 5, 5)
    for call in (lambda: du.onnxruntime_session(model, x.long()),
                 lambda: du.onnxruntime_int8_session(model, x.long(), [x]),
                 lambda: du.onnxruntime_int8_session(model, x, [x.long()])):
        with pytest.raises(TypeError) as info:
            call()
        assert_refused(info, "floating-point")
    with pytest.raises(ValueError) as info:
        du.onnxruntime_int8_session(model, x, [])
    assert_refused(info, "calibration")


class SharedSecond(nn.Module):
    """conv -> ReLU6 -> conv2 in a Sequential, conv2 used once more after it."""

    def __init__(self):
        super().__init__()
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.seq = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), self.conv2)

    def forward(self, x):
        return self.conv2(self.seq(x))


class ConvReluConvAdded(nn.Sequential):
    """A Sequential whose forward does not chain its children: conv(x) * relu(x) + conv2(x)."""

    def forward(self, x):
        return self[0](x) * self[1](x) + self[2](x)


@pytest.mark.parametrize("model, x", odd_models() + [
    pytest.param(du.mobilenet_block(4, 8).double().train(), torch.randn(2, 4, 8, 8, dtype=torch.float64),
                 id="mobilenet-block"),
    pytest.param(du.randomize_batch_norms(nn.Sequential(
        du.InvertedResidual(8, 8, 1, 6), du.InvertedResidual(8, 16, 2, 6))).double().train(),
                 torch.randn(1, 8, 8, 8, dtype=torch.float64), id="mobilenet-v2-blocks"),
    pytest.param(SharedSecond().double().train(), torch.randn(2, 3, 6, 6, dtype=torch.float64),
                 id="shared-second-conv"),
    pytest.param(ConvReluConvAdded(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 3, 1)).double(),
                 torch.randn(2, 3, 5, 5, dtype=torch.float64), id="sequential-own-forward-pair"),
])
def test_equalize_cross_layer_keeps_every_models_outputs(model, x):
    with torch.no_grad():                          # ranges far apart, so that equalizing changes them
        for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
            conv.weight.mul_(torch.linspace(0.01, 10, conv.out_channels, dtype=conv.weight.dtype)
                             .view(-1, *[1] * (conv.weight.dim() - 1)))
    equalized, expected = convert_untouched(du.equalize_cross_layer, model, x)
    with torch.no_grad():
        assert_same(equalized(x), expected, 1e-7)    # deep, with weights up to 10x: rounding


# ------------------------------------------------------------------------------------------------
# to_standard_conv and separable_decomposition
# ------------------------------------------------------------------------------------------------

def keras_same_separable():
    """A separable layer as from_keras builds it for Keras's uneven 'same' padding."""
    layer = du.DepthwiseSeparableConv2d(4, 6, 4, stride=2, depth_multiplier=2).double()
    same = du.KerasSameConv2d(4, 8, 4, stride=2, groups=4, bias=False).double()
    same.weight.data.copy_(layer.depthwise.weight.data)
    layer.depthwise = same
    return layer


@pytest.mark.parametrize("layer, x", [
    pytest.param(du.DepthwiseSeparableConv2d(4, 6, 3, stride=2, padding=2, dilation=2,
                                             depth_multiplier=3).double(),
                 torch.randn(2, 4, 9, 9, dtype=torch.float64), id="dilated-multiplier"),
    pytest.param(du.DepthwiseSeparableConv2d(3, 5, (3, 1), padding="same", padding_mode="reflect",
                                             bias=False).double(),
                 torch.randn(2, 3, 7, 7, dtype=torch.float64), id="same-reflect-no-bias"),
    pytest.param(du.DepthwiseSeparableConv1d(4, 6, 5, padding=2, depth_multiplier=2).double(),
                 torch.randn(2, 4, 11, dtype=torch.float64), id="1d"),
    pytest.param(keras_same_separable(), torch.randn(2, 4, 9, 8, dtype=torch.float64), id="keras-same"),
    pytest.param(du.fold_batch_norms(nn.Sequential(du.DepthwiseSeparableConv2d(3, 4, 3).double(),
                                                   nn.BatchNorm2d(4).double()))[0],
                 torch.randn(2, 3, 6, 6, dtype=torch.float64), id="folded"),
])
def test_to_standard_conv_computes_what_the_layer_computes(layer, x):
    layer.train()
    conv, expected = convert_untouched(du.to_standard_conv, layer, x)
    with torch.no_grad():
        assert_same(conv(x), expected)


def test_to_standard_conv_refuses_replaced_parts_naming_them():
    layer = du.DepthwiseSeparableConv2d(4, 6, 3)
    layer.pointwise = nn.Sequential(nn.Conv2d(4, 6, 1))
    with pytest.raises(TypeError) as info:
        du.to_standard_conv(layer)
    assert_refused(info, "layer.pointwise", "Sequential")
    layer = du.DepthwiseSeparableConv2d(4, 6, 3)
    layer.depthwise = nn.Conv2d(4, 4, 3, stride=2, groups=4)
    with pytest.raises(ValueError) as info:
        du.to_standard_conv(layer)
    assert_refused(info, "layer.depthwise", "stride")


@pytest.mark.parametrize("conv, x", [
    pytest.param(nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=2).double(),
                 torch.randn(2, 3, 9, 9, dtype=torch.float64), id="dilated-strided"),
    pytest.param(nn.Conv2d(3, 4, (2, 3), padding="same", padding_mode="circular", bias=False).double(),
                 torch.randn(2, 3, 6, 6, dtype=torch.float64), id="same-circular"),
    pytest.param(du.KerasSameConv2d(3, 4, 4, stride=2).double(),
                 torch.randn(2, 3, 9, 8, dtype=torch.float64), id="keras-same"),
])
def test_separable_decomposition_at_full_rank_computes_what_the_conv_computes(conv, x):
    conv.train()
    layer, expected = convert_untouched(du.separable_decomposition, conv, x)
    with torch.no_grad():
        assert_same(layer(x), expected)
        assert_same(du.to_standard_conv(layer)(x), expected)


class DoubledConv(nn.Conv2d):
    def forward(self, x):
        return 2 * super().forward(x)


def test_separable_decomposition_refuses_a_conv_subclass_naming_it():
    with pytest.raises(TypeError) as info:
        du.separable_decomposition(DoubledConv(3, 4, 3))
    assert_refused(info, "DoubledConv", "conv")


# ------------------------------------------------------------------------------------------------
# from_keras
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras():
    return du.import_keras()


def test_from_keras_refuses_a_keras_ops_call_instead_of_dropping_it(keras):
    inputs = keras.Input((4,))
    outputs = keras.ops.relu(keras.layers.Dense(3)(inputs)) * 2.0
    model = keras.Model(inputs, outputs)
    with pytest.raises(TypeError) as info:
        du.from_keras(model)
    assert_refused(info, "'relu'", "keras.ops")
    # the same computation in layers converts, and computes what Keras computes
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Add()([x, x]))
    data = torch.randn(5, 4)
    expected = torch.as_tensor(model(data.numpy())).detach().cpu()
    assert torch.allclose(du.from_keras(model)(data), expected, atol=1e-6)


def test_from_keras_refuses_a_layer_called_with_training_true(keras):
    inputs = keras.Input((4,))
    x = keras.layers.Dropout(0.5, name="always")(keras.layers.Dense(3)(inputs), training=True)
    with pytest.raises(TypeError) as info:
        du.from_keras(keras.Model(inputs, x))
    assert_refused(info, "'always'", "training=True")


def test_from_keras_returns_the_models_output_not_the_last_layer(keras):
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="first")(inputs)
    keras.layers.Dense(2, name="unused")(x)          # a dead branch, not part of the model
    model = keras.Model(inputs, x)
    data = torch.randn(5, 4)
    expected = torch.as_tensor(model(data.numpy())).detach().cpu()
    got = du.from_keras(model)(data)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6)
