"""dsc_utils.draw_filter_banks: the picture of a standard and a depthwise separable filter bank."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402
from torch import nn  # noqa: E402

import dsc_utils as du  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("m, n, k", [(3, 4, 3), (1, 1, 1), (8, 8, 7), (4, 6, 5), (2, 7, 1)])
def test_weights_are_those_of_the_real_layers(m, n, k):
    _, weights = du.draw_filter_banks(m, n, k)
    layer = du.DepthwiseSeparableConv2d(m, n, k, bias=False)
    assert weights == {
        "standard": nn.Conv2d(m, n, k, bias=False).weight.numel(),
        "depthwise": layer.depthwise.weight.numel(),
        "pointwise": layer.pointwise.weight.numel(),
    }
    assert weights["standard"] == k * k * m * n
    assert weights["depthwise"] + weights["pointwise"] == du.count_params(layer)


@pytest.mark.parametrize("m, n, k", [(3, 4, 3), (2, 5, 1)])
def test_one_box_of_three_faces_per_filter_in_the_book_colours(m, n, k):
    ax, _ = du.draw_filter_banks(m, n, k)
    faces = [p for p in ax.patches if isinstance(p, Polygon)]
    assert len(faces) == 3 * (n + m + n)                      # front, top and side of each box
    fronts = {kind: to_rgb(du.layer_color(kind)) for kind in ("standard", "depthwise", "pointwise")}
    colours = [tuple(round(c, 6) for c in p.get_facecolor()[:3]) for p in faces[::3]]
    expected = [fronts["standard"]] * n + [fronts["depthwise"]] * m + [fronts["pointwise"]] * n
    assert colours == [tuple(round(c, 6) for c in rgb) for rgb in expected]   # front faces
    # one grid cell per weight: a D_K x D_K front face spans D_K cells each way
    xs = [x for x, _ in faces[0].get_xy()]
    assert max(xs) - min(xs) == pytest.approx(k)


def test_draws_on_a_given_axes_and_states_the_totals():
    fig, ax = plt.subplots()
    drawn_on, weights = du.draw_filter_banks(3, 4, 3, ax=ax)
    assert drawn_on is ax and weights == {"standard": 108, "depthwise": 27, "pointwise": 12}
    text = " ".join(t.get_text() for t in ax.texts)
    assert "27 + 12 = 39 weights" in text and "against 108" in text
    assert not ax.axison


def test_a_new_figure_is_sized_to_its_content():
    small, _ = du.draw_filter_banks(2, 2, 2)
    large, _ = du.draw_filter_banks(8, 8, 7)
    assert large.figure.get_size_inches()[0] > small.figure.get_size_inches()[0] > 0


@pytest.mark.parametrize("kwargs, error, name", [
    ({"in_channels": 0}, ValueError, "in_channels"),
    ({"in_channels": 9}, ValueError, "in_channels"),
    ({"out_channels": 9}, ValueError, "out_channels"),
    ({"kernel_size": 8}, ValueError, "kernel_size"),
    ({"kernel_size": 3.0}, TypeError, "kernel_size"),
    ({"in_channels": True}, TypeError, "in_channels"),
    ({"ax": "axes"}, TypeError, "ax"),
])
def test_bad_arguments_raise_at_the_call_and_name_the_argument(kwargs, error, name):
    arguments = {"in_channels": 3, "out_channels": 4, "kernel_size": 3, **kwargs}
    with pytest.raises(error, match=name):
        du.draw_filter_banks(**arguments)
    assert plt.get_fignums() == []                            # nothing half drawn


def test_is_public_and_documented():
    assert "draw_filter_banks" in du.__all__
    doc = du.draw_filter_banks.__doc__
    for section in ("Args:", "Returns:", "Raises:", "Example:", "Howard et al. (2017)"):
        assert section in doc
