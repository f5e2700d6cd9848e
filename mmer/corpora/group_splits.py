"""Deterministic train/valid/test assignment of whole groups (actors, videos), never of single clips.

Keeping every clip of one actor (or one source video) in one split is what makes a test score
speaker-independent.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

VALID_FRACTION = 0.15
TEST_FRACTION = 0.15
"""Default share of groups in valid and in test; train takes the rest (about 70 %)."""


def group_sort_key(group: int | str) -> tuple:
    """Sort key of a group: numbers (and strings of digits: speaker "3" before "10") in numeric
    order first, then other names alphabetically."""
    text = str(group)
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def split_sorted_groups(groups: Iterable[int | str], valid_fraction: float = VALID_FRACTION,
                        test_fraction: float = TEST_FRACTION) -> dict:
    """Assign groups (e.g. actor numbers, speaker names) to splits by their sorted order.

    The groups are sorted ascending (`group_sort_key`); the last round(test_fraction * n) go to "test", the
    round(valid_fraction * n) before them to "valid", all earlier ones to "train".
    Example: 24 RAVDESS actors -> 1..16 train, 17..20 valid, 21..24 test.
    """
    ordered = sorted(set(groups), key=group_sort_key)
    n = len(ordered)
    n_test = round(test_fraction * n)
    n_valid = round(valid_fraction * n)
    n_train = n - n_valid - n_test
    assignment: dict[int, str] = {}
    for position, group in enumerate(ordered):
        if position < n_train:
            assignment[group] = "train"
        elif position < n_train + n_valid:
            assignment[group] = "valid"
        else:
            assignment[group] = "test"
    return assignment


def split_by_hash(key: str, valid_fraction: float = VALID_FRACTION, test_fraction: float = TEST_FRACTION) -> str:
    """Assign one group by the SHA-1 of its key: stable across machines, runs and subsets.

    u = first 8 bytes of sha1(key) / 2**64 in [0, 1); u < 1 - valid - test -> "train",
    then "valid" up to 1 - test, else "test".
    """
    u = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0**64
    if u < 1.0 - valid_fraction - test_fraction:
        return "train"
    if u < 1.0 - test_fraction:
        return "valid"
    return "test"
