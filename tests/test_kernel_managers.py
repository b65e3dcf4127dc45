"""Tests of tools/kernel_managers.py: kernels ready and stopped without jupyter_client's fixed waits
are ready (they answer, and nothing of their start is left to read), stopped, and fail as before."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import jupyter_client.manager
import nbval.kernel
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import kernel_zygote  # noqa: E402
from kernel_managers import BookKernelManager  # noqa: E402

del sys.path[0]

# the kernel nbval starts (forked from the zygote while one serves)
KERNEL = kernel_zygote.launcher_argv([sys.executable, "-m", "ipykernel_launcher", "-f",
                                      "{connection_file}"])


def started(argv, heartbeat=True):
    manager = BookKernelManager()
    manager.kernel_spec.argv = argv
    manager.start_kernel(cwd=str(ROOT))
    client = manager.client()
    # (the heartbeat's thread takes a second to stop when the kernel never answered it)
    client.start_channels(hb=heartbeat)
    return manager, client


def test_nbval_manages_its_kernels_with_the_book_manager(request):
    if not request.config.getoption("nbval", False):
        pytest.skip("nbval is off in this run: conftest.py leaves it alone")
    assert jupyter_client.manager.KernelManager is not BookKernelManager
    assert nbval.kernel.KernelManager is BookKernelManager


def test_a_ready_kernel_has_answered_and_left_nothing_on_iopub():
    for _ in range(2):            # about half of the kernels need the request sent twice
        manager, client = started(KERNEL)
        try:
            client.wait_for_ready(timeout=60)
            time.sleep(0.1)       # a status message still on its way would have arrived by now
            assert not client.iopub_channel.msg_ready()
            message_id = client.execute("print(6 * 7)")
            first = client.get_iopub_msg(timeout=20)
            assert first["parent_header"]["msg_id"] == message_id
            assert first["msg_type"] == "status"
            assert first["content"]["execution_state"] == "busy"
            outputs = []
            while True:
                message = client.get_iopub_msg(timeout=20)
                if message["msg_type"] == "stream":
                    outputs.append(message["content"]["text"])
                if message["content"].get("execution_state") == "idle":
                    break
            assert outputs == ["42\n"]
            process = manager.provisioner.process
        finally:
            client.stop_channels()
            manager.shutdown_kernel(now=True)
        assert process.poll() is not None      # the process it launched has exited


def test_a_kernel_that_dies_before_answering_is_reported():
    manager, client = started([sys.executable, "-c", "raise SystemExit(3)"], heartbeat=False)
    try:
        with pytest.raises(RuntimeError, match="Kernel died before replying to kernel_info"):
            client.wait_for_ready(timeout=60)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
