"""Multi-label classification metrics and calibration measures (numpy only).

Conventions used throughout (the exact definitions are in docs/metrics.md):

* Arrays are `(N, q)`: N samples, q labels; truth and predictions hold 0/1, probabilities lie in [0, 1].
* Arguments are always in the order **(truth, prediction)**. Earlier public code (TAILOR, CARAT, the
  LDDU authors') passed them the other way round, so its published "P" is recall and "R" precision.
* Zero division never produces NaN: a ratio whose denominator is 0 is defined as 0 (precision with no
  predicted positives, recall with no true positives, F1 with neither). The one exception is the
  example-based accuracy `acc_empty_as_one`, where a sample with empty truth and empty prediction
  scores 1 (in `acc` it scores 0, as in the reference code behind published tables).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

DEFAULT_CALIBRATION_BINS = 15
DEFAULT_UNCERTAINTY_BINS = 5


@dataclass
class LabelScores:
    """One label's precision, recall and F1 (0 when undefined) and its support (true positives + false negatives)."""

    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class MultilabelMetrics:
    """Every multi-label metric mmer reports for one set of (truth, prediction) pairs.

    acc: example-based Jaccard where a sample with empty truth AND empty prediction scores 0
        (reference-code convention, comparable with published tables).
    acc_empty_as_one: the same but such a sample scores 1 (the usual convention).
    precision, recall, micro_f1: micro-averaged over all N*q label decisions.
    macro_f1: unweighted mean of the per-label F1 (a label with no support and no predictions counts as 0).
    hamming_loss: fraction of the N*q label bits that are wrong.
    """

    acc: float
    acc_empty_as_one: float
    precision: float
    recall: float
    micro_f1: float
    macro_f1: float
    hamming_loss: float
    per_label: dict[str, LabelScores]
    num_samples: int

    def as_dict(self) -> dict:
        """Flat JSON-ready dict: the overall metrics, `num_samples`, and `per_label` {name: {precision, recall, f1, support}}."""
        return {
            "acc": self.acc,
            "acc_empty_as_one": self.acc_empty_as_one,
            "precision": self.precision,
            "recall": self.recall,
            "micro_f1": self.micro_f1,
            "macro_f1": self.macro_f1,
            "hamming_loss": self.hamming_loss,
            "num_samples": self.num_samples,
            "per_label": {name: asdict(scores) for name, scores in self.per_label.items()},
        }


def _safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, defined as 0.0 when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator > 0 else 0.0


def f1_from_counts(tp: float, fp: float, fn: float) -> float:
    """F1 = 2TP / (2TP + FP + FN) (equals 2PR/(P+R)); 0 when there are no true and no predicted positives."""
    return _safe_ratio(2.0 * tp, 2.0 * tp + fp + fn)


def as_binary_matrix(values, name: str) -> np.ndarray:
    """Validate an (N, q) array of 0/1 and return it as bool."""
    arr = np.asarray(values)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, q) array, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return arr.astype(bool)


def as_probabilities(values, name: str) -> np.ndarray:
    """Validate an array of probabilities in [0, 1] and return it as float64."""
    arr = np.asarray(values, dtype=np.float64)
    if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any():
        raise ValueError(f"{name} must hold finite probabilities in [0, 1]")
    return arr


def multilabel_metrics(y_true, y_pred, label_names: Sequence[str]) -> MultilabelMetrics:
    """Compute every multi-label metric from 0/1 truth and prediction.

    y_true, y_pred: (N, q) arrays of 0/1 (any numeric or bool dtype), truth FIRST.
    label_names: q names, in column order.
    Raises ValueError on shape mismatch, non-0/1 values, N == 0 or a wrong number of names.
    """
    truth = as_binary_matrix(y_true, "y_true")
    pred = as_binary_matrix(y_pred, "y_pred")
    if truth.shape != pred.shape:
        raise ValueError(f"y_true has shape {truth.shape} but y_pred has shape {pred.shape}")
    num_samples, num_labels = truth.shape
    if num_samples == 0:
        raise ValueError("metrics need at least one sample")
    if len(label_names) != num_labels:
        raise ValueError(f"{len(label_names)} label names for {num_labels} label columns")

    # Example-based Jaccard, per sample: |Y ∩ Ŷ| / |Y ∪ Ŷ|.   (N,)
    intersection = (truth & pred).sum(axis=1)
    union = (truth | pred).sum(axis=1)
    nonempty = union > 0
    jaccard = np.divide(intersection, union, out=np.zeros(num_samples), where=nonempty)
    acc = float(jaccard.mean())
    acc_empty_as_one = float(np.where(nonempty, jaccard, 1.0).mean())

    # Per-label counts.   (q,)
    tp = (truth & pred).sum(axis=0)
    fp = (~truth & pred).sum(axis=0)
    fn = (truth & ~pred).sum(axis=0)

    per_label = {
        str(name): LabelScores(
            precision=_safe_ratio(tp[j], tp[j] + fp[j]),
            recall=_safe_ratio(tp[j], tp[j] + fn[j]),
            f1=f1_from_counts(tp[j], fp[j], fn[j]),
            support=int(tp[j] + fn[j]),
        )
        for j, name in enumerate(label_names)
    }
    tp_all, fp_all, fn_all = int(tp.sum()), int(fp.sum()), int(fn.sum())
    return MultilabelMetrics(
        acc=acc,
        acc_empty_as_one=acc_empty_as_one,
        precision=_safe_ratio(tp_all, tp_all + fp_all),
        recall=_safe_ratio(tp_all, tp_all + fn_all),
        micro_f1=f1_from_counts(tp_all, fp_all, fn_all),
        macro_f1=float(np.mean([s.f1 for s in per_label.values()])) if per_label else 0.0,
        hamming_loss=_safe_ratio(fp_all + fn_all, truth.size),
        per_label=per_label,
        num_samples=int(num_samples),
    )


