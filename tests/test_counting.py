"""Section 3 of dsc_utils: closed forms == count_mults == FlopCounterMode / 2, on every input."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import dsc_utils as du


def flop_counter_macs(model, *inputs) -> int:
    """Multiply-accumulates according to PyTorch's own counter (which reports 2 FLOPs per MAC)."""
    flops = du.torch_flops(model, *inputs)
    assert flops % 2 == 0
    return flops // 2


def test_torch_flops_is_flop_counter_mode_and_leaves_the_model_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(x)
    assert du.torch_flops(net, x) == counter.get_total_flops() == 2 * 2 * 27 * 4 * 36
    assert net.training and torch.equal(net[1].running_mean, torch.zeros(4)) is False  # the direct run moved it
    before = net[1].running_mean.clone()
    du.torch_flops(net, x)
    assert torch.equal(net[1].running_mean, before) and net.training


conv2d_args = st.fixed_dictionaries({
    "groups": st.integers(1, 4),
    "channels_per_group": st.integers(1, 4),
    "outputs_per_group": st.integers(1, 4),
    "kernel_size": st.integers(1, 5),
    "stride": st.integers(1, 3),
    "padding": st.integers(0, 2),
    "dilation": st.integers(1, 2),
    "size": st.integers(5, 20),
    "batch": st.integers(1, 3),
    "bias": st.booleans(),
})


@given(conv2d_args)
def test_conv2d_formula_equals_count_mults_equals_flop_counter(a):
    assume(a["dilation"] * (a["kernel_size"] - 1) + 1 <= a["size"] + 2 * a["padding"])
    in_channels = a["groups"] * a["channels_per_group"]
    out_channels = a["groups"] * a["outputs_per_group"]
    conv = nn.Conv2d(in_channels, out_channels, a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                     groups=a["groups"], bias=a["bias"])
    x = torch.zeros(a["batch"], in_channels, a["size"], a["size"])
    output_size = du.conv_output_size(a["size"], a["kernel_size"], a["stride"], a["padding"], a["dilation"])
    counted = du.count_mults(conv, x)
    assert counted == flop_counter_macs(conv, x)
    if a["groups"] == 1:
        formula = du.standard_conv_mults(in_channels, out_channels, a["kernel_size"], output_size)
    else:  # each group is a standard convolution of its own channels
        formula = a["groups"] * du.standard_conv_mults(a["channels_per_group"], a["outputs_per_group"],
                                                       a["kernel_size"], output_size)
    assert counted == a["batch"] * formula


