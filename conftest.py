"""Shared test set-up for the unit tests and the notebooks (nbval): dependency check, offline kernels."""
from __future__ import annotations

import atexit
import gc
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent

# A missing package should say which one and how to get it, not fail deep inside a notebook.
REQUIRED = ["torch", "matplotlib", "prettytable", "sympy", "nbval", "hypothesis", "yaml", "nbformat", "dsc_utils"]
_missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
if _missing:
    pytest.exit(
        f"missing package(s): {', '.join(_missing)}. Run the tests with `python3 book.py test`, which "
        f"creates .venv/ with every pinned dependency, or `pip install -r requirements.txt` first.",
        returncode=4,
    )

# Every kernel nbval starts inherits the book's kernel environment (tools/kernel_env.py, shared with
# `book.py execute` and `book.py build`): the network guard of tests/ipython, a fixed hash seed. The
# thread count is left as the caller set it: the outputs are the same at any thread count.
sys.path.insert(0, str(ROOT / "tools"))
from kernel_env import apply_to_this_process, slowest_first_rank  # noqa: E402

apply_to_this_process(threads=None)
del sys.path[0]

# At exit, the garbage collector leaves alone the objects that already exist: with PyTorch loaded, the
# interpreter's teardown would otherwise spend seconds collecting them again and again in every pytest
# process, and the run waits for its workers to exit.
atexit.register(gc.freeze)

from hypothesis import settings  # noqa: E402

settings.register_profile("book", deadline=None, database=None, max_examples=60)
settings.load_profile("book")


# The slowest files start first (tools/kernel_env.py): `book.py test` runs two workers, each taking
# whole files in collection order (book.py keeps pytest-xdist from reordering them by size).
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: slowest_first_rank(item.fspath))  # stable: cells keep their order
