"""Tests of the book's own machinery: the offline guard, re-execution, the cache key, the pins, CI."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager
from traitlets import default

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "_ext"))

import dsc_cache  # noqa: E402
import execute_notebooks  # noqa: E402
import network_guard  # noqa: E402
from kernel_managers import BookAsyncKernelManager  # noqa: E402


# ------------------------------------------------------------------------------------------------
# offline: the audit hook every test kernel loads
# ------------------------------------------------------------------------------------------------

class FakeSocket:
    def __init__(self, family):
        self.family = family


@pytest.mark.parametrize("event, args", [
    ("socket.connect", (FakeSocket(2), ("93.184.216.34", 443))),
    ("socket.connect", (FakeSocket(10), ("2606:2800:220:1::", 80, 0, 0))),
    ("socket.getaddrinfo", ("pypi.org", 443, 0, 0, 0)),
    ("socket.gethostbyname", ("example.com",)),
    ("socket.sendto", (FakeSocket(2), ("8.8.8.8", 53))),
])
def test_network_guard_refuses_the_outside(event, args):
    with pytest.raises(network_guard.NetworkAccessError, match="must run offline"):
        network_guard.check(event, args)


@pytest.mark.parametrize("event, args", [
    ("socket.connect", (FakeSocket(2), ("127.0.0.1", 5555))),
    ("socket.connect", (FakeSocket(10), ("::1", 5555, 0, 0))),
    ("socket.getaddrinfo", ("localhost", 80, 0, 0, 0)),
    ("socket.connect", (FakeSocket(1), "/tmp/kernel.sock")),
    ("open", ("somefile", "r", 0)),
])
def test_network_guard_allows_the_machine_itself(event, args):
    network_guard.check(event, args)


class NbvalKernels(BookAsyncKernelManager):
    """Kernels as nbval's ``--nbval-current-env`` names them, through its kernelspec manager (which
    conftest.py points at the zygote while one serves), managed as conftest.py has nbval manage them."""

    @default("kernel_spec_manager")
    def _nbval_kernel_specs(self):
        return NbvalKernelspecManager()


def run_cell_in_test_kernel(source: str) -> nbformat.NotebookNode:
    """Run one cell in a kernel started the way nbval starts them under this conftest."""
    assert os.environ["IPYTHONDIR"] == str(ROOT / "tests" / "ipython")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    NotebookClient(notebook, kernel_name=CURRENT_ENV_KERNEL_NAME, kernel_manager_class=NbvalKernels,
                   timeout=60, allow_errors=True).execute()
    return notebook.cells[0]


def test_test_kernels_are_offline():
    # sys.audit raises the same event a real lookup would, without any packet leaving the machine
    cell = run_cell_in_test_kernel("import sys\nsys.audit('socket.getaddrinfo', 'example.com', 80, 0, 0, 0)")
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "NetworkAccessError"


# ------------------------------------------------------------------------------------------------
# book.py execute: writes outputs back, leaves a failing notebook untouched
# ------------------------------------------------------------------------------------------------

def write_notebook(path: Path, *sources: str) -> str:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.write_text(nbformat.writes(notebook))
    return path.read_text()


# the cells of one notebook that `book.py execute` runs once (one kernel) for the three tests below
FIND_DSC_UTILS = ("import importlib.util, pathlib\n"
                  "print(pathlib.Path(importlib.util.find_spec('dsc_utils').origin).resolve())")
STREAMS = "import sys, time\nprint('a', flush=True)\ntime.sleep(0.2)\nprint('b', flush=True)"
ENVIRONMENT = ("import os, socket\n"
               "print(os.environ['PYTHONHASHSEED'], os.environ['OMP_NUM_THREADS'])\n"
               "try:\n    socket.getaddrinfo('example.org', 443)\n    print('reached')\n"
               "except Exception as error:\n    print(type(error).__name__)")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A notebook outside the book, run by ``book.py execute``: its exit code, the cells written
    back, what the run printed on stderr, and whether the caller's environment came back."""
    import tempfile
    from types import SimpleNamespace

    path = tmp_path_factory.mktemp("execute") / "good.ipynb"
    # the kernel finds the book's dsc_utils from a notebook elsewhere (found, not imported: an import
    # would spend two seconds on PyTorch, and the notebooks' own tests import it anyway)
    write_notebook(path, FIND_DSC_UTILS, "6 * 7", STREAMS, ENVIRONMENT)
    before = dict(os.environ)
    with tempfile.TemporaryFile() as stderr:      # the kernel's stderr too, at the file level
        saved = os.dup(2)
        os.dup2(stderr.fileno(), 2)
        try:
            code = execute_notebooks.main([str(path)])
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        stderr.seek(0)
        printed = stderr.read().decode(errors="replace")
    return SimpleNamespace(code=code, cells=nbformat.read(path, as_version=4).cells,
                           stderr=printed, environment_back=dict(os.environ) == before)


