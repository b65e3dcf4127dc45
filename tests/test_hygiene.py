"""Notebook hygiene, as a reader and nbval see the committed notebooks.

Every notebook in chapters/ is in _toc.yml and vice versa; every code cell was executed in order from
1 with no error; the kernelspec is the plain python3; no output leaks a local path, a memory address or
a warning on stderr; only live measurements of the reader's machine are excluded from nbval's
comparison, each tagged and explained; nothing downloads.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"
NOTEBOOKS = sorted(p for p in CHAPTERS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
IDS = [p.name for p in NOTEBOOKS]

# An absolute local path (a slash-rooted path of two or more parts), site-packages, or a memory address.
LEAK = re.compile(r"((?:^|(?<=[\s'\"(=]))/(?:[A-Za-z][A-Za-z0-9_.-]*/)+[A-Za-z0-9_.-]+|site-packages|0x[0-9a-fA-F]{6,})",
                  re.M)
WARNING_TEXT = re.compile(r"\b\w*Warning\b:|warnings\.warn")
# calls that measure this machine now (reading stored benchmark results is not one)
LIVE_TIMING = re.compile(r"Timer\(|perf_counter\(|timeit|time\.time\(|time_side_by_side\(|blocked_autorange\(")
NETWORK = re.compile(r"urlopen|urlretrieve|requests\.|http\.client|torch\.hub|load_state_dict_from_url|"
                     r"download\s*=\s*True|hf_hub|from_pretrained|socket\.")


def toc_files() -> set[str]:
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("file", "root") and isinstance(value, str):
                    found.add(str(Path(value).with_suffix("")) if value.endswith((".ipynb", ".md")) else value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    return found


def code_cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def output_text(output: dict) -> str:
    data = output.get("data", {})
    parts = [output.get("text", ""), data.get("text/plain", ""), data.get("text/html", ""),
             data.get("text/markdown", ""), output.get("evalue", "")]
    return "".join("".join(p) if isinstance(p, list) else p for p in parts)


def test_there_are_notebooks():
    assert NOTEBOOKS, "chapters/ holds no notebook"


def test_toc_and_chapters_agree():
    toc = toc_files()
    notebooks = {str(p.relative_to(ROOT).with_suffix("")) for p in NOTEBOOKS}
    chapter_entries = {f for f in toc if f.startswith("chapters/")}
    assert notebooks - toc == set(), "notebooks missing from _toc.yml"
    assert chapter_entries - notebooks == set(), "_toc.yml entries without a notebook"
    for entry in toc - chapter_entries:
        assert any((ROOT / entry).with_suffix(s).exists() for s in (".md", ".ipynb")), entry


def test_toc_has_captioned_numbered_parts():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    parts = toc["parts"]
    assert all(part.get("caption") for part in parts)
    assert parts[0]["caption"] == "Theory" and parts[0].get("numbered") is True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_kernelspec_is_plain_python3(path):
    metadata = json.loads(path.read_text())["metadata"]
    assert metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_cells_executed_in_order_without_errors(path):
    for number, cell in enumerate(code_cells(path), 1):
        assert cell.get("execution_count") == number, f"code cell {number} has execution_count {cell.get('execution_count')}"
        for output in cell.get("outputs", []):
            assert output["output_type"] != "error", f"code cell {number} stored an error"
            if output["output_type"] == "execute_result":
                assert output.get("execution_count") == number


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_leaks_warnings_or_stderr(path):
    for number, cell in enumerate(code_cells(path), 1):
        for output in cell.get("outputs", []):
            assert output.get("name") != "stderr", f"code cell {number} wrote to stderr: {output_text(output)[:200]!r}"
            text = output_text(output)
            # base64 image data can contain anything; drop it before looking for paths
            text = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=\\n]+", "", text)
            leak = LEAK.search(text)
            assert leak is None, f"code cell {number} output leaks {leak.group(0)!r}"
            assert not WARNING_TEXT.search(text), f"code cell {number} output shows a warning"


LIVE = "live-measurement"          # the one tag for cells that measure the reader's machine


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_only_live_measurements_escape_comparison(path):
    """nbval ignores the output of live timings and live measurements of the reader's machine, and of
    nothing else. Such a cell carries the tag ``live-measurement`` beside ``nbval-ignore-output``, says
    in its metadata (``live_reason``, one line) why its output differs from machine to machine, and
    asserts its claims as ranges that hold on any machine (it has at least one assert)."""
    for number, cell in enumerate(code_cells(path), 1):
        tags = cell.get("metadata", {}).get("tags", [])
        source = "".join(cell["source"])
        assert "nbval-skip" not in tags and "raises-exception" not in tags, f"code cell {number} is skipped"
        assert not re.search(r"#\s*NBVAL_", source), f"code cell {number} has an NBVAL comment"
        ignored, live = "nbval-ignore-output" in tags, LIVE in tags
        assert ignored == live, f"code cell {number}: {LIVE!r} and 'nbval-ignore-output' go together"
        if live:
            reason = cell["metadata"].get("live_reason", "")
            assert reason.strip() and "\n" not in reason.strip() and len(reason) <= 160, \
                f"code cell {number}: a live measurement needs a one-line live_reason in its metadata"
            assert re.search(r"^\s*assert\b", source, re.M), \
                f"code cell {number}: a live measurement must assert its claims as machine-independent ranges"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_timing_cells_are_live(path):
    """A cell that times something and prints must be a live measurement (its output is not compared)."""
    for number, cell in enumerate(code_cells(path), 1):
        source = "".join(cell["source"])
        tags = cell.get("metadata", {}).get("tags", [])
        prints = any(o.get("output_type") in ("stream", "execute_result", "display_data")
                     for o in cell.get("outputs", []))
        if LIVE_TIMING.search(source) and prints:
            assert LIVE in tags, f"code cell {number} times this machine and prints: tag it {LIVE!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_nothing_downloads(path):
    for number, cell in enumerate(code_cells(path), 1):
        match = NETWORK.search("".join(cell["source"]))
        assert match is None, f"code cell {number} looks like it uses the network: {match.group(0)!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_figures_have_their_numbers_in_text(path):
    """nbval does not compare images: a cell that draws must also print or assert what it shows."""
    cells = code_cells(path)
    for number, cell in enumerate(cells, 1):
        draws = any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))
        if not draws:
            continue
        here = "".join(cell["source"])
        after = "".join(cells[number]["source"]) if number < len(cells) else ""
        assert re.search(r"\bprint\(|\bassert\b|PrettyTable|display\(", here + after), \
            f"code cell {number} draws a figure but neither it nor the next cell prints or asserts its numbers"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_chapter_shape(path):
    """Each chapter opens with what it teaches and ends with a summary and exercises with hidden solutions."""
    cells = json.loads(path.read_text())["cells"]
    markdown = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    assert markdown and markdown[0].lstrip().startswith("# "), "the first cell must be the chapter title"
    text = "\n".join(markdown)
    assert re.search(r"^## Summary", text, re.M), "no Summary section"
    assert re.search(r"^## Exercises", text, re.M), "no Exercises section"
    assert ":class: dropdown" in text, "exercise solutions must be hidden behind a toggle"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_figures_are_numbered_and_captioned(path):
    """Every figure a cell draws gets a number, a name to reference it by and a caption in the book."""
    names = []
    for number, cell in enumerate(code_cells(path), 1):
        if not any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
            continue
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        assert figure.get("caption", "").strip(), f"code cell {number} draws a figure without a caption"
        assert str(figure.get("name", "")).startswith("fig-"), f"code cell {number}: figure name should start with fig-"
        names.append(figure["name"])
    assert len(names) == len(set(names)), "two figures share a name"


# ----------------------------------------------------------------------------------------------
# How the chapters read (the book teaches; it is not a test log)
# ----------------------------------------------------------------------------------------------

HIDDEN = {"hide-cell", "remove-cell", "hide-output", "remove-output"}
BOOLEAN_LINE = re.compile(r"^[^\n]*\b(True|False)\s*$", re.M)
PROJECT_TALK = re.compile(r"project'?s goal|meets the goal|misses the goal|our goal|\bthe issue\b", re.I)


def cells_with_section(path: Path):
    """(cell, in_exercises) for every cell of the notebook."""
    in_exercises = False
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and re.search(r"^#+\s*Exercises", source, re.M):
            in_exercises = True
        yield cell, in_exercises


def visible_text(cell) -> str:
    tags = set(cell.get("metadata", {}).get("tags", []))
    if tags & HIDDEN:
        return ""
    return "\n".join(output_text(o) for o in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_code_lines_fit_the_page(path):
    for number, cell in enumerate(code_cells(path), 1):
        long = [line for line in "".join(cell["source"]).splitlines() if len(line) > 88]
        assert not long, f"code cell {number} has {len(long)} line(s) over 88 characters: {long[0]!r}"
        # the module source that show_source displays is code on the page too
        for output in cell.get("outputs", []):
            shown = output.get("data", {}).get("text/markdown", "")
            shown = "".join(shown) if isinstance(shown, list) else shown
            if shown.startswith("```python"):
                long = [line for line in shown.splitlines() if len(line) > 88]
                assert not long, (f"code cell {number} shows {len(long)} source line(s) over 88 "
                                  f"characters: {long[0]!r}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_numbers_in_prose_are_glued(path):
    cells = json.loads(path.read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert len(re.findall(r"\bglue\(", code)) >= 3, "fewer than three numbers glued from code"
    assert len(re.findall(r"\{eval\}`glued\(", prose)) >= 3, "fewer than three glued numbers in prose"
    defined = set(re.findall(r"""\bglue\(\s*f?["']([^"'{}]+)["']""", code))
    used = {key.rsplit(":", 1)[0] if ":" in key else key
            for key in re.findall(r"""\{eval\}`glued\(["']([^"']+)["']\)`""", prose)}
    templated = re.findall(r"""\bglue\(\s*f["']([^"']*\{[^"']*)["']""", code)
    patterns = [re.compile("^" + re.sub(r"\\\{[^}]*\\\}", ".+", re.escape(t)) + "$") for t in templated]
    missing = {n for n in used - defined if not any(p.match(n) for p in patterns)}
    assert not missing, f"the prose uses glued names that no cell defines: {sorted(missing)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_test_log_output(path):
    """At most two visible output lines that only say True or False (where the boolean is the point)."""
    count = sum(len(BOOLEAN_LINE.findall(visible_text(cell))) for cell, _ in cells_with_section(path)
                if cell["cell_type"] == "code")
    assert count <= 2, f"{count} visible output lines only report True/False"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_tables_fit(path):
    for cell, _ in cells_with_section(path):
        if cell["cell_type"] != "code":
            continue
        text = visible_text(cell)
        rows = [line for line in text.splitlines() if line.startswith("|")]
        assert len(rows) <= 33, f"a printed table of {len(rows) - 1} rows: {rows[0][:60]!r}"
        if rows:
            assert rows[0].count("|") - 1 <= 9, f"a printed table of {rows[0].count('|') - 1} columns"
        for table in re.findall(r"<table.*?</table>", text, re.S):
            head = re.search(r"<tr.*?</tr>", table, re.S)
            columns = head.group(0).count("<th") + head.group(0).count("<td") if head else 0
            assert table.count("<tr") <= 33 and columns <= 9, "an HTML table over 32 rows or 9 columns"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_exercises_have_one_format_and_hidden_solutions(path):
    """Each exercise: '**Exercise N.**', a dropdown 'Solution N', code cells hidden with hide-cell."""
    numbers, solutions = [], []
    for cell, in_exercises in cells_with_section(path):
        if not in_exercises:
            continue
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            numbers += [int(n) for n in re.findall(r"^\*\*Exercise (\d+)\.\*\*", source, re.M)]
            for n in re.findall(r"^:::\{admonition\} Solution (\d+)\s*\n:class: dropdown", source, re.M):
                solutions.append(int(n))
            assert not re.search(r"^\d+\.\s", source, re.M) or "**Exercise" in source or \
                ":::" in source, "exercises are written as '**Exercise N.**', not as a numbered list"
        elif cell["cell_type"] == "code" and cell.get("outputs"):
            tags = set(cell.get("metadata", {}).get("tags", []))
            assert "hide-cell" in tags or "remove-cell" in tags, \
                "an exercise solution's code cell must be hidden with hide-cell (code and output)"
    assert numbers and numbers == list(range(1, len(numbers) + 1)), f"exercises numbered {numbers}"
    assert solutions == numbers, f"solutions {solutions} do not match exercises {numbers}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_the_book_speaks_of_its_subject(path):
    for cell, _ in cells_with_section(path):
        text = "".join(cell["source"]) + visible_text(cell)
        match = PROJECT_TALK.search(text)
        assert match is None, f"talks about the project rather than the subject: {match.group(0)!r}"


# ----------------------------------------------------------------------------------------------
# Pages a reader finishes: the answer first, at most 3,000 words, checks out of the page
# ----------------------------------------------------------------------------------------------

def _tool(name: str):
    """A module of tools/ (standard library only), loaded from its file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


READING = _tool("reading_stats")
HIDDEN_CHECK_TALK = re.compile(r"hidden cell|cell below checks|checked in a hidden|the hidden (check|assert)",
                               re.I)
UNNAMED_SOURCE = re.compile(r"widely read (article|explanation|blog)|one (popular )?(article|tutorial|blog)|"
                            r"lecture notes among|a popular (tutorial|article|explanation)", re.I)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_page_is_short_and_answers_first(path):
    stats = READING.page_stats(path)
    assert stats["words"] <= READING.MAX_WORDS, \
        f"{stats['words']:,} words of visible prose (at most {READING.MAX_WORDS:,}: cut, or split the page)"
    assert stats["folds"] <= READING.MAX_FOLDS, \
        f"{stats['folds']} fold toggles (at most {READING.MAX_FOLDS}; checks go in remove-cell cells)"
    assert stats["opening_words"] <= READING.MAX_OPENING + 10, \
        f"the opening paragraph has {stats['opening_words']} words (the answer in about 120)"
    assert re.search(r"\{(glue(:text|:md|:any)?|eval)\}`", stats["opening"]), \
        "the opening paragraph states no number computed by the page (glue one)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_prose_neither_points_at_hidden_checks_nor_cites_unnamed_sources(path):
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "markdown" or "remove-cell" in cell.get("metadata", {}).get("tags", []):
            continue
        text = "".join(cell["source"])
        match = HIDDEN_CHECK_TALK.search(text)
        assert match is None, f"the prose tells the reader about a hidden check: {match.group(0)!r}"
        match = UNNAMED_SOURCE.search(text)
        assert match is None or re.search(r"\{cite(:[pt])?\}`", text), \
            f"a claim attributed to an unnamed source, with no citation: {match.group(0)!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_prose_numbers_show_in_jupyterlab(path):
    """Every number of the prose is an {eval}`glued("name")` role (jupyterlab-myst renders it; a
    {glue:text} role shows as raw markup there), and each markdown cell stores the text that the role
    shows, exactly as the HTML book renders it from the glued value (tools/prose_numbers.py)."""
    prose_numbers = _tool("prose_numbers")
    notebook = json.loads(path.read_text())
    for number, (cell, wanted) in enumerate(zip(notebook["cells"], prose_numbers.expected(notebook))):
        if cell["cell_type"] != "markdown":
            continue
        source = "".join(cell["source"])
        assert not re.search(r"\{glue(:[a-z]+)?\}`", source), \
            f"cell {number}: a glue role, which JupyterLab shows as raw markup: write {{eval}}`glued(...)`"
        assert cell.get("metadata", {}).get("user_expressions") == wanted, \
            f"cell {number}: the numbers stored for JupyterLab are stale: run python3 book.py execute {path.name}"
