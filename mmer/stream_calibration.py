"""Fit a checkpoint's late fusion (`mmer.stream_fusion.LateFusion`) on held-out data.

The machinery the shipped defaults use (recipes/default_model_training.py), for any checkpoint:

    fusion = fit_fusion_on_split(model, valid_split, label_names, streams=["audio", "text"], device=cpu)
    checkpoint extra["fusion"] = fusion.to_dict()

For each stream the checkpoint was trained on, the network reads the validation samples that have
that stream with every other stream masked (what `mmer analyze` reports as `by_modality`); from
these single-stream readings `calibrate_stream` fits the stream's temperature (binary cross-entropy,
`fit_temperature`) and its reliability (2 * AUC - 1, `discrimination`). The fused readings of the
validation samples then give the per-label decision thresholds, shrunk towards one global threshold
by how few positives each label has (`shrunk_thresholds`): a label with a handful of validation
positives cannot support its own threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mmer.datasets.base import MultimodalDataset, keep_modalities
from mmer.evaluation import predict_probs
from mmer.stream_fusion import LateFusion, StreamCalibration, discrimination, fit_temperature
from mmer.thresholds import tune_global_threshold, tune_label_thresholds

THRESHOLD_PRIOR_POSITIVES = 30.0
"""Strength of the global threshold in `shrunk_thresholds`, in validation positives: a label with
this many positives gets half its own tuned threshold and half the global one."""
EXCLUSIVE_LABEL_NAMES = ("neutral", "none", "no emotion")
"""Label names that mean "none of the emotions" (fused as a weighted minimum, stream_fusion.py)."""
MIN_STREAM_SAMPLES = 10
"""A stream needs at least this many validation samples with it present to be calibrated."""


def calibrate_stream(probs: np.ndarray, labels: np.ndarray, labels_used: list[int] | None = None,
                     basis: str = "") -> StreamCalibration:
    """Temperature and reliability of one stream from its single-stream readings `probs` (N, q)
    against `labels` (N, q) 0/1, over the label columns `labels_used` (default all)."""
    return StreamCalibration(fit_temperature(probs, labels, labels_used), discrimination(probs, labels, labels_used),
                             basis)


def shrunk_thresholds(probs: np.ndarray, labels: np.ndarray,
                      prior_positives: float = THRESHOLD_PRIOR_POSITIVES) -> tuple[list[float], float]:
    """Per-label thresholds stable with few positives: t_j = w_j * own_j + (1 - w_j) * global,
    w_j = n_j / (n_j + prior_positives), own_j the label's F1-tuned threshold, global the micro-F1
    tuned one shared by all labels, n_j the label's positives in `labels` (N, q).
    Returns (thresholds (q,), global)."""
    truth = np.asarray(labels).astype(np.int64)
    own = np.asarray(tune_label_thresholds(probs, truth))
    common = tune_global_threshold(probs, truth)
    positives = truth.sum(axis=0).astype(np.float64)
    weight = positives / (positives + prior_positives)
    return [float(round(t, 4)) for t in weight * own + (1 - weight) * common], float(common)


def exclusive_label(label_names: list[str]) -> int | None:
    """Index of the label meaning "no emotion" (EXCLUSIVE_LABEL_NAMES, any case), or None."""
    lowered = [n.strip().lower() for n in label_names]
    return next((lowered.index(n) for n in EXCLUSIVE_LABEL_NAMES if n in lowered), None)


@dataclass
class FusionFit:
    """The fitted fusion, and per stream the number of validation samples it was measured on."""

    fusion: LateFusion
    samples: dict[str, int]


def stream_readings(model: torch.nn.Module, dataset: MultimodalDataset, stream: str, batch_size: int,
                    device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the samples that have `stream`, their single-stream probabilities (n, q))."""
    present = [i for i in range(len(dataset)) if len(dataset[i].features[stream])]
    if not present:
        return np.zeros(0, dtype=np.int64), np.zeros((0, dataset.labels.shape[1]))
    probs, _ = predict_probs(model, keep_modalities(dataset, [stream]), batch_size, device, indices=present,
                             with_uncertainty=False)
    return np.asarray(present), probs


def fit_fusion_on_split(model: torch.nn.Module, dataset: MultimodalDataset, label_names: list[str],
                        streams: list[str], device: torch.device, batch_size: int = 64, split_name: str = "valid",
                        prior_positives: float = THRESHOLD_PRIOR_POSITIVES) -> FusionFit:
    """A `LateFusion` for `model` over `streams` (those it was trained on), fitted on `dataset`
    (held-out samples: the validation split). A stream with fewer than MIN_STREAM_SAMPLES samples
    gets temperature 1 and the smallest reliability measured for another stream (or 1), with its
    basis saying so. Thresholds: `shrunk_thresholds` on the fused readings of every sample that has
    at least one stream."""
    labels = dataset.labels
    readings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    calibrations: dict[str, StreamCalibration] = {}
    for m in streams:
        idx, probs = stream_readings(model, dataset, m, batch_size, device)
        readings[m] = (idx, probs)
        if len(idx) >= MIN_STREAM_SAMPLES:
            calibrations[m] = calibrate_stream(probs, labels[idx], basis=f"{len(idx)} {split_name} samples, {m} only")
    measured = [c.reliability for c in calibrations.values()]
    for m in streams:
        if m not in calibrations:
            calibrations[m] = StreamCalibration(1.0, min(measured) if measured else 1.0,
                                                f"prior: only {len(readings[m][0])} {split_name} samples have {m}")
    fusion = LateFusion(calibrations, [0.5] * len(label_names), exclusive_label=exclusive_label(label_names))
    evidence: list[dict[str, np.ndarray]] = [{} for _ in range(len(dataset))]
    for m, (idx, probs) in readings.items():
        for i, p in zip(idx, probs):
            evidence[int(i)][m] = p
    usable = [i for i, e in enumerate(evidence) if e]
    if usable:
        fused = np.stack([fusion.fuse(evidence[i])[0] for i in usable])
        fusion.thresholds, common = shrunk_thresholds(fused, labels[usable], prior_positives)
        fusion.notes["thresholds"] = (f"tuned per label for F1 on the fused readings of {len(usable)} {split_name} "
                                      f"samples, shrunk towards the global threshold {common:g} by "
                                      f"n / (n + {prior_positives:g}) (n = the label's positives)")
    return FusionFit(fusion, {m: int(len(idx)) for m, (idx, _) in readings.items()})