@given(
    in_channels=st.integers(1, 8),
    out_channels=st.integers(1, 8),
    kernel_size=st.integers(1, 5),
    depth_multiplier=st.integers(1, 3),
    stride=st.integers(1, 2),
    size=st.integers(5, 16),
)
def test_separable_formulas_equal_count_mults_and_flop_counter(in_channels, out_channels, kernel_size,
                                                              depth_multiplier, stride, size):
    hidden = in_channels * depth_multiplier
    depthwise = nn.Conv2d(in_channels, hidden, kernel_size, stride, padding=kernel_size // 2,
                          groups=in_channels, bias=False)
    pointwise = nn.Conv2d(hidden, out_channels, 1, bias=False)
    x = torch.zeros(1, in_channels, size, size)
    output_size = du.conv_output_size(size, kernel_size, stride, kernel_size // 2)
    assert du.count_mults(depthwise, x) == du.depthwise_conv_mults(in_channels, kernel_size, output_size,
                                                                    depth_multiplier)
    y = depthwise(x)
    assert du.count_mults(pointwise, y) == du.pointwise_conv_mults(hidden, out_channels, output_size)
    both = nn.Sequential(depthwise, pointwise)
    expected = du.separable_conv_mults(in_channels, out_channels, kernel_size, output_size, depth_multiplier)
    assert du.count_mults(both, x) == flop_counter_macs(both, x) == expected


@given(
    in_channels=st.integers(1, 6), out_channels=st.integers(1, 6), kernel_size=st.integers(1, 5),
    stride=st.integers(1, 3), groups=st.sampled_from([1, 2]), length=st.integers(5, 30),
)
def test_conv1d_count_matches_flop_counter(in_channels, out_channels, kernel_size, stride, groups, length):
    conv = nn.Conv1d(in_channels * groups, out_channels * groups, kernel_size, stride, groups=groups)
    x = torch.zeros(2, in_channels * groups, length)
    assume(kernel_size <= length)
    output_size = du.conv_output_size(length, kernel_size, stride)
    expected = 2 * groups * du.standard_conv_mults(in_channels, out_channels, (kernel_size,), (output_size,))
    assert du.count_mults(conv, x) == flop_counter_macs(conv, x) == expected


@given(in_features=st.integers(1, 50), out_features=st.integers(1, 50), batch=st.integers(1, 4))
def test_linear_count_matches_flop_counter(in_features, out_features, batch):
    layer = nn.Linear(in_features, out_features)
    x = torch.zeros(batch, in_features)
    assert du.count_mults(layer, x) == flop_counter_macs(layer, x) == batch * in_features * out_features


def test_transposed_conv_count_matches_flop_counter():
    layer = nn.ConvTranspose2d(6, 4, 3, stride=2, groups=2)
    x = torch.zeros(1, 6, 7, 7)
    assert du.count_mults(layer, x) == flop_counter_macs(layer, x) == 6 * 49 * 2 * 9


def test_worked_example_counts():
    conv = nn.Conv2d(3, 64, 5, stride=2)
    x = torch.zeros(1, 3, 228, 228)
    assert du.count_mults(conv, x) == flop_counter_macs(conv, x) == 5 * 5 * 3 * 64 * 112 * 112


def test_tuple_sizes_equal_products():
    assert du.standard_conv_mults(2, 3, (3, 5), (7, 11)) == 3 * 5 * 2 * 3 * 7 * 11
    assert du.depthwise_conv_mults(4, 3, (7, 11)) == 9 * 4 * 77
    assert du.pointwise_conv_mults(4, 5, (7, 11)) == 4 * 5 * 77


def test_separable_ratio_is_one_over_n_plus_one_over_k_squared():
    from fractions import Fraction

    for n in (1, 3, 32, 512, 1024):
        for k in (1, 3, 5, 7):
            ratio = Fraction(du.separable_conv_mults(16, n, k, 14), du.standard_conv_mults(16, n, k, 14))
            assert ratio == Fraction(1, n) + Fraction(1, k * k)


# --------------------------------------------------------------------------------------------------
# layer_costs / count_mults behaviour
# --------------------------------------------------------------------------------------------------

def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.Conv2d(8, 16, 1, bias=False),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def test_layer_costs_records_every_counted_layer():
    net = small_net()
    costs = du.layer_costs(net, torch.zeros(2, 3, 16, 16))
    assert [c.name for c in costs] == ["0", "3", "4", "7"]
    assert [c.kind for c in costs] == ["Conv2d", "Conv2d", "Conv2d", "Linear"]
    assert costs[0].output_shape == (2, 8, 8, 8)
    assert [c.mults for c in costs] == [2 * 27 * 8 * 64, 2 * 9 * 8 * 64, 2 * 8 * 16 * 64, 2 * 16 * 10]
    assert [c.params for c in costs] == [216, 72, 128, 170]
    assert du.count_mults(net, torch.zeros(2, 3, 16, 16)) == sum(c.mults for c in costs)


def test_count_mults_leaves_the_model_as_it_was():
    net = small_net().train()
    with torch.no_grad():
        net[1].running_mean.fill_(0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    du.count_mults(net, torch.randn(4, 3, 16, 16))
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(not m._forward_hooks for m in net.modules())


def test_shared_layer_is_counted_at_every_call():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    x = torch.zeros(1, 4, 8, 8)
    assert du.count_mults(Twice(), x) == 2 * du.standard_conv_mults(4, 4, 3, 8)


def test_cost_table_rows_and_total():
    table = du.cost_table(small_net(), torch.zeros(1, 3, 16, 16))
    assert len(table.rows) == 5
    total = du.count_mults(small_net(), torch.zeros(1, 3, 16, 16))
    assert table.rows[-1][0] == "total" and table.rows[-1][3] == f"{total:,}"


def count_mults(model, inputs=(torch.zeros(1, 4, 4),)):
    """count_mults with its variadic inputs as one keyword, so it fits the table below."""
    return du.count_mults(model, *inputs)


BAD_INPUTS = [
    (du.standard_conv_mults, dict(in_channels=0, out_channels=4, kernel_size=3, output_size=8), ValueError,
     "in_channels must be positive, got 0"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=-4, kernel_size=3, output_size=8), ValueError,
     "out_channels must be positive, got -4"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=0, output_size=8), ValueError,
     "kernel_size must be positive, got 0"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=3, output_size=0), ValueError,
     "output_size must be positive, got 0"),
    (du.standard_conv_mults, dict(in_channels=3.5, out_channels=4, kernel_size=3, output_size=8), TypeError,
     "in_channels must be an integer, got 3.5"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=(3, 0), output_size=8), ValueError,
     "kernel_size[1] must be positive, got 0"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=(3, 3), output_size=(8, 8, 8)),
     ValueError, "same number of dimensions"),
    (du.standard_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=(), output_size=8), ValueError,
     "kernel_size must not be empty"),
    (du.depthwise_conv_mults, dict(in_channels=3, kernel_size=3, output_size=8, depth_multiplier=0), ValueError,
     "depth_multiplier must be positive, got 0"),
    (du.depthwise_conv_mults, dict(in_channels=-3, kernel_size=3, output_size=8), ValueError,
     "in_channels must be positive, got -3"),
    (du.pointwise_conv_mults, dict(in_channels=3, out_channels=0, output_size=8), ValueError,
     "out_channels must be positive, got 0"),
    (du.pointwise_conv_mults, dict(in_channels=3, out_channels=4, output_size="8"), TypeError,
     "output_size must be an integer, got '8'"),
    (du.separable_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=3, output_size=8, depth_multiplier=-2),
     ValueError, "depth_multiplier must be positive, got -2"),
    (du.separable_conv_mults, dict(in_channels=3, out_channels=4, kernel_size=None, output_size=8), TypeError,
     "kernel_size must be an integer, got None"),
    (count_mults, dict(model="not a model"), TypeError, "model must be a torch.nn.Module, got 'not a model'"),
    (count_mults, dict(model=nn.Linear(2, 2), inputs=()), ValueError, "at least one input"),
    (count_mults, dict(model=nn.LSTM(4, 4)), TypeError, "'(model)' of type LSTM"),
    (du.torch_flops, dict(model=[1, 2]), TypeError, "model must be a torch.nn.Module, got [1, 2]"),
]


