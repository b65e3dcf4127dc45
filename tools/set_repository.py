"""Name the book's GitHub repository: the "open in Colab" buttons and the notebooks' Colab cell.

    python3 tools/set_repository.py OWNER/NAME          # write it into _config.yml and notebooks
    python3 tools/set_repository.py --check OWNER/NAME  # exit 1 if a notebook names another one

The Pages workflow runs the first form with $GITHUB_REPOSITORY before it builds, so the published
pages get launch buttons for the repository they are built from. Colab opens a notebook from
GitHub, and the notebook's first code cell clones the repository it names: commit the notebooks
after running this once (the workflow's --check step warns while they name another repository).

The first code cell of every chapter is COLAB_CELL. Anywhere but Colab it does nothing (the tests
check that); on Colab it clones the book, runs tools/colab_setup.py and moves to chapters/.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "# Colab only (elsewhere this cell does nothing)"
COLAB_CELL = f'''{MARKER}: fetch the book, its pinned packages
# and the trained weights, then run from the book's chapters/ folder.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    # the book's GitHub repository, OWNER/NAME, written by tools/set_repository.py
    REPOSITORY = "{{repository}}"
    if "/" not in REPOSITORY:
        raise RuntimeError("this copy of the book names no GitHub repository: "
                           "python3 tools/set_repository.py OWNER/NAME writes it")
    if not os.path.isdir("/content/book"):
        clone = ["git", "clone", "--quiet", "--depth", "1"]
        address = f"https://github.com/{{REPOSITORY}}"
        subprocess.run([*clone, address, "/content/book"], check=True)
    subprocess.run([sys.executable, "/content/book/tools/colab_setup.py"], check=True)
    sys.path.insert(0, "/content/book")
    os.chdir("/content/book/chapters")'''
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")


def colab_cell(repository: str) -> str:
    return COLAB_CELL.replace("{repository}", repository)


def cell_repository(source: str) -> str | None:
    """The repository a notebook's Colab cell names ("" if none), or None if it has no such cell."""
    if not source.startswith(MARKER):
        return None
    match = re.search(r'^    REPOSITORY = "([^"]*)"', source, re.MULTILINE)
    return match.group(1) if match else None


def update_notebook(notebook: dict, repository: str) -> bool:
    """Make the notebook's first code cell the Colab cell naming ``repository``; True if changed."""
    code = [i for i, cell in enumerate(notebook["cells"]) if cell["cell_type"] == "code"]
    wanted = colab_cell(repository)
    first = notebook["cells"][code[0]] if code else None
    if first is not None and cell_repository("".join(first["source"])) is not None:
        if "".join(first["source"]) == wanted:
            return False
        first["source"] = wanted.splitlines(keepends=True)
        return True
    cell = dict(cell_type="code", execution_count=None, id="colab-setup",
                metadata={"tags": ["remove-cell"]}, outputs=[],
                source=wanted.splitlines(keepends=True))
    notebook["cells"].insert(code[0] if code else len(notebook["cells"]), cell)
    return True


def update_config(text: str, repository: str) -> str:
    """_config.yml's text with the repository's address and the Colab launch button."""
    url = f"https://github.com/{repository}" if repository else ""
    colab = "https://colab.research.google.com" if repository else ""
    text, found_url = re.subn(r'(?m)^(  url: )"[^"]*"', rf'\g<1>"{url}"', text)
    text, found_colab = re.subn(r'(?m)^(  colab_url: )"[^"]*"', rf'\g<1>"{colab}"', text)
    if (found_url, found_colab) != (1, 1):
        raise ValueError('_config.yml needs one "  url:" under repository and one "  colab_url:"')
    return text


def notebooks() -> list[Path]:
    return sorted((ROOT / "chapters").glob("*.ipynb"))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    names = [arg for arg in argv if arg != "--check"]
    if len(names) != 1 or not NAME.fullmatch(names[0]):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    repository = names[0]
    stale = []
    for path in notebooks():
        notebook = json.loads(path.read_text())
        if update_notebook(notebook, repository):
            stale.append(path.name)
            if not check:
                path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    if check:
        if stale:
            print(f"{len(stale)} notebooks do not name {repository} in their Colab cell: run "
                  f"python3 tools/set_repository.py {repository} and commit them", file=sys.stderr)
        return 1 if stale else 0
    config = ROOT / "_config.yml"
    config.write_text(update_config(config.read_text(), repository))
    print(f"_config.yml and {len(stale)} notebooks now name {repository}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
