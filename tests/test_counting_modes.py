"""Issue 33: every counting function gives the same count in every mode a reader runs a model in
(train, eval, no_grad, inference_mode inside the forward and around the call, in-place products),
refuses what it cannot count, and leaves the model exactly as it was."""
from __future__ import annotations

import contextlib
import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

import dsc_utils as du


def flop_counter_mults(model, x) -> int:
    """FlopCounterMode's total / 2 on an evaluation-mode forward pass, on a copy of the model."""
    import copy

    copy_ = copy.deepcopy(model).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        copy_(x)
    return counter.get_total_flops() // 2


class InPlace(nn.Module):
    """A forward doing its products in place: addmm_ and baddbmm_ (FlopCounterMode misses both)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 5))
        self.v = nn.Parameter(torch.randn(2, 5, 3))

    def forward(self, x):                           # x: (2, 3, 4)
        y = torch.zeros(6, 5)
        y.addmm_(x.reshape(6, 4), self.w)           # 6*4*5 = 120
        z = torch.zeros(2, 3, 3)
        z.baddbmm_(y.reshape(2, 3, 5), self.v)      # 2*3*5*3 = 90
        return z


IN_PLACE_MULTS = 6 * 4 * 5 + 2 * 3 * 5 * 3


def models():
    """(name, model factory, input, expected MACs, whether the forward hooks see all of the work)."""
    torch.manual_seed(0)
    return [
        ("linear", lambda: nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)),
         torch.randn(3, 4), 3 * (4 * 8 + 8 * 2), True),
        ("conv_bn", lambda: nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                                          nn.Conv2d(6, 4, 3, stride=2), nn.BatchNorm2d(4)),
         torch.randn(2, 3, 8, 8), None, True),
        ("separable", lambda: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.BatchNorm2d(4),
                                            nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8)),
         torch.randn(2, 4, 6, 6), 2 * 36 * (4 * 9 + 4 * 8), True),
        ("mobilenet_blocks", lambda: nn.Sequential(du.mobilenet_block(3, 8, stride=2),
                                                   du.mobilenet_block(8, 16)),
         torch.randn(2, 3, 8, 8), None, True),
        ("in_place", InPlace, torch.randn(2, 3, 4), IN_PLACE_MULTS, False),
    ]


MODELS = models()
IDS = [m[0] for m in MODELS]


@contextlib.contextmanager
def mode(name, model):
    if name == "train":
        model.train()
    elif name == "eval":
        model.eval()
    with (torch.no_grad() if name == "no_grad" else
          torch.inference_mode() if name == "inference_mode" else contextlib.nullcontext()):
        yield


MODES = ["train", "eval", "no_grad", "inference_mode", "prepared"]


def expected(entry) -> int:
    name, build, x, mults, _ = entry
    counted = flop_counter_mults(build(), x)
    if mults is None:
        return counted
    assert counted in (mults, 0)                    # 0: FlopCounterMode misses in-place products
    return mults


@pytest.mark.parametrize("entry", MODELS, ids=IDS)
@pytest.mark.parametrize("how", MODES)
def test_every_counter_in_every_mode(entry, how):
    name, build, x, _, hooked = entry
    right = expected(entry)
    assert right > 0
    model = build()
    if how == "prepared":                           # inference_mode inside the model's forward
        model = du.prepare_for_inference(model)
    with mode(how, model):
        assert du.count_mults(model, x) == right
        assert sum(c.mults for c in du.layer_costs(model, x)) == right
        assert du.cost_table(model, x).rows[-1][3] == f"{right:,}"
        if hooked:
            assert du.count_mults_with_hooks(model, x) == right
        if name != "in_place":                      # FlopCounterMode misses in-place products
            assert du.torch_flops(model, x) == 2 * right
        rows = du.training_mults(model, x)
        assert sum(r["forward"] for r in rows) == right


def test_issue_examples():
    """The issue's own numbers, by hand: 3*(4*8 + 8*2) = 144; 4*3*3*3*3*3 = 972; a transposed
    convolution multiplies each input element by every weight of its group: 25*8*4*9 = 7200."""
    linear = du.prepare_for_inference(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    assert du.count_mults(linear, torch.randn(3, 4)) == 144
    conv = du.prepare_for_inference(nn.Sequential(nn.Conv2d(3, 4, 3)))
    assert du.count_mults(conv, torch.randn(1, 3, 5, 5)) == 972
    (row,) = du.training_mults(nn.Sequential(nn.ConvTranspose2d(8, 4, 3, stride=2)), torch.randn(1, 8, 5, 5))
    assert row["forward"] == 25 * 8 * 4 * 9 == 7200
    with torch.inference_mode():
        assert du.count_mults(nn.Conv2d(3, 4, 3), torch.randn(1, 3, 5, 5)) == 972


@pytest.mark.parametrize("product,mults", [
    (lambda a, b, c, A, B, C: c.addmm_(a, b), 3 * 4 * 5),
    (lambda a, b, c, A, B, C: C.baddbmm_(A, B), 2 * 3 * 4 * 5),
    (lambda a, b, c, A, B, C: c.addbmm_(A, B), 2 * 3 * 4 * 5),
    (lambda a, b, c, A, B, C: c[:, 0].addmv_(a, b[:, 0]), 3 * 4),
    (lambda a, b, c, A, B, C: torch.mm(a, b, out=c), 3 * 4 * 5),
    (lambda a, b, c, A, B, C: torch.matmul(A, B, out=C), 2 * 3 * 4 * 5),
    (lambda a, b, c, A, B, C: torch.bmm(A, B, out=C), 2 * 3 * 4 * 5),
    (lambda a, b, c, A, B, C: torch._C._nn.linear(a, b.T, out=c), 3 * 4 * 5),
], ids=["addmm_", "baddbmm_", "addbmm_", "addmv_", "mm_out", "matmul_out", "bmm_out", "linear_out"])
@pytest.mark.parametrize("inference", [False, True])
def test_in_place_and_out_products(product, mults, inference):
    class Product(nn.Module):
        def forward(self, x):
            a, b, c = x[0, :3, :4], x[1, :4, :5], torch.zeros(3, 5)
            A, B, C = x[:2, :3, :4], x[:2, :4, :5], torch.zeros(2, 3, 5)
            product(a, b, c, A, B, C)
            return c, C

    x = torch.randn(2, 5, 5)
    with torch.inference_mode(inference):
        assert du.count_mults(Product(), x) == mults
        assert sum(r["forward"] for r in du.training_mults(Product(), x)) == mults


def jit(how, module):
    with warnings.catch_warnings():                 # torch.jit is deprecated, not gone
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(module) if how == "script" else torch.jit.trace(module, torch.randn(1, 3, 5, 5))


SCRIPTED = [
    ("script", lambda: jit("script", nn.Conv2d(3, 4, 3)), "model"),
    ("trace", lambda: jit("trace", nn.Conv2d(3, 4, 3)), "model"),
    ("inside", lambda: nn.Sequential(nn.ReLU(), nn.Sequential(nn.Identity(), jit("script", nn.Conv2d(3, 4, 3)))),
     "model.1.1"),
]


@pytest.mark.parametrize("count", [du.count_mults, du.layer_costs, du.cost_table, du.count_mults_with_hooks,
                                   du.training_mults])
@pytest.mark.parametrize("kind,build,where", SCRIPTED, ids=[s[0] for s in SCRIPTED])
def test_scripted_modules_are_refused(count, kind, build, where):
    with pytest.raises(TypeError, match=rf"cannot count {where.replace('.', '[.]')}: it is a TorchScript module"):
        count(build(), torch.randn(1, 3, 5, 5))


@pytest.mark.parametrize("kind,build,where", SCRIPTED, ids=[s[0] for s in SCRIPTED])
def test_torch_flops_counts_scripted_modules(kind, build, where):
    assert du.torch_flops(build(), torch.randn(1, 3, 5, 5)) == 2 * 4 * 9 * 27  # FlopCounterMode sees it


# ---------------------------------------------------------------------------------------------------
# Training cost against FlopCounterMode, forward and backward
# ---------------------------------------------------------------------------------------------------

LAYERS = {
    "linear": (lambda: nn.Linear(6, 12, bias=False), (2, 5, 6)),
    "conv1d": (lambda: nn.Conv1d(6, 12, 3, padding=1, bias=False), (2, 6, 9)),
    "conv1d_grouped_dilated": (lambda: nn.Conv1d(6, 12, 3, dilation=2, groups=3, bias=False), (2, 6, 9)),
    "conv2d_dilated": (lambda: nn.Conv2d(6, 4, 3, dilation=2, padding=1, bias=False), (1, 6, 7, 7)),
    "conv2d_depthwise": (lambda: nn.Conv2d(6, 6, 3, stride=2, groups=6, bias=False), (1, 6, 7, 7)),
    "conv3d": (lambda: nn.Conv3d(3, 4, 3, padding=1, bias=False), (1, 3, 4, 4, 4)),
    "conv3d_grouped": (lambda: nn.Conv3d(4, 6, (1, 3, 3), groups=2, bias=False), (1, 4, 3, 5, 5)),
    "transposed1d": (lambda: nn.ConvTranspose1d(6, 4, 3, stride=2, bias=False), (2, 6, 5)),
    "transposed2d": (lambda: nn.ConvTranspose2d(8, 4, 3, stride=2, bias=False), (1, 8, 5, 5)),
    "transposed2d_grouped_dilated": (lambda: nn.ConvTranspose2d(6, 4, 3, stride=2, dilation=2, groups=2,
                                                                padding=1, output_padding=1, bias=False),
                                     (1, 6, 4, 4)),
    "transposed3d": (lambda: nn.ConvTranspose3d(4, 2, 2, stride=2, bias=False), (1, 4, 2, 3, 3)),
}


def hand_forward(layer, x) -> int:
    """The forward count by hand: a transposed convolution multiplies every input element by each
    weight of its group; the others compute every output as a dot product of (in / groups) * taps."""
    if isinstance(layer, nn.Linear):
        return math.prod(x.shape[:-1]) * layer.in_features * layer.out_features
    taps = math.prod(layer.kernel_size)
    if layer.transposed:
        return x.numel() * layer.out_channels // layer.groups * taps
    out = layer(x)
    return out.numel() * layer.in_channels // layer.groups * taps


@pytest.mark.parametrize("name", list(LAYERS))
def test_training_mults_match_flop_counter_for_every_kind(name):
    build, shape = LAYERS[name]
    layer = build()
    x = torch.randn(shape, requires_grad=True)
    (row,) = du.training_mults(layer, x)
    assert row["forward"] == row["grad_input"] == row["grad_weight"] == hand_forward(layer, x)
    with FlopCounterMode(display=False) as counter:
        layer(x).sum().backward()
    counts = {str(op): n // 2 for op, n in counter.get_flop_counts()["Global"].items()}
    groups = getattr(layer, "groups", 1)
    if isinstance(layer, nn.Linear):                # forward, then two products in the backward
        assert sum(counts.values()) == row["forward"] + row["grad_input"] + row["grad_weight"]
    else:                                           # FlopCounterMode counts the weight gradient
        assert counts["aten.convolution"] == row["forward"]     # of every group over all groups
        assert counts["aten.convolution_backward"] == row["grad_input"] + groups * row["grad_weight"]


def test_training_mults_in_every_mode():
    """The same three counts in train and eval mode, under no_grad and inference_mode around the
    call; the batch norms' statistics are left as they were."""
    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))

    x = torch.randn(2, 3, 6, 6)
    first, second = 16 * 4 * 27 * 2, 16 * 2 * 4 * 2
    want = [("0", "standard", first, 0, first), ("3", "pointwise", second, second, second)]
    for how in ("train", "eval", "no_grad", "inference_mode"):
        model = build()
        with mode(how, model):
            rows = du.training_mults(model, x)
        assert [tuple(r.values()) for r in rows] == want, how
        assert int(model[1].num_batches_tracked) == 0
        assert torch.equal(model[1].running_mean, torch.zeros(4))