@pytest.mark.parametrize("function, kwargs, error, message", BAD_INPUTS,
                         ids=[f"{f.__name__}-{i}" for i, (f, *_) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_a_clear_error(function, kwargs, error, message):
    with pytest.raises(error) as info:
        function(**kwargs)
    assert message in str(info.value)


# --------------------------------------------------------------------------------------------------
# adversarial inputs: each used to give a wrong number or an internal crash
# --------------------------------------------------------------------------------------------------

def test_separable_formula_of_a_1d_layer_with_an_integer_output_size():
    """Issue case 1: the pointwise part took the integer output size as a square."""
    assert du.separable_conv_mults(16, 32, (3,), 100) == 3 * 16 * 100 + 16 * 32 * 100 == 56_000
    assert du.separable_conv_mults(4, 8, (3, 3, 3), 5) == 27 * 4 * 125 + 4 * 8 * 125
    assert du.separable_conv_mults(4, 8, 3, (5, 7)) == 9 * 4 * 35 + 4 * 8 * 35


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_formulas_and_counters_agree_in_every_dimension(dims):
    conv_type = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dims]
    depthwise, pointwise = conv_type(4, 8, 3, groups=4, bias=False), conv_type(8, 6, 1)
    x = torch.zeros(2, 4, *(7,) * dims)
    output = (5,) * dims
    both = nn.Sequential(depthwise, pointwise)
    expected = 2 * du.separable_conv_mults(4, 6, (3,) * dims, 5, depth_multiplier=2)
    assert expected == 2 * du.separable_conv_mults(4, 6, 3, output, depth_multiplier=2)
    assert du.count_mults(both, x) == flop_counter_macs(both, x) == expected
    assert du.count_mults(depthwise, x) == 2 * du.standard_conv_mults(4, 8, (3,) * dims, output, groups=4)


class FunctionalDepthwise(nn.Module):
    """Issue case 2: a depthwise convolution written as F.conv2d in forward, then an nn.Conv2d."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 1, 3, 3))
        self.pointwise = nn.Conv2d(8, 16, 1)

    def forward(self, x):
        return self.pointwise(F.conv2d(x, self.weight, padding=1, groups=8))


def test_functional_work_is_counted_and_attributed_to_the_model():
    x = torch.randn(1, 8, 16, 16)
    model = FunctionalDepthwise()
    assert du.count_mults(model, x) == flop_counter_macs(model, x) == 9 * 8 * 256 + 8 * 16 * 256 == 51_200
    costs = du.layer_costs(model, x)
    assert [(c.name, c.kind, c.mults, c.params) for c in costs] == [
        ("pointwise", "Conv2d", 32_768, 144), ("", "FunctionalDepthwise", 18_432, 72)]
    assert costs[1].input_shape == (1, 8, 16, 16) and costs[1].output_shape == (1, 16, 16, 16)
    assert du.cost_table(model, x).rows[1][0] == "(model)"
    assert du.count_mults_with_hooks(model, x) == 32_768  # the hooks of the chapter miss it


class Operators(nn.Module):
    """Matrix products written every way PyTorch offers, inside a submodule and at top level."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(6, 6)
        self.w = nn.Parameter(torch.randn(6, 5))

    def forward(self, x):                           # x: (2, 3, 6)
        y = self.inner(x)                           # Linear on a 3-D input: 2*3*6*6
        y = y @ self.w                              # matmul -> mm: 2*3*6*5
        z = torch.bmm(y, y.transpose(1, 2))         # 2 * 3*5*3
        z = torch.mm(z[0], z[1])                    # 3*3*3
        z = F.linear(z, torch.ones(4, 3))           # 3*3*4
        return torch.einsum("ij,jk->ik", z, torch.ones(4, 2))  # 3*4*2


def test_every_matrix_product_is_counted():
    x = torch.randn(2, 3, 6)
    expected = 2 * 3 * 6 * 6 + 2 * 3 * 6 * 5 + 2 * 3 * 5 * 3 + 27 + 36 + 24
    model = Operators()
    assert du.count_mults(model, x) == flop_counter_macs(model, x) == expected
    costs = du.layer_costs(model, x)
    assert [(c.name, c.mults) for c in costs] == [("inner", 216), ("", expected - 216)]


def test_matrix_vector_products_are_counted_where_flop_counter_mode_is_not():
    layer = nn.Linear(10, 5)
    assert du.count_mults(layer, torch.zeros(10)) == 50  # unbatched input
    vector = nn.Module()
    vector.forward = lambda x: torch.mv(torch.ones(4, 3), x) @ torch.ones(4)
    assert du.count_mults(vector, torch.zeros(3)) == 12 + 4


def test_a_module_called_with_a_keyword_argument():
    """Issue case 3: the hook read args[0] of an empty tuple."""
    class Keyword(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 4, 3)

        def forward(self, x):
            return self.conv(input=x)

    x = torch.zeros(1, 8, 10, 10)
    expected = 4 * 8 * 8 * 72
    assert du.count_mults(Keyword(), x) == du.count_mults_with_hooks(Keyword(), x) == expected
    costs = du.layer_costs(Keyword(), x)
    assert costs[0].input_shape == (1, 8, 10, 10) and costs[0].mults == expected


def test_a_model_whose_forward_takes_keywords_only():
    class KeywordsOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, *, features, scale=2.0):
            return self.linear(features) * scale

    assert du.count_mults(KeywordsOnly(), features=torch.zeros(5, 4)) == 60
    assert du.torch_flops(KeywordsOnly(), features=torch.zeros(5, 4), scale=1.0) == 120
    assert du.cost_table(KeywordsOnly(), features=torch.zeros(5, 4)).rows[-1][3] == "60"


