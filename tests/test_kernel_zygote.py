"""Tests of tools/kernel_zygote.py: nbval's kernels forked from a process that has already imported
PyTorch are the kernels a fresh start would give, and fall back to a fresh start when they cannot be."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from kernel_managers import BookKernelManager  # noqa: E402  (nbval's, under conftest.py)

del sys.path[0]
ZYGOTE = os.environ.get("DSC_KERNEL_ZYGOTE")
pytestmark = pytest.mark.skipif(
    not ZYGOTE, reason="no zygote in this run (not Linux, DSC_FRESH_KERNELS=1, or no --nbval)")

# what a kernel reports about itself; the per-kernel variables (JPY_*) and the streams' are left out
PROBE = """
import gc, os, random, signal, sys
print(gc.isenabled(), gc.get_threshold())
print(sys.argv[0])
print(sys.path)
print(os.getcwd())
print(sorted((k, v) for k, v in os.environ.items() if not k.startswith(("JPY_", "PYTEST_"))))
print(signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGCHLD))
print(__name__, sys.modules["__main__"].__class__.__name__)
import matplotlib, matplotlib.pyplot as plt
print(plt.get_backend(), sorted(matplotlib.rcParams.items()))
print(sorted(m for m in sys.modules if m.startswith(("matplotlib_inline", "IPython.core.pylab"))))
plt.close(plt.figure())                      # the inline backend is activated by the first figure
print([f.__name__ for f in get_ipython().events.callbacks["post_execute"]])
print(sorted(m for m in sys.modules if m.startswith(("matplotlib_inline", "IPython.core.pylab"))))
"""


def start(argv, cwd, **variables):
    manager = BookKernelManager()
    manager.kernel_spec.argv = argv
    env = {**os.environ, **variables}
    manager.start_kernel(cwd=str(cwd), env=env)
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    return manager, client


def run(client, source, timeout=60):
    """stdout of a cell; an error is raised as an AssertionError naming it."""
    lines = []

    def hook(message):
        if message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
            lines.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            lines.append(f"ERROR {message['content']['ename']}")

    client.execute_interactive(source, output_hook=hook, timeout=timeout)
    return "".join(lines)


def stop(manager, client):
    client.stop_channels()
    manager.shutdown_kernel(now=True)


FRESH = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
LAUNCHER = str(ROOT / "tools" / "kernel_zygote.py")
FORKED = [sys.executable, LAUNCHER, "launch", "-f", "{connection_file}"]
PYTHON = [sys.executable, LAUNCHER, "python"]


def test_kernelspecs_and_worker_specs_get_the_launcher_only_while_a_zygote_serves(monkeypatch):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import kernel_zygote
    finally:
        del sys.path[0]
    assert kernel_zygote.launcher_argv(FRESH) == FORKED
    other = ["/usr/bin/R", "--slave", "-f", "{connection_file}"]
    assert kernel_zygote.launcher_argv(other) == other
    assert kernel_zygote.worker_spec("popen") == f"popen//python={shlex.join(PYTHON)}"
    assert kernel_zygote.worker_spec("popen//python=python3.12") == "popen//python=python3.12"
    monkeypatch.delenv("DSC_KERNEL_ZYGOTE")
    assert kernel_zygote.launcher_argv(FRESH) == FRESH
    assert kernel_zygote.worker_spec("popen") == "popen"


def test_stop_closes_a_waiting_zygote_and_kills_one_still_importing(tmp_path):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import kernel_zygote
    finally:
        del sys.path[0]
    # stand-ins: one that exits when its stdin closes (a zygote waiting for requests), and one that
    # does not look at stdin (a zygote still importing, which a short run such as --version leaves)
    waiting = "import sys\nprint(flush=True)\nsys.stdin.read()"
    importing = "import time\nprint(flush=True)\ntime.sleep(60)"
    for code, returncode in ((waiting, 0), (importing, -signal.SIGKILL)):
        folder = tmp_path / "zygote"
        folder.mkdir()
        env = {"DSC_KERNEL_ZYGOTE": str(folder / "socket")}
        process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE)
        process.stdout.readline()               # it is running
        began = time.monotonic()
        kernel_zygote.stop((process, str(folder), env))
        assert time.monotonic() - began < 4     # it used to wait 5 s for the imports to end
        assert process.returncode == returncode
        assert env == {} and not folder.exists()
        process.stdout.close()


def test_a_forked_kernel_is_the_kernel_a_fresh_start_gives(tmp_path):
    reports = {}
    for name, argv in (("fresh", FRESH), ("forked", FORKED)):
        manager, client = start(argv, tmp_path)
        try:
            preloaded, pid = run(client, "import os, sys\nprint('torch' in sys.modules, "
                                         "os.getpid())").split()
            reports[name] = run(client, PROBE)
            launched = manager.provisioner.process.pid
        finally:
            stop(manager, client)
        # forked: PyTorch is there before any import, and the kernel is not the process launched
        expected = ("True", False) if name == "forked" else ("False", True)
        assert (preloaded, int(pid) == launched) == expected
    assert "ERROR" not in reports["fresh"]
    assert reports["forked"] == reports["fresh"]


def test_a_forked_kernel_is_offline_and_interruptible(tmp_path):
    manager, client = start(FORKED, tmp_path)
    try:
        preloaded, pid = run(client, "import os, sys\nprint('torch' in sys.modules, os.getpid())").split()
        assert preloaded == "True"
        audit = "import sys\nsys.audit('socket.getaddrinfo', 'example.com', 80, 0, 0, 0)"
        assert run(client, audit) == "ERROR NetworkAccessError"
        message_id = client.execute("import time\ntime.sleep(60)")
        while True:                     # the kernel has started the cell: its input is broadcast
            message = client.get_iopub_msg(timeout=20)
            if (message["msg_type"] == "execute_input"
                    and message["parent_header"].get("msg_id") == message_id):
                break
        time.sleep(0.2)                 # and is inside time.sleep by now
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=20)
        assert reply["parent_header"]["msg_id"] == message_id
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        # and it goes on running code. ipykernel aborts the requests that reach it while it is still
        # clearing up after a failed cell (a reply "aborted", without output), which under load can
        # include the next one: ask again until one is taken
        for _ in range(20):
            status = client.execute_interactive("x = 1", timeout=20)["content"]["status"]
            if status != "aborted":
                break
            time.sleep(0.1)
        assert status == "ok"
    finally:
        stop(manager, client)
    # killing its launcher (what shutdown_kernel(now=True) does) ends the forked kernel too
    pid = int(pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the forked kernel {pid} outlived its launcher")


def test_a_different_environment_gets_a_fresh_kernel(tmp_path):
    # the hash seed acts when the interpreter starts: the zygote, started with another, refuses
    manager, client = start(FORKED, tmp_path, PYTHONHASHSEED="7")
    try:
        report = run(client, "import sys\nprint('torch' in sys.modules, hash('book'))")
    finally:
        stop(manager, client)
    seeded = subprocess.run([sys.executable, "-c", "print(hash('book'))"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONHASHSEED": "7"}, check=True)
    assert report == f"False {seeded.stdout}"


# what a Python process reports about itself; pytest-xdist starts its workers as `python -u -c CODE`
PYTHON_PROBE = """
import gc, os, signal, sys
print(sys.argv, sys.path, os.getcwd(), sys.dont_write_bytecode, gc.isenabled(), gc.get_threshold())
print(sorted((k, v) for k, v in os.environ.items() if not k.startswith("PYTEST_")))
print([signal.getsignal(s) for s in (signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE, signal.SIGTERM,
                                    signal.SIGHUP)])
