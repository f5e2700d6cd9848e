"""Reliability-weighted late fusion: one answer from what the face, the voice and the words each say.

A checkpoint trained on separate single-modality corpora (mmer's shipped defaults: English text,
German acted speech, expression-space face sequences) never saw real co-occurring streams, so a
joint pass would combine them with weights learned from synthetic pairs. Such a checkpoint stores a
`LateFusion` in `extra["fusion"]` instead, fitted on held-out data after training
(recipes/default_model_training.py), and the application combines the network's single-stream
readings (each stream alone, `by_modality`):

0. ensemble (optional, per stream): a stream with a `SummaryHead` (the shipped defaults' voice)
   reads p_m = (1 - h) p_net + h p_head on the labels the head knows, where p_head is a linear
   classifier's probabilities on statistics of the whole input's frames (`frame_statistics`:
   utterance-level functionals next to the network's frame-level view) and h its share, chosen
   on held-out data; other labels keep p_net;
1. calibration: each stream's per-label probability p_m is temperature-scaled,
   z_m = logit(p_m) / T_m, with T_m fitted on that stream's validation data (binary cross-entropy);
2. weights: w_m = r_m * f_m, with r_m the stream's reliability — its discrimination measured on
   held-out data (mean over labels of 2 * AUC - 1), or a documented prior for a stream without
   labelled held-out data (the face) — and f_m in (0, 1] its domain factor for this input
   (`StreamDomain`: 1 inside the range of held-out training-domain data, falling steeply outside,
   e.g. for a voice unlike the few German actors the voice stream was trained on; 1 for a stream
   without a domain model);
3. fusion, with the union semantics of multi-label emotion annotation (an emotion is present when
   any channel shows it): with a_m = w_m / max w (1 for the most trusted present stream), every
   emotion's fused logit is the weighted maximum z = max_m (z_m + log a_m), and that of the
   "none of them" label (neutral) the weighted minimum z = min_m (z_m - log a_m) (neutral only
   when every channel is). One stream alone, or several saying the same, give exactly the
   calibrated reading; a stream trusted half as much as the most trusted one needs odds twice as
   high to lead; a stream that shows nothing (low z) changes nothing, so it can neither dilute
   nor remove what a clear stream shows;
4. decision: present when sigmoid(z) >= the fusion's per-label threshold (tuned on validation);
   with `any_stream_shows` (the shipped defaults since voice features v2), "no emotion" needs
   every stream's agreement: when no emotion reaches its threshold after the weighting but some
   usable stream (weight > 0) on its own shows one (its calibrated probability >= that label's
   threshold), the emotion it shows most clearly (largest logit margin) is present at exactly its
   threshold's probability (so a high uncertainty), and neutral is not. Trust and domain discount
   how sure the answer is, but no longer let neutral words, or a less trusted stream, silence a
   stream that clearly shows an emotion (issue: 40 % of emotional English voices with neutral
   words came out "no emotion");
5. uncertainty: the binary entropy of the fused probability in bits (0 = certain, 1 = a coin
   flip); with no usable stream every label is absent with probability 0 and uncertainty 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

_EPS = 1e-6  # probabilities are clipped to [eps, 1 - eps] before taking logits
_MARGIN = 1e-6  # logits set "at" a threshold land this far on the intended side of it


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

    An input (T, D) frames is summarised by its mean frame u (the first len(mean) of its D values:
    the domain may describe only the leading dimensions, e.g. the 25 eGeMAPS descriptors of the
    voice's 409); its distance to the training domain is the Mahalanobis distance
    d = sqrt((u - mean)^T precision (u - mean)), precision the inverse of the (shrunk) covariance of
    training summaries. `reference` is the 95th percentile of d over held-out in-domain inputs.
    factor = 1 for d <= reference, else (reference / d)^exponent.
    """

    mean: list[float]
    precision: list[list[float]]
    reference: float
    exponent: float = 4.0
    basis: str = ""

    def distance(self, frames: np.ndarray) -> float:
        x = np.asarray(frames, dtype=np.float64)[:, :len(self.mean)]
        diff = x.mean(axis=0) - np.asarray(self.mean)
        return float(np.sqrt(max(diff @ np.asarray(self.precision) @ diff, 0.0)))

    def factor(self, frames: np.ndarray) -> float:
        """Domain factor in (0, 1] of one input's frames (T, D), T >= 1."""
        d = self.distance(frames)
        return 1.0 if d <= self.reference else float((self.reference / d) ** self.exponent)

    @classmethod
    def fit(cls, train: list[np.ndarray], held_out: list[np.ndarray], shrinkage: float = 0.2,
            basis: str = "", dims: int | None = None) -> "StreamDomain":
        """From training inputs and held-out in-domain inputs, each (T_i, D) frames; `dims`: describe
        only the first `dims` dimensions (None: all)."""
        u = np.stack([x[:, :dims].mean(axis=0) for x in train]).astype(np.float64)  # (N, dims)
        cov = np.cov(u.T)
        cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))
        domain = cls(u.mean(axis=0).tolist(), np.linalg.pinv(cov).tolist(), 0.0, basis=basis)
        domain.reference = float(np.percentile([domain.distance(x) for x in held_out], 95))
        return domain


