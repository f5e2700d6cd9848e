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
from pathlib import Path

import numpy as np
import torch

from mmer.datasets.base import MultimodalDataset, keep_modalities
from mmer.evaluation import predict_probs
from mmer.stream_fusion import (LateFusion, StreamCalibration, SummaryHead, discrimination, fit_temperature,
                                frame_statistics)
from mmer.thresholds import DEFAULT_GRID, tune_global_threshold, tune_label_thresholds

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


def fit_summary_head(train: list[np.ndarray], train_labels: np.ndarray, valid: list[np.ndarray],
                     valid_labels: np.ndarray, c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0),
                     what: str = "training") -> tuple[SummaryHead, dict[float, float]]:
    """A stream's `SummaryHead`: multinomial logistic regression (class-balanced, L2) on the
    utterance statistics (`frame_statistics`) of training inputs (frames (T, D) each; labels (N, q)
    one-hot), its inverse strength C chosen from `c_grid` by unweighted accuracy on the validation
    inputs (ties: the stronger regularisation). Returns the head (share 0.5; the caller chooses it)
    and the validation UA of every C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.preprocessing import StandardScaler

    x_train = np.stack([frame_statistics(x) for x in train])
    x_valid = np.stack([frame_statistics(x) for x in valid])
    y_train, y_valid = train_labels.argmax(1), valid_labels.argmax(1)
    scaler = StandardScaler().fit(x_train)
    fits = {c: LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(scaler.transform(x_train), y_train)
            for c in c_grid}
    ua = {c: float(balanced_accuracy_score(y_valid, f.predict(scaler.transform(x_valid)))) for c, f in fits.items()}
    best = max(c_grid, key=lambda c: (ua[c], -c))  # ties -> stronger regularisation
    fit = fits[best]
    head = SummaryHead(labels=[int(k) for k in fit.classes_], mean=scaler.mean_.tolist(),
                       scale=np.where(scaler.scale_ > 0, scaler.scale_, 1.0).tolist(), coef=fit.coef_.tolist(),
                       intercept=fit.intercept_.tolist(),
                       basis=f"logistic regression (class-balanced, C={best}) on utterance statistics of "
                             f"{len(train)} {what}")
    return head, ua


def shrunk_thresholds(probs: np.ndarray, labels: np.ndarray, prior_positives: float = THRESHOLD_PRIOR_POSITIVES,
                      grid=DEFAULT_GRID) -> tuple[list[float], float]:
    """Per-label thresholds stable with few positives: t_j = w_j * own_j + (1 - w_j) * global,
    w_j = n_j / (n_j + prior_positives), own_j the label's F1-tuned threshold, global the micro-F1
    tuned one shared by all labels, n_j the label's positives in `labels` (N, q).
    Returns (thresholds (q,), global)."""
    truth = np.asarray(labels).astype(np.int64)
    own = np.asarray(tune_label_thresholds(probs, truth, grid))
    common = tune_global_threshold(probs, truth, grid)
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


@dataclass
class CalibrationResult:
    """What `calibrate_checkpoint` fitted and where it wrote it."""

    checkpoint: Path
    written: Path
    dataset: str
    split: str
    label_names: list[str]
    fusion: LateFusion
    samples: dict[str, int]

    def as_dict(self) -> dict:
        return {"checkpoint": str(self.checkpoint), "written": str(self.written), "dataset": self.dataset,
                "split": self.split, "samples_per_stream": dict(self.samples), "fusion": self.fusion.to_dict()}


def calibrate_checkpoint(checkpoint: str | Path, dataset: str, data: str | Path, labels: str | Path | None = None,
                         split: str = "valid", out: str | Path | None = None, device: str = "auto",
                         threads: int | None = None,
                         prior_positives: float = THRESHOLD_PRIOR_POSITIVES) -> CalibrationResult:
    """Refit the late fusion of `checkpoint` (`fit_fusion_on_split`) on `split` of a dataset (held-out
    data with the checkpoint's labels and features, e.g. your own validation clips) and write the
    checkpoint with it to `out` (default: in place, replaced atomically). The streams are the
    checkpoint's `trained_modalities` (all three for a checkpoint that does not record them).
    Raises UserError (exit 2) for a dataset that does not fit the checkpoint or has no such split."""
    from mmer.core.atomic_file import replacing
    from mmer.core.feature_spec import MODALITIES
    from mmer.datasets import dataset_names, load_dataset
    from mmer.errors import UserError
    from mmer.evaluation import require_matching_dataset, require_split
    from mmer.models.checkpoint import load_checkpoint, save_checkpoint
    from mmer.runtime import resolve_device, set_threads

    if dataset not in dataset_names():
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(dataset_names())}")
    if not (prior_positives >= 0):
        raise UserError(f"prior_positives must be >= 0, got {prior_positives}", parameter="prior_positives")
    set_threads(threads)
    dev = resolve_device(device)
    checkpoint = Path(checkpoint)
    model, info = load_checkpoint(checkpoint, device=dev)
    bench = load_dataset(dataset, Path(data), None if labels is None else Path(labels))
    require_matching_dataset(info, bench, checkpoint)
    held_out = require_split(bench, split)
    streams = list(info.extra.get("trained_modalities", MODALITIES))
    fit = fit_fusion_on_split(model, held_out, list(info.label_names), streams, dev,
                              int(getattr(info.config, "batch_size", 64)), split, prior_positives)
    extra = dict(info.extra)
    extra["fusion"] = fit.fusion.to_dict()
    extra["fusion_fit"] = {"split": split, "dataset": dataset, "data": str(data), "samples_per_stream": fit.samples}
    target = checkpoint if out is None else Path(out)
    with replacing(target) as tmp:
        save_checkpoint(tmp, model, list(info.label_names), info.feature_spec, thresholds=list(info.thresholds),
                        extra=extra)
    return CalibrationResult(checkpoint, target, dataset, split, list(info.label_names), fit.fusion, fit.samples)
