"""Evaluate a checkpoint on a benchmark split (`mmer eval`), and the prediction loop training shares.

Decision rule: label j is predicted present when p_j >= t_j. By default t_j are the thresholds
stored in the checkpoint: per label, tuned on the validation split during training, or one fixed
value for every label when the run used `threshold_mode = "fixed"`; `threshold` replaces them by
one value for every label.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from mmer.datasets.base import SPLITS, BenchmarkData, MultimodalDataset, collate
from mmer.errors import UserError
from mmer.metrics import MultilabelMetrics, brier_score, expected_calibration_error, multilabel_metrics
from mmer.runtime import Precision, resolve_device, resolve_precision, set_threads
from mmer.single_label import SingleLabelMetrics, single_label_metrics
from mmer.thresholds import apply_thresholds
from mmer.models.checkpoint import CheckpointInfo, load_checkpoint


class PredictionFailed(UserError):
    """The model produced probabilities outside [0, 1] or non-finite values (e.g. diverged training)."""

    exit_code = 1


@torch.no_grad()
def predict_probs(
    model: torch.nn.Module,
    dataset: MultimodalDataset,
    batch_size: int,
    device: torch.device,
    indices: Sequence[int] | None = None,
    with_uncertainty: bool = True,
    precision: Precision | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run `model.predict` over (a subset of) a split, in eval mode, in sample order.

    Returns (probs, uncertainty), both (N, q) float64 in [0, 1] (N = len(indices) or len(dataset));
    uncertainty is None when with_uncertainty=False and the model skipped it (LAMB's MC passes).
    The model's train/eval mode is restored afterwards. precision: autocast for the forward passes
    (None = fp32).
    """
    subset = dataset if indices is None else Subset(dataset, list(indices))
    num_labels = dataset.labels.shape[1]
    if len(subset) == 0:
        return np.zeros((0, num_labels)), (np.zeros((0, num_labels)) if with_uncertainty else None)
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    was_training = model.training
    model.eval()
    probs, unc = [], []
    try:
        for batch in loader:
            with (precision or Precision()).autocast():
                pred = model.predict(batch.to(device), with_uncertainty=with_uncertainty)
            probs.append(pred.probs.detach().to("cpu", torch.float64).numpy())
            if pred.uncertainty is not None:
                unc.append(pred.uncertainty.detach().to("cpu", torch.float64).numpy())
    finally:
        model.train(was_training)
    p = np.concatenate(probs)
    u = np.concatenate(unc) if len(unc) == len(probs) else None
    if not np.isfinite(p).all():
        raise PredictionFailed("the model produced non-finite probabilities (training diverged? try a lower lr)")
    # Tiny excursions outside [0, 1] from float rounding are clipped; anything else is a model bug.
    if (p < -1e-6).any() or (p > 1 + 1e-6).any():
        raise PredictionFailed("the model produced probabilities outside [0, 1]")
    return np.clip(p, 0.0, 1.0), None if u is None else np.clip(u, 0.0, 1.0)


@dataclass
class EvalReport:
    """Metrics of one checkpoint on one split.

    thresholds: the per-label decision thresholds used (length q); threshold_mode says where they
    came from: "per_label" (tuned on validation, from the checkpoint), "fixed" (the run's fixed
    threshold, from the checkpoint) or "global" (one value for every label: given to `evaluate`, or
    tuned by a `threshold_mode = "tuned_global"` run and read from the checkpoint).
    ece (15 equal-width bins) and brier are over all N*q label probabilities.
    mean_uncertainty: mean of the model's per-label uncertainty in [0, 1].
    single_label: top-1 accuracy, WA, UA, per-class recall and confusion matrix of the arg-max
    label (mmer.single_label), next to the multi-label metrics.
    """

    model: str
    checkpoint: str
    dataset: str
    split: str
    label_names: list[str]
    metrics: MultilabelMetrics
    ece: float
    brier: float
    threshold_mode: str
    thresholds: list[float]
    mean_uncertainty: float
    single_label: SingleLabelMetrics | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """One flat JSON-ready object: the metric keys of `MultilabelMetrics.as_dict()` plus
        ece, brier, mean_uncertainty, threshold {mode, values{label: t}} and provenance; with
        single-label metrics also top1_accuracy, weighted_accuracy, unweighted_accuracy and
        single_label {... per_class_recall, support, confusion, confusion_columns}."""
        out = self.metrics.as_dict()
        if self.single_label is not None:
            out.update(self.single_label.report_fields())
        out.update(
            ece=self.ece,
            brier=self.brier,
            mean_uncertainty=self.mean_uncertainty,
            threshold={"mode": self.threshold_mode, "values": dict(zip(self.label_names, self.thresholds))},
            model=self.model,
            checkpoint=self.checkpoint,
            dataset=self.dataset,
            split=self.split,
        )
        out.update(self.extra)
        return out


