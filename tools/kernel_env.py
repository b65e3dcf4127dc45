"""The environment every notebook kernel of the book runs in, wherever it is started.

nbval (through conftest.py), ``book.py execute`` and ``book.py build`` all start their kernels with
these variables, so the outputs that ``book.py execute`` writes are the outputs the tests compare:

- ``IPYTHONDIR`` points at tests/ipython, whose startup file installs the network guard (a cell that
  tries to reach the network fails);
- ``PYTHONHASHSEED=0`` fixes the order of sets and dicts of strings;
- ``OMP_NUM_THREADS=1`` is the thread setting of ``book.py test``. The book's
  outputs are the same at any thread count; the setting only makes the runs comparable.

This module also names the CPU settings of the portability matrix (``book.py test --cpus``): capping
the instruction sets that PyTorch (ATen), oneDNN and MKL may use makes this machine pick the kernels an
older CPU would, whose float32 results differ in the last bits.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IPYTHONDIR = ROOT / "tests" / "ipython"

# Every notebook and the slowest test files, longest first (their measured times under `book.py test`).
# Whatever runs them two at a time (the tests' two workers, `book.py execute`, the build's first step)
# starts them in this order, so that a long notebook started last does not leave one core idle while
# it finishes, and the short test files fill the end.
SLOW_FIRST = ["05b_keras_and_counters", "08_decomposition_and_relatives", "07_training",
              "09-3_int8_quantization", "06-3_network_memory", "05_mobilenet",
              "test_kernel_zygote", "test_tooling", "test_bad_arguments", "test_networks",
              "03-2_ratio_in_practice", "test_beyond", "appendix_published_numbers",
              "01_convolution", "03_depthwise_separable_cost", "test_doctests",
              "06-2_layers_roofline", "09_training_cost_and_quantization",
              "02_counting_multiplications", "04-2_parameters_and_expressive_power",
              "06_speed_memory", "test_keras", "test_hygiene", "test_kernel_managers",
              "test_data_flow_figure", "08-2_spatial_and_grouped", "test_counting", "test_layers",
              "test_conversions", "04_pytorch_layer", "04-3_groups_and_variants",
              "09-2_large_kernels", "09-4_training_advice"]


def slowest_first_rank(path) -> int:
    """Sort key: the position of a notebook (or of a test file) in SLOW_FIRST, the rest after it."""
    stem = Path(str(path)).stem
    return SLOW_FIRST.index(stem) if stem in SLOW_FIRST else len(SLOW_FIRST)


# name -> the variables that cap the instruction sets (empty: whatever this CPU has)
CPU_SETTINGS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse4": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}


def kernel_environment(base: dict | None = None, threads: str | None = "1") -> dict:
    """A copy of ``base`` (default: os.environ) with the kernels' settings; ``threads=None`` leaves the
    thread count to the libraries' default."""
    env = dict(os.environ if base is None else base)
    env["IPYTHONDIR"] = str(IPYTHONDIR)
    env.setdefault("PYTHONHASHSEED", "0")
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    return env


def apply_to_this_process(threads: str | None = None) -> None:
    """Set the kernels' variables in os.environ, so that every kernel started from here inherits them."""
    os.environ.update(kernel_environment(threads=threads))


def private_connection() -> dict:
    """Keyword arguments for a jupyter_client ``KernelManager`` that talks to its kernel over Unix
    sockets in Jupyter's runtime folder (private to the user) rather than over TCP ports on
    localhost, which any local process can reach, and which ipykernel warns about at every start
    ("Kernel is running over TCP without encryption"). POSIX only; elsewhere, no change (TCP)."""
    if os.name != "posix":
        return {}
    import uuid

    from jupyter_core.paths import jupyter_runtime_dir

    folder = Path(jupyter_runtime_dir())
    folder.mkdir(parents=True, exist_ok=True)
    # an absolute path: jupyter_client's default ("kernel-ipc") is relative to each side's own folder
    return {"transport": "ipc", "ip": str(folder / f"kernel-{uuid.uuid4().hex[:12]}-ipc")}
