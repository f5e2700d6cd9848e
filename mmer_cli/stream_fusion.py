"""Reliability-weighted late fusion: one answer from what the face, the voice and the words each say.

A checkpoint trained on separate single-modality corpora (mmer's shipped defaults: English text,
German acted speech, expression-space face sequences) never saw real co-occurring streams, so a
joint pass would combine them with weights learned from synthetic pairs. Such a checkpoint stores a
`LateFusion` in `extra["fusion"]` instead, fitted on held-out data after training
(recipes/default_model_training.py), and the application combines the network's single-stream
readings (each stream alone, `by_modality`):

1. calibration: each stream's per-label probability p_m is temperature-scaled,
   z_m = logit(p_m) / T_m, with T_m fitted on that stream's validation data (binary cross-entropy);
2. fusion: the fused logit is the reliability-weighted mean of the present streams' z_m,
   z = sum_m r_m z_m / sum_m r_m, so one stream alone gives exactly its calibrated reading, and
   a weak stream cannot overrule a strong one that disagrees;
3. decision: present when sigmoid(z) >= the fusion's per-label threshold (tuned on validation);
4. uncertainty: the binary entropy of the fused probability in bits (0 = certain, 1 = a coin
   flip); with no usable stream every label is absent with probability 0 and uncertainty 1.

r_m is the stream's measured discrimination on held-out data (mean over labels of 2 * AUC - 1),
or, for a stream without labelled held-out data (the face), a documented prior.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before taking logits


@dataclass
class StreamCalibration:
    """temperature T > 0 (1 = as the network says); reliability r >= 0 (its fusion weight);
    basis: where r and T come from (recorded for the model card)."""

    temperature: float = 1.0
    reliability: float = 1.0
    basis: str = ""


@dataclass
class LateFusion:
    """Per-stream calibration and per-label decision thresholds of a late-fusion checkpoint."""

    streams: dict[str, StreamCalibration]
    thresholds: list[float]
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"streams": {m: asdict(c) for m, c in self.streams.items()}, "thresholds": list(self.thresholds),
                "notes": dict(self.notes)}

    @classmethod
    def from_dict(cls, data: dict) -> "LateFusion":
        """Raises ValueError naming the field when `data` (checkpoint extra["fusion"]) is malformed."""
        try:
            streams = {m: StreamCalibration(**c) for m, c in data["streams"].items()}
            thresholds = [float(t) for t in data["thresholds"]]
        except (KeyError, TypeError) as err:
            raise ValueError(f"fusion: malformed calibration ({err})") from None
        for m, c in streams.items():
            if not (math.isfinite(c.temperature) and c.temperature > 0 and math.isfinite(c.reliability)
                    and c.reliability >= 0):
                raise ValueError(f"fusion: stream {m!r} needs a finite temperature > 0 and reliability >= 0")
        if not all(math.isfinite(t) and 0 <= t <= 1 for t in thresholds):
            raise ValueError("fusion: thresholds must be finite and in [0, 1]")
        return cls(streams, thresholds, dict(data.get("notes", {})))

    def calibrated_logits(self, stream: str, probs: np.ndarray) -> np.ndarray:
        """probs (..., q) of one stream -> temperature-scaled logits (..., q)."""
        p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
        return np.log(p / (1 - p)) / self.streams[stream].temperature

    def fuse(self, evidence: dict[str, np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """evidence: stream -> its single-stream probabilities (q,) or None when absent.
        Returns fused probabilities (q,) and uncertainties (q,) in [0, 1]."""
        q = len(self.thresholds)
        weighted, total = np.zeros(q), 0.0
        for m, probs in evidence.items():
            if probs is None or m not in self.streams or self.streams[m].reliability <= 0:
                continue
            r = self.streams[m].reliability
            weighted += r * self.calibrated_logits(m, probs)
            total += r
        if total == 0.0:  # no usable stream: nothing is present, and nothing is known
            return np.zeros(q), np.ones(q)
        fused = 1.0 / (1.0 + np.exp(-weighted / total))
        return fused, binary_entropy_bits(fused)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """probs (..., q) -> (..., q) bool decisions at the fusion's thresholds."""
        return np.asarray(probs) >= np.asarray(self.thresholds)


def binary_entropy_bits(p: np.ndarray) -> np.ndarray:
    """Entropy of Bernoulli(p) in bits, elementwise: 0 at p = 0 or 1, 1 at p = 0.5."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def fit_temperature(probs: np.ndarray, labels: np.ndarray, labels_used: list[int] | None = None) -> float:
    """The temperature T minimising the mean binary cross-entropy of sigmoid(logit(p) / T) against
    `labels` (both (N, q); only the label columns `labels_used`, default all). Golden-section search
    over log T in [-3, 3]."""
    cols = slice(None) if labels_used is None else labels_used
    p = np.clip(np.asarray(probs, dtype=np.float64)[:, cols], _EPS, 1 - _EPS)
    y = np.asarray(labels, dtype=np.float64)[:, cols]
    z = np.log(p / (1 - p))

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0, s) - y * s))  # BCE with logits

    lo, hi = -3.0, 3.0
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    for _ in range(80):
        if nll(a) < nll(b):
            hi, b = b, a
            a = hi - ratio * (hi - lo)
        else:
            lo, a = a, b
            b = lo + ratio * (hi - lo)
    return math.exp((lo + hi) / 2)


def discrimination(probs: np.ndarray, labels: np.ndarray, labels_used: list[int] | None = None) -> float:
    """Mean over label columns (with both classes present) of 2 * ROC-AUC - 1, clipped at 0:
    0 = no better than chance, 1 = perfect ranking."""
    cols = range(labels.shape[1]) if labels_used is None else labels_used
    scores = [2 * roc_auc(probs[:, j], labels[:, j]) - 1 for j in cols if 0 < labels[:, j].sum() < len(labels)]
    return max(float(np.mean(scores)), 0.0) if scores else 0.0


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Area under the ROC curve of `scores` (N,) for binary `truth` (N,), ties counted half
    (the Mann-Whitney statistic)."""
    from scipy.stats import rankdata

    truth = np.asarray(truth) > 0.5
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    ranks = rankdata(scores)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
