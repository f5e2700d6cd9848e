"""Where, on what and when a recipe measured its numbers; writing its JSON result.

Every recipe result carries: the data it read, the hardware (CPU model from /proc/cpuinfo and
core count), the git commit of the checkout (and whether it had uncommitted changes), the UTC
date, library versions and the wall time of the run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The `model name` line of /proc/cpuinfo, or platform.processor() where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def provenance(threads: int) -> dict:
    """Hardware, git state, date and software versions of this run.

    threads: the number of compute threads the recipe limited itself to.
    """
    import numpy
    import sklearn

    status = _git("status", "--porcelain")
    return {
        "hardware": {
            "cpu_model": cpu_model(),
            "logical_cores": os.cpu_count(),
            "threads_used": threads,
            "machine": platform.machine(),
            "gpu": None,
        },
        "git": {"commit": _git("rev-parse", "HEAD"), "uncommitted_changes": bool(status) if status is not None else None},
        "date_utc": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
        "software": {
            "python": sys.version.split()[0],
            "numpy": numpy.__version__,
            "scikit_learn": sklearn.__version__,
            "platform": platform.platform(),
        },
    }


def write_result(name: str, result: dict) -> Path:
    """Write `result` to recipes/results/<name>.json (pretty, keys in insertion order); return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path