def score_probabilities(
    probs: np.ndarray, uncertainty: np.ndarray | None, truth: np.ndarray, label_names: list[str],
    thresholds: Sequence[float],
) -> tuple[MultilabelMetrics, float, float, float | None]:
    """(metrics at `thresholds`, ECE, Brier, mean uncertainty or None without uncertainty) of
    (N, q) probabilities against 0/1 truth."""
    decisions = apply_thresholds(probs, list(thresholds))
    metrics = multilabel_metrics(truth.astype(np.int64), decisions, label_names)
    if uncertainty is None:
        mean_unc = None
    else:
        mean_unc = float(uncertainty.mean()) if uncertainty.size else 0.0
    return metrics, expected_calibration_error(probs, truth), brier_score(probs, truth), mean_unc


def require_matching_dataset(info: CheckpointInfo, data: BenchmarkData, checkpoint: Path) -> None:
    """The checkpoint's label names (same order) and feature spec must be the dataset's."""
    if list(info.label_names) != list(data.label_names):
        raise UserError(
            f"{checkpoint}: trained on labels {info.label_names} but dataset {data.name} has {data.label_names}"
        )
    info.feature_spec.require_compatible(data.feature_spec,
                                         f"{checkpoint}: features of dataset {data.name} do not match the checkpoint")


def require_split(data: BenchmarkData, split: str) -> MultimodalDataset:
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}", parameter="split")
    if split not in data.splits or len(data.splits[split]) == 0:
        raise UserError(f"dataset {data.name} has no samples in split {split!r}")
    return data.splits[split]


def evaluate_model(
    model: torch.nn.Module,
    model_name: str,
    checkpoint: str,
    data: BenchmarkData,
    split: str,
    thresholds: Sequence[float],
    threshold_mode: str,
    batch_size: int,
    device: torch.device,
    precision: Precision | None = None,
) -> EvalReport:
    """Predict `split` of `data` with `model` (at `precision`, None = fp32) and score it at
    `thresholds` (q values)."""
    dataset = require_split(data, split)
    probs, unc = predict_probs(model, dataset, batch_size, device, precision=precision)
    metrics, ece, brier, mean_unc = score_probabilities(probs, unc, dataset.labels, data.label_names, thresholds)
    return EvalReport(
        model=model_name, checkpoint=checkpoint, dataset=data.name, split=split, label_names=list(data.label_names),
        metrics=metrics, ece=ece, brier=brier, threshold_mode=threshold_mode,
        thresholds=[float(t) for t in thresholds], mean_uncertainty=mean_unc,
        single_label=single_label_metrics(dataset.labels, probs, list(data.label_names)),
    )


def evaluate(
    checkpoint: str | Path,
    dataset: str,
    data: str | Path,
    labels: str | Path | None = None,
    split: str = "test",
    threshold: float | None = None,
    device: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
) -> EvalReport:
    """Load `checkpoint`, load benchmark `dataset` from `data` (+ `labels` file), score `split`.

    threshold: one decision threshold for every label; None uses the checkpoint's thresholds
    (per label tuned on validation, or the run's fixed threshold). precision: "fp32" | "bf16" |
    "fp16" for the network's forward passes (`mmer.runtime.resolve_precision`).
    Raises UserError (exit 2) when the checkpoint's labels or feature spec differ from the dataset's.
    """
    from mmer.datasets import dataset_names, load_dataset

    if dataset not in dataset_names():
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(dataset_names())}")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UserError(f"threshold must be in [0, 1], got {threshold}", parameter="threshold")
    set_threads(threads)
    dev = resolve_device(device)
    amp = resolve_precision(precision, dev)
    checkpoint = Path(checkpoint)
    model, info = load_checkpoint(checkpoint, device=dev)
    bench = load_dataset(dataset, Path(data), None if labels is None else Path(labels))
    require_matching_dataset(info, bench, checkpoint)
    if "voice_normalisation" in info.extra:  # voices read as the checkpoint was trained to (`mmer train --adapt`)
        from mmer.voice_normalisation import VoiceNormaliser, adapt_splits

        mode = info.extra.get("voice_normalisation_training", "clip")
        mode = "clip" if mode == "speaker" else mode  # speakers are not known here: each clip over itself
        bench, _ = adapt_splits(bench, mode, None, VoiceNormaliser.from_dict(info.extra["voice_normalisation"]))
    if threshold is None:
        saved_mode = getattr(info.config, "threshold_mode", "tuned")
        thresholds = list(info.thresholds)
        mode = {"fixed": "fixed", "tuned_global": "global"}.get(saved_mode, "per_label")
    else:
        thresholds, mode = [float(threshold)] * len(info.label_names), "global"
    report = evaluate_model(model, info.model_name, str(checkpoint), bench, split, thresholds, mode,
                            info.config.batch_size, dev, amp)
    if amp.dtype is not None:
        report.extra["precision"] = amp.name
    if "global_threshold" in info.extra:
        report.extra["tuned_global_threshold"] = info.extra["global_threshold"]
    return report
