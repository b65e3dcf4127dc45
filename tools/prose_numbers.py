"""The numbers in the prose, as JupyterLab shows them: each markdown cell's ``user_expressions``.

A chapter writes a computed number as ``{eval}`glued("name:.2f")``` (``dsc_utils.glue`` records the
value, ``dsc_utils.glued`` formats it). Three readers show that role, and this module keeps them in
step:

- the HTML book renders it from the value the page glued (``_ext/dsc_eval.py``);
- JupyterLab with jupyterlab-myst renders the text stored in the markdown cell's metadata,
  ``user_expressions``, in the format jupyterlab-myst itself writes when it evaluates a cell;
- nbval compares the glued values themselves, as outputs of the cells that glue them.

``store(notebook)`` writes that metadata from the notebook's own glued outputs, formatted as
MyST-NB formats ``{glue:text}`` (``book.py execute`` calls it after executing a notebook), and
``expected(notebook)`` gives what it must be, for the tests to compare with what is committed.
"""
from __future__ import annotations

import re

EVAL = re.compile(r"\{eval\}`([^`]+)`")
GLUED = re.compile(r"""^glued\((["'])([^"']+)\1\)$""")
RECORD = "application/papermill.record/text/plain"


class ProseNumberError(ValueError):
    """A role in the prose that the notebook cannot show."""


def glued_outputs(notebook) -> dict[str, str]:
    """name -> the plain text of the value the notebook glued under that name (the last one)."""
    values = {}
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name and RECORD in output.get("data", {}):
                text = output["data"][RECORD]
                values[name] = "".join(text) if isinstance(text, list) else text
    return values


def expressions(markdown: str) -> list[str]:
    """The ``{eval}`` expressions of a markdown cell, each once, in order."""
    return list(dict.fromkeys(EVAL.findall(markdown)))


def expected(notebook) -> list[list[dict] | None]:
    """Per cell: the ``user_expressions`` its metadata must hold (None: a cell with no role)."""
    from myst_nb.core.variables import format_plain_text

    values = glued_outputs(notebook)
    wanted = []
    for number, cell in enumerate(notebook["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        found = expressions(source) if cell["cell_type"] == "markdown" else []
        if not found:
            wanted.append(None)
            continue
        results = []
        for expression in found:
            match = GLUED.match(expression.strip())
            if match is None:
                raise ProseNumberError(f"cell {number}: {{eval}}`{expression}` is not "
                                       f"glued(\"name[:format]\")")
            key = match.group(2)
            name, _, spec = key.rpartition(":") if ":" in key else (key, "", "")
            if name not in values:
                raise ProseNumberError(f"cell {number}: {{eval}}`{expression}`: no cell glues {name!r}")
            text = format_plain_text(values[name], spec or "s")
            results.append({"expression": expression,
                            "result": {"status": "ok", "data": {"text/plain": text}, "metadata": {}}})
        wanted.append(results)
    return wanted


def store(notebook) -> None:
    """Write every markdown cell's ``user_expressions`` (and drop stale ones) in place."""
    for cell, results in zip(notebook["cells"], expected(notebook)):
        metadata = cell.setdefault("metadata", {})
        if results is None:
            metadata.pop("user_expressions", None)
        else:
            metadata["user_expressions"] = results
