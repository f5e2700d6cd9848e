"""Where, on what and when a number was measured: hardware, git state, memory readings.

Shared by benchmarks/ and recipes/ so every recorded result states its provenance the same way.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The `model name` line of /proc/cpuinfo, or platform.processor() where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gb() -> float:
    """Total RAM in GB (/proc/meminfo; 0.0 where unavailable)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 0.0


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> dict:
    """{"commit": HEAD sha or None, "uncommitted_changes": bool or None} of this checkout."""
    status = _git("status", "--porcelain")
    return {"commit": _git("rev-parse", "HEAD"), "uncommitted_changes": bool(status) if status is not None else None}


def git_description() -> str:
    """HEAD sha, with a note when the working tree has uncommitted changes ("unknown" outside git)."""
    state = git_state()
    if state["commit"] is None:
        return "unknown"
    return state["commit"] + (" (working tree has uncommitted changes)" if state["uncommitted_changes"] else "")


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _status_mib(field: str) -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux VmRSS; 0.0 where unavailable)."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (Linux VmHWM; 0.0 where unavailable).

    Not `ru_maxrss`: that survives exec, so a child started from a larger parent reports the
    parent's peak.
    """
    return _status_mib("VmHWM")


def logical_cpus() -> int | None:
    return os.cpu_count()
