"""What every page of the HTML book gets: a "run this page yourself" note under each chapter's title
(one source, so the chapters cannot disagree about how to run them), with a link to the chapter's
practice notebook (the notebook without its exercise solutions: the cells tagged ``solution``,
written next to the pages when the build finishes), and each script only once.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

from docutils import nodes

CHAPTERS = "chapters/"
PRACTICE = "_practice"          # folder of the practice notebooks in the built HTML
SOLUTION_TAG = "solution"


def practice_notebook(notebook: dict) -> dict:
    """The notebook without the cells tagged ``solution``; nothing else changes."""
    practice = copy.deepcopy(notebook)
    practice["cells"] = [cell for cell in practice["cells"]
                         if SOLUTION_TAG not in cell.get("metadata", {}).get("tags", [])]
    return practice


def has_solutions(path: Path) -> bool:
    notebook = json.loads(Path(path).read_text())
    return any(SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])
               for cell in notebook["cells"])


def write_practice_notebooks(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    folder = Path(app.outdir) / PRACTICE
    folder.mkdir(exist_ok=True)
    for path in sorted(Path(app.srcdir, CHAPTERS).glob("*.ipynb")):
        if has_solutions(path):
            notebook = practice_notebook(json.loads(path.read_text()))
            (folder / path.name).write_text(json.dumps(notebook, indent=1, ensure_ascii=False)
                                            + "\n")


def add_run_note(app, doctree) -> None:
    docname = app.env.docname
    if not docname.startswith(CHAPTERS):
        return
    notebook = docname[len(CHAPTERS):] + ".ipynb"
    note = nodes.admonition(classes=["tip", "run-this-page"])
    note += nodes.title(text="Run this page yourself")
    paragraph = nodes.paragraph()
    paragraph += nodes.Text("This page is the notebook ")
    paragraph += nodes.literal(text=f"chapters/{notebook}")
    paragraph += nodes.Text(" (download it with the button at the top). From a clone of the repository, ")
    paragraph += nodes.literal(text="python3 book.py lab")
    paragraph += nodes.Text(" opens it in JupyterLab with every dependency installed, and ")
    paragraph += nodes.literal(text=f"python3 book.py test chapters/{notebook}")
    paragraph += nodes.Text(" checks that it still produces the outputs shown here.")
    if has_solutions(Path(app.srcdir, CHAPTERS, notebook)):
        paragraph += nodes.Text(" To work the exercises first, take the ")
        paragraph += nodes.reference(text="practice notebook",
                                     refuri=f"../{PRACTICE}/{notebook}")
        paragraph += nodes.Text(", the same notebook without the solutions.")
    note += paragraph
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None:
        return
    title = next((i for i, child in enumerate(section.children) if isinstance(child, nodes.title)), -1)
    section.insert(title + 1, note)


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """sphinx-thebe's configuration script reaches every page twice under Jupyter Book 1, and the
    second copy is a console error ("Identifier 'THEBE_JS_URL' has already been declared")."""
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # the copies differ only in an empty filename being None or ''
        key = (str(getattr(script, "filename", script) or ""),
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("doctree-read", add_run_note)
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("build-finished", write_practice_notebooks)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