STATISTICS = ("mean", "std", "p10", "p50", "p90", "p90-p10", "mean |delta|", "std delta")
"""The functionals `frame_statistics` computes per feature dimension, in this order."""


def frame_statistics(frames: np.ndarray) -> np.ndarray:
    """Utterance-level functionals of frames (T, D), T >= 1 -> (len(STATISTICS) * D,) float64:
    per dimension the mean, standard deviation, 10th/50th/90th percentiles, the 10-90 range, and
    the mean and standard deviation of the frame-to-frame change (0 for a single frame)."""
    x = np.asarray(frames, dtype=np.float64)
    p10, p50, p90 = np.percentile(x, [10, 50, 90], axis=0)
    delta = np.diff(x, axis=0) if len(x) > 1 else np.zeros((1, x.shape[1]))
    return np.concatenate([x.mean(0), x.std(0), p10, p50, p90, p90 - p10, np.abs(delta).mean(0), delta.std(0)])


@dataclass
class SummaryHead:
    """A multinomial linear classifier on `frame_statistics` of one stream's input.

    labels: the label index of each of its C classes; mean, scale (F,): standardisation of the
    F = len(STATISTICS) * D statistics; coef (C, F), intercept (C,): the class logits;
    share: h in [0, 1], the head's share of its stream's reading (`mix`).
    """

    labels: list[int]
    mean: list[float]
    scale: list[float]
    coef: list[list[float]]
    intercept: list[float]
    share: float = 0.5
    basis: str = ""

    def probs(self, frames: np.ndarray) -> np.ndarray:
        """Class probabilities (C,) (softmax) of one input's frames (T, D), T >= 1."""
        x = (frame_statistics(frames) - np.asarray(self.mean)) / np.asarray(self.scale)
        z = np.asarray(self.coef) @ x + np.asarray(self.intercept)
        z = np.exp(z - z.max())
        return z / z.sum()

    def mix(self, network_probs: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """The network's single-stream probabilities (q,) for an input with frames (T, D), T >= 1,
        mixed with this head: (1 - share) * network + share * head on the head's labels."""
        probs = np.asarray(network_probs, dtype=np.float64).copy()
        probs[self.labels] = (1 - self.share) * probs[self.labels] + self.share * self.probs(frames)
        return probs

    def check(self, num_labels: int) -> None:
        """Raises ValueError when the arrays do not fit together or a label index is out of range."""
        coef = np.asarray(self.coef, dtype=np.float64)
        if (coef.ndim != 2 or coef.shape != (len(self.labels), len(self.mean)) or len(self.scale) != len(self.mean)
                or len(self.intercept) != len(self.labels) or not np.isfinite(coef).all()
                or not np.isfinite(self.mean).all() or not (np.asarray(self.scale) > 0).all()
                or not np.isfinite(self.intercept).all() or not all(0 <= k < num_labels for k in self.labels)
                or not 0.0 <= self.share <= 1.0):
            raise ValueError("malformed summary head")


@dataclass
class LateFusion:
    """Per-stream calibration, domains and per-label decision thresholds of a late-fusion
    checkpoint. `exclusive_label`: index of the label meaning "no emotion" (neutral), fused as
    a weighted minimum; None when there is none."""

    streams: dict[str, StreamCalibration]
    thresholds: list[float]
    domains: dict[str, StreamDomain] = field(default_factory=dict)
    exclusive_label: int | None = None
    notes: dict[str, str] = field(default_factory=dict)
    heads: dict[str, SummaryHead] = field(default_factory=dict)
    any_stream_shows: bool = False  # step 4 of the module docstring; False for checkpoints before it

    def to_dict(self) -> dict:
        return {"streams": {m: asdict(c) for m, c in self.streams.items()}, "thresholds": list(self.thresholds),
                "domains": {m: asdict(d) for m, d in self.domains.items()},
                "exclusive_label": self.exclusive_label, "notes": dict(self.notes),
                "any_stream_shows": self.any_stream_shows,
                "heads": {m: asdict(h) for m, h in self.heads.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "LateFusion":
        """Raises ValueError naming the field when `data` (checkpoint extra["fusion"]) is malformed."""
        try:
            streams = {m: StreamCalibration(**c) for m, c in data["streams"].items()}
            thresholds = [float(t) for t in data["thresholds"]]
            domains = {m: StreamDomain(**d) for m, d in data.get("domains", {}).items()}
            heads = {m: SummaryHead(**h) for m, h in data.get("heads", {}).items()}
            exclusive = data.get("exclusive_label")
            exclusive = None if exclusive is None else int(exclusive)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"fusion: malformed calibration ({err})") from None
        for m, d in domains.items():
            values = np.asarray(d.precision, dtype=np.float64)
            if (values.shape != (len(d.mean), len(d.mean)) or not np.isfinite(values).all()
                    or not np.isfinite(d.mean).all() or not (math.isfinite(d.reference) and d.reference > 0)):
                raise ValueError(f"fusion: domain of stream {m!r} is malformed")
        for m, h in heads.items():
            try:
                h.check(len(thresholds))
            except (ValueError, TypeError):
                raise ValueError(f"fusion: summary head of stream {m!r} is malformed") from None
        if exclusive is not None and not 0 <= exclusive < len(thresholds):
            raise ValueError("fusion: exclusive_label is not a label index")
        for m, c in streams.items():
            if not (math.isfinite(c.temperature) and c.temperature > 0 and math.isfinite(c.reliability)
                    and c.reliability >= 0):
                raise ValueError(f"fusion: stream {m!r} needs a finite temperature > 0 and reliability >= 0")
        if not all(math.isfinite(t) and 0 <= t <= 1 for t in thresholds):
            raise ValueError("fusion: thresholds must be finite and in [0, 1]")
        return cls(streams, thresholds, domains, exclusive, dict(data.get("notes", {})), heads,
                   bool(data.get("any_stream_shows", False)))

    def stream_probs(self, stream: str, network_probs: np.ndarray, frames: np.ndarray | None) -> np.ndarray:
        """What `stream` says about one input: the network's single-stream probabilities (q,),
        mixed with the stream's summary head (`SummaryHead.mix`) when it has one and the input's
        frames (T, D), T >= 1, are given (step 0 of the module docstring)."""
        head = self.heads.get(stream)
        if head is None or frames is None or not len(frames):
            return np.asarray(network_probs, dtype=np.float64).copy()
        return head.mix(network_probs, frames)

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

    def fuse_input(self, readings: dict[str, np.ndarray | None], frames: dict[str, np.ndarray],
                   weight_factors: dict[str, float] | None = None,
                   trust: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One input's (a clip's or a window's) fused probabilities (q,) and uncertainties (q,).

        readings: stream -> its single-stream probabilities (q,), None when absent; frames: stream ->
        its frames (T, D), for the domain factor of `weight`; weight_factors: stream -> a factor in
        [0, 1] on its weight for this input (the face's quality); trust: stream -> how far its
        reading itself can be trusted (the words' recognition trust, `doubted_reading`)."""
        readings = {m: p if p is None or m not in (trust or {}) else doubted_reading(p, trust[m], self.exclusive_label)
                    for m, p in readings.items()}
        weights = {m: self.weight(m, frames[m]) * (weight_factors or {}).get(m, 1.0)
                   for m in readings if m in self.streams}
        return self.fuse(readings, weights)

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
        log_a = np.log(np.maximum(w / w.max(), 1e-300))[:, None]  # (M, 1); 0 for the most trusted stream
        fused = (z + log_a).max(axis=0)  # weighted maximum: the union of what the streams show
        if self.exclusive_label is not None:
            k = self.exclusive_label
            fused[k] = (z[:, k] - log_a[:, 0]).min()  # weighted minimum: neutral only when all streams are
            if self.any_stream_shows:
                self._unless_a_stream_shows(fused, z[w > 0])
        probs = 1.0 / (1.0 + np.exp(-fused))
        return probs, binary_entropy_bits(probs)

    def _unless_a_stream_shows(self, fused: np.ndarray, z: np.ndarray) -> None:
        """Step 4 (`any_stream_shows`), in place on the fused logits (q,): z (M', q) the calibrated
        logits of the usable streams."""
        k = self.exclusive_label
        t = np.clip(np.asarray(self.thresholds, dtype=np.float64), _EPS, 1 - _EPS)
        cut = np.log(t / (1 - t))  # (q,) thresholds as logits
        emotions = [j for j in range(len(cut)) if j != k]
        if not len(z) or (fused[emotions] >= cut[emotions]).any():
            return
        margins = z[:, emotions] - cut[emotions]  # (M', q - 1)
        if margins.max() < 0:
            return  # no stream shows an emotion: "no emotion" stands
        e = emotions[int(np.unravel_index(np.argmax(margins), margins.shape)[1])]
        fused[e] = max(fused[e], cut[e] + _MARGIN)
        fused[k] = min(fused[k], cut[k] - _MARGIN)


def doubted_reading(probs: np.ndarray, trust: float, exclusive_label: int | None) -> np.ndarray:
    """A stream's reading probs (q,) as far as it can be trusted (trust in [0, 1], e.g. the words'
    `FeatureSet.stats.words_trust`): trust * probs + (1 - trust) * the reading of a stream that shows
    nothing (every emotion absent, the exclusive "none of them" label, if any, present), which the
    late fusion's union leaves without effect. Trust 1 gives probs unchanged."""
    nothing = np.zeros_like(probs, dtype=np.float64)
    if exclusive_label is not None:
        nothing[exclusive_label] = 1.0
    return trust * np.asarray(probs, dtype=np.float64) + (1.0 - trust) * nothing


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