def test_training_mults_costs_a_forward_that_multiplies_itself():
    (row,) = du.training_mults(InPlace(), torch.randn(2, 3, 4))
    # the input needs no gradient; y (from x and w) does: both products cost their gradients
    assert row == dict(name="", kind=None, forward=IN_PLACE_MULTS, grad_input=90, grad_weight=IN_PLACE_MULTS)


def test_training_mults_refuses_attention():
    """A fused attention kernel: two products of three operands, whose backward is not derived."""
    class Attend(nn.Module):
        def forward(self, x):
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(x, x, x)[0]

    x = torch.randn(1, 2, 4, 8)
    assert du.count_mults(Attend(), x) == 2 * 4 * 4 * (8 + 8)   # its forward is counted
    with pytest.raises(TypeError, match=r"cannot cost the backward pass of "
                                        r"aten._scaled_dot_product_flash_attention_for_cpu run by model:"):
        du.training_mults(Attend(), x)


# ---------------------------------------------------------------------------------------------------
# Reading a model leaves it as it was
# ---------------------------------------------------------------------------------------------------

class Scale(nn.Module):
    def forward(self, weight):
        return 2 * weight


def snapshot(model: nn.Module) -> dict:
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
             "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called", "_backward_hooks",
             "_state_dict_hooks", "_load_state_dict_pre_hooks")
    return dict(
        classes=[(name, type(m)) for name, m in model.named_modules()],
        training={name: m.training for name, m in model.named_modules()},
        hooks={name: {h: dict(getattr(m, h, {})) for h in hooks} for name, m in model.named_modules()},
        parameters={name: (p, p.detach().clone(), p.requires_grad, p.grad)
                    for name, p in model.named_parameters()},
        buffers={name: (b, b.clone()) for name, b in model.named_buffers()},
        parametrized=parametrize.is_parametrized(model[0]),
    )


