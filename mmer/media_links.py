"""How documents written by `mmer analyze` (HTML report, ELAN file) point at the analysed media."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote


def relative_media_url(media: str | Path, document: Path | None) -> str:
    """URL of `media` relative to the folder of `document` (the current folder when None), with
    '/' separators and percent-escaping, e.g. '../clips/talk%201.mp4'. Falls back to the absolute
    file:// URL where no relative path exists (another drive)."""
    base = Path(document).resolve().parent if document is not None else Path.cwd()
    try:
        relative = os.path.relpath(Path(media).resolve(), base)
    except ValueError:
        return absolute_media_url(media)
    return quote(Path(relative).as_posix())


def absolute_media_url(media: str | Path) -> str:
    """file:// URL of `media` (absolute)."""
    return Path(media).resolve().as_uri()
