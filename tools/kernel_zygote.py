"""Notebook kernels forked from a process that has already imported the heavy libraries (Linux only).

Every notebook of the book imports PyTorch, and most also load ``torch._dynamo`` (through the
optimizers) and scikit-learn: 3 to 8 s of imports per kernel on the reference machine, paid again by
each of the ten notebooks that nbval runs. A *zygote* pays them once. It imports ipykernel, PyTorch and the rest, waits on a Unix
socket, and forks one child per kernel request; the child becomes an ordinary ipykernel kernel.

    python tools/kernel_zygote.py serve SOCKET     # the zygote (see start() below)
    python tools/kernel_zygote.py launch -f FILE   # a kernelspec's command: a kernel, forked if possible
    python tools/kernel_zygote.py python -u -c CODE   # a Python process, forked if possible

The third form is how conftest.py starts pytest-xdist's workers (``worker_spec``): they import the
same libraries for the unit tests, and forked from the zygote they skip that too. Only the form
``python [-u] [-B] -c CODE [ARG...]`` is served (xdist's); the child gets a fresh ``__main__``, the
arguments, ``sys.path`` and streams that ``python`` would give it, and its exit status goes back
through the launcher.

A zygote is started with ``start()``, and kernels are given the command ``launcher_argv()``
returns: by ``book.py test`` before it starts pytest (the zygote's imports then overlap pytest's own
start-up), by conftest.py for nbval's kernels when pytest runs without one, and by
tools/execute_into_cache.py for the build's first step.

``launch`` is what the Jupyter kernel manager starts. It hands its standard streams and the request
(arguments, working folder, environment) to the zygote and stays alive as long as the forked kernel
does, forwarding the signals it receives (an interrupt is SIGINT). If it is killed, the kernel exits
with it. When there is no zygote, or the zygote refuses because the kernel's environment differs
from its own (the hash seed, the thread counts and the instruction-set caps of ATen, oneDNN and MKL
act when the libraries load), ``launch`` replaces itself with the usual ``python -m
ipykernel_launcher``: the result is the same kernel either way, only its start-up is faster when
forked. tests/test_kernel_zygote.py compares the two.

The zygote imports libraries but runs no computation before it forks: it has one thread, and PyTorch
has not yet picked its kernels or started a thread pool. ``book.py execute`` always starts fresh
kernels, so the committed outputs never depend on this shortcut, and the tests compare every forked
kernel's outputs with them.
"""
from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import sys

SOCKET_VARIABLE = "DSC_KERNEL_ZYGOTE"       # the zygote's socket path, for `launch`
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the zygote's folder
# Libraries read some variables when they are imported (the hash seed, thread counts, instruction-set
# caps, matplotlib's backend and folders), so the zygote serves only a kernel whose environment equals
# its own, except for: the variables that the kernel manager and pytest set per kernel or per test;
# the terminal's size; Keras's, and TF_FORCE_GPU_ALLOW_GROWTH, which importing Keras sets when its
# backend is not TensorFlow (Keras is not preloaded, TensorFlow not installed: without it, every
# notebook a worker ran after a Keras test started fresh); and three that PyTorch sets in a process
# that uses its compiler, which reach the kernels of a test run once some test has done so
# (KMP_DUPLICATE_LIB_OK and KMP_INIT_AT_FORK configure Intel's OpenMP, which PyTorch's Linux build
# does not use; TORCHINDUCTOR_CACHE_DIR is its compiler's cache, at its default place).
PER_KERNEL_PREFIXES = ("JPY_", "PYTEST_", "KERAS_", "KMP_", "TORCHINDUCTOR_")
PER_KERNEL = {"DSC_KERNEL_ZYGOTE", "PWD", "OLDPWD", "_", "COLUMNS", "LINES",
              "TF_FORCE_GPU_ALLOW_GROWTH"}
# What every notebook, or most of them, imports: each page's dsc_utils.glue imports MyST-NB's glue
# (and with it nbformat and jsonschema, 0.1 s to 0.5 s per kernel).
PRELOAD = ["ipykernel.kernelapp", "ipykernel.debugger", "torch", "torch._dynamo",
           "torch.utils.flop_counter", "matplotlib", "matplotlib.pyplot", "prettytable",
           "sklearn.datasets", "myst_nb.ext.glue", "dsc_utils"]