def mixed_modes_net() -> nn.Module:
    net = small_net().train()
    net[1].eval()  # a frozen batch norm inside a training model
    net[3].weight.requires_grad_(False)
    with torch.no_grad():
        net[1].running_mean.fill_(0.5)
    return net


@pytest.mark.parametrize("count", [du.count_mults, du.layer_costs, du.cost_table, du.torch_flops,
                                   du.count_mults_with_hooks])
def test_counting_leaves_every_module_as_it_was(count):
    """Issue case 4: counting used to put every submodule back in training mode."""
    net = mixed_modes_net()
    net[0].register_forward_hook(lambda *args: None)
    modes = [m.training for m in net.modules()]
    grads = [p.requires_grad for p in net.parameters()]
    hooks = [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in net.modules()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    count(net, torch.randn(4, 3, 16, 16))
    assert [m.training for m in net.modules()] == modes == [True, True, False] + [True] * 6
    assert [p.requires_grad for p in net.parameters()] == grads
    assert [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in net.modules()] == hooks
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_buffers_changed_or_replaced_by_forward_are_restored():
    class Counter(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("calls", torch.zeros(()))
            self.register_buffer("last", torch.zeros(2))
            self.linear = nn.Linear(2, 2)

        def forward(self, x):
            self.calls += 1                 # in place
            self.last = x[0].detach()       # a new tensor
            return self.linear(x)

    model = Counter()
    calls, last = model.calls, model.last
    assert du.count_mults(model, torch.ones(3, 2)) == 12
    assert model.calls is calls and model.last is last
    assert float(calls) == 0 and torch.equal(last, torch.zeros(2))


def test_shared_parameters_are_counted_once():
    """Issue case 5: one nn.Linear(10, 10) used twice gave 220 parameters in the total."""
    lin = nn.Linear(10, 10)
    model = nn.Sequential(lin, lin)
    x = torch.zeros(1, 10)
    costs = du.layer_costs(model, x)
    assert [(c.name, c.mults, c.params) for c in costs] == [("0", 100, 110), ("0", 100, 0)]
    assert du.cost_table(model, x).rows[-1][3:] == ["200", "110"]
    assert du.count_params(model) == 110 == sum(c.params for c in costs)


def test_cost_table_parameters_are_count_params_without_batch_norm():
    net = small_net()
    bn = sum(p.numel() for m in net.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    total = du.cost_table(net, torch.zeros(1, 3, 16, 16)).rows[-1][4]
    assert total == f"{du.count_params(net) - bn:,}"


@pytest.mark.parametrize("layer, x", [
    (nn.Conv2d(4, 6, 3, dilation=2, padding=2, padding_mode="reflect", bias=False), torch.zeros(2, 4, 9, 9)),
    (nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(1, 2), groups=2), torch.zeros(1, 4, 9, 9)),
    (nn.Conv1d(4, 4, 5, padding="same", groups=4), torch.zeros(3, 4, 20)),
    (nn.Conv3d(2, 4, (1, 3, 3), stride=(1, 2, 2)), torch.zeros(1, 2, 3, 8, 8)),
    (nn.ConvTranspose2d(6, 4, 3, stride=2, output_padding=1, groups=2, dilation=2), torch.zeros(1, 6, 5, 5)),
    (nn.ConvTranspose1d(3, 5, 4, stride=3, output_padding=2), torch.zeros(2, 3, 7)),
    (nn.ConvTranspose3d(2, 2, 2, stride=2), torch.zeros(1, 2, 3, 3, 3)),
    (nn.Linear(6, 4, bias=False), torch.zeros(2, 5, 6)),
    (nn.Conv2d(3, 4, 3), torch.zeros(0, 3, 8, 8)),                     # empty batch
    (nn.Conv2d(3, 4, 3), torch.zeros(3, 8, 8)),                        # unbatched
    (nn.GRU(4, 5, num_layers=2), torch.zeros(6, 2, 4)),
    (nn.MultiheadAttention(8, 2), (torch.zeros(5, 2, 8),) * 3),
])
def test_every_layer_kind_agrees_with_flop_counter_mode(layer, x):
    inputs = x if isinstance(x, tuple) else (x,)
    counted = du.count_mults(layer, *inputs)
    assert counted == flop_counter_macs(layer, *inputs)
    if isinstance(layer, nn.modules.conv._ConvNd):
        with torch.no_grad():
            output = layer(*inputs)
        assert counted == du.module_mults(layer, inputs[0], output) == du.count_mults_with_hooks(layer, *inputs)
        assert len(du.layer_costs(layer, *inputs)) == 1


def test_transposed_conv_counts_ignore_output_padding():
    plain = nn.ConvTranspose2d(4, 6, 3, stride=2)
    padded = nn.ConvTranspose2d(4, 6, 3, stride=2, output_padding=1)
    x = torch.zeros(1, 4, 5, 5)
    assert du.count_mults(plain, x) == du.count_mults(padded, x) == 25 * 4 * 6 * 9


def test_meta_device_models_are_counted_without_data():
    with torch.device("meta"):
        net = small_net()
    x = torch.empty(2, 3, 16, 16, device="meta")
    assert du.count_mults(net, x) == du.count_mults(small_net(), torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="meta device"):
        du.count_mults(small_net(), x)


def test_operators_that_cannot_be_counted_are_refused_not_missed():
    with pytest.raises(TypeError, match="'attention' of type MultiheadAttention"):
        class Wrap(nn.Module):
            def __init__(self):
                super().__init__()
                self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

            def forward(self, x):
                return self.attention(x, x, x)[0]

        du.count_mults(Wrap(), torch.zeros(2, 3, 8))
    with pytest.raises(TypeError, match="of type Bilinear"):
        du.count_mults(nn.Bilinear(3, 4, 5), torch.zeros(2, 3), torch.zeros(2, 4))


def test_a_model_that_fails_on_its_inputs_fails_at_the_call():
    with pytest.raises(ValueError, match=r"model fails on inputs of shapes \[\(1, 5, 8, 8\)\]"):
        du.count_mults(nn.Conv2d(3, 4, 3), torch.zeros(1, 5, 8, 8))
    with pytest.raises(TypeError, match="inputs must include at least one tensor, got \\(3,\\)"):
        du.count_mults(nn.Conv2d(3, 4, 3), 3)
    with pytest.raises(ValueError, match="at least one input"):
        du.cost_table(nn.Conv2d(3, 4, 3))


def test_module_mults_bad_arguments():
    with pytest.raises(TypeError, match="module must be a convolution or nn.Linear, got"):
        du.module_mults(nn.ReLU(), torch.zeros(1), torch.zeros(1))
    with pytest.raises(TypeError, match="output must be a tensor, got None"):
        du.module_mults(nn.Linear(1, 1), torch.zeros(1), None)
