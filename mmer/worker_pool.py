"""Worker processes that stop when asked and never outlive their parent.

`mmer analyze --workers N` runs files in a `ProcessPoolExecutor` of spawned processes. Three rules:

- Ctrl-C is the parent's business: workers ignore SIGINT (`interrupt_blocked` while they are
  spawned, `start_worker_process` once running), so a Ctrl-C in the terminal, which reaches the
  whole process group, does not turn into one KeyboardInterrupt per queued file inside the workers;
  the parent catches it and ends the pool at once (`stop_pool`) instead of waiting for the queue.
- A worker whose parent is gone (killed with SIGKILL, crashed) exits: on Linux the kernel sends it
  SIGTERM (prctl PR_SET_PDEATHSIG); everywhere a watcher thread checks the parent's id twice a
  second (`exit_with_parent`).
- Stopping a pool cancels what has not started and terminates the workers (SIGTERM, then SIGKILL
  after `STOP_GRACE_S`), without waiting for the files in flight.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Iterator

PARENT_CHECK_S = 0.5
"""How often (seconds) a worker's watcher thread checks that its parent is still alive."""
STOP_GRACE_S = 1.0
"""Seconds a terminated worker gets to exit before it is killed."""
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@contextlib.contextmanager
def interrupt_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while the block runs (pool creation and submits, which spawn
    the workers): a process started meanwhile inherits the blocked signal through fork and exec, so
    it never sees a Ctrl-C before `start_worker_process` ignores it. A Ctrl-C arriving meanwhile is
    delivered when the block ends (KeyboardInterrupt in the caller)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def start_worker_process(parent_pid: int) -> None:
    """First thing a worker does: ignore Ctrl-C (the parent handles it) and exit with its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    exit_with_parent(parent_pid)


def exit_with_parent(parent_pid: int) -> None:
    """End this process as soon as the process `parent_pid` that started it is gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="mmer-parent-watch", daemon=True).start()


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the pool's queued calls and end its workers now, without waiting for running calls."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(STOP_GRACE_S)