print(sorted(globals().items(), key=str), sys.modules["__main__"].__dict__ is globals())
print(type(sys.stdout.buffer).__name__, sys.stdout.write_through, sys.stderr.write_through)
print(input())                          # execnet's bootstrap reads its first line from stdin
print("torch" in sys.modules, file=sys.stderr)
sys.exit(3)
"""


def python(prefix, cwd, ignored=(), **variables):
    """The probe run by ``prefix``, started by a process that ignores the signals ``ignored`` and
    leaves SIGINT and SIGHUP at their default otherwise, however the test run itself was started (a
    background job of a shell without job control ignores SIGINT, and its programs inherit that)."""
    def ignore():
        for signum in (signal.SIGINT, signal.SIGHUP, *ignored):
            signal.signal(signum, signal.SIG_IGN if signum in ignored else signal.SIG_DFL)

    return subprocess.run([*prefix, "-u", "-B", "-c", PYTHON_PROBE, "an argument"], cwd=cwd,
                          input="a line\n", capture_output=True, text=True, timeout=60,
                          env={**os.environ, **variables}, preexec_fn=ignore)


def test_a_forked_python_is_the_python_a_fresh_start_gives(tmp_path):
    # also as started under nohup in a background job (SIGINT and SIGHUP ignored), whatever the
    # zygote itself ignores
    for ignored in ((), (signal.SIGINT, signal.SIGHUP)):
        fresh = python([sys.executable], tmp_path, ignored)
        forked = python(PYTHON, tmp_path, ignored)
        assert (fresh.returncode, fresh.stderr) == (3, "False\n")
        assert (forked.returncode, forked.stderr) == (3, "True\n")  # PyTorch came with the fork
        assert forked.stdout == fresh.stdout
        assert "an argument" in fresh.stdout and "a line" in fresh.stdout
        assert ("[<Handlers.SIG_IGN: 1>" in fresh.stdout) == bool(ignored)   # SIGINT first
    # the exit status of a program that ends, fails, or exits with a message
    for code, status, error in (("pass", 0, ""), ("1 / 0", 1, "ZeroDivisionError: division by zero\n"),
                                ("raise SystemExit('bye')", 1, "bye\n")):
        for prefix in ([sys.executable], PYTHON):
            ended = subprocess.run([*prefix, "-u", "-c", code], capture_output=True, text=True,
                                   timeout=60)
            assert (ended.returncode, ended.stderr[-len(error):] if error else ended.stderr) == (
                status, error)


def test_a_python_with_another_environment_or_form_is_fresh(tmp_path):
    seeded = python(PYTHON, tmp_path, PYTHONHASHSEED="7")
    assert seeded.returncode == 3 and seeded.stderr.startswith("kernel_zygote: a fresh python")
    assert seeded.stderr.endswith("False\n")
    module = subprocess.run([*PYTHON, "-m", "this"], capture_output=True, text=True, timeout=60)
    assert module.returncode == 0 and "Beautiful is better than ugly" in module.stdout


def test_importing_keras_leaves_the_kernels_started_after_it_forked(tmp_path):
    # a test or a notebook that imports Keras changes its process's environment; the notebooks a
    # worker runs after such a test must still be forked (each fresh kernel imports PyTorch again)
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import kernel_zygote
    finally:
        del sys.path[0]
    code = ("import os\nbefore = dict(os.environ)\nimport keras\n"
            "print(sorted(k for k in os.environ if os.environ[k] != before.get(k)))")
    imported = subprocess.run([*PYTHON, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "KERAS_BACKEND": "torch"})
    assert imported.returncode == 0, imported.stderr
    changed = eval(imported.stdout)
    assert "TF_FORCE_GPU_ALLOW_GROWTH" in changed                # what Keras 3 sets today
    after = {**os.environ, **dict.fromkeys(changed, "set by Keras")}
    assert kernel_zygote.pinned(after) == kernel_zygote.pinned(dict(os.environ))


@pytest.mark.skipif(not os.environ.get("PYTEST_XDIST_WORKER"), reason="not a pytest-xdist worker")
def test_this_worker_was_forked_by_the_zygote():
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as parent:
        assert parent.read().split(b"\0")[1:3] == [LAUNCHER.encode(), b"serve"]
