"""The book helpers of dsc_utils: show_source, and the module's own text."""
from __future__ import annotations

import pytest

import dsc_utils as du


def test_show_source_is_the_module_source():
    source = du.show_source(du.conv_output_size)
    assert repr(source).startswith("def conv_output_size(")
    assert "return (size + 2 * padding - span) // stride + 1" in source.text
    assert source._repr_markdown_().startswith("```python\n")
    constant = du.show_source("MOBILENET_V1_BLOCKS").text
    assert constant.startswith("# MobileNet v1") and "MOBILENET_V1_BLOCKS = (" in constant
    assert eval(constant.split("= ", 1)[1]) == du.MOBILENET_V1_BLOCKS


BAD_INPUTS = [
    (du.show_source, dict(obj=42), TypeError, "obj must be a function, a class or a constant's name, got 42"),
    (du.show_source, dict(obj="NO_SUCH_CONSTANT"), ValueError, "obj names no module-level constant of dsc_utils: 'NO_SUCH_CONSTANT'"),
]


@pytest.mark.parametrize("function, kwargs, error, message", BAD_INPUTS,
                         ids=[f"{f.__name__}-{i}" for i, (f, *_) in enumerate(BAD_INPUTS)])
def test_bad_input_raises_a_clear_error(function, kwargs, error, message):
    with pytest.raises(error) as info:
        function(**kwargs)
    assert message in str(info.value)


def test_module_source_has_no_control_characters():
    """A lost backslash (a tab where \\times was meant) would show up in every chapter that shows the code."""
    import pathlib
    import re

    source = pathlib.Path(du.__file__).read_text()
    assert not re.search(r"[\x00-\x08\x0b-\x1f]", source)


def test_every_public_docstring_is_complete():
    """Args, Returns (functions), Raises, an example and the chapter that explains it."""
    import inspect

    import dsc_utils

    incomplete = {}
    for name in dsc_utils.__all__:
        obj = getattr(dsc_utils, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        doc = (inspect.getdoc(obj) or "").lower()
        wanted = ["args", "raises", "example", "chapter"] + ([] if inspect.isclass(obj) else ["returns"])
        missing = [part for part in wanted if part not in doc]
        if missing:
            incomplete[name] = missing
    assert incomplete == {}


def test_make_table_formats_and_aligns_by_column():
    table = du.make_table(["layer", "MACs", "ratio", "kind"],
                          [["conv", 1234567, "8.4x", "depthwise"], ["fc", 10, "12%", "pointwise"]])
    text = str(table)
    assert "| 1,234,567 |" in text and "|        10 |" in text     # ints: separators, right-aligned
    assert "| conv  |" in text and "| depthwise |" in text          # text: left-aligned
    assert table.align["ratio"] == "r" and table.align["kind"] == "l"
    assert du.make_table(["a"], []).align["a"] == "l"                # no rows: nothing is a number


@pytest.mark.parametrize("header, rows, error, message", [
    ("layer", [], TypeError, "header must be a list of strings, got 'layer'"),
    (["layer", 3], [], TypeError, "header must be a list of strings"),
    ([], [], ValueError, "header must name at least one column"),
    (["a"], 5, TypeError, "rows must be an iterable of lists, got 5"),
    (["a"], [5], TypeError, "rows[0] must be a list or tuple, got 5"),
    (["a", "b"], [[1]], ValueError, "rows[0] has 1 cells, the header 2"),
])
def test_make_table_refuses_bad_input(header, rows, error, message):
    with pytest.raises(error) as info:
        du.make_table(header, rows)
    assert message in str(info.value)


@pytest.mark.parametrize("value, spec, shown", [
    (8.6875, ".2f", "8.69"), (1234567, ",d", "1,234,567"), (1234567, "", "1234567"),
    (0.1234, ".1%", "12.3%"), ("ONNX Runtime", "", "ONNX Runtime"), (3, ".1f", "3.0"),
])
def test_glued_shows_what_the_book_renders(value, spec, shown):
    """glued() in the kernel (what JupyterLab shows when a reader runs a cell) formats exactly as
    the book renders the same glued value (MyST-NB's {glue:text} formatting of its stored repr)."""
    from myst_nb.core.variables import format_plain_text

    du.glue("test-value", value)
    key = "test-value" + (f":{spec}" if spec else "")
    assert repr(du.glued(key)) == shown == format_plain_text(repr(value), spec or "s")


def test_glued_before_the_value_exists_says_so():
    assert repr(du.glued("test-not-glued-yet:.2f")) == du.GLUED_LATER


@pytest.mark.parametrize("call, error, message", [
    (lambda: du.glue(3, 1), TypeError, "name must be a string, got 3"),
    (lambda: du.glue("a:b", 1), ValueError, "name must be a non-empty name without a colon, got 'a:b'"),
    (lambda: du.glue("a", 1, display="no"), TypeError, "display must be True or False, got 'no'"),
    (lambda: du.glued(5), TypeError, "key must be a string 'name' or 'name:format', got 5"),
    (lambda: du.glued(":.2f"), ValueError, "key must start with a glued name, got ':.2f'"),
    (lambda: (du.glue("test-text", "abc"), du.glued("test-text:.2f")), ValueError,
     "key='test-text:.2f': the value 'abc' cannot be shown in format '.2f'"),
])
def test_glue_refuses_bad_input(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)