def same(before: dict, after: dict) -> bool:
    if before.keys() != after.keys():
        return False
    for key in ("classes", "training", "hooks", "parametrized"):
        if before[key] != after[key]:
            return False
    for key in ("parameters", "buffers"):
        if before[key].keys() != after[key].keys():
            return False
        for name, old in before[key].items():
            new = after[key][name]
            if old[0] is not new[0] or not torch.equal(old[1], new[1]) or old[2:] != new[2:]:
                return False
    return True


READERS = {
    "count_mults": lambda m, x: du.count_mults(m, x),
    "layer_costs": lambda m, x: du.layer_costs(m, x),
    "count_mults_with_hooks": lambda m, x: du.count_mults_with_hooks(m, x),
    "torch_flops": lambda m, x: du.torch_flops(m, x),
    "cost_table": lambda m, x: du.cost_table(m, x),
    "training_mults": lambda m, x: du.training_mults(m, x),
    "count_params": lambda m, x: du.count_params(m),
    "param_table": lambda m, x: du.param_table(m),
    "counter_reports": lambda m, x: du.counter_reports(m, x),
    "separable_rank_limit": lambda m, x: du.separable_rank_limit(m[0]),
    "layer_kind": lambda m, x: [du.layer_kind(layer) for layer in m.modules()],
}


