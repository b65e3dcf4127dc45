"""Unit tests of the drawing functions of dsc_utils (section 12): what they draw, and bad input."""
from __future__ import annotations

import doctest

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

import dsc_utils as du  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_draw_kernel_slide_docstring_example_runs():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(du.draw_kernel_slide, globs=vars(du)):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0


def test_draw_kernel_slide_one_panel_per_placement_with_every_cell():
    placements = [(0, 0), (0, 1), (1, 0), (2, 2)]
    fig = du.draw_kernel_slide(placements, size=5, kernel_size=3, stride=2, padding=1)
    assert len(fig.axes) == len(placements)
    out = du.conv_output_size(5, 3, stride=2, padding=1)
    for ax in fig.axes:
        # padded input 7x7, one kernel outline, output 3x3
        assert len(rectangles(ax)) == 7 * 7 + 1 + out * out
        zeros = [t for t in ax.texts if t.get_text() == "0"]
        assert len(zeros) == 7 * 7 - 5 * 5


def test_draw_kernel_slide_outlines_the_placement_in_the_standard_colour():
    fig = du.draw_kernel_slide([(1, 2)], size=5, kernel_size=3, stride=2, padding=1)
    (ax,) = fig.axes
    outlines = [p for p in rectangles(ax) if not p.get_fill()]
    assert len(outlines) == 1
    (outline,) = outlines
    assert outline.get_xy() == (4, 2)                     # column 2 * stride, row 1 * stride
    assert outline.get_width() == outline.get_height() == 3
    assert outline.get_edgecolor() == to_rgba(du.LAYER_COLORS["standard"])
    assert ax.get_title() == "output (1, 2): padded rows 2-4, columns 4-6"


def test_draw_kernel_slide_other_shapes_and_layout():
    fig = du.draw_kernel_slide([(0, 0), (1, 1), (3, 3)], size=8, kernel_size=2, stride=2,
                               padding=0, ncols=3)
    assert len(fig.axes) == 3
    assert all(len(rectangles(ax)) == 8 * 8 + 1 + 4 * 4 for ax in fig.axes)
    fig = du.draw_kernel_slide([(0, 0)] * 3, ncols=2)     # a 2x2 grid, one panel removed
    assert len(fig.axes) == 3


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(placements=[]), ValueError, "at least one"),
    (dict(placements=[(3, 0)]), ValueError, "outside the 3x3 output"),
    (dict(placements=[(0, -1)]), ValueError, r"placements\[0\] column"),
    (dict(placements=[(0,)]), TypeError, "(row, column) pair"),
    (dict(placements=[(0, 1.5)]), TypeError, r"placements\[0\] column"),
    (dict(placements=(0, 0)), TypeError, "(row, column) pair"),
    (dict(placements="00"), TypeError, "placements"),
    (dict(placements=[(0, 0)], kernel_size=9), ValueError, "does not fit"),
    (dict(placements=[(0, 0)], stride=0), ValueError, "stride"),
    (dict(placements=[(0, 0)], ncols=0), ValueError, "ncols"),
    (dict(placements=[(0, 0)], size=5.0), TypeError, "size"),
])
def test_draw_kernel_slide_rejects_bad_input(kwargs, error, words):
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        du.draw_kernel_slide(**kwargs)


def test_log_axes_are_labelled_with_plain_numbers():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.set_ylim(0.7, 4.5)
    ax.set_xscale("log", base=2)
    ax.set_xlim(1, 64)
    assert du.plain_log_ticks(ax, "both") is ax
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True)]
    assert {"1", "2", "3"} <= set(labels) and not any("^" in t or "times" in t for t in labels)
    assert {"1", "4", "16", "64"} <= {t.get_text() for t in ax.get_xticklabels()}
    plt.close(fig)


@pytest.mark.parametrize("arguments, error, message", [
    (dict(ax="axes"), TypeError, "ax must be matplotlib Axes"),
    (dict(axis=2), TypeError, "axis must be a string"),
    (dict(axis="z"), ValueError, "axis must be"),
    (dict(axis="x"), ValueError, "not logarithmic"),
])
def test_log_tick_arguments_are_checked(arguments, error, message):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_yscale("log")
    with pytest.raises(error, match=message):
        du.plain_log_ticks(**dict(dict(ax=ax), **arguments))
    plt.close(fig)
