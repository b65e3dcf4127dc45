"""jupyter_client's kernel managers without its fixed waits, for every kernel the book starts.

jupyter_client (8.x) waits a fixed time at both ends of a kernel's life:

- ``wait_for_ready`` sends a ``kernel_info`` request, and after the reply it waits up to 0.2 s for a
  message on IOPub, sending the request again if none comes; about half of the book's kernels
  need that second round, because a kernel's IOPub drops what it publishes before the client's
  subscription has arrived. Then it waits for 0.2 s of silence on IOPub, every time.
- ``shutdown_kernel(now=True)`` kills the process, then checks every 0.1 s whether it is still
  alive; the first check, made at once, always finds it alive.

A test run starts about 30 kernels, one after another on each of its two workers. Here
``wait_for_ready`` returns as soon as the kernel has answered a request on the shell channel and
IOPub has brought the ``idle`` status of that same request: everything the kernel published
before it has then arrived, in order, so no silence needs waiting for. It asks again after 20 ms
without that status (a request costs the kernel a millisecond), and it checks every 0.1 s, not
every 1 s, that the kernel has not died while it waits. A killed kernel is checked for every
5 ms. A forked kernel (tools/kernel_zygote.py) is then ready 0.28 s to 0.33 s after it is asked
for instead of 0.52 s, and gone in 0.02 s instead of 0.11 s (medians of eight). The handshake's
timeout and errors are jupyter_client's; nbval and nbclient read only the messages of their own
requests.
"""
from __future__ import annotations

import time
from queue import Empty

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.client import KernelClient
from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_client.utils import run_sync
from jupyter_core.utils import ensure_async
from traitlets import default

ASK_AGAIN_AFTER = 1.0       # seconds without a reply on the shell channel (jupyter_client's)
IOPUB_WAIT = 0.02           # seconds without the request's idle status before asking again
CHECK_EVERY = 0.1           # seconds between checks that the kernel is alive, while waiting
POLL_AFTER_KILL = 0.005     # seconds between checks that a killed kernel has gone


async def _wait_for_ready(client: KernelClient, timeout: float | None = None) -> None:
    """Ask the kernel for its ``kernel_info`` until the reply arrives on the shell channel and the
    request's ``idle`` status on IOPub (IOPub drops what is published before it is subscribed);
    RuntimeError if the kernel dies or ``timeout`` seconds pass, as in jupyter_client."""
    deadline = time.monotonic() + (float("inf") if timeout is None else timeout)

    async def still_starting():
        if not await client._async_is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    while True:
        msg_id = client.kernel_info()
        asked, reply = time.monotonic(), None
        while reply is None and time.monotonic() - asked < ASK_AGAIN_AFTER:
            try:
                msg = await ensure_async(client.shell_channel.get_msg(timeout=CHECK_EVERY))
            except Empty:
                await still_starting()
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg
        if reply is not None:
            try:
                while True:
                    msg = await ensure_async(client.iopub_channel.get_msg(timeout=IOPUB_WAIT))
                    if (msg["parent_header"].get("msg_id") == msg_id
                            and msg["msg_type"] == "status"
                            and msg["content"]["execution_state"] == "idle"):
                        client._handle_kernel_info_reply(reply)
                        return
            except Empty:
                pass
        await still_starting()


class BookBlockingKernelClient(BlockingKernelClient):
    wait_for_ready = run_sync(_wait_for_ready)


class BookAsyncKernelClient(AsyncKernelClient):
    wait_for_ready = _wait_for_ready


class _PromptAfterKill:
    """Checks every ``POLL_AFTER_KILL`` seconds, not every 0.1 s, whether a killed kernel is gone."""

    async def _async_wait(self, pollinterval: float = POLL_AFTER_KILL) -> None:
        await super()._async_wait(pollinterval=min(pollinterval, POLL_AFTER_KILL))


class BookKernelManager(_PromptAfterKill, KernelManager):
    """``jupyter_client.KernelManager`` whose clients are ready, and whose killed kernels are
    gone, without a fixed wait (this module's docstring)."""

    @default("client_factory")
    def _client_factory_default(self):
        return BookBlockingKernelClient


class BookAsyncKernelManager(_PromptAfterKill, AsyncKernelManager):
    """``jupyter_client.AsyncKernelManager`` (nbclient's) without the fixed waits."""

    @default("client_factory")
    def _client_factory_default(self):
        return BookAsyncKernelClient