@pytest.mark.parametrize("reader", list(READERS))
def test_reading_a_model_leaves_it_as_it_was(reader):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                          nn.Conv2d(4, 4, 3, groups=4), nn.BatchNorm2d(4, momentum=None),
                          nn.Flatten(), nn.Linear(64, 3))
    parametrize.register_parametrization(model[0], "weight", Scale())
    model[7].weight.requires_grad_(False)
    model[4].register_forward_hook(lambda *args: None)
    model[1].register_forward_pre_hook(lambda *args: None)
    model.train()
    model[6].eval()                                 # a mix of modes
    x = torch.randn(2, 3, 8, 8)
    before = snapshot(model)
    READERS[reader](model, x)
    assert same(before, snapshot(model))
    assert du.count_mults(model, x) > 0             # the snapshot sees a change: the test can fail
    model(x)
    assert not same(before, snapshot(model))


def test_a_lazy_model_is_counted_uninitialized():
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(2))
    x = torch.randn(3, 4)
    assert du.count_mults(model, x) == 3 * (4 * 8 + 8 * 2)
    assert du.count_mults_with_hooks(model, x) == du.torch_flops(model, x) // 2 == 144
    assert sum(r["forward"] for r in du.training_mults(model, x)) == 144
    assert all(type(layer) is nn.LazyLinear and layer.has_uninitialized_params() for layer in model[::2])


def test_parameters_of_a_lazy_model_are_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LazyLinear(2))
    for read in (du.count_params, du.param_table):
        with pytest.raises(ValueError, match=r"model[.]1[.]weight is an uninitialized lazy parameter"):
            read(model)
    model(torch.randn(1, 3, 4, 4))                  # the linear layer acts on the last dimension, 2
    assert du.count_params(model) == 3 * 4 * 9 + 4 + 2 * 2 + 2
