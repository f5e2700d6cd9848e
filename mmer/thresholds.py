"""Decision thresholds: tune them on the validation split, apply them to probabilities.

Decision rule everywhere in mmer: a label is predicted present when `probability >= threshold`.
Ties between thresholds that reach the same best F1 go to the one closest to 0.5 (then the lower one),
so a flat F1 curve (e.g. a label never present in validation) keeps the neutral 0.5.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmer.metrics import as_binary_matrix, as_probabilities, f1_from_counts

NEUTRAL_THRESHOLD = 0.5
# Candidate thresholds 0.01, 0.02, ..., 0.99 (rounded so that 0.7 is exactly the float 0.7).
DEFAULT_GRID: tuple[float, ...] = tuple(np.round(np.arange(1, 100) / 100.0, 2).tolist())


def threshold_grid(spec: Sequence[float] = ()) -> tuple[float, ...]:
    """Candidate thresholds from a config's `threshold_grid` (start, stop, step), stop included
    (values rounded to 6 decimals); () gives DEFAULT_GRID. E.g. (0.15, 0.295, 0.005) is the LDDU
    authors' search grid 0.150, 0.155, ..., 0.295."""
    if not spec:
        return DEFAULT_GRID
    start, stop, step = (float(v) for v in spec)
    count = int(np.floor((stop - start) / step + 1e-9)) + 1
    return tuple(np.round(start + step * np.arange(count), 6).tolist())


def apply_thresholds(probs, thresholds: float | Sequence[float]) -> np.ndarray:
    """0/1 decisions `probs >= threshold`.

    probs: (N, q) probabilities; thresholds: one float for every label, or q floats (one per column).
    Returns an (N, q) int64 array of 0/1.
    """
    p = as_probabilities(probs, "probs")
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim == 1 and (p.ndim != 2 or t.shape[0] != p.shape[1]):
        raise ValueError(f"{t.shape[0]} thresholds for probabilities of shape {p.shape}")
    if t.ndim > 1:
        raise ValueError("thresholds must be one number or one number per label")
    return (p >= t).astype(np.int64)


def _validated(probs, y_true, grid: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check (N, q) probabilities, matching 0/1 truth and a non-empty grid in [0, 1]."""
    p = as_probabilities(probs, "probs")
    y = as_binary_matrix(y_true, "y_true")
    if p.shape != y.shape:
        raise ValueError(f"probs has shape {p.shape} but y_true has shape {y.shape}")
    g = np.asarray(grid, dtype=np.float64).ravel()
    if g.size == 0 or (g < 0).any() or (g > 1).any():
        raise ValueError("the threshold grid must be a non-empty list of values in [0, 1]")
    return p, y, g


def _best_on_grid(scores: np.ndarray, grid: np.ndarray) -> float:
    """The grid value with the highest score; ties -> closest to 0.5, then the lower value."""
    best = scores.max()
    candidates = grid[np.isclose(scores, best, rtol=0.0, atol=1e-12)]
    distance = np.abs(candidates - NEUTRAL_THRESHOLD)
    closest = candidates[np.isclose(distance, distance.min(), rtol=0.0, atol=1e-12)]
    return float(closest.min())


def _f1_over_grid(p: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """F1 of the decisions `p >= t` for each t in grid, counting over all entries of p (any shape)."""
    scores = np.empty(grid.size)
    for i, t in enumerate(grid):
        decided = p >= t
        tp = int((decided & y).sum())
        fp = int((decided & ~y).sum())
        fn = int((~decided & y).sum())
        scores[i] = f1_from_counts(tp, fp, fn)
    return scores


def tune_global_threshold(probs, y_true, grid: Sequence[float] = DEFAULT_GRID) -> float:
    """The single threshold (shared by all labels) that maximises micro-F1 on (validation) data.

    probs: (N, q) probabilities; y_true: (N, q) 0/1; grid: candidate thresholds in [0, 1].
    """
    p, y, g = _validated(probs, y_true, grid)
    return _best_on_grid(_f1_over_grid(p, y, g), g)


def tune_label_thresholds(probs, y_true, grid: Sequence[float] = DEFAULT_GRID) -> list[float]:
    """One threshold per label, each maximising that label's F1 on (validation) data.

    probs: (N, q) probabilities; y_true: (N, q) 0/1; grid: candidate thresholds in [0, 1].
    Returns q thresholds in column order. A label with no positives in y_true has F1 = 0 at every
    threshold, so it keeps 0.5 (tie rule).
    """
    p, y, g = _validated(probs, y_true, grid)
    return [_best_on_grid(_f1_over_grid(p[:, j], y[:, j], g), g) for j in range(p.shape[1])]