# Every kernel imports ipykernel's debugger as it starts, and with it debugpy, which sets this
# variable when it is missing; a forked kernel gets it from the zygote's import, as a fresh one would.
KERNEL_START_VARIABLES = ("PYDEVD_USE_FRAME_EVAL",)
KERNEL_START_ENVIRONMENT: dict = {}    # what the zygote's imports set of them (serve() fills it)
# (SIGHUP and SIGQUIT do not exist on Windows, where this module is imported but never serves)
FORWARDED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
                          if hasattr(signal, name))
# a signal ignored in a process stays ignored in the programs it starts (nohup, a background job);
# the child takes these from its launcher, not from the zygote, which may have been started otherwise
INHERITED_SIGNALS = FORWARDED_SIGNALS + tuple(getattr(signal, name) for name in ("SIGCHLD",)
                                              if hasattr(signal, name))


def launcher_argv(argv: list[str]) -> list[str]:
    """A kernelspec's command with this file's launcher in place of ``python -m ipykernel_launcher``,
    while a zygote is there to serve; otherwise (or for any other kernel) ``argv`` unchanged."""
    if os.environ.get(SOCKET_VARIABLE) and argv[1:3] == ["-m", "ipykernel_launcher"]:
        return [argv[0], os.path.abspath(__file__), "launch", *argv[3:]]
    return argv


def worker_spec(spec: str) -> str:
    """A pytest-xdist ``--tx`` spec whose Python is this file's launcher (``python`` mode), for a
    local worker while a zygote is there to serve; otherwise ``spec`` unchanged."""
    if os.environ.get(SOCKET_VARIABLE) and spec == "popen":
        import shlex
        return f"popen//python={shlex.join([sys.executable, os.path.abspath(__file__), 'python'])}"
    return spec


