"""Processes a component started and must later find or stop, named by pid and start time.

A pid alone can be recycled; the start time (field 22 of /proc/PID/stat) pins it to one process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def process_start_time(pid: int) -> int | None:
    """The start time of a live process in clock ticks since boot; None when gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def stop_process(pid: int, start_time: int | None = None, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`. With `start_time`, a pid now owned by another process
    is left alone; a process that is already gone is fine."""
    if start_time is not None and process_start_time(pid) != start_time:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if process_start_time(pid) is None:
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
