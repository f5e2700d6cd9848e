"""Where, on what and when a recipe measured its numbers; writing its JSON result.

Every recipe result carries: the data it read, the hardware (CPU model from /proc/cpuinfo and
core count), the git commit of the checkout (and whether it had uncommitted changes), the UTC
date, library versions and the wall time of the run.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mmer.provenance import cpu_model, git_state, utc_now  # noqa: E402
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def provenance(threads: int) -> dict:
    """Hardware, git state, date and software versions of this run.

    threads: the number of compute threads the recipe limited itself to.
    """
    import numpy
    import sklearn

    return {
        "hardware": {
            "cpu_model": cpu_model(),
            "logical_cores": os.cpu_count(),
            "threads_used": threads,
            "machine": platform.machine(),
            "gpu": None,
        },
        "git": git_state(),
        "date_utc": utc_now(),
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
