"""dsc_utils.draw_dsc_data_flow: the data flowing through a depthwise separable convolution."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import dsc_utils as du  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def patches(ax, gid):
    return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() == gid]


def rgb(patch, part="face"):
    colour = patch.get_facecolor() if part == "face" else patch.get_edgecolor()
    return tuple(round(c, 6) for c in colour[:3])


def book(kind):
    return tuple(round(c, 6) for c in to_rgb(du.layer_color(kind)))


@pytest.mark.parametrize("m, n, k, size", [(3, 4, 3, 5), (2, 3, 3, 4), (1, 1, 1, 1),
                                           (6, 6, 1, 9), (4, 2, 5, 5), (2, 5, 2, 7)])
def test_shapes_are_those_of_the_real_layers(m, n, k, size):
    _, shapes = du.draw_dsc_data_flow(m, n, kernel_size=k, size=size)
    layer = du.DepthwiseSeparableConv2d(m, n, k, bias=False)
    x = torch.zeros(1, m, size, size)
    with torch.no_grad():
        hidden = layer.depthwise(x)
        y = layer.pointwise(hidden)
    assert shapes == {
        "input": tuple(x.shape[1:]),
        "depthwise": tuple(layer.depthwise.weight.shape),
        "intermediate": tuple(hidden.shape[1:]),
        "pointwise": tuple(layer.pointwise.weight.shape),
        "output": tuple(y.shape[1:]),
    }


@pytest.mark.parametrize("m, n, k, size", [(3, 4, 3, 5), (2, 3, 3, 4), (5, 2, 2, 6)])
def test_one_output_value_is_traced_through_both_steps(m, n, k, size):
    ax, shapes = du.draw_dsc_data_flow(m, n, kernel_size=k, size=size)
    g = shapes["output"][-1]
    # one D_K x D_K window in each of the M input maps, outlined in the depthwise colour
    windows = patches(ax, "window")
    assert len(windows) == m
    assert all(w.get_width() == w.get_height() == k for w in windows)
    assert {rgb(w, "edge") for w in windows} == {book("depthwise")}
    # the M values they produce, one per intermediate map, at the same position
    values = patches(ax, "traced-intermediate")
    assert len(values) == m and {rgb(v) for v in values} == {book("depthwise")}
    assert len({v.get_x() for v in values}) == 1                  # one column of the maps
    # the window starts at the traced position (D_G - 1) // 2 of its map, which starts at x = 0,
    # and intermediate map i is centred beside input map i: value i is at the window's position
    position = (g - 1) // 2
    assert all(w.get_x() == position for w in windows)
    for window, value in zip(windows, values):
        assert value.get_y() - window.get_y() == pytest.approx((size - g) / 2)
    # one pointwise filter of M weights, and the one output value it makes
    (weights,) = patches(ax, "traced-filter")
    assert (weights.get_width(), weights.get_height()) == (1, m)
    (output,) = patches(ax, "traced-output")
    assert rgb(output) == book("pointwise")


def test_the_filters_have_one_cell_per_weight_in_the_book_colours():
    m, n, k, size = 3, 4, 3, 5
    ax, shapes = du.draw_dsc_data_flow(m, n, kernel_size=k, size=size)
    unnamed = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() is None]
    faces = [rgb(p) for p in unnamed]
    assert faces.count(book("depthwise")) == m * k * k                # the depthwise weights
    assert faces.count(book("pointwise")) == n * m                    # the pointwise weights
    g = shapes["output"][-1]
    white = (1.0, 1.0, 1.0)
    assert faces.count(white) == m * size * size + m * g * g + n * g * g


def test_titles_state_the_shapes_and_the_trace():
    ax, _ = du.draw_dsc_data_flow(3, 4, kernel_size=3, size=5)
    text = " ".join(t.get_text() for t in ax.texts)
    for shape in ("= 3 × 5 × 5", "= 3 × 3 × 3", "= 4 × 1 × 1 × 3", "= 4 × 3 × 3"):
        assert shape in text
    assert "3×3×3 = 27 inputs" in text
    assert not ax.axison


def test_draws_on_a_given_axes():
    fig, ax = plt.subplots()
    drawn_on, _ = du.draw_dsc_data_flow(ax=ax)
    assert drawn_on is ax and plt.get_fignums() == [fig.number]
    small, _ = du.draw_dsc_data_flow(1, 1, 1, 2)
    large, _ = du.draw_dsc_data_flow(6, 6, 3, 9)
    assert large.figure.get_size_inches()[1] > small.figure.get_size_inches()[1] > 0


@pytest.mark.parametrize("kwargs, error, name", [
    ({"in_channels": 0}, ValueError, "in_channels"),
    ({"in_channels": 7}, ValueError, "in_channels"),
    ({"out_channels": 7}, ValueError, "out_channels"),
    ({"out_channels": 2.0}, TypeError, "out_channels"),
    ({"size": 10}, ValueError, "size"),
    ({"size": "5"}, TypeError, "size"),
    ({"kernel_size": 6}, ValueError, "kernel_size"),
    ({"kernel_size": 0}, ValueError, "kernel_size"),
    ({"kernel_size": True}, TypeError, "kernel_size"),
    ({"ax": "axes"}, TypeError, "ax"),
])
def test_bad_arguments_raise_at_the_call_and_name_the_argument(kwargs, error, name):
    with pytest.raises(error, match=name):
        du.draw_dsc_data_flow(**kwargs)
    assert plt.get_fignums() == []                            # nothing half drawn
