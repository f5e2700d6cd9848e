"""The face's own reading: the expression network's probabilities pooled over a face track and calibrated.

The visual frames (`mmer.extractors.face.VISUAL_FEATURE_NAMES`) end with the seven FER2013
probabilities the expression network read from each usable face. A checkpoint may store a
`FaceReading` (`extra["face_reading"]`, fitted on real photographs by recipes/fit_face_reading.py);
the application then lets the face say, per clip or window:

1. pooling: per FER class the quality-weighted median of the frames' probabilities (weights: each
   frame's face quality, `FeatureSet.face_quality`), renormalised to sum to 1 — a blink, a turned
   head or a misread frame among several cannot decide the reading;
2. calibration: softmax(log(pooled) / temperature + bias), the bias fitted on real faces where they
   inform it (neutral vs happy) and 0 elsewhere;
3. mixing: on the labels the FER classes map to, (1 - share) * the checkpoint network's visual
   reading + share * this reading (share 1: the calibrated network probabilities alone).

The face stream's fusion weight is multiplied by `quality_factor` (the mean quality of the frames
read), so a small, blurred or turned face counts less than a clear one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

_EPS = 1e-6


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per column the weighted median of values (T, C) with weights (T,) > 0 -> (C,): the smallest
    value whose cumulative weight reaches half the total, averaged with the next value when the
    half is reached exactly (so two equally weighted frames give their mean)."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    order = np.argsort(values, axis=0, kind="stable")  # (T, C)
    sorted_values = np.take_along_axis(values, order, axis=0)
    cumulative = np.cumsum(weights[order], axis=0)  # (T, C)
    half = cumulative[-1] / 2
    out = np.empty(values.shape[1])
    for c in range(values.shape[1]):
        k = int(np.searchsorted(cumulative[:, c], half[c] - 1e-12 * cumulative[-1, c]))
        exact = abs(cumulative[k, c] - half[c]) <= 1e-9 * cumulative[-1, c] and k + 1 < len(values)
        out[c] = (sorted_values[k, c] + sorted_values[k + 1, c]) / 2 if exact else sorted_values[k, c]
    return out


def quality_factor(quality: np.ndarray | None) -> float:
    """The face stream's weight factor in [0, 1] for frames of quality (T,): their mean (1 when the
    features carry no quality, e.g. benchmark features)."""
    if quality is None or len(quality) == 0:
        return 1.0
    return float(np.clip(np.mean(quality), 0.0, 1.0))


@dataclass
class FaceReading:
    """labels: for each FER2013 class in the network's order, the checkpoint label index it reads as;
    first_column: index of the first expression probability in a visual frame; temperature > 0 and
    bias (7,) the calibration; share in [0, 1] its share of the face stream's reading."""

    labels: list[int]
    first_column: int
    temperature: float = 1.0
    bias: list[float] | None = None
    share: float = 1.0
    basis: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, num_labels: int, visual_dim: int) -> "FaceReading":
        """Raises ValueError naming the problem when `data` (checkpoint extra["face_reading"]) is malformed."""
        try:
            reading = cls(**data)
            labels = [int(k) for k in reading.labels]
            bias = [float(b) for b in (reading.bias or [0.0] * len(labels))]
        except (TypeError, ValueError) as err:
            raise ValueError(f"face reading: malformed ({' '.join(str(err).split())[:120]})") from None
        if (len(set(labels)) != len(labels) or not all(0 <= k < num_labels for k in labels) or len(bias) != len(labels)
                or not 0 <= reading.first_column <= visual_dim - len(labels)
                or not (math.isfinite(reading.temperature) and reading.temperature > 0)
                or not all(math.isfinite(b) for b in bias) or not 0.0 <= reading.share <= 1.0):
            raise ValueError("face reading: labels, columns, temperature, bias or share out of range")
        reading.labels, reading.bias = labels, bias
        return reading

    def pooled(self, frames: np.ndarray, quality: np.ndarray | None = None) -> np.ndarray:
        """Pooled FER probabilities (7,) of frames (T, D), T >= 1, with qualities (T,) (default all 1)."""
        probs = np.asarray(frames, dtype=np.float64)[:, self.first_column:self.first_column + len(self.labels)]
        weights = np.ones(len(probs)) if quality is None or len(quality) != len(probs) else np.asarray(quality, float)
        pooled = weighted_median(probs, np.maximum(weights, _EPS))
        return pooled / max(pooled.sum(), _EPS)

    def calibrated(self, pooled: np.ndarray) -> np.ndarray:
        """Pooled FER probabilities (..., 7) -> calibrated FER probabilities (..., 7)."""
        z = np.log(np.clip(pooled, _EPS, 1.0)) / self.temperature + np.asarray(self.bias or 0.0)
        z = np.exp(z - z.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)

    def mix(self, network_probs: np.ndarray, frames: np.ndarray, quality: np.ndarray | None = None) -> np.ndarray:
        """The checkpoint network's visual-only probabilities (q,) mixed with this reading of frames (T, D)."""
        probs = np.asarray(network_probs, dtype=np.float64).copy()
        own = self.calibrated(self.pooled(frames, quality))
        probs[self.labels] = (1 - self.share) * probs[self.labels] + self.share * own
        return probs
