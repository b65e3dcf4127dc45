"""Fill the build's execution cache, two notebooks at a time (the first step of ``book.py build``).

In cache mode MyST-NB executes every notebook that is not in the cache, one after another, while
Sphinx reads the pages. This step runs before it: it executes the notebooks missing from the cache
two at a time (one per core of the machine the book targets) with the function MyST-NB itself uses
(jupyter-cache's ``single_nb_execution``, the same working folder, timeout and error settings) and
stores them the way MyST-NB does, so the build then finds every notebook cached. The kernels run
in the environment ``book.py build`` gives them (tools/kernel_env.py), like MyST-NB's would; on Linux
they are forked from a process that has imported PyTorch once (tools/kernel_zygote.py), as the
tests' kernels are.

A notebook that fails is not stored: the build then executes it itself and fails, reporting the
notebook, the cell and the traceback as usual. The cache is emptied first when dsc_utils.py or the
pinned requirements changed (_ext/dsc_cache.py), exactly as the build would empty it.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import yaml
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn
from jupyter_cache.executors.utils import single_nb_execution

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "_build" / ".jupyter_cache"  # where jupyter-book puts MyST-NB's cache
sys.path.insert(0, str(ROOT / "_ext"))
from dsc_cache import drop_stale_cache  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
import kernel_zygote  # noqa: E402
from kernel_env import private_connection, slowest_first_rank  # noqa: E402
from kernel_managers import BookKernelManager  # noqa: E402

EXECUTE = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["execute"]


def execute_one(path: Path) -> tuple[Path, nbformat.NotebookNode | None, float, str | None]:
    """Execute one notebook as MyST-NB's cache mode would: (path, notebook or None, seconds, error)."""
    notebook = nbformat.read(path, as_version=4)
    # the notebook's own kernel (python3), forked from this step's zygote if it runs one, and
    # managed without jupyter_client's fixed waits (tools/kernel_managers.py)
    manager = BookKernelManager(kernel_name=notebook.metadata.get("kernelspec", {}).get("name", "python3"),
                                **private_connection())
    manager.kernel_spec.argv = kernel_zygote.launcher_argv(manager.kernel_spec.argv)
    # "immediate": once every output is in, the kernel is stopped at once rather than asked to exit
    # and waited for (with PyTorch loaded, its interpreter's teardown takes seconds)
    try:
        result = single_nb_execution(notebook, cwd=str(path.parent), timeout=EXECUTE["timeout"],
                                     allow_errors=EXECUTE["allow_errors"], meta_override=True,
                                     shutdown_kernel="immediate", km=manager)
    finally:                           # nbclient stops only the kernels whose manager it made
        if manager.has_kernel:
            manager.shutdown_kernel(now=True)
    if result.err is not None:
        return path, None, result.time, f"{type(result.err).__name__}"
    return path, result.nb, result.time, None


def main(paths: list[Path], cache_path: Path = CACHE) -> int:
    drop_stale_cache(ROOT, cache_path)
    cache = get_cache(str(cache_path))
    missing = []
    for path in paths:
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            missing.append(path)
    if not missing:
        return 0
    start = time.perf_counter()
    print(f"execute_into_cache: executing {len(missing)} notebook(s), two at a time", flush=True)
    missing.sort(key=slowest_first_rank)
    zygote = kernel_zygote.start()    # kernels forked from one process that imported PyTorch once
    try:
        with ProcessPoolExecutor(max_workers=min(2, len(missing))) as pool:
            for path, notebook, seconds, error in pool.map(execute_one, missing):
                name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                if notebook is None:  # the build re-executes it and reports the failing cell
                    print(f"execute_into_cache: {name} failed ({error}); the build reports it",
                          flush=True)
                    continue
                record = cache.add_nb_to_project(str(path))
                cache.cache_notebook_bundle(CacheBundleIn(notebook, record.uri,
                                                          data={"execution_seconds": seconds}),
                                            check_validity=False, overwrite=True)
                print(f"execute_into_cache: {name} executed in {seconds:.1f} s", flush=True)
    finally:
        kernel_zygote.stop(zygote)
    print(f"execute_into_cache: done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sorted((ROOT / "chapters").glob("*.ipynb"))))
