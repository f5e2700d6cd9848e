"""Finding the media files of a corpus under a user's folder."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from mmer.errors import UserError


def find_media(media_dir: Path, extensions: Iterable[str]) -> list[Path]:
    """Every file under media_dir (recursively) whose suffix is in `extensions` (lower-case, with
    the dot, e.g. ".flv"), sorted by path. Hidden files and folders are ignored.

    Raises UserError when media_dir is missing or not a folder.
    """
    media_dir = Path(media_dir)
    if not media_dir.exists():
        raise UserError(f"{media_dir}: media folder not found")
    if not media_dir.is_dir():
        raise UserError(f"{media_dir}: not a folder (pass the folder that holds the corpus's media files)")
    wanted = {e.lower() for e in extensions}
    found = []
    for path in media_dir.rglob("*"):
        relative = path.relative_to(media_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in wanted and path.is_file():
            found.append(path)
    return sorted(found)


def no_clips_error(corpus: str, media_dir: Path, example: str, skipped: list[str]) -> UserError:
    """The error for a listing that found nothing usable: names the folder, the expected naming
    and the first skip reason (if any)."""
    detail = f"; first problem: {skipped[0]}" if skipped else ""
    return UserError(f"{media_dir}: no usable {corpus} clips found (expected files named like {example}){detail}")