def start(env: dict | None = None, python: str | None = None):
    """Start a zygote for the processes that will be started with ``env`` (default: os.environ, this
    process's) and ask it for kernels. Linux only: None elsewhere, if DSC_FRESH_KERNELS=1, or if a
    zygote started by a parent process is already there to serve. The zygote runs ``python``
    (default: this interpreter) in ``env``, and its address goes into ``env``. Returns what ``stop``
    needs."""
    env = os.environ if env is None else env
    if (sys.platform != "linux" or env.get("DSC_FRESH_KERNELS") == "1"
            or env.get(SOCKET_VARIABLE)):
        return None
    import subprocess
    import tempfile

    folder = tempfile.mkdtemp(prefix="dsc-zygote-")
    address = os.path.join(folder, "socket")
    process = subprocess.Popen([python or sys.executable, os.path.abspath(__file__), "serve",
                                address], env=dict(env), cwd=PROJECT_ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    env[SOCKET_VARIABLE] = address
    return process, folder, env


def stop(started) -> None:
    """Stop a zygote that ``start`` returned (its kernels are not affected) and take its address out
    of the environment it was given."""
    if started is None:
        return
    import shutil
    import subprocess

    process, folder, env = started
    process.stdin.close()                  # a zygote waiting for requests exits when stdin closes
    try:
        process.wait(timeout=0.5)
    except subprocess.TimeoutExpired:      # one still importing (a short run): nothing to clean up
        process.kill()
        process.wait()
    shutil.rmtree(folder, ignore_errors=True)
    env.pop(SOCKET_VARIABLE, None)


def pinned(env: dict) -> dict:
    return {k: v for k, v in env.items()
            if not (k.startswith(PER_KERNEL_PREFIXES) or k in PER_KERNEL)}


# ----------------------------------------------------------------------------------------------
# The zygote
# ----------------------------------------------------------------------------------------------

def serve(path: str) -> None:
    """Import the libraries, then fork a kernel or a Python process for every request on ``path``
    until stdin closes."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)             # requests wait in the backlog while the imports run
    own = pinned(os.environ)
    # what a kernel started by ipykernel_launcher has when it imports matplotlib: the inline backend,
    # set by ipykernel unless MPLBACKEND names another; and no entry for the launcher's folder on
    # sys.path (this file's folder here)
    if not os.environ.get("MPLBACKEND"):
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    del sys.path[0]
    # the imports create some 400,000 objects: collecting garbage while they run costs a quarter of
    # their time, and every full collection in a child would walk them all again (0.4 s each on the
    # reference machine); so no collection here, and the children never walk what is here at the fork
    gc.disable()
    before = dict(os.environ)
    # what the imports print goes where a kernel's own start-up output goes under nbval: nowhere
    # (debugpy warns about frozen modules on stderr, in every kernel)
    terminal = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        for module in PRELOAD:
            try:
                __import__(module)
            except ImportError:    # a missing optional library is imported, or not, by the kernel
                pass
    finally:
        os.dup2(terminal, 2)
        os.close(terminal)
    KERNEL_START_ENVIRONMENT.update({k: os.environ[k] for k in KERNEL_START_VARIABLES
                                     if k in os.environ and k not in before})
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # the kernels are reaped automatically
    while True:
        ready, _, _ = select.select([listener, 0], [], [])
        if 0 in ready and not os.read(0, 1):
            # the process that started the zygote has gone; nothing here needs cleaning up, and an
            # orderly interpreter shutdown with PyTorch and its companions loaded takes seconds
            os._exit(0)
        if listener not in ready:
            continue
        connection, _ = listener.accept()
        fds = []
        try:
            message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 5)
            while chunk := connection.recv(1 << 16):    # the rest of the request, up to its end
                message += chunk
            for fd in fds:
                os.set_inheritable(fd, False)
            request = json.loads(message)
            if len(fds) != 5 or pinned(request["env"]) != own:
                differing = sorted(set(pinned(request["env"]).items()) ^ set(own.items()))
                reply = {"refused": f"{len(fds)} streams, differing variables {differing[:4]}"}
            else:
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    connection.close()
                    become = become_python if request.get("kind") == "python" else become_kernel
                    become(request, fds)                # never returns
                reply = {"pid": pid}
            connection.sendall(json.dumps(reply).encode())
        except (OSError, ValueError, KeyError, TypeError):
            pass                   # a broken request: its launcher starts a fresh kernel
        finally:
            for fd in fds:
                os.close(fd)
            connection.close()


def take_over(request: dict, fds: list[int]) -> int:
    """In the forked child: take the launcher's streams, folder and environment. Returns the pipe to
    write the exit status to."""
    stdin, stdout, stderr, launcher_alive, kernel_alive = fds
    gc.enable()                # as in a fresh process; the zygote's objects stay frozen
    # what a Python started by the launcher would have: what the launcher ignores stays ignored,
    # SIGINT otherwise raises KeyboardInterrupt, and the rest take their default action
    ignored = set(request.get("ignored_signals", ()))
    for signum in INHERITED_SIGNALS:
        if signum in ignored:
            signal.signal(signum, signal.SIG_IGN)
        else:
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                          else signal.SIG_DFL)
    os.setsid()
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    import random
    random.seed()              # a fresh process draws a fresh seed; so does this one

    # the child exits when its launcher dies (killed by the kernel manager, for example);
    # kernel_alive stays open in this process only, so the launcher sees it close when we exit
    import threading

    def exit_with_launcher():
        os.read(launcher_alive, 1)
        os._exit(1)

    threading.Thread(target=exit_with_launcher, daemon=True).start()
    return kernel_alive


def become_kernel(request: dict, fds: list[int]) -> None:
    """In the forked child: take over the launcher's streams, folder and environment, run ipykernel."""
    try:
        take_over(request, fds)
        for name, value in KERNEL_START_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        from ipykernel import kernelapp

        # ipykernel reads these two from the environment when it is imported, which the zygote did
        # before they were set: pass them as a fresh kernel would have them
        kernelapp.IPKernelApp.launch_instance(
            parent_handle=int(os.environ.get("JPY_PARENT_PID") or 0),
            interrupt=int(os.environ.get("JPY_INTERRUPT_EVENT") or 0))
    finally:
        os._exit(0)


def become_python(request: dict, fds: list[int]) -> None:
    """In the forked child: what ``python [-u] [-B] -c CODE [ARG...]`` would do, PyTorch imported."""
    status = 1
    try:
        status_pipe = take_over(request, fds)
        import atexit
        import builtins
        import importlib.machinery
        import io
        import threading
        import traceback
        import types

        sys.path.insert(0, "")                     # -c puts the current folder first
        sys.dont_write_bytecode = sys.dont_write_bytecode or "-B" in request["options"]
        if "-u" in request["options"]:             # unbuffered, as -u makes them
            for name, fd in (("stdout", 1), ("stderr", 2)):
                old = getattr(sys, name)
                new = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding=old.encoding,
                                       errors=old.errors, write_through=True)
                setattr(sys, name, new)
                setattr(sys, f"__{name}__", new)
        main = types.ModuleType("__main__")
        main.__builtins__ = builtins
        main.__loader__ = importlib.machinery.BuiltinImporter
        main.__annotations__ = {}
        sys.modules["__main__"] = main
        try:
            exec(compile(request["code"], "<string>", "exec"), main.__dict__)
            status = 0
        except SystemExit as stop:
            if stop.code is None or isinstance(stop.code, int):
                status = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
        threading._shutdown()                      # what the interpreter does on its way out
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os.write(status_pipe, bytes([status & 0xFF]))
    finally:
        os._exit(status)


