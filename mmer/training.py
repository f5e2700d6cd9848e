"""Train a registered model on a benchmark dataset (`mmer train`), single process or under torchrun.

    result = train(TrainOptions(model="lddu", dataset="mosei-aligned", data=path, out=run_dir), reporter)

Protocol:
- Config = the model config class defaults (or `Config.tiny(...)` with `tiny=True`), then the
  preset's values (`--preset paper|authors`, see models.config.PRESET_NAMES), then the `--config`
  TOML file, then `--set key=value` overrides, then `epochs`/`batch_size`/`threshold_mode`/
  `threshold`; `num_labels` and `input_dims` always come from the dataset.
- Before the first epoch the model's input standardisation is fitted on the training split.
- Every epoch: train on the train split, predict the FULL validation split (probabilities only: no
  uncertainty passes), tune decision thresholds on it (one per label, and one global; with
  `threshold_mode = "fixed"` every label uses `threshold` instead), score it at the per-label
  thresholds; the epoch with the best validation `select_metric` is kept as best.safetensors. The test split is never looked at until
  training has ended; then best.safetensors is evaluated on it exactly once.
- `select_on="test"` is the LDDU authors' protocol instead (their train.py scores the TEST split
  every epoch and keeps the best epoch; thresholds, when tuned, are tuned there too): everything
  above with the test split in place of the validation split. Its numbers are optimistic; every
  file and summary of such a run carries SELECTED_ON_TEST. Validation stays the default.
- Deterministic on CPU for a given seed (seeded Python/numpy/torch RNGs, per-epoch seeded shuffling,
  no worker processes by default); `resume=True` continues an interrupted run exactly where its last
  finished epoch left it (see run_dir.py for the files).
- Under `torchrun` each process trains on its DistributedSampler shard with `batch_size` samples per
  step (global batch = world_size * batch_size); gradients are averaged by DDP; validation
  predictions of all ranks are gathered so every rank computes the same metrics and decisions; only
  rank 0 writes files and calls the reporter.
- Config resolution lives in `mmer.train_config`, seeding and RNG states in `mmer.rng_state`.
- `train_seeds` (mmer.repeated_runs) trains the same settings with seeds seed, seed+1, ... into OUT/seed-<seed>/ and
  writes OUT/seeds_summary.json: mean, std (sample, n-1) and per-seed values of every test metric.
No printing here: progress goes to a `TrainReporter`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from mmer.core import __version__
from mmer.core.atomic_file import replacing
from mmer.catalog import SELECT_METRICS
from mmer.core.feature_spec import MODALITIES
from mmer.datasets.base import BenchmarkData, collate, keep_modalities
from mmer.distributed import (
    DistContext, TrainForward, all_reduce_sum, barrier, broadcast_from_main, gather_to_all, init_distributed, shutdown,
)
from mmer.errors import UserError
from mmer.evaluation import EvalReport, PredictionFailed, evaluate_model, predict_probs, score_probabilities
from mmer.optimization import EarlyStopping, LRSchedule, build_optimizer
from mmer.rng_state import rng_state, seed_everything, set_rng_state
from mmer.run_dir import RunDir
from mmer.runtime import Precision, resolve_precision, set_threads
from mmer.single_label import single_label_metrics
from mmer.stream_calibration import fit_fusion_on_split, shrunk_thresholds
from mmer.train_config import resolve_config
from mmer.thresholds import threshold_grid, tune_global_threshold
from mmer.trainer import EpochOutcome, Trainer, TrainerHooks, TrainingFailed
from mmer.models.checkpoint import load_checkpoint, save_checkpoint
from mmer.models.config import config_from_dict, config_to_dict
from mmer.models.registry import build_model, get_entry, model_names

STATE_VERSION = 1
"""Layout version of state.pt."""

MIN_STEPS_PER_EPOCH = 10
MIN_TOTAL_STEPS = 300
"""Below these many optimisation steps per epoch, or in all, a run warns (`RunStart.warnings`): on
a few hundred clips the papers' batch sizes leave the networks near their initial state (measured in
docs/training.md, "Small corpora")."""

SELECT_SPLITS: tuple[str, ...] = ("valid", "test")
"""Splits that can select the best epoch and tune thresholds (`select_on`); "valid" is the default."""

SELECTED_ON_TEST = "selected on TEST (authors' protocol; optimistic)"
"""The label of every summary, file and report row of a run with `select_on="test"`."""


@dataclass
class TrainOptions:
    """What `mmer train` was asked to do.

    model/dataset/data may be None only with `resume=True` (then they come from the run directory).
    overrides: ["key=value", ...] applied to the model config after `config_file`.
    out: run directory; None = runs/<model>-<dataset>-<YYYYmmdd-HHMMSS>.
    tiny: start from the model's `Config.tiny(num_labels, input_dims)` (smoke tests, demos).
    workers: DataLoader worker processes (0 = load in the training process; deterministic).
    preset: "paper" | "authors" (None = "paper"; a resumed run keeps its own).
    threshold_mode / threshold: override the config's decision-threshold fields ("tuned" | "fixed",
    and the fixed value); a threshold without a mode means "fixed".
    seeds: number of seeds for `train_seeds` (seed, seed+1, ...).
    precision: "fp32" | "bf16" | "fp16": autocast for the forward passes and losses of training,
    validation and test (weights and optimiser state stay float32; fp16 scales the loss).
    compile: run the training forward pass through torch.compile (the saved weights are the same
    modules' weights, so checkpoints do not change form).
    modalities: the streams to train on (None = every stream the data has); the others are masked in
    every split, and the checkpoint records `trained_modalities` (those asked for that the training
    split actually has), so `mmer analyze` never reads the rest.
    folds / fold: with folds = K >= 3, train on fold `fold` (0-based) of the speaker-grouped K-fold
    split of the whole dataset (mmer.datasets.folds); `train_folds` runs all K.
    select_on: the split that picks the best epoch and tunes thresholds: "valid" (None = "valid")
    or "test" (the LDDU authors' protocol; optimistic, labelled SELECTED_ON_TEST everywhere); a
    resumed run keeps its own.
    adapt: normalise the audio frames in their own domain before training ("clip" | "batch" |
    "speaker" | "none", mmer/voice_normalisation.py `adapt_splits`); the checkpoint then records the
    prior, and `mmer analyze --adapt` normalises the voices it reads the same way.
    speakers: file,speaker CSV keyed by sample id (the cache's ids) for adapt="speaker".
    """

    model: str | None = None
    dataset: str | None = None
    data: Path | None = None
    labels: Path | None = None
    config_file: Path | None = None
    overrides: list[str] = field(default_factory=list)
    epochs: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    out: Path | None = None
    resume: bool = False
    select_metric: str = "micro_f1"
    tiny: bool = False
    workers: int = 0
    preset: str | None = None
    threshold_mode: str | None = None
    threshold: float | None = None
    seeds: int = 1
    precision: str = "fp32"
    compile: bool = False
    modalities: list[str] | None = None
    folds: int = 0
    fold: int | None = None
    select_on: str | None = None
    adapt: str = "none"
    speakers: Path | None = None


@dataclass
class RunStart:
    """Sent to the reporter once, before the first epoch of this invocation."""

    run_dir: Path
    model: str
    dataset: str
    preset: str
    num_parameters: int
    split_sizes: dict[str, int]
    start_epoch: int  # first epoch this invocation trains (1-based)
    epochs: int  # last epoch of the run
    steps_per_epoch: int
    world_size: int
    device: str
    resumed: bool
    select_on: str = "valid"
    trained_modalities: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class EpochRecord:
    """One finished epoch: what metrics.jsonl stores (plus `seconds` of wall time).

    train: mean of each loss part over the epoch's training samples (all ranks).
    val: validation metrics at the per-label thresholds tuned on validation this epoch
         (MultilabelMetrics.as_dict() keys plus ece, brier).
    val_global: overall validation metrics at the single tuned global threshold.
    lr: learning rate of the epoch's last optimisation step.
    """

    epoch: int
    train: dict[str, float]
    val: dict
    val_global: dict
    thresholds: list[float]
    global_threshold: float
    lr: float
    seconds: float
    select_metric: str
    improved: bool
    best_epoch: int
    best_value: float
    select_on: str = "valid"  # split of `val` / `val_global`: "test" under the authors' protocol

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """Outcome of a finished run. test: best.safetensors on the test split (per-label thresholds);
    None on ranks > 0 under torchrun (only rank 0 evaluates and writes)."""

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    best_value: float
    select_metric: str
    epochs_run: int
    stopped_early: bool
    val_metrics: dict
    test: EvalReport | None
    select_on: str = "valid"


class TrainReporter:
    """Progress sink of `train` (called on rank 0 only). Override what you need; defaults do nothing."""

    def run_started(self, start: RunStart) -> None:
        """Training is about to start (or continue)."""

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        """Epoch `epoch` (1-based) begins with `num_batches` optimisation steps."""

    def batch_done(self, epoch: int, batch: int, num_batches: int, loss: float) -> None:
        """Optimisation step `batch` (1-based) of `epoch` finished; `loss` is this rank's total loss."""

    def validating(self, epoch: int) -> None:
        """Training steps of `epoch` are done; validation runs now."""

    def epoch_done(self, record: EpochRecord) -> None:
        """Epoch finished, files written (an interrupt from here on loses nothing)."""

    def testing(self, best_epoch: int) -> None:
        """Training ended; the best checkpoint is being evaluated on the test split."""


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------

def _load_data(dataset: str, data: Path, labels: Path | None, require_splits: bool = True) -> BenchmarkData:
    """The dataset; every split must have samples unless `require_splits` is False (folds re-split it)."""
    from mmer.datasets import dataset_names, load_dataset

    if dataset not in dataset_names():
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(dataset_names())}")
    bench = load_dataset(dataset, Path(data), None if labels is None else Path(labels))
    for split in ("train", "valid", "test") if require_splits else ():
        if split not in bench.splits or len(bench.splits[split]) == 0:
            raise UserError(f"{data}: dataset {dataset} has no samples in split {split!r}")
    return bench


def default_run_dir(model: str, dataset: str) -> Path:
    return Path("runs") / f"{model}-{dataset}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


@dataclass
class _Plan:
    """Resolved settings of a run (what config.json holds)."""

    model: str
    dataset: str
    data: Path
    labels: Path | None
    seed: int
    select_metric: str
    tiny: bool
    preset: str
    config: object
    select_on: str = "valid"
    modalities: list[str] | None = None  # asked for (None = all)
    trained_modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    folds: int = 0
    fold: int | None = None
    fold_groups: dict | None = None  # FoldPlan.to_json() of this fold
    warnings: list[str] = field(default_factory=list)
    adapt: str = "none"
    speakers: Path | None = None
    normaliser: object = None  # VoiceNormaliser fitted on the train split (adapt != "none")

    def to_json(self, ctx: DistContext, bench: BenchmarkData) -> dict:
        return {
            "model": self.model, "dataset": self.dataset, "data": str(self.data),
            "labels": None if self.labels is None else str(self.labels), "seed": self.seed,
            "select_metric": self.select_metric, "select_on": self.select_on, "tiny": self.tiny, "preset": self.preset,
            "modalities": self.modalities, "trained_modalities": list(self.trained_modalities),
            "folds": self.folds, "fold": self.fold, "fold_groups": self.fold_groups, "warnings": list(self.warnings),
            "adapt": self.adapt, "speakers": None if self.speakers is None else str(self.speakers),
            "world_size": ctx.world_size,
            "device": ctx.device.type, "mmer_version": __version__, "torch_version": torch.__version__,
            "label_names": list(bench.label_names), "feature_spec": bench.feature_spec.to_dict(),
            "config": config_to_dict(self.config),
        }


def _plan_new(options: TrainOptions) -> tuple[_Plan, BenchmarkData]:
    if options.model is None or options.dataset is None or options.data is None:
        raise UserError("--model, --dataset and --data are required (unless --resume continues a run)")
    if options.model not in model_names():
        raise UserError(f"unknown model {options.model!r}; choose one of {', '.join(model_names())}")
    if options.select_metric not in SELECT_METRICS:
        raise UserError(f"select_metric must be one of {', '.join(SELECT_METRICS)}, got {options.select_metric!r}", parameter="select_metric")
    select_on = options.select_on or "valid"
    if select_on not in SELECT_SPLITS:
        raise UserError(f"select_on must be one of {', '.join(SELECT_SPLITS)}, got {select_on!r}", parameter="select_on")
    modalities = _check_modalities(options.modalities)
    bench = _load_data(options.dataset, options.data, options.labels, require_splits=not options.folds)
    bench, fold_groups = _fold_of(bench, options.folds, options.fold)
    bench, trained = _restrict_streams(bench, modalities)
    preset = options.preset or "paper"
    config = resolve_config(options.model, bench.label_names, bench.feature_spec.dims, options.config_file,
                            options.overrides, options.epochs, options.batch_size, options.tiny, preset,
                            options.threshold_mode, options.threshold)
    plan = _Plan(options.model, options.dataset, Path(options.data).resolve(),
                 None if options.labels is None else Path(options.labels).resolve(),
                 options.seed, options.select_metric, options.tiny, preset, config, select_on, modalities, trained,
                 options.folds, options.fold, fold_groups, adapt=options.adapt,
                 speakers=None if options.speakers is None else Path(options.speakers).resolve())
    return _adapted(plan, bench)


def _adapted(plan: _Plan, bench: BenchmarkData) -> tuple[_Plan, BenchmarkData]:
    """The dataset with its voices normalised as `plan.adapt` says (`adapt_splits`; the prior is
    fitted on the train split, so a resumed run gets the same one)."""
    from mmer.voice_normalisation import ADAPT_MODES, adapt_splits, read_speakers

    if plan.adapt not in ADAPT_MODES:
        raise UserError(f"adapt must be one of {', '.join(ADAPT_MODES)}, got {plan.adapt!r}", parameter="adapt")
    if (plan.adapt == "speaker") != (plan.speakers is not None):
        raise UserError("speakers: a file,speaker CSV is needed with adapt='speaker', and only then", parameter="speakers")
    speakers = None
    if plan.speakers is not None:
        try:
            speakers = read_speakers(plan.speakers)
        except ValueError as err:
            raise UserError(str(err), parameter="speakers") from None
    bench, plan.normaliser = adapt_splits(bench, plan.adapt, speakers)
    return plan, bench


def _fold_of(bench: BenchmarkData, folds: int, fold: int | None) -> tuple[BenchmarkData, dict | None]:
    """`bench` itself (folds = 0), or fold `fold` of its speaker-grouped K-fold split."""
    if not folds:
        return bench, None
    from mmer.datasets.folds import fold_data

    if fold is None or not 0 <= fold < folds:
        raise UserError(f"fold must be one of 0..{folds - 1}, got {fold}", parameter="fold")
    bench, plan = fold_data(bench, folds, fold)
    for split in ("train", "valid", "test"):
        if len(bench.splits[split]) == 0:
            raise UserError(f"folds: fold {fold} has no samples in split {split!r}", parameter="folds")
    return bench, plan.to_json()


def _check_modalities(modalities: list[str] | None) -> list[str] | None:
    if modalities is None:
        return None
    chosen = [m.strip() for m in modalities if m.strip()]
    unknown = [m for m in chosen if m not in MODALITIES]
    if unknown or not chosen:
        raise UserError(f"modalities must be a comma-separated subset of {', '.join(MODALITIES)}, got "
                        f"{','.join(modalities) or 'nothing'}", parameter="modalities")
    return [m for m in MODALITIES if m in chosen]


def present_modalities(dataset) -> list[str]:
    """The modalities that at least one sample of `dataset` has (T > 0), in MODALITIES order."""
    found: set[str] = set()
    for i in range(len(dataset)):
        found.update(m for m, x in dataset[i].features.items() if len(x))
        if len(found) == len(MODALITIES):
            break
    return [m for m in MODALITIES if m in found]


def _restrict_streams(bench: BenchmarkData, modalities: list[str] | None) -> tuple[BenchmarkData, list[str]]:
    """Every split with the modalities not asked for masked (T = 0); and the streams the model is
    trained on: those asked for (default all) that the training split has."""
    asked = list(MODALITIES) if modalities is None else modalities
    trained = [m for m in present_modalities(bench.splits["train"]) if m in asked]
    if not trained:
        raise UserError(f"modalities: the training split has none of {', '.join(asked)}", parameter="modalities")
    if trained == list(MODALITIES):
        return bench, trained
    out = BenchmarkData(name=bench.name, label_names=bench.label_names, feature_spec=bench.feature_spec,
                        splits={k: keep_modalities(v, trained) for k, v in bench.splits.items()})
    return out, trained


def _plan_resume(options: TrainOptions, run: RunDir, ctx: DistContext) -> tuple[_Plan, BenchmarkData]:
    """The saved run's plan; rank 0 reads the run directory and sends it to the other ranks."""
    if ctx.is_main:
        run.require_resumable()
    saved = broadcast_from_main(ctx, run.read_config() if ctx.is_main else None)
    if (options.config_file is not None or options.overrides or options.batch_size is not None or options.tiny
            or options.preset is not None or options.threshold_mode is not None or options.threshold is not None):
        raise UserError("--resume continues a run with its saved config; "
                        "--config/--set/--batch-size/--tiny/--preset/--threshold(-mode) cannot change it")
    for name, given in (("model", options.model), ("dataset", options.dataset)):
        if given is not None and given != saved[name]:
            raise UserError(f"{run.config_path}: run was trained with --{name} {saved[name]}, not {given}")
    if options.select_on is not None and options.select_on != saved.get("select_on", "valid"):
        raise UserError(f"{run.config_path}: run was trained with --select-on {saved.get('select_on', 'valid')}, "
                        f"not {options.select_on}")
    try:
        config = config_from_dict(get_entry(saved["model"]).config_class, saved["config"])
    except (KeyError, TypeError) as err:
        raise UserError(f"{run.config_path}: config does not fit model {saved.get('model')!r} ({err})") from None
    if options.epochs is not None:
        config = dataclasses.replace(config, epochs=options.epochs)
    data = Path(options.data) if options.data is not None else Path(saved["data"])
    labels_raw = options.labels if options.labels is not None else saved.get("labels")
    labels = None if labels_raw is None else Path(labels_raw)
    bench = _load_data(saved["dataset"], data, labels, require_splits=not saved.get("folds"))
    if list(bench.label_names) != list(saved["label_names"]) or bench.feature_spec.to_dict() != saved["feature_spec"]:
        raise UserError(f"{data}: labels or features differ from those the run in {run.root} was started with")
    folds, fold = int(saved.get("folds") or 0), saved.get("fold")
    bench, fold_groups = _fold_of(bench, folds, fold)
    bench, trained = _restrict_streams(bench, saved.get("modalities"))
    plan = _Plan(saved["model"], saved["dataset"], data.resolve(), None if labels is None else labels.resolve(),
                 int(saved["seed"]), saved["select_metric"], bool(saved.get("tiny", False)),
                 saved.get("preset", "paper"), config, saved.get("select_on", "valid"), saved.get("modalities"), trained,
                 folds, fold, fold_groups, adapt=saved.get("adapt", "none"),
                 speakers=None if saved.get("speakers") is None else Path(saved["speakers"]))
    return _adapted(plan, bench)


def _checkpoint_extra(plan: _Plan, epoch: int, best_epoch: int, global_threshold: float, val: dict) -> dict:
    adapted = {} if plan.normaliser is None else {"voice_normalisation": plan.normaliser.to_dict(),
                                                  "voice_normalisation_training": plan.adapt}
    return {
        **adapted,
        "global_threshold": global_threshold,
        "dataset": plan.dataset,
        "selection": {"metric": plan.select_metric, "split": plan.select_on, "best_epoch": best_epoch},
        "epochs": epoch,
        "seed": plan.seed,
        "val_metrics": val,
        "trained_modalities": list(plan.trained_modalities),
        **({"fold": plan.fold_groups} if plan.fold_groups is not None else {}),
    }


def _compile_forward(forward: TrainForward) -> None:
    """Route the training forward pass through torch.compile (the module itself, and so what is
    saved, stays the uncompiled one). A one-line UserError when torch cannot compile here."""
    if not hasattr(torch, "compile"):
        raise UserError("compile: this torch has no torch.compile", parameter="compile")
    if forward.ddp is None:
        forward.model = torch.compile(forward.model)
    else:
        forward.ddp = torch.compile(forward.ddp)


def _save_checkpoint_atomic(path: Path, model, bench: BenchmarkData, thresholds: list[float], extra: dict) -> None:
    with replacing(path) as tmp:
        save_checkpoint(tmp, model, bench.label_names, bench.feature_spec, thresholds=thresholds, extra=extra)


def _validate(model, bench: BenchmarkData, config, ctx: DistContext,
              amp: Precision, split: str = "valid") -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities (and the uncertainty when the model gives it for free, else None) on the full
    selection split (validation; the test split under select_on="test"); every rank predicts a
    strided shard (i = rank, rank + W, ...) and the shards are gathered back into sample order on
    all ranks."""
    dataset = bench.splits[split]
    n = len(dataset)
    mine = list(range(ctx.rank, n, ctx.world_size))
    probs, unc = predict_probs(model, dataset, config.batch_size, ctx.device, indices=mine, with_uncertainty=False,
                               precision=amp)
    if not ctx.distributed:
        return probs, unc
    shards = gather_to_all(ctx, (probs, unc))
    q = dataset.labels.shape[1]
    all_probs = np.zeros((n, q))
    all_unc = None if any(u is None for _, u in shards) else np.zeros((n, q))
    for rank, (p, u) in enumerate(shards):
        all_probs[rank::ctx.world_size] = p
        if all_unc is not None:
            all_unc[rank::ctx.world_size] = u
    return all_probs, all_unc


def _score_validation(probs, unc, bench: BenchmarkData, config,
                      split: str = "valid") -> tuple[dict, dict, list[float], float]:
    """Selection-split metrics at the per-label thresholds, overall metrics at the global one; both
    tuned on these probabilities (on the config's `threshold_grid`), or both the config's fixed
    threshold; with "tuned_global" every label uses the tuned global threshold."""
    truth = bench.splits[split].labels
    grid = threshold_grid(getattr(config, "threshold_grid", ()))
    if config.threshold_mode == "fixed":
        thresholds, global_t = [float(config.threshold)] * truth.shape[1], float(config.threshold)
    else:
        global_t = tune_global_threshold(probs, truth.astype(np.int64), grid)
        if config.threshold_mode == "tuned_global":
            thresholds = [global_t] * truth.shape[1]
        else:  # per label, shrunk towards the global threshold where a label has few positives
            thresholds, global_t = shrunk_thresholds(probs, truth, grid=grid)
    metrics, ece, brier, mean_unc = score_probabilities(probs, unc, truth, bench.label_names, thresholds)
    val = metrics.as_dict()
    single = single_label_metrics(truth, probs, list(bench.label_names))
    val.update(ece=ece, brier=brier, mean_uncertainty=mean_unc, top1_accuracy=single.top1_accuracy,
               weighted_accuracy=single.weighted_accuracy, unweighted_accuracy=single.unweighted_accuracy)
    global_metrics, _, _, _ = score_probabilities(probs, unc, truth, bench.label_names, [global_t] * len(thresholds))
    val_global = {k: v for k, v in global_metrics.as_dict().items() if k != "per_label"}
    return val, val_global, thresholds, global_t


def train(options: TrainOptions, reporter: TrainReporter | None = None) -> TrainResult:
    """Train, select on validation, evaluate the best checkpoint on test once. See the module docstring.

    Raises UserError (bad options/data/config), TrainingFailed (non-finite loss). KeyboardInterrupt
    propagates; the run directory then holds the last finished epoch, ready for `resume=True`.
    """
    return in_process_group(options, reporter, train_one_run)


def in_process_group(options: TrainOptions, reporter: TrainReporter | None, body):
    """Run `body(options, reporter, ctx)` inside the (torchrun) process group; only rank 0 reports."""
    reporter = reporter or TrainReporter()
    set_threads(options.threads)
    if options.workers < 0:
        raise UserError(f"workers must be >= 0, got {options.workers}", parameter="workers")
    ctx = init_distributed(options.device)
    try:
        return body(options, reporter if ctx.is_main else TrainReporter(), ctx)
    finally:
        shutdown(ctx)


class _RunHooks(TrainerHooks):
    """`mmer train`'s epochs: DataLoader batches (re-seeded per epoch), validation scored with tuned
    thresholds, and after each epoch the best/last checkpoints, metrics.jsonl and state.pt (rank 0)."""

    def __init__(self, run: RunDir, plan: _Plan, bench: BenchmarkData, config, ctx: DistContext, amp: Precision,
                 reporter: TrainReporter, model, optimizer, schedule, stopper, sampler, loader, loader_gen) -> None:
        self.run, self.plan, self.bench, self.config, self.ctx, self.amp = run, plan, bench, config, ctx, amp
        self.reporter, self.model, self.optimizer, self.schedule, self.stopper = reporter, model, optimizer, schedule, stopper
        self.sampler, self.loader, self.loader_gen = sampler, loader, loader_gen
        self.scored: tuple = ()
        self.stopped_early = False

    def epoch_started(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.loader_gen.manual_seed(self.plan.seed * 100003 + epoch)
        self.reporter.epoch_started(epoch, len(self.loader))

    def batches(self, epoch: int):
        return self.loader

    def batch_done(self, epoch: int, step: int, loss: float) -> None:
        self.reporter.batch_done(epoch, step, len(self.loader), loss)

    def reduce(self, values: list[float]) -> list[float]:
        return all_reduce_sum(self.ctx, values)

    def validate(self, epoch: int) -> float:
        self.reporter.validating(epoch)
        split = self.plan.select_on
        probs, unc = _validate(self.model, self.bench, self.config, self.ctx, self.amp, split)
        self.scored = _score_validation(probs, unc, self.bench, self.config, split)
        return float(self.scored[0][self.plan.select_metric])

    def epoch_done(self, outcome: EpochOutcome) -> None:
        val, val_global, thresholds, global_t = self.scored
        stopper, epoch = self.stopper, outcome.epoch
        self.stopped_early = outcome.stop
        record = EpochRecord(
            epoch=epoch, train=outcome.train, val=val, val_global=val_global, thresholds=thresholds,
            global_threshold=global_t, lr=outcome.lr, seconds=outcome.seconds,
            select_metric=self.plan.select_metric, improved=outcome.improved, best_epoch=stopper.best_epoch,
            best_value=float(stopper.best), select_on=self.plan.select_on,
        )
        training_rngs = gather_to_all(self.ctx, rng_state())
        if self.ctx.is_main:
            run, model = self.run, self.model
            extra = _checkpoint_extra(self.plan, epoch, stopper.best_epoch, global_t, val)
            if outcome.improved:
                _save_checkpoint_atomic(run.best_path, model, self.bench, thresholds, extra)
            _save_checkpoint_atomic(run.last_path, model, self.bench, thresholds, extra)
            run.append_metrics(record.to_json())
            run.save_state({
                "version": STATE_VERSION, "epoch": epoch, "model": model.state_dict(),
                "training_state": model.training_state(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.schedule.state_dict(), "stopper": stopper.state_dict(),
                "stopped_early": outcome.stop, "rng": training_rngs,
            })
        barrier(self.ctx)
        self.reporter.epoch_done(record)


def train_one_run(options: TrainOptions, reporter: TrainReporter, ctx: DistContext) -> TrainResult:
    if options.resume:
        if options.out is None:
            raise UserError("--resume needs --out RUN_DIR (the run to continue)")
        run = RunDir(options.out)
        plan, bench = _plan_resume(options, run, ctx)
        state = broadcast_from_main(ctx, run.load_state() if ctx.is_main else None)
        if state.get("version") != STATE_VERSION:
            raise UserError(f"{run.state_path}: training state version {state.get('version')!r}, expected {STATE_VERSION}")
    else:
        plan, bench = _plan_new(options)
        out = options.out if options.out is not None else broadcast_from_main(ctx, default_run_dir(plan.model, plan.dataset))
        run = RunDir(out)
        if ctx.is_main:
            run.require_new()
        barrier(ctx)
        state = None
    config = plan.config
    amp = resolve_precision(options.precision, ctx.device)
    maximize = SELECT_METRICS[plan.select_metric]
    train_set = bench.splits["train"]

    # Same initial weights on every rank (DDP also broadcasts rank 0's at wrap time); then each
    # rank > 0 gets its own stream for dropout etc., rank 0 keeps the single-process stream.
    seed_everything(plan.seed)
    model = build_model(plan.model, config)
    model.prepare_training(len(train_set))
    if state is None:  # a resumed run restores the statistics with the weights
        model.fit_input_statistics(train_set[i].features for i in range(len(train_set)))
    model.to(ctx.device)
    if ctx.rank > 0:
        seed_everything(plan.seed + 1000003 * ctx.rank)

    sampler = DistributedSampler(train_set, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=plan.seed)
    loader_gen = torch.Generator()
    loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=options.workers, generator=loader_gen)
    steps_per_epoch = len(loader)
    plan.warnings = step_warnings(steps_per_epoch, config.epochs, len(train_set))
    optimizer = build_optimizer(model, config)
    schedule = LRSchedule(optimizer, config, steps_per_epoch, maximize)
    stopper = EarlyStopping(config.early_stop_patience, maximize)
    start_epoch, stopped_early = 1, False

    if state is not None:
        model.load_state_dict(state["model"])
        model.load_training_state(state["training_state"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        stopper.load_state_dict(state["stopper"])
        stopped_early = bool(state["stopped_early"])
        start_epoch = int(state["epoch"]) + 1
        rngs = state["rng"]
        if len(rngs) == ctx.world_size:
            set_rng_state(rngs[ctx.rank])
        else:  # different world size: exact continuation is impossible, stay deterministic
            seed_everything(plan.seed + 7919 * start_epoch + 1000003 * ctx.rank)
        if ctx.is_main:
            run.truncate_metrics(int(state["epoch"]))
    else:
        if ctx.is_main:
            run.create()
    if ctx.is_main:
        run.write_config({**plan.to_json(ctx, bench), "precision": amp.name, "compile": options.compile})

    # Under DDP a probe batch (the first training samples) decides find_unused_parameters.
    probe = collate([train_set[i] for i in range(min(len(train_set), config.batch_size))]) if ctx.distributed else None
    forward = TrainForward(model, ctx, probe)
    if options.compile:
        _compile_forward(forward)
    scaler = amp.grad_scaler()
    reporter.run_started(RunStart(
        run_dir=run.root, model=plan.model, dataset=plan.dataset, preset=plan.preset,
        num_parameters=sum(p.numel() for p in model.parameters()),
        split_sizes={k: len(v) for k, v in bench.splits.items()}, start_epoch=start_epoch, epochs=config.epochs,
        steps_per_epoch=steps_per_epoch, world_size=ctx.world_size, device=str(ctx.device), resumed=state is not None,
        select_on=plan.select_on, trained_modalities=list(plan.trained_modalities), warnings=list(plan.warnings),
    ))

    hooks = _RunHooks(run, plan, bench, config, ctx, amp, reporter, model, optimizer, schedule, stopper, sampler,
                      loader, loader_gen)
    trainer = Trainer(model, optimizer, schedule, stopper, config.grad_clip, device=ctx.device, forward=forward,
                      autocast=amp.autocast, scaler=scaler)
    last_epoch = trainer.fit(hooks, config.epochs, start_epoch, stopped_early)
    stopped_early = stopped_early or hooks.stopped_early

    records = run.read_metrics() if ctx.is_main else []
    best_epoch = stopper.best_epoch
    test_report = None
    if ctx.is_main:
        reporter.testing(best_epoch)
        test_report = _test_best(run, plan, bench, config, ctx, records, best_epoch, amp)
    barrier(ctx)
    best_record = next((r for r in records if r["epoch"] == best_epoch), {})
    return TrainResult(
        run_dir=run.root, best_checkpoint=run.best_path, last_checkpoint=run.last_path, best_epoch=best_epoch,
        best_value=float(stopper.best) if stopper.best is not None else float("nan"),
        select_metric=plan.select_metric, epochs_run=last_epoch, stopped_early=stopped_early,
        val_metrics=best_record.get("val", {}), test=test_report, select_on=plan.select_on,
    )


def step_warnings(steps_per_epoch: int, epochs: int, train_samples: int) -> list[str]:
    """A warning when a run has too few optimisation steps to learn (MIN_STEPS_PER_EPOCH per epoch,
    MIN_TOTAL_STEPS in all), else none."""
    total = steps_per_epoch * epochs
    if steps_per_epoch >= MIN_STEPS_PER_EPOCH and total >= MIN_TOTAL_STEPS:
        return []
    return [f"only {steps_per_epoch} optimisation steps per epoch ({total} in all) on {train_samples} training "
            f"samples: the network may stay near its initial state; for a corpus of a few hundred to a few "
            f"thousand clips use --preset small (docs/training.md, \"Small corpora\")"]


def _test_best(run: RunDir, plan: _Plan, bench: BenchmarkData, config, ctx: DistContext, records: list[dict],
               best_epoch: int, amp: Precision) -> EvalReport:
    """Fit the late fusion of best.safetensors' streams on the validation split
    (mmer.stream_calibration: per-stream temperature and reliability, shrunk thresholds) and store
    it in the checkpoint; then evaluate it on the test split (the only time the test split is read),
    and record the result in test_metrics.json and in the best checkpoint's metadata."""
    model, info = load_checkpoint(run.best_path, device=ctx.device)
    fit = fit_fusion_on_split(model, bench.splits["valid"], list(bench.label_names), list(plan.trained_modalities),
                              ctx.device, config.batch_size)
    mode = {"fixed": "fixed", "tuned_global": "global"}.get(config.threshold_mode, "per_label")
    try:
        report = evaluate_model(model, plan.model, str(run.best_path), bench, "test", info.thresholds,
                                mode, config.batch_size, ctx.device, amp)
    except PredictionFailed as err:
        raise TrainingFailed(f"{run.best_path}: {err}") from None
    report.extra["best_epoch"] = best_epoch
    report.extra["select_metric"] = plan.select_metric
    report.extra["select_on"] = plan.select_on
    if plan.select_on == "test":
        report.extra["protocol"] = SELECTED_ON_TEST
    report.extra["preset"] = plan.preset
    if mode == "per_label":
        report.extra["tuned_global_threshold"] = info.extra.get("global_threshold")
    run.write_test_metrics(report.as_dict())
    extra = dict(info.extra)
    extra["epochs"] = max((r["epoch"] for r in records), default=best_epoch)
    extra["test_metrics"] = {k: v for k, v in report.as_dict().items() if k not in ("checkpoint",)}
    extra["fusion"] = fit.fusion.to_dict()
    extra["fusion_fit"] = {"split": "valid", "samples_per_stream": fit.samples}
    _save_checkpoint_atomic(run.best_path, model, bench, info.thresholds, extra)
    return report
