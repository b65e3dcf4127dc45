"""Re-execute notebooks and write their outputs back in place (``python3 book.py execute``).

Each notebook runs in a fresh kernel started in its own folder, in the environment nbval gives its
kernels (tools/kernel_env.py: the network guard, the hash seed, one thread), so the outputs written
here are the outputs the tests compare. The numbers in the prose are stored with each markdown cell
for JupyterLab (tools/prose_numbers.py). A notebook is written back only if every cell succeeded; on a failure the file is left
untouched, the notebook, the cell and the error are reported, and the command exits with 1.
Notebooks run two at a time (one per core of the machine the book targets).
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert.preprocessors import CoalesceStreamsPreprocessor
from traitlets.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prose_numbers  # noqa: E402
from kernel_env import (  # noqa: E402
    apply_to_this_process, private_connection, slowest_first_rank)
from kernel_managers import BookAsyncKernelManager  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "chapters"


def execute_one(path: Path) -> tuple[Path, str | None]:
    """Execute one notebook; return (path, None) on success or (path, error report)."""
    original = path.read_text(encoding="utf-8")
    notebook = nbformat.reads(original, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        kernel_manager_class=BookAsyncKernelManager,   # no fixed waits (tools/kernel_managers.py)
        config=Config(KernelManager=private_connection()),   # the kernel manager nbclient makes
        timeout=600,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
        shutdown_kernel="immediate",  # every output is in: stop the kernel, skip its slow teardown
    )
    try:
        client.execute()
    except CellExecutionError as error:
        code_cells = [c for c in notebook.cells if c.cell_type == "code"]
        failed = next(
            (i for i, c in enumerate(code_cells, 1) if any(o.get("output_type") == "error" for o in c.get("outputs", []))),
            None,
        )
        where = f"code cell {failed}" if failed else "a cell"
        source = code_cells[failed - 1].source if failed else ""
        return path, f"{where} raised {error.ename}: {error.evalue}\n--- cell source ---\n{source}"
    except Exception as error:  # a kernel that died, a timeout, ...
        return path, f"{type(error).__name__}: {error}"
    # how a print is split into stream messages depends on timing: merge them, as nbval compares them
    notebook, _ = CoalesceStreamsPreprocessor().preprocess(notebook, {})
    try:  # the prose's numbers, for JupyterLab (tools/prose_numbers.py)
        prose_numbers.store(notebook)
    except prose_numbers.ProseNumberError as error:
        return path, f"the prose: {error}"
    text = nbformat.writes(notebook) + "\n"
    if text != original:
        path.write_text(text, encoding="utf-8")
    return path, None


def main(args: list[str]) -> int:
    paths = [Path(a).resolve() for a in args] or sorted(CHAPTERS.glob("*.ipynb"))
    missing = [p for p in paths if not p.is_file() or p.suffix != ".ipynb"]
    if missing:
        print(f"execute: not a notebook: {', '.join(str(p) for p in missing)}", file=sys.stderr)
        return 2
    saved = dict(os.environ)  # given back at the end: a caller's later kernels keep their own
    apply_to_this_process(threads="1")  # the worker processes and their kernels inherit it
    failures = 0
    try:
        with ProcessPoolExecutor(max_workers=min(2, len(paths))) as pool:
            for path, problem in pool.map(execute_one, sorted(paths, key=slowest_first_rank)):
                name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                if problem is None:
                    print(f"executed  {name}", flush=True)
                else:
                    failures += 1
                    print(f"FAILED    {name}: {problem}\n(the file was left untouched)",
                          file=sys.stderr, flush=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