def test_execute_writes_outputs_in_place(executed):
    assert executed.code == 0
    assert [c.execution_count for c in executed.cells] == [1, 2, 3, 4]
    assert executed.cells[0].outputs[0].text == f"{ROOT / 'dsc_utils.py'}\n"
    assert executed.cells[1].outputs[0].data["text/plain"] == "42"
    # the kernel talked over a Unix socket, not a TCP port (ipykernel warns on its stderr for TCP)
    assert "TCP" not in executed.stderr


def test_execute_leaves_a_failing_notebook_untouched(tmp_path, capsys):
    path = tmp_path / "broken.ipynb"
    before = write_notebook(path, "x = 1", "y = 1 / 0", "z = 3")
    assert execute_notebooks.main([str(path)]) == 1
    assert path.read_text() == before
    report = capsys.readouterr().err
    assert "broken.ipynb" in report and "code cell 2" in report and "ZeroDivisionError" in report
    assert "y = 1 / 0" in report and "left untouched" in report


def test_execute_rejects_a_path_that_is_not_a_notebook(tmp_path, capsys):
    assert execute_notebooks.main([str(tmp_path / "missing.ipynb")]) == 2
    assert "not a notebook" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# the build's execution cache is keyed on dsc_utils.py and requirements.txt
# ------------------------------------------------------------------------------------------------

class FakeApp:
    def __init__(self, root: Path):
        self.srcdir = str(root)
        self.outdir = str(root / "_build" / "html")


class FakeConfig:
    nb_execution_cache_path = ""


class FakeEnv:
    def __init__(self):
        self.found_docs = {"intro", "chapters/a"}

    def doc2path(self, doc):
        return doc + (".md" if doc == "intro" else ".ipynb")


def test_cache_is_dropped_when_dsc_utils_changes(tmp_path):
    (tmp_path / "dsc_utils.py").write_text("A = 1\n")
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\n")
    app, env = FakeApp(tmp_path), FakeEnv()
    cache = tmp_path / "_build" / ".jupyter_cache"

    dsc_cache.clear_stale_cache(app, FakeConfig())
    assert dsc_cache.outdated_notebooks(app, env, set(), set(), set()) == ["chapters/a"]
    cache.mkdir(parents=True)
    (cache / "entry").write_text("cached outputs")

    dsc_cache.clear_stale_cache(app, FakeConfig())                    # nothing changed: keep
    assert (cache / "entry").exists()
    assert dsc_cache.outdated_notebooks(app, env, set(), set(), set()) == []

    (tmp_path / "dsc_utils.py").write_text("A = 2\n")                 # the module changed: drop
    dsc_cache.clear_stale_cache(app, FakeConfig())
    assert not cache.exists()
    assert dsc_cache.outdated_notebooks(app, env, set(), set(), set()) == ["chapters/a"]

    (tmp_path / "requirements.txt").write_text("torch==2.14.1\n")     # the pins changed: re-read
    assert dsc_cache.outdated_notebooks(app, env, set(), set(), set()) == ["chapters/a"]


def test_build_finds_the_notebooks_executed_into_its_cache(tmp_path, capfd):
    import execute_into_cache          # imports jupyter-cache and SQLAlchemy: only where needed
    from jupyter_cache import get_cache

    good, broken = tmp_path / "good.ipynb", tmp_path / "broken.ipynb"
    write_notebook(good, "print(6 * 7)")
    write_notebook(broken, "1 / 0")
    cache_path = tmp_path / "_build" / ".jupyter_cache"
    assert execute_into_cache.main([good, broken], cache_path) == 0
    cache = get_cache(str(cache_path))
    # the lookup MyST-NB's cache mode makes: the good notebook is there, with its outputs
    record = cache.match_cache_notebook(nbformat.read(good, as_version=4))
    executed = cache.get_cache_bundle(record.pk).nb
    assert executed.cells[0].outputs[0].text == "42\n"
    with pytest.raises(KeyError):       # the failing one is left for the build to run and report
        cache.match_cache_notebook(nbformat.read(broken, as_version=4))
    output = capfd.readouterr()
    assert "broken.ipynb failed" in output.out and "TCP" not in output.err
    assert execute_into_cache.main([good], cache_path) == 0         # nothing left to execute
    assert "executing" not in capfd.readouterr().out


