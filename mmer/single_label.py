"""Single-label classification metrics next to the multi-label ones (numpy only).

Acted-emotion corpora (EmoDB, RAVDESS, CREMA-D, ...) give every clip exactly one emotion and are
reported by how often the top-scoring label is the true one. Conventions (docs/metrics.md):

* The prediction of a sample is the label with the highest score (probability, or a 0/1 decision).
  When the highest score is shared by several labels (e.g. 0/1 decisions with no or several labels
  predicted) the prediction is *ambiguous*: it counts as wrong, in the confusion matrix's extra
  column `AMBIGUOUS`.
* `top1_accuracy`: share of all samples whose predicted label is one of their true labels (defined
  for multi-label truth too; a sample without any true label counts as wrong).
* `weighted_accuracy` (WA) and `unweighted_accuracy` (UA) are over the *single-label samples*
  (exactly one true label): WA = share predicted correctly; UA = mean over the classes that occur of
  each class's recall (balanced accuracy), so every emotion counts the same however rare it is.
* `confusion[i][j]`: single-label samples of true class i predicted as class j (last column:
  ambiguous predictions).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

AMBIGUOUS = "(ambiguous)"
"""Column name, in the confusion matrix, of predictions whose top score is shared by several labels."""


@dataclass
class SingleLabelMetrics:
    """Top-1 metrics of (N, q) scores against (N, q) 0/1 truth (see the module docstring).

    per_class_recall: {label: recall} over single-label samples, None for a class that never occurs.
    support: {label: number of single-label samples of that class}.
    confusion: (q, q + 1) counts, rows = true class, columns = predicted class then AMBIGUOUS.
    num_single_label: samples with exactly one true label (WA, UA, recall and confusion use these).
    """

    top1_accuracy: float
    weighted_accuracy: float
    unweighted_accuracy: float
    per_class_recall: dict[str, float | None]
    support: dict[str, int]
    confusion: list[list[int]]
    label_names: list[str]
    num_samples: int
    num_single_label: int

    def as_dict(self) -> dict:
        """JSON-ready: every field, and `confusion_columns` (the label names, then AMBIGUOUS)."""
        out = asdict(self)
        out["confusion_columns"] = list(self.label_names) + [AMBIGUOUS]
        return out

    def report_fields(self) -> dict:
        """The keys a metrics report (`mmer eval`, `mmer score` JSON) adds: top1_accuracy,
        weighted_accuracy, unweighted_accuracy and the whole record under single_label."""
        return {"top1_accuracy": self.top1_accuracy, "weighted_accuracy": self.weighted_accuracy,
                "unweighted_accuracy": self.unweighted_accuracy, "single_label": self.as_dict()}


def top_predictions(scores: np.ndarray) -> np.ndarray:
    """(N, q) scores -> (N,) index of each row's unique maximum, or -1 when the maximum is shared."""
    s = np.asarray(scores, dtype=np.float64)
    best = s.max(axis=1, keepdims=True)
    ties = np.isclose(s, best, rtol=0.0, atol=1e-12).sum(axis=1)
    return np.where(ties == 1, s.argmax(axis=1), -1)


def single_label_metrics(truth: np.ndarray, scores: np.ndarray, label_names: list[str]) -> SingleLabelMetrics:
    """Top-1 accuracy, WA, UA, per-class recall and the confusion matrix of `scores` (N, q)
    (probabilities or 0/1 decisions) against `truth` (N, q) 0/1."""
    y = np.asarray(truth) > 0.5
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 2:
        raise ValueError(f"truth has shape {y.shape} but scores have shape {s.shape}")
    n, q = y.shape
    if q != len(label_names):
        raise ValueError(f"{len(label_names)} label names for {q} columns")
    pred = top_predictions(s) if n else np.zeros(0, dtype=np.int64)
    hit = np.array([p >= 0 and y[i, p] for i, p in enumerate(pred)], dtype=bool)
    single = y.sum(axis=1) == 1
    true_class = y.argmax(axis=1)
    confusion = np.zeros((q, q + 1), dtype=np.int64)
    for t, p in zip(true_class[single], pred[single]):
        confusion[t, p if p >= 0 else q] += 1
    support = confusion.sum(axis=1)
    recall = [float(confusion[c, c] / support[c]) if support[c] else None for c in range(q)]
    occurring = [r for r in recall if r is not None]
    n_single = int(single.sum())
    return SingleLabelMetrics(
        top1_accuracy=float(hit.mean()) if n else 0.0,
        weighted_accuracy=float(np.trace(confusion[:, :q]) / n_single) if n_single else 0.0,
        unweighted_accuracy=float(np.mean(occurring)) if occurring else 0.0,
        per_class_recall=dict(zip(label_names, recall)),
        support={name: int(k) for name, k in zip(label_names, support)},
        confusion=confusion.tolist(), label_names=list(label_names), num_samples=int(n), num_single_label=n_single,
    )


def pooled_single_label(parts: list[dict]) -> SingleLabelMetrics:
    """Single-label metrics of several disjoint test sets together (e.g. the K folds of a
    cross-validation) from their `as_dict()` objects: confusion matrices summed, WA/UA/recall
    recomputed from the sum; top-1 accuracy is the sample-weighted mean."""
    names = list(parts[0]["label_names"])
    if any(list(p["label_names"]) != names for p in parts):
        raise ValueError("the parts have different label names")
    q = len(names)
    confusion = np.sum([np.asarray(p["confusion"], dtype=np.int64) for p in parts], axis=0)
    support = confusion.sum(axis=1)
    recall = [float(confusion[c, c] / support[c]) if support[c] else None for c in range(q)]
    occurring = [r for r in recall if r is not None]
    n = sum(int(p["num_samples"]) for p in parts)
    n_single = int(support.sum())
    return SingleLabelMetrics(
        top1_accuracy=float(sum(p["top1_accuracy"] * p["num_samples"] for p in parts) / n) if n else 0.0,
        weighted_accuracy=float(np.trace(confusion[:, :q]) / n_single) if n_single else 0.0,
        unweighted_accuracy=float(np.mean(occurring)) if occurring else 0.0,
        per_class_recall=dict(zip(names, recall)), support={k: int(v) for k, v in zip(names, support)},
        confusion=confusion.tolist(), label_names=names, num_samples=n, num_single_label=n_single,
    )