def _bin_edges(n_bins: int) -> np.ndarray:
    """The M + 1 edges k/M of M equal-width bins on [0, 1] (computed as k/M so that e.g. 29/100 == 0.29)."""
    return np.arange(n_bins + 1) / n_bins


def _bin_index(probs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each probability: bin k holds [edges[k], edges[k+1]), the last bin also holds 1.0."""
    return np.searchsorted(edges[1:-1], probs, side="right")


def _flatten_pair(probs, y_true) -> tuple[np.ndarray, np.ndarray]:
    """Validate probabilities and 0/1 truth of the same shape; return both flattened to (N*q,)."""
    p = as_probabilities(probs, "probs")
    y = np.asarray(y_true)
    if p.shape != y.shape:
        raise ValueError(f"probs has shape {p.shape} but y_true has shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must contain only 0 and 1")
    if p.size == 0:
        raise ValueError("calibration needs at least one decision")
    return p.ravel(), y.ravel().astype(np.float64)


def reliability_bins(probs, y_true, n_bins: int = DEFAULT_CALIBRATION_BINS) -> list[dict]:
    """Reliability diagram over all N*q binary decisions.

    probs: predicted probability of each label being present, any shape (usually (N, q)); y_true: 0/1, same shape.
    Returns n_bins dicts in order: lower, upper (bin edges; bin k is [k/M, (k+1)/M), the last bin closed),
    count (decisions in the bin), mean_prob and frac_positive (None for an empty bin).
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    p, y = _flatten_pair(probs, y_true)
    edges = _bin_edges(n_bins)
    index = _bin_index(p, edges)
    bins = []
    for k in range(n_bins):
        members = index == k
        count = int(members.sum())
        bins.append({
            "lower": float(edges[k]),
            "upper": float(edges[k + 1]),
            "count": count,
            "mean_prob": float(p[members].mean()) if count else None,
            "frac_positive": float(y[members].mean()) if count else None,
        })
    return bins


def expected_calibration_error(probs, y_true, n_bins: int = DEFAULT_CALIBRATION_BINS) -> float:
    """Expected calibration error of the positive-class probabilities, over all N*q binary decisions.

    ECE = sum_k (n_k / n) * |frac_positive_k - mean_prob_k| over the equal-width bins of
    `reliability_bins` (empty bins contribute 0); n = N*q decisions. Range [0, 1], lower is better.
    """
    bins = reliability_bins(probs, y_true, n_bins)
    total = sum(b["count"] for b in bins)
    return float(sum(b["count"] / total * abs(b["frac_positive"] - b["mean_prob"]) for b in bins if b["count"]))


def brier_score(probs, y_true) -> float:
    """Mean squared difference between probability and 0/1 truth over all N*q decisions. Range [0, 1], lower is better."""
    p, y = _flatten_pair(probs, y_true)
    return float(np.mean((p - y) ** 2))


def error_rate_by_uncertainty(uncertainty, correct, n_bins: int = DEFAULT_UNCERTAINTY_BINS) -> list[dict]:
    """How often decisions are wrong as uncertainty grows (a useful uncertainty has rising error rates).

    uncertainty: any shape (e.g. (N, q)), finite; correct: bool/0-1 of the same shape (1 = decision right).
    Decisions are sorted by uncertainty (stable sort: ties keep input order) and split into n_bins
    equal-count groups by rank (sizes differ by at most one; fewer groups when there are fewer decisions).
    Returns, from least to most uncertain: lower, upper (min/max uncertainty in the group), count,
    mean_uncertainty, error_rate (fraction of decisions not correct).
    """
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    u = np.asarray(uncertainty, dtype=np.float64)
    ok = np.asarray(correct)
    if u.shape != ok.shape:
        raise ValueError(f"uncertainty has shape {u.shape} but correct has shape {ok.shape}")
    if not np.isfinite(u).all():
        raise ValueError("uncertainty must be finite")
    if ok.size and not np.isin(ok, (0, 1)).all():
        raise ValueError("correct must contain only 0/1 or booleans")
    u, ok = u.ravel(), ok.ravel().astype(bool)
    order = np.argsort(u, kind="stable")
    groups = [g for g in np.array_split(order, min(n_bins, max(u.size, 1))) if g.size]
    return [
        {
            "lower": float(u[g].min()),
            "upper": float(u[g].max()),
            "count": int(g.size),
            "mean_uncertainty": float(u[g].mean()),
            "error_rate": float(1.0 - ok[g].mean()),
        }
        for g in groups
    ]