# ----------------------------------------------------------------------------------------------
# The launcher
# ----------------------------------------------------------------------------------------------

def _fresh_kernel(arguments: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *arguments])


def _fresh_python(arguments: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, *arguments])


def python_request(arguments: list[str]) -> dict | None:
    """The request for ``python ARGUMENTS`` if it has the one form served, ``[-u] [-B] -c CODE
    [ARG...]`` (how pytest-xdist starts its workers); None for any other."""
    options = []
    while arguments[:1] in (["-u"], ["-B"]):
        options.append(arguments.pop(0))
    if len(arguments) < 2 or arguments[0] != "-c":
        return None
    return {"kind": "python", "options": options, "code": arguments[1],
            "argv": ["-c", *arguments[2:]]}


def launch(arguments: list[str], kind: str = "kernel") -> None:
    """Ask the zygote for a kernel (or a Python process); without one, exec the usual command."""
    fresh = _fresh_python if kind == "python" else _fresh_kernel
    path = os.environ.get(SOCKET_VARIABLE)
    if not path or sys.platform != "linux":
        fresh(arguments)
    if kind == "python":
        request = python_request(list(arguments))
        if request is None:
            fresh(arguments)
    else:
        request = {"argv": [_launcher_file(), *arguments]}
    request.update(cwd=os.getcwd(), env=dict(os.environ),
                   ignored_signals=[int(signum) for signum in INHERITED_SIGNALS
                                    if signal.getsignal(signum) == signal.SIG_IGN])
    launcher_read, launcher_write = os.pipe()    # launcher_write stays open until this launcher dies
    kernel_read, kernel_write = os.pipe()        # closes when the child dies
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(path)
            socket.send_fds(connection, [json.dumps(request).encode()],
                            [0, 1, 2, launcher_read, kernel_write])
            connection.shutdown(socket.SHUT_WR)
            reply = json.loads(connection.recv(1 << 16) or b"{}")
    except (OSError, ValueError):
        reply = {}
    os.close(launcher_read)
    os.close(kernel_write)
    if "pid" not in reply:
        print(f"kernel_zygote: a fresh {kind} ({reply.get('refused', 'no zygote')})",
              file=sys.stderr, flush=True)
        fresh(arguments)
    pid = reply["pid"]

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    status = b""               # a Python child writes its exit status before it exits
    while True:
        try:
            byte = os.read(kernel_read, 1)
        except InterruptedError:
            continue
        if not byte:
            break
        status = byte
    os._exit(status[0] if status else (1 if kind == "python" else 0))


def _launcher_file() -> str:
    # sys.argv[0] of a kernel started with `python -m ipykernel_launcher`, without importing it
    import importlib.util
    return importlib.util.find_spec("ipykernel_launcher").origin


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 3:
        serve(sys.argv[2])
    elif sys.argv[1:2] == ["launch"]:
        launch(sys.argv[2:])
    elif sys.argv[1:2] == ["python"]:
        launch(sys.argv[2:], kind="python")
    else:
        sys.exit(__doc__.split("\n\n")[2])
