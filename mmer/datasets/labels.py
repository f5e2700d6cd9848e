"""Emotion label sets of the benchmarks and the `tgt` token lists that encode them.

A `tgt` entry is a token sequence `[2, e1, e2, ..., 3]`: 0 = padding, 1 = unknown, 2 = start,
3 = end, and emotion k (0-based, in the label order below) is token `4 + k`. `[2, 3]` is a sample
with no emotion; it is kept as an all-zero multi-hot row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mmer.datasets.base import DatasetError

MOSEI_EMOTIONS: list[str] = ["happy", "sad", "anger", "surprise", "disgust", "fear"]
"""CMU-MOSEI emotions in the order every multi-label paper uses (the SDK's, sentiment dropped)."""

M3ED_EMOTIONS: list[str] = ["happy", "neutral", "sad", "disgust", "anger", "fear", "surprise"]
"""M3ED emotions in the order of the CARAT release."""

FIRST_LABEL_TOKEN = 4
"""Token id of the first emotion; emotion k is token FIRST_LABEL_TOKEN + k."""

_STRUCTURAL_TOKENS = frozenset({0, 2, 3})  # padding, start, end


def tokens_to_multi_hot(tokens: Any, num_labels: int, where: str) -> np.ndarray:
    """One `tgt` token sequence -> `(num_labels,)` float32 multi-hot.

    Raises DatasetError when a token is not an integer, is 1 (unknown) or lies outside
    `4 .. 3 + num_labels`.
    """
    values = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    values = values.ravel()
    if values.dtype.kind == "f" and np.all(values == np.round(values)):
        values = values.astype(np.int64)
    if values.size and values.dtype.kind not in "iu":
        raise DatasetError(f"{where}: label tokens must be integers, got {tokens!r:.60}")
    row = np.zeros(num_labels, dtype=np.float32)
    for token in values.tolist():
        if token in _STRUCTURAL_TOKENS:
            continue
        k = token - FIRST_LABEL_TOKEN
        if not 0 <= k < num_labels:
            raise DatasetError(f"{where}: label token {token} is outside the emotion tokens "
                               f"{FIRST_LABEL_TOKEN}..{FIRST_LABEL_TOKEN + num_labels - 1}")
        row[k] = 1.0
    return row


def token_lists_to_multi_hot(tgt: Any, num_labels: int, where: str) -> np.ndarray:
    """A split's `tgt` (list of token lists, or a padded `(N, L)` int array/tensor) -> `(N, q)`."""
    if isinstance(tgt, (str, bytes)) or not isinstance(tgt, (Sequence, np.ndarray, torch.Tensor)):
        raise DatasetError(f"{where}: expected a list of token lists, found a {type(tgt).__name__}")
    rows = [tokens_to_multi_hot(seq, num_labels, f"{where} sample {i}") for i, seq in enumerate(tgt)]
    return np.stack(rows) if rows else np.zeros((0, num_labels), dtype=np.float32)