def test_the_slowest_first_list_names_every_chapter_and_orders_them():
    import kernel_env

    chapters = sorted((ROOT / "chapters").glob("*.ipynb"))
    test_files = sorted((ROOT / "tests").glob("test_*.py"))
    names = {path.stem for path in chapters + test_files}
    assert set(kernel_env.SLOW_FIRST) <= names                          # no stale name
    assert {path.stem for path in chapters} <= set(kernel_env.SLOW_FIRST)  # no chapter left out
    ordered = sorted(chapters + test_files, key=kernel_env.slowest_first_rank)
    assert [p.stem for p in ordered[:len(kernel_env.SLOW_FIRST)]] == kernel_env.SLOW_FIRST


def test_config_loads_the_cache_extension():
    config = (ROOT / "_config.yml").read_text()
    assert re.search(r"local_extensions:\s*\n\s*dsc_cache: _ext", config)
    assert "execute_notebooks: cache" in config and "raise_on_error: true" in config


# ------------------------------------------------------------------------------------------------
# pins, README commands, CI
# ------------------------------------------------------------------------------------------------

def requirement_lines() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_every_requirement_is_pinned_exactly():
    lines = requirement_lines()
    assert lines[-1] == "-e ."
    unpinned = [line for line in lines[:-1] if not re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[A-Za-z0-9_.+]+", line)]
    assert unpinned == []
    pins = {line.split("==")[0].lower(): line.split("==")[1] for line in lines[:-1]}
    assert pins["jupyter-book"] == "1.0.4.post1"
    assert pins["torch"] == "2.13.0"
    for name in ("matplotlib", "prettytable", "nbval", "pytest", "ipykernel", "jupyterlab", "sympy", "hypothesis"):
        assert name in pins, name


def test_pins_are_what_is_installed():
    from importlib.metadata import version

    from packaging.version import Version

    for line in requirement_lines()[:-1]:
        name, pinned = line.split("==")
        installed = Version(version(name))  # normalised: 0.1.1-2209072238 is 0.1.1.post2209072238
        assert installed.public == Version(pinned).public, f"{name}: pinned {pinned}, installed {installed}"


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_has_exactly_two_commands_and_ci_runs_both():
    commands = readme_commands()
    assert commands == ["python3 book.py build", "python3 book.py test"]
    ci = (ROOT / ".ci" / "run").read_text()
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.strip().startswith(("#", "echo"))]
    for command in commands:
        assert command in ci_lines, f".ci/run does not run {command!r}"
    assert "set -euo pipefail" in ci


def test_dsc_utils_is_importable_without_path_tricks():
    spec = importlib.util.find_spec("dsc_utils")
    assert spec is not None and Path(spec.origin).resolve() == ROOT / "dsc_utils.py"


