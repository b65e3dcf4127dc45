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
import kernel_zygote  # noqa: E402  (standard library only)
from kernel_env import apply_to_this_process, slowest_first_rank  # noqa: E402
from kernel_managers import BookKernelManager  # noqa: E402

apply_to_this_process(threads=None)
del sys.path[0]

# At exit, the garbage collector leaves alone the objects that already exist: with PyTorch loaded, the
# interpreter's teardown would otherwise spend seconds collecting them again and again in every pytest
# process, and the run waits for its workers to exit.
atexit.register(gc.freeze)

from hypothesis import settings  # noqa: E402

settings.register_profile("book", deadline=None, database=None, max_examples=60)
settings.load_profile("book")


class LazyFormat:
    """``pprint.pformat(value)``, computed only when the text is used, as logging does for a record
    that a handler writes. nbval 0.11.0 formats every kernel message for a debug log line, whether
    debug logging is on or not (``logger.debug(..., pformat(msg))`` in ``RunningKernel.get_message``):
    with the figures' images in the messages, that cost the test run several CPU-seconds."""

    def __init__(self, value):
        self.value = value

    def __str__(self):
        import pprint

        return pprint.pformat(self.value)


def format_kernel_messages_lazily():
    import pprint

    import nbval.kernel

    if getattr(nbval.kernel, "pformat", None) is pprint.pformat:   # what nbval 0.11.0 does
        nbval.kernel.pformat = LazyFormat


def manage_kernels_without_fixed_waits():
    """nbval's kernels are ready, and stopped, without jupyter_client's fixed waits
    (tools/kernel_managers.py): nbval 0.11.0 makes its manager from the name ``KernelManager`` of its
    module ``nbval.kernel``."""
    import jupyter_client.manager
    import nbval.kernel

    if getattr(nbval.kernel, "KernelManager", None) is jupyter_client.manager.KernelManager:
        nbval.kernel.KernelManager = BookKernelManager


# nbval's kernels and pytest-xdist's workers are forked from one process that has already imported
# PyTorch and the rest (tools/kernel_zygote.py, Linux only; DSC_FRESH_KERNELS=1 turns it off). The
# first process of a run starts it (unless `book.py test` did, before pytest); the workers inherit
# its address. Each kernel or worker is still a new process with its own folder and environment,
# and starts fresh whenever the zygote cannot serve it.
def pytest_configure(config):
    if not (config.getoption("nbval", False) or config.getoption("nbval_lax", False)):
        return
    format_kernel_messages_lazily()
    manage_kernels_without_fixed_waits()
    if not hasattr(config, "workerinput"):          # the run's first process, not a worker
        config._dsc_zygote = kernel_zygote.start()
        # pytest-xdist's workers too are forked from it: they import PyTorch and the rest as well
        tx = getattr(config.option, "tx", None)
        if tx:
            config.option.tx = [kernel_zygote.worker_spec(spec) for spec in tx]
    if os.environ.get(kernel_zygote.SOCKET_VARIABLE):
        import nbval.kernel

        manager = nbval.kernel.NbvalKernelspecManager
        original = manager.get_kernel_spec

        def get_kernel_spec(self, kernel_name):
            spec = original(self, kernel_name)
            spec.argv = kernel_zygote.launcher_argv(spec.argv)
            return spec

        manager.get_kernel_spec = get_kernel_spec


def pytest_unconfigure(config):
    if hasattr(config, "_dsc_zygote"):
        kernel_zygote.stop(config._dsc_zygote)


# The slowest files start first (tools/kernel_env.py): `book.py test` runs two workers, each taking
# whole files in collection order (book.py keeps pytest-xdist from reordering them by size).
def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: slowest_first_rank(item.fspath))  # stable: cells keep their order
