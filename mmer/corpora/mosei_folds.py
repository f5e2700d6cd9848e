"""Reading the standard CMU-MOSEI train/valid/test folds (lists of video ids) from a user's file.

The CMU-MultimodalSDK ships them as Python lists `standard_train_fold`, `standard_valid_fold` and
`standard_test_fold` in mmsdk/mmdatasdk/dataset/standard_datasets/CMU_MOSEI/cmu_mosei_std_folds.py.
Accepted files:
- that .py file itself: the three list literals are read with `ast.literal_eval` (never executed);
- .json: {"train": [...], "valid": [...], "test": [...]} ("dev" or "val" also name the valid fold);
- any other text file: one `<split> <video_id>` pair per line (space, tab or comma between, either
  order), blank lines and lines starting with # ignored.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from mmer.errors import UserError

SPLIT_ALIASES: dict[str, str] = {"train": "train", "valid": "valid", "dev": "valid", "val": "valid", "test": "test"}
SDK_FOLD_NAMES: dict[str, str] = {
    "standard_train_fold": "train", "standard_valid_fold": "valid", "standard_test_fold": "test",
}


def _from_sdk_python(path: Path, text: str) -> dict[str, list[str]]:
    """The three `standard_*_fold = [...]` list literals of the SDK's folds module."""
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as err:
        raise UserError(f"{path}: not a readable Python folds file (line {err.lineno})") from None
    folds: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            split = SDK_FOLD_NAMES.get(node.targets[0].id)
            if split is None:
                continue
            try:
                folds[split] = [str(v) for v in ast.literal_eval(node.value)]
            except (ValueError, TypeError):
                raise UserError(f"{path}: {node.targets[0].id} is not a list of video ids") from None
    return folds


def _from_json(path: Path, text: str) -> dict[str, list[str]]:
    """{"train": [...], "valid"|"dev"|"val": [...], "test": [...]}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: invalid JSON (line {err.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object with train, valid and test lists of video ids")
    folds: dict[str, list[str]] = {}
    for key, ids in data.items():
        split = SPLIT_ALIASES.get(str(key).lower())
        if split is None:
            continue
        if not isinstance(ids, list):
            raise UserError(f"{path}: {key!r} must be a list of video ids")
        folds.setdefault(split, []).extend(str(v) for v in ids)
    return folds


def _from_text(path: Path, text: str) -> dict[str, list[str]]:
    """Lines `<split> <video_id>` (or `<video_id> <split>`), separated by space, tab or comma."""
    folds: dict[str, list[str]] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p for p in re.split(r"[\s,]+", line) if p]
        if len(parts) != 2:
            raise UserError(f"{path}: line {line_number}: expected '<split> <video_id>'")
        first, second = parts
        if first.lower() in SPLIT_ALIASES:
            split, video = SPLIT_ALIASES[first.lower()], second
        elif second.lower() in SPLIT_ALIASES:
            split, video = SPLIT_ALIASES[second.lower()], first
        else:
            raise UserError(f"{path}: line {line_number}: no split name (train, valid or test)")
        folds.setdefault(split, []).append(video)
    return folds


def read_folds(path: Path) -> dict[str, str]:
    """video id -> "train" | "valid" | "test" from a folds file (formats in the module docstring).

    Raises UserError when the file is missing or unreadable, a fold is missing, or a video id
    appears in two folds.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: folds file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read the folds file ({err})") from None
    suffix = path.suffix.lower()
    if suffix == ".py":
        folds = _from_sdk_python(path, text)
    elif suffix == ".json":
        folds = _from_json(path, text)
    else:
        folds = _from_text(path, text)
    missing = [s for s in ("train", "valid", "test") if not folds.get(s)]
    if missing:
        raise UserError(f"{path}: no video ids for fold(s) {', '.join(missing)}")
    assignment: dict[str, str] = {}
    for split, videos in folds.items():
        for video in videos:
            if assignment.get(video, split) != split:
                raise UserError(f"{path}: video {video} is in both the {assignment[video]} and {split} folds")
            assignment[video] = split
    return assignment
