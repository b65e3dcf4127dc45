#!/usr/bin/env python3
"""One entry point for the book: it creates its own environment, then builds, tests or executes.

    python3 book.py build                 # the HTML book, into _build/html
    python3 book.py test [PYTEST_ARGS]    # nbval over every notebook + the unit tests
    python3 book.py execute [NOTEBOOK...] # re-execute notebooks, write their outputs back in place
    python3 book.py bench [--quick]       # the speed benchmark, into benchmarks/results.json
    python3 book.py browser               # every built page checked in headless Chromium, offline
    python3 book.py lab                   # JupyterLab in the book's environment

Needs only Python 3.11+ and access to the package registries. The environment lives in .venv/ and is
(re)installed from requirements.txt whenever that file or pyproject.toml changes.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".book-requirements.sha256"
USAGE = __doc__.split("\n\n")[1]


def fail(message: str, code: int = 1) -> None:
    print(f"book.py: {message}", file=sys.stderr)
    sys.exit(code)


# ----------------------------------------------------------------------------------------------
# The environment
# ----------------------------------------------------------------------------------------------

def requirements_digest() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.txt", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    """Create .venv if it is missing and install requirements.txt if it changed since last time."""
    if sys.version_info < (3, 11):
        fail(f"Python 3.11 or newer is needed, this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"book.py: creating the environment in {VENV.name}/ (once)", flush=True)
        try:
            venv.create(VENV, with_pip=True)
        except Exception as error:  # e.g. Debian's python3 without the python3-venv package
            fail(f"could not create {VENV.name}/ ({error}); on Debian or Ubuntu: apt-get install python3-venv")
    wanted = requirements_digest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print("book.py: installing the pinned requirements into .venv/ (this takes a minute)", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    result = subprocess.run([*pip, "-r", "requirements.txt"], cwd=ROOT)
    if result.returncode != 0:
        fail("pip could not install requirements.txt (see its message above); nothing was built or tested")
    STAMP.write_text(wanted + "\n")


def in_environment() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# ----------------------------------------------------------------------------------------------
# The commands (they run inside .venv)
# ----------------------------------------------------------------------------------------------

def build(args: list[str]) -> int:
    """Build the HTML book; warnings are errors; every notebook executes (cached by content)."""
    command = [str(BIN / "jupyter-book"), "build", "-W", "-n", "--keep-going", *args, "."]
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        # a failing cell is reported above by myst-nb: the notebook's path, the cell's source, the traceback
        print("book.py: the book build FAILED (its messages are above)", file=sys.stderr)
    else:
        print("book.py: the HTML book is in _build/html/ (open _build/html/index.html)")
    return result.returncode


def test(args: list[str]) -> int:
    """pytest (nbval over chapters/ and the unit tests, as pyproject.toml configures it).

    Unless told otherwise (-n, or OMP_NUM_THREADS set), it runs two workers, one per core, each test
    file on one worker, with one thread per process: two single-threaded kernels side by side finish
    sooner than one after the other with two threads each fighting for the same two cores.
    """
    env = dict(os.environ)
    parallel = []
    if not any(a == "-n" or a.startswith(("-n", "--numprocesses", "--dist")) for a in args):
        parallel = ["-n", "2", "--dist", "loadfile"]
        env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run([str(PYTHON), "-m", "pytest", *parallel, *args], cwd=ROOT, env=env).returncode


def execute(args: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "tools"))
    from execute_notebooks import main as execute_main  # noqa: E402  (needs .venv's packages)

    return execute_main(args)


def bench(args: list[str]) -> int:
    """The speed benchmark; writes benchmarks/results.json for the speed chapter."""
    return subprocess.run([str(PYTHON), str(ROOT / "benchmarks" / "speed.py"), *args], cwd=ROOT).returncode


def browser(args: list[str]) -> int:
    """Open every built page in headless Chromium, offline (tests/browser/check_pages.py)."""
    if not (ROOT / "tests" / "browser" / "node_modules" / "mathjax").exists():
        npm = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", "tests/browser"], cwd=ROOT)
        if npm.returncode != 0:
            fail("npm could not install MathJax for the browser check (tests/browser/package-lock.json)")
    return subprocess.run([str(PYTHON), str(ROOT / "tests" / "browser" / "check_pages.py"), *args], cwd=ROOT).returncode


def lab(args: list[str]) -> int:
    return subprocess.run([str(BIN / "jupyter"), "lab", *args], cwd=ROOT).returncode


COMMANDS = {"build": build, "test": test, "execute": execute, "bench": bench, "browser": browser, "lab": lab}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    if not in_environment():
        ensure_environment()
        os.execv(str(PYTHON), [str(PYTHON), str(Path(__file__).resolve()), *argv])
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
