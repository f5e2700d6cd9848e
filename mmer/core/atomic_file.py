"""Write-then-rename, written once: a file is either its old self or complete, never half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def replacing(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path` (hidden: `.<name>.<random><suffix>`); when the block ends
    without error it is renamed onto `path` (atomically, same folder); on error it is deleted.

    `suffix` matters to writers that append their own (np.savez adds ".npz" unless the name ends so).
    """
    path = Path(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(handle)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through `replacing`."""
    with replacing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
