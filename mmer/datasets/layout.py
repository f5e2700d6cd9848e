"""Checks on the `{split: {key: value}}` layout every pickled benchmark file shares.

Each check raises a one-line `DatasetError` naming the file, the split and the key; when a file
looks like another known format the message says which `--dataset` it probably is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmer.datasets.base import SPLITS, DatasetError

_KNOWN_LAYOUTS: tuple[tuple[str, str, str], ...] = (
    # (key that identifies the layout, description, dataset names)
    ("src-text", "an HHMPN/TAILOR/CARAT .pt file", "mosei-aligned or m3ed"),
    ("audio_lengths", "an MMSA .pkl file", "mosei-mmsa"),
    ("vision", "a MulT .pkl file", "mosei-unaligned"),
)


def _layout_hint(split_dict: Mapping, expected_key: str) -> str:
    for key, what, names in _KNOWN_LAYOUTS:
        if key != expected_key and key in split_dict:
            return f"; it looks like {what} (use --dataset {names})"
    return ""


def splits_of(obj: Any, path: Path) -> dict[str, Mapping]:
    """The train/valid/test dicts of a loaded file (other top-level keys are ignored)."""
    if not isinstance(obj, Mapping):
        raise DatasetError(f"{path}: expected a dict with keys {', '.join(SPLITS)}, "
                           f"found a {type(obj).__name__}")
    out = {}
    for split in SPLITS:
        if split not in obj:
            keys = ", ".join(sorted(map(str, obj)))[:200]
            raise DatasetError(f"{path}: missing split {split!r} (top-level keys: {keys})")
        if not isinstance(obj[split], Mapping):
            raise DatasetError(f"{path}: split {split!r} is a {type(obj[split]).__name__}, expected a dict")
        out[split] = obj[split]
    return out


def require_key(split_dict: Mapping, key: str, split: str, path: Path) -> Any:
    """`split_dict[key]`, or a DatasetError that names the split, the key and a format hint."""
    if key not in split_dict:
        raise DatasetError(f"{path}: split {split!r} has no key {key!r}{_layout_hint(split_dict, key)}")
    return split_dict[key]


def require_same_count(counts: dict[str, int], split: str, path: Path) -> int:
    """The common sample count of a split's columns; DatasetError when they disagree."""
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{k}: {n}" for k, n in counts.items())
        raise DatasetError(f"{path}: split {split!r} has different sample counts ({detail})")
    return next(iter(counts.values()))
