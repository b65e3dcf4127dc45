"""Key the book's execution cache on dsc_utils.py and the pinned requirements, not only on notebooks.

myst-nb caches each notebook's execution by the notebook's own code, and Sphinx re-reads a page only
when its source file changes. A change to dsc_utils.py alone would therefore leave stale outputs in
the HTML. This extension fingerprints the files every notebook depends on; when the fingerprint
changes it empties the execution cache before anything runs and marks every notebook outdated.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

DEPENDENCIES = ("dsc_utils.py", "requirements.txt")


def fingerprint(srcdir: Path) -> str:
    digest = hashlib.sha256()
    for name in DEPENDENCIES:
        path = srcdir / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()


def drop_stale_cache(srcdir: Path, cache: Path) -> None:
    """Empty the execution cache ``cache`` if the files of DEPENDENCIES changed since it was filled.

    Also used by tools/execute_into_cache.py, which fills the cache before the build."""
    stamp = cache.parent / ".dsc_cache_fingerprint"
    current = fingerprint(srcdir)
    if stamp.exists() and stamp.read_text() == current:
        return
    if cache.exists():
        shutil.rmtree(cache)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(current)


def clear_stale_cache(app, config) -> None:
    srcdir = Path(app.srcdir)
    cache = Path(config.nb_execution_cache_path or Path(app.outdir).parent / ".jupyter_cache")
    if not cache.is_absolute():
        cache = srcdir / cache
    drop_stale_cache(srcdir, cache)


def outdated_notebooks(app, env, added, changed, removed):
    current = fingerprint(Path(app.srcdir))
    if getattr(env, "dsc_fingerprint", None) == current:
        return []
    env.dsc_fingerprint = current
    return [doc for doc in env.found_docs if str(env.doc2path(doc)).endswith(".ipynb")]


def setup(app):
    app.connect("config-inited", clear_stale_cache, priority=100)
    app.connect("env-get-outdated", outdated_notebooks)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
