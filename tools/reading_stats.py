#!/usr/bin/env python3
"""How long each page reads, as a reader of the HTML book sees it.

    python3 tools/reading_stats.py            # a table: words, fold toggles, opening paragraph
    python3 tools/reading_stats.py --opening  # also print each page's opening paragraph

For every notebook of chapters/ (in the order of _toc.yml when PyYAML is there, else by name):
- words: visible prose, i.e. the words of the markdown cells that the HTML shows (cells tagged
  remove-cell are left out; code blocks and display math are not prose; a role such as
  {glue:text}`name` counts as one word);
- folds: the code cells a reader can open with a "show" toggle (hide-cell, hide-input, hide-output);
- opening: the words of the first paragraph after the page's title, which should state the page's
  answer with its numbers in about 120 words at most.

Standard library only (PyYAML optional), so it runs outside the book's environment.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = {"remove-cell"}
FOLD = {"hide-cell", "hide-input", "hide-output"}
MAX_WORDS, MAX_FOLDS, MAX_OPENING = 3000, 6, 120


def prose_words(markdown: str) -> int:
    text = re.sub(r"```.*?```|\$\$.*?\$\$", " ", markdown, flags=re.S)
    text = re.sub(r"^\s*(:::|:[a-z-]+:).*$", " ", text, flags=re.M)   # directive and option lines
    text = re.sub(r"\{[a-z:]+\}`[^`]*`", "X", text)
    return len(re.findall(r"[A-Za-z][A-Za-z'-]*", text))


def opening_paragraph(cells: list[dict]) -> str:
    """The first paragraph of prose after the title (in the title's cell or the next markdown)."""
    for cell in cells:
        if cell["cell_type"] != "markdown" or "remove-cell" in cell.get("metadata", {}).get("tags", []):
            continue
        for block in re.split(r"\n\s*\n", "".join(cell["source"])):
            block = block.strip()
            if block and not block.startswith(("#", "(", "```", ":::", "$$", "<")):
                return " ".join(block.split())
    return ""


def page_stats(path: Path) -> dict:
    cells = json.loads(path.read_text())["cells"]
    words = folds = 0
    for cell in cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] == "markdown" and not tags & HIDDEN:
            words += prose_words("".join(cell["source"]))
        elif cell["cell_type"] == "code" and tags & FOLD:
            folds += 1
    opening = opening_paragraph(cells)
    return {"page": path.stem, "words": words, "folds": folds,
            "opening_words": prose_words(opening), "opening": opening}


def pages() -> list[Path]:
    found = sorted((ROOT / "chapters").rglob("*.ipynb"))
    found = [p for p in found if ".ipynb_checkpoints" not in p.parts]
    try:
        import yaml
    except ModuleNotFoundError:
        return found
    order: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                order.append(str(Path(node["file"]).with_suffix("")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    rank = {name: i for i, name in enumerate(order)}
    return sorted(found, key=lambda p: rank.get(str(p.relative_to(ROOT).with_suffix("")), 10**6))


def main(argv: list[str]) -> int:
    stats = [page_stats(p) for p in pages()]
    width = max(len(s["page"]) for s in stats)
    print(f"{'page':{width}}  {'words':>6}  {'folds':>5}  {'opening':>7}")
    for s in stats:
        flags = "".join([" words>%d" % MAX_WORDS if s["words"] > MAX_WORDS else "",
                         " folds>%d" % MAX_FOLDS if s["folds"] > MAX_FOLDS else "",
                         " opening>%d" % MAX_OPENING if s["opening_words"] > MAX_OPENING else ""])
        print(f"{s['page']:{width}}  {s['words']:6,}  {s['folds']:5}  {s['opening_words']:7}{flags}")
    print(f"{'all pages':{width}}  {sum(s['words'] for s in stats):6,}  "
          f"{sum(s['folds'] for s in stats):5}")
    if "--opening" in argv:
        for s in stats:
            print(f"\n## {s['page']}\n{s['opening']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