def test_a_missing_dependency_is_named(tmp_path):
    """dsc_utils imported where torch is missing says which package and how to install it."""
    import subprocess

    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    result = subprocess.run([sys.executable, "-c", "import dsc_utils"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode != 0
    assert "needs the package 'torch'" in result.stderr and "requirements.txt" in result.stderr


def test_pages_workflow_uses_the_readme_commands():
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    steps = workflow["jobs"]["build"]["steps"]
    runs = [step["run"] for step in steps if "run" in step]
    # test first, then build, as .ci/run does; between them only the Colab buttons' address
    runs = [run for run in runs if not run.startswith("python3 tools/set_repository.py")]
    assert runs == readme_commands()[::-1]
    uploads = [step for step in steps if step.get("uses", "").startswith("actions/upload-pages-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"


def test_execute_stores_one_stream_output_per_print_sequence(executed):
    outputs = executed.cells[2].outputs
    assert len(outputs) == 1 and outputs[0].text == "a\nb\n"


# ------------------------------------------------------------------------------------------------
# the same outputs everywhere: one kernel environment, the CPU matrix, the promised Pythons
# ------------------------------------------------------------------------------------------------

import kernel_env  # noqa: E402


def test_execute_runs_kernels_as_the_tests_do(executed):
    """book.py execute starts kernels with the network guard, the hash seed and one thread."""
    assert executed.cells[3].outputs[0].text == "0 1\nNetworkAccessError\n"
    assert executed.environment_back      # the caller's environment is given back


def test_the_tests_kernels_share_that_environment():
    """conftest.py gives nbval's kernels the same variables (the thread count is the caller's)."""
    expected = kernel_env.kernel_environment(threads=None)
    for name in ("IPYTHONDIR", "PYTHONHASHSEED"):
        assert os.environ[name] == expected[name]
    assert Path(os.environ["IPYTHONDIR"]) == ROOT / "tests" / "ipython"


def load_book():
    spec = importlib.util.spec_from_file_location("book_under_test", ROOT / "book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_book_refuses_an_old_python_before_installing(monkeypatch, capsys):
    book = load_book()
    monkeypatch.setattr(book.sys, "version_info", (3, 10, 12))
    monkeypatch.setattr(book.subprocess, "run", lambda *a, **k: pytest.fail("pip ran"))
    monkeypatch.setattr(book.venv, "create", lambda *a, **k: pytest.fail("a venv was created"))
    with pytest.raises(SystemExit):
        book.ensure_environment()
    assert "Python 3.11 or newer is needed" in capsys.readouterr().err


def test_book_test_keeps_the_slowest_first_order(monkeypatch):
    """Two workers, whole files, in collection order: pytest-xdist would hand out the files with the
    most tests first."""
    import kernel_env

    book = load_book()
    calls, zygotes, threads = [], [], []
    def run(args, **kwargs):
        calls.append(args)
        threads.append(kwargs["env"].get("OMP_NUM_THREADS"))
        # pytest runs in the kernels' environment, with the zygote's address, while it lives
        env = kwargs["env"]
        assert env["IPYTHONDIR"] == str(kernel_env.IPYTHONDIR)
        assert zygotes[-1] == ("running", env) and env["DSC_KERNEL_ZYGOTE"] == "socket"
        return book.subprocess.CompletedProcess(args, 0)

    def start(env, python):                   # the zygote runs the environment's Python
        assert python == str(book.PYTHON) and "DSC_KERNEL_ZYGOTE" not in env
        zygotes.append(("running", env))
        env["DSC_KERNEL_ZYGOTE"] = "socket"
        return len(zygotes) - 1

    def stop(started):
        zygotes[started] = ("stopped", zygotes[started][1])

    monkeypatch.setattr(book.subprocess, "run", run)
    monkeypatch.setattr(book.kernel_zygote, "start", start)
    monkeypatch.setattr(book.kernel_zygote, "stop", stop)
    assert book.run_pytest(["-q"], {}) == 0
    assert calls[0][3:] == ["-n", "2", "--dist", "loadfile", "--no-loadscope-reorder", "-q"]
    assert zygotes[0][0] == "stopped"
    monkeypatch.setattr(book, "CPU_SETTINGS", {"native": {}})
    assert book.cpu_matrix([]) == 0                           # the matrix runs the same way
    assert [call[4:9] for call in calls[1:]] == [book.PARALLEL] * 2
    assert book.run_pytest(["-n", "3"], {"OMP_NUM_THREADS": "1"}) == 0
    assert calls[-1][3:] == ["-n", "3"]
    assert len(zygotes) == len(calls) and all(state == "stopped" for state, _ in zygotes)
    assert threads == ["1", "1", None, "1"]       # the matrix's second run: the default count


def test_book_names_the_cpu_settings(capsys):
    book = load_book()
    with pytest.raises(SystemExit):
        book.test(["--cpu", "pentium"])
    assert "native, avx2, sse4" in capsys.readouterr().err


def test_cpu_settings_cap_every_library_and_the_readme_lists_them():
    readme = (ROOT / "CONTRIBUTING.md").read_text()        # the README links it
    for name, variables in kernel_env.CPU_SETTINGS.items():
        if name == "native":
            assert variables == {}
            continue
        assert set(variables) == {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS"}
        assert " ".join(f"{k}={v}" for k, v in variables.items()) in readme
    ci = (ROOT / ".ci" / "run").read_text()
    capped = re.findall(r"^python3 book.py test --cpu (\w+)$", ci, re.M)
    assert capped and all(kernel_env.CPU_SETTINGS[name] for name in capped)


def test_the_promised_python_is_the_project_s():
    book = load_book()
    project = (ROOT / "pyproject.toml").read_text()
    minimum = ".".join(map(str, book.MINIMUM_PYTHON))
    assert f'requires-python = ">={minimum}"' in project
    assert f"Python {minimum}.0 or newer" in (ROOT / "README.md").read_text()


def test_nbval_formats_a_kernel_message_only_for_a_debug_line_that_is_logged(caplog, monkeypatch):
    import logging
    import pprint

    import nbval.kernel

    import conftest

    formatted = []
    def pformat(value):
        formatted.append(value)
        return f"formatted {value!r}"

    class Client:
        def get_iopub_msg(self, timeout=None):
            return {"msg_type": "stream", "content": {"text": "1\n"}}

    monkeypatch.setattr(pprint, "pformat", pformat)
    monkeypatch.setattr(nbval.kernel, "pformat", pformat)     # as nbval 0.11.0 imports it
    conftest.format_kernel_messages_lazily()
    assert nbval.kernel.pformat is conftest.LazyFormat
    kernel = object.__new__(nbval.kernel.RunningKernel)
    kernel.kc = Client()
    caplog.set_level(logging.INFO, logger=nbval.kernel.logger.name)
    assert kernel.get_message("iopub")["content"] == {"text": "1\n"}
    assert formatted == []                                     # no debug line, no formatting
    caplog.set_level(logging.DEBUG, logger=nbval.kernel.logger.name)
    kernel.get_message("iopub")
    assert "formatted {'msg_type': 'stream'" in caplog.records[-1].getMessage()
    assert len(formatted) >= 1


def test_the_readme_is_for_readers_and_links_the_rest():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.split()) <= 700                       # one screen or two
    assert "(CONTRIBUTING.md)" in readme and (ROOT / "CONTRIBUTING.md").exists()
    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    for topic in ("## The same outputs on every CPU", "## The benchmarks", "## Speed",
                  "tools/pipeline_speed.py"):
        assert topic in contributing, topic


def test_citation_file_is_valid_and_names_the_book():
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    for key in ("cff-version", "message", "title", "authors", "version"):
        assert citation.get(key), key
    assert citation["cff-version"] == "1.2.0"
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert citation["title"] == config["title"]
    project = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{citation["version"]}"' in project
    assert all(isinstance(a, dict) and (a.get("name") or a.get("family-names"))
               for a in citation["authors"])


def _book_pages():
    spec = importlib.util.spec_from_file_location("book_pages", ROOT / "_ext" / "book_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_solution_is_tagged_and_the_practice_notebooks_drop_only_them():
    pages = _book_pages()
    chapters = sorted((ROOT / "chapters").glob("*.ipynb"))
    with_solutions = 0
    for path in chapters:
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            text = "".join(cell["source"]).lstrip()
            tags = cell.get("metadata", {}).get("tags", [])
            if cell["cell_type"] == "markdown" and ":::{admonition} Solution" in text:
                assert text.startswith(":::{admonition} Solution"), f"{path.name}: split it"
                assert "solution" in tags, f"{path.name}: an untagged solution"
            if "solution" in tags:
                assert not text.startswith("**Exercise"), f"{path.name}: an exercise tagged"
        practice = pages.practice_notebook(notebook)
        kept = [c for c in notebook["cells"] if "solution" not in c["metadata"].get("tags", [])]
        assert practice["cells"] == kept and practice["metadata"] == notebook["metadata"]
        assert not any(":::{admonition} Solution" in "".join(c["source"])
                       for c in practice["cells"])
        with_solutions += pages.has_solutions(path)
    assert with_solutions >= 15


# ------------------------------------------------------------------------------------------------
# Colab: the launch buttons and every notebook's first code cell
# ------------------------------------------------------------------------------------------------

import colab_setup  # noqa: E402
import set_repository  # noqa: E402


def first_code_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join(next(cell for cell in cells if cell["cell_type"] == "code")["source"])


def test_every_notebook_starts_with_the_same_colab_cell():
    chapters = set_repository.notebooks()
    assert len(chapters) == len(list((ROOT / "chapters").glob("*.ipynb"))) >= 20
    named = {set_repository.cell_repository(first_code_cell(path)) for path in chapters}
    assert len(named) == 1 and None not in named            # one cell, one repository, everywhere
    (repository,) = named
    for path in chapters:
        assert first_code_cell(path) == set_repository.colab_cell(repository), path.name
    assert max(map(len, set_repository.colab_cell("o" * 20 + "/" + "n" * 40).splitlines())) <= 88


def run_colab_cell(tmp_path: Path, fake_colab: bool, repository: str = "owner/book") -> dict:
    """Run the cell in a fresh interpreter; report what it printed, ran, changed and left behind."""
    script = tmp_path / "probe.py"
    script.write_text(f"""
import json, os, subprocess, sys, types
if {fake_colab}:
    sys.modules["google.colab"] = types.ModuleType("google.colab")
calls = []
subprocess.run = lambda command, **kwargs: calls.append(command)
os.chdir = lambda path: calls.append(["chdir", path])
before_path, before_cwd, before_files = list(sys.path), os.getcwd(), sorted(os.listdir())
namespace = {{}}
error = None
try:
    exec({set_repository.colab_cell(repository)!r}, namespace)
except RuntimeError as raised:
    error = str(raised)
print(json.dumps(dict(calls=calls, error=error, names=sorted(set(namespace) - {{"__builtins__"}}),
                      path_added=[p for p in sys.path if p not in before_path],
                      cwd_same=os.getcwd() == before_cwd,
                      files_same=sorted(os.listdir()) == before_files)))
""")
    import subprocess

    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, check=True)
    assert result.stderr == ""
    return json.loads(result.stdout)


def test_the_colab_cell_does_nothing_anywhere_else(tmp_path):
    report = run_colab_cell(tmp_path, fake_colab=False)
    assert report == dict(calls=[], error=None, names=["sys"], path_added=[], cwd_same=True,
                          files_same=True)


def test_on_colab_the_cell_clones_the_named_repository_and_sets_up(tmp_path):
    report = run_colab_cell(tmp_path, fake_colab=True)
    clone, setup, chdir = report["calls"]
    assert clone[:2] == ["git", "clone"] and clone[-2:] == ["https://github.com/owner/book",
                                                            "/content/book"]
    assert setup[-1] == "/content/book/tools/colab_setup.py"
    assert chdir == ["chdir", "/content/book/chapters"]
    assert report["path_added"] == ["/content/book"]
    unnamed = run_colab_cell(tmp_path, fake_colab=True, repository="")
    assert unnamed["calls"] == [] and "set_repository.py OWNER/NAME" in unnamed["error"]


def test_colab_installs_the_pinned_runtime_and_not_jupyter():
    requirements = (ROOT / "requirements.txt").read_text()
    torch, others = colab_setup.pip_commands("python", requirements)
    pins = [line for line in requirements.splitlines() if "==" in line]
    assert torch[-3:] == [next(p for p in pins if p.startswith("torch==")), "--index-url",
                          colab_setup.TORCH_CPU_INDEX]
    installed = torch[-3:-2] + others[6:]
    assert others[:6] == ["python", "-m", "pip", "install", "--quiet",
                          "--disable-pip-version-check"]
    assert all(pin in pins for pin in installed) and len(installed) == len(colab_setup.RUNTIME)
    names = {pin.split("==")[0].lower() for pin in installed}
    assert not names & {"ipykernel", "ipython", "jupyterlab", "jupyter-book", "nbval", "pytest"}
    with pytest.raises(ValueError, match="torchinfo"):
        colab_setup.runtime_pins(requirements.replace("torchinfo==", "torchinfo>="))


def test_the_set_repository_gives_every_page_a_colab_button():
    from jupyter_book.config import get_final_config

    text = (ROOT / "_config.yml").read_text()
    for repository, url, colab in [("", "", ""), ("owner/book", "https://github.com/owner/book",
                                                  "https://colab.research.google.com")]:
        config = yaml.safe_load(set_repository.update_config(text, repository))
        final, _ = get_final_config(user_yaml=config, sourcedir=ROOT,
                                    cli_config={"latex_individualpages": False})
        options = final["html_theme_options"]
        assert (options["repository_url"], options["launch_buttons"]["colab_url"]) == (url, colab)
    workflow = (ROOT / ".github" / "workflows" / "pages.yml").read_text()
    assert 'python3 tools/set_repository.py "$GITHUB_REPOSITORY"' in workflow
    assert workflow.index("set_repository.py") < workflow.index("python3 book.py build")
