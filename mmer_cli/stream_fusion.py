"""Reliability-weighted late fusion: one answer from what the face, the voice and the words each say.

A checkpoint trained on separate single-modality corpora (mmer's shipped defaults: English text,
German acted speech, expression-space face sequences) never saw real co-occurring streams, so a
joint pass would combine them with weights learned from synthetic pairs. Such a checkpoint stores a
`LateFusion` in `extra["fusion"]` instead, fitted on held-out data after training
(recipes/default_model_training.py), and the application combines the network's single-stream
readings (each stream alone, `by_modality`):

1. calibration: each stream's per-label probability p_m is temperature-scaled,
   z_m = logit(p_m) / T_m, with T_m fitted on that stream's validation data (binary cross-entropy);
2. weights: w_m = r_m * f_m, with r_m the stream's reliability — its discrimination measured on
   held-out data (mean over labels of 2 * AUC - 1), or a documented prior for a stream without
   labelled held-out data (the face) — and f_m in (0, 1] its domain factor for this input
   (`StreamDomain`: 1 inside the range of held-out training-domain data, falling steeply outside,
   e.g. for a voice unlike the few German actors the voice stream was trained on; 1 for a stream
   without a domain model);
3. fusion, with the union semantics of multi-label emotion annotation (an emotion is present when
   any channel shows it): for every emotion the fused logit is the weighted soft maximum
   z = log(sum_m a_m exp(z_m)), a_m = w_m / sum w; for the "none of them" label (neutral) it is
   the weighted soft minimum z = -log(sum_m a_m exp(-z_m)) (neutral only when every channel is).
   One stream alone gives exactly its calibrated reading; a stream can add what it clearly
   shows, in proportion to its weight, but cannot remove what a clear stream shows;
4. decision: present when sigmoid(z) >= the fusion's per-label threshold (tuned on validation);
5. uncertainty: the binary entropy of the fused probability in bits (0 = certain, 1 = a coin
   flip); with no usable stream every label is absent with probability 0 and uncertainty 1.
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
class StreamDomain:
    """Where a stream's training data lies, for its domain factor.

    An input (T, D) frames is summarised by its mean frame u (D,); its distance to the training
    domain is the Mahalanobis distance d = sqrt((u - mean)^T precision (u - mean)), precision the
    inverse of the (shrunk) covariance of training summaries. `reference` is the 95th percentile
    of d over held-out in-domain inputs. factor = 1 for d <= reference, else (reference / d)^exponent.
    """

    mean: list[float]
    precision: list[list[float]]
    reference: float
    exponent: float = 4.0
    basis: str = ""

    def distance(self, frames: np.ndarray) -> float:
        diff = np.asarray(frames, dtype=np.float64).mean(axis=0) - np.asarray(self.mean)
        return float(np.sqrt(max(diff @ np.asarray(self.precision) @ diff, 0.0)))

    def factor(self, frames: np.ndarray) -> float:
        """Domain factor in (0, 1] of one input's frames (T, D), T >= 1."""
        d = self.distance(frames)
        return 1.0 if d <= self.reference else float((self.reference / d) ** self.exponent)

    @classmethod
    def fit(cls, train: list[np.ndarray], held_out: list[np.ndarray], shrinkage: float = 0.2,
            basis: str = "") -> "StreamDomain":
        """From training inputs and held-out in-domain inputs, each (T_i, D) frames."""
        u = np.stack([x.mean(axis=0) for x in train]).astype(np.float64)  # (N, D)
        cov = np.cov(u.T)
        cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))
        domain = cls(u.mean(axis=0).tolist(), np.linalg.pinv(cov).tolist(), 0.0, basis=basis)
        domain.reference = float(np.percentile([domain.distance(x) for x in held_out], 95))
        return domain


