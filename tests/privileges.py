"""Running a test's subprocess without the power to read mode-000 files, also when the tests run as
root (as CI does). Import as `from tests.privileges import unprivileged, shared_tmpdir`."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]


def unprivileged() -> list[str]:
    """A command prefix under which a process obeys file permissions: none for a normal user; as
    root, `setpriv` to the user nobody when it can run this interpreter, else root without its
    capabilities (file permissions then apply to root too). Skips the test when neither works."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv to drop privileges")
    for prefix in ([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"],
                   [setpriv, "--bounding-set=-all", "--inh-caps=-all"]):
        probe = subprocess.run([*prefix, sys.executable, "-c", "import mmer"], cwd=REPO, capture_output=True)
        if probe.returncode == 0:
            return prefix
    pytest.skip("setpriv cannot drop privileges here")


@contextlib.contextmanager
def shared_tmpdir() -> Iterator[Path]:
    """A temporary folder every user can traverse (pytest's tmp_path is private to its owner)."""
    root = Path(tempfile.mkdtemp(prefix="mmer-test-"))
    try:
        root.chmod(0o755)
        yield root
    finally:
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(root, ignore_errors=True)