@dataclass
class LateFusion:
    """Per-stream calibration, domains and per-label decision thresholds of a late-fusion
    checkpoint. `exclusive_label`: index of the label meaning "no emotion" (neutral), fused as
    a soft minimum; None when there is none."""

    streams: dict[str, StreamCalibration]
    thresholds: list[float]
    domains: dict[str, StreamDomain] = field(default_factory=dict)
    exclusive_label: int | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"streams": {m: asdict(c) for m, c in self.streams.items()}, "thresholds": list(self.thresholds),
                "domains": {m: asdict(d) for m, d in self.domains.items()},
                "exclusive_label": self.exclusive_label, "notes": dict(self.notes)}

    @classmethod
    def from_dict(cls, data: dict) -> "LateFusion":
        """Raises ValueError naming the field when `data` (checkpoint extra["fusion"]) is malformed."""
        try:
            streams = {m: StreamCalibration(**c) for m, c in data["streams"].items()}
            thresholds = [float(t) for t in data["thresholds"]]
            domains = {m: StreamDomain(**d) for m, d in data.get("domains", {}).items()}
            exclusive = data.get("exclusive_label")
            exclusive = None if exclusive is None else int(exclusive)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"fusion: malformed calibration ({err})") from None
        for m, d in domains.items():
            values = np.asarray(d.precision, dtype=np.float64)
            if (values.shape != (len(d.mean), len(d.mean)) or not np.isfinite(values).all()
                    or not np.isfinite(d.mean).all() or not (math.isfinite(d.reference) and d.reference > 0)):
                raise ValueError(f"fusion: domain of stream {m!r} is malformed")
        if exclusive is not None and not 0 <= exclusive < len(thresholds):
            raise ValueError("fusion: exclusive_label is not a label index")
        for m, c in streams.items():
            if not (math.isfinite(c.temperature) and c.temperature > 0 and math.isfinite(c.reliability)
                    and c.reliability >= 0):
                raise ValueError(f"fusion: stream {m!r} needs a finite temperature > 0 and reliability >= 0")
        if not all(math.isfinite(t) and 0 <= t <= 1 for t in thresholds):
            raise ValueError("fusion: thresholds must be finite and in [0, 1]")
        return cls(streams, thresholds, domains, exclusive, dict(data.get("notes", {})))

    def calibrated_logits(self, stream: str, probs: np.ndarray) -> np.ndarray:
        """probs (..., q) of one stream -> temperature-scaled logits (..., q)."""
        p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
        return np.log(p / (1 - p)) / self.streams[stream].temperature

    def weight(self, stream: str, frames: np.ndarray | None = None) -> float:
        """w = reliability * domain factor of `frames` (T, D) (1 without a domain model or frames)."""
        w = self.streams[stream].reliability
        if stream in self.domains and frames is not None and len(frames):
            w *= self.domains[stream].factor(frames)
        return w

    def fuse(self, evidence: dict[str, np.ndarray | None],
             weights: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """evidence: stream -> its single-stream probabilities (q,) or None when absent;
        weights: stream -> w (default: its reliability; see `weight`).
        Returns fused probabilities (q,) and uncertainties (q,) in [0, 1]."""
        q = len(self.thresholds)
        present = [(m, p) for m, p in evidence.items() if p is not None and m in self.streams]
        w = np.array([(weights or {}).get(m, self.streams[m].reliability) for m, _ in present])
        if not present or w.sum() <= 0:  # no usable stream: nothing is present, and nothing is known
            return np.zeros(q), np.ones(q)
        z = np.stack([self.calibrated_logits(m, p) for m, p in present])  # (M, q)
        log_a = np.log(np.maximum(w / w.sum(), 1e-300))[:, None]  # (M, 1)
        fused = np.logaddexp.reduce(log_a + z, axis=0)  # soft maximum: union of what the streams show
        if self.exclusive_label is not None:
            k = self.exclusive_label
            fused[k] = -np.logaddexp.reduce(log_a[:, 0] - z[:, k])  # soft minimum: all streams agree
        probs = 1.0 / (1.0 + np.exp(-fused))
        return probs, binary_entropy_bits(probs)

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
