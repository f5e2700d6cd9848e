"""One training setting run several times and summarised: seeds (`train_seeds`: the same data, seeds
seed, seed+1, ...) and speaker-independent folds (`train_folds`: K trainings on whole speaker
groups), each with mean ± std of every test metric (and, for folds, the pooled confusion matrix).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmer.core.atomic_file import write_text_atomic
from mmer.distributed import DistContext, barrier, broadcast_from_main
from mmer.errors import UserError
from mmer.run_dir import RunDir
from mmer.single_label import pooled_single_label
from mmer.training import TrainOptions, TrainReporter, default_run_dir, in_process_group, train_one_run

SUMMARY_METRICS: tuple[str, ...] = (
    "acc", "acc_empty_as_one", "precision", "recall", "micro_f1", "macro_f1", "hamming_loss", "ece", "brier",
    "top1_accuracy", "weighted_accuracy", "unweighted_accuracy",
)
"""Test metrics summarised over seeds or folds: the scalar metrics of `mmer score --format json`
(with probabilities), in that order."""

SEEDS_SUMMARY_FILE = "seeds_summary.json"
FOLDS_SUMMARY_FILE = "folds_summary.json"


# ------------------------------------------------------------------------------------------------
# Several seeds
# ------------------------------------------------------------------------------------------------

@dataclass
class MetricSummary:
    """One test metric over seeds: mean, sample standard deviation (n - 1; 0 for one seed), values
    in seed order."""

    mean: float
    std: float
    values: list[float]


@dataclass
class SeedsResult:
    """Outcome of `train_seeds`. summary: {metric: MetricSummary} for SUMMARY_METRICS; empty on
    ranks > 0 under torchrun (only rank 0 reads the test metrics and writes)."""

    out: Path
    seeds: list[int]
    run_dirs: list[Path]
    summary: dict[str, MetricSummary]
    summary_path: Path
    select_on: str = "valid"


def seed_run_dir(out: Path, seed: int) -> Path:
    """Run directory of one seed of a multi-seed run."""
    return Path(out) / f"seed-{seed}"


def summarize_seeds(test_metrics: list[dict]) -> dict[str, MetricSummary]:
    """{metric: MetricSummary} over runs' test_metrics.json objects (one per seed, in seed order)."""
    summary = {}
    for key in SUMMARY_METRICS:
        values = [float(m[key]) for m in test_metrics]
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        summary[key] = MetricSummary(mean=float(np.mean(values)), std=std, values=values)
    return summary


def train_seeds(options: TrainOptions, reporter: TrainReporter | None = None) -> SeedsResult:
    """Train `options.seeds` runs with seeds seed, seed+1, ... into OUT/seed-<seed>/ and write
    OUT/seeds_summary.json (see `write_seeds_summary`).

    With `resume=True` (and `out`): seeds whose run finished are kept, interrupted ones continue
    from their saved state (with their saved config), missing ones start with `options`.
    """
    if options.seeds < 1:
        raise UserError(f"seeds must be >= 1, got {options.seeds}", parameter="seeds")
    return in_process_group(options, reporter, _train_seeds)


def _runs_folder(options: TrainOptions, ctx: DistContext, what: str) -> Path:
    """OUT of a repeated run (`what`: "multi-seed", "K-fold"): options.out, or a new default folder."""
    if options.resume and options.out is None:
        raise UserError(f"--resume needs --out OUT (the {what} run to continue)")
    if options.out is not None:
        return Path(options.out)
    if options.model is None or options.dataset is None:
        raise UserError("--model, --dataset and --data are required (unless --resume continues a run)")
    return broadcast_from_main(ctx, default_run_dir(options.model, options.dataset))


def _train_seeds(options: TrainOptions, reporter: TrainReporter, ctx: DistContext) -> SeedsResult:
    out = _runs_folder(options, ctx, "multi-seed")
    seeds = [options.seed + k for k in range(options.seeds)]
    for seed in seeds:
        run = RunDir(seed_run_dir(out, seed))
        state = broadcast_from_main(ctx, _seed_state(run) if ctx.is_main else None)
        if state == "finished":
            continue
        if state == "started":  # continue with the saved config
            seed_options = dataclasses.replace(
                options, seed=seed, out=run.root, resume=True, config_file=None, overrides=[], batch_size=None,
                tiny=False, preset=None, threshold_mode=None, threshold=None)
        else:
            seed_options = dataclasses.replace(options, seed=seed, out=run.root, resume=False)
        train_one_run(seed_options, reporter, ctx)
    run_dirs = [seed_run_dir(out, seed) for seed in seeds]
    summary: dict[str, MetricSummary] = {}
    select_on = "valid"
    if ctx.is_main:
        summary = write_seeds_summary(out, run_dirs)
        select_on = RunDir(run_dirs[0]).read_config().get("select_on", "valid")
    barrier(ctx)
    return SeedsResult(out=out, seeds=seeds, run_dirs=run_dirs, summary=summary, summary_path=out / SEEDS_SUMMARY_FILE,
                       select_on=select_on)


def _seed_state(run: RunDir) -> str:
    """"finished" (test metrics written), "started" (resumable state) or "new"."""
    if run.test_metrics_path.is_file():
        return "finished"
    if run.state_path.is_file():
        return "started"
    return "new"


def _finished_runs(run_dirs: list[Path]) -> tuple[list[dict], list[dict]]:
    """The test metrics and the config of each finished run in `run_dirs` (UserError when unreadable)."""
    tests, configs = [], []
    for run_dir in run_dirs:
        run = RunDir(run_dir)
        try:
            tests.append(json.loads(run.test_metrics_path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"{run.test_metrics_path}: unreadable test metrics ({err})") from None
        configs.append(run.read_config())
    return tests, configs


def write_seeds_summary(out: Path, run_dirs: list[Path]) -> dict[str, MetricSummary]:
    """Summarise the finished runs `run_dirs` into OUT/seeds_summary.json:

        {"runs": ["seed-0", ...], "seeds": [0, ...], "model", "dataset", "data", "preset",
         "select_metric", "select_on", "threshold_mode", "threshold", "std": "sample (n-1)",
         "metrics": {metric: {"mean", "std", "values"}}}   (metrics: SUMMARY_METRICS)
    """
    tests, configs = _finished_runs(run_dirs)
    summary = summarize_seeds(tests)
    first = configs[0]
    document = {
        "runs": [Path(r).name for r in run_dirs], "seeds": [int(c["seed"]) for c in configs],
        "model": first["model"], "dataset": first["dataset"], "data": first["data"],
        "preset": first.get("preset", "paper"), "select_metric": first["select_metric"],
        "select_on": first.get("select_on", "valid"),
        "threshold_mode": first["config"].get("threshold_mode", "tuned"),
        "threshold": first["config"].get("threshold", 0.5),
        "std": "sample standard deviation (n - 1); 0 for one seed",
        "metrics": {k: dataclasses.asdict(v) for k, v in summary.items()},
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(out) / SEEDS_SUMMARY_FILE, json.dumps(document, indent=2) + "\n")
    return summary


# ------------------------------------------------------------------------------------------------
# Speaker-independent folds
# ------------------------------------------------------------------------------------------------

@dataclass
class FoldsResult:
    """Outcome of `train_folds`. summary: {metric: MetricSummary} over the folds' test metrics;
    pooled: the single-label metrics of all folds' test samples together (summed confusion
    matrix; mmer.single_label.pooled_single_label), as a dict. Both empty on ranks > 0."""

    out: Path
    folds: int
    run_dirs: list[Path]
    summary: dict[str, MetricSummary]
    pooled: dict
    summary_path: Path


def fold_run_dir(out: Path, fold: int) -> Path:
    """Run directory of one fold of a K-fold run."""
    return Path(out) / f"fold-{fold}"


def train_folds(options: TrainOptions, reporter: TrainReporter | None = None) -> FoldsResult:
    """Train `options.folds` runs, fold k testing on the k-th block of speakers/actors
    (mmer.datasets.folds), into OUT/fold-<k>/, and write OUT/folds_summary.json (`write_folds_summary`).
    With `resume=True` finished folds are kept, interrupted ones continue, missing ones start."""
    if options.folds < 3:
        raise UserError(f"folds must be >= 3, got {options.folds}", parameter="folds")
    if options.seeds != 1:
        raise UserError("--folds and --seeds cannot be combined (run --folds once per --seed)", parameter="folds")
    return in_process_group(options, reporter, _train_folds)


def _train_folds(options: TrainOptions, reporter: TrainReporter, ctx: DistContext) -> FoldsResult:
    out = _runs_folder(options, ctx, "K-fold")
    for fold in range(options.folds):
        run = RunDir(fold_run_dir(out, fold))
        state = broadcast_from_main(ctx, _seed_state(run) if ctx.is_main else None)
        if state == "finished":
            continue
        if state == "started":
            fold_options = dataclasses.replace(
                options, fold=fold, out=run.root, resume=True, config_file=None, overrides=[], batch_size=None,
                tiny=False, preset=None, threshold_mode=None, threshold=None, modalities=None)
        else:
            fold_options = dataclasses.replace(options, fold=fold, out=run.root, resume=False)
        train_one_run(fold_options, reporter, ctx)
    run_dirs = [fold_run_dir(out, k) for k in range(options.folds)]
    summary: dict[str, MetricSummary] = {}
    pooled: dict = {}
    if ctx.is_main:
        summary, pooled = write_folds_summary(out, run_dirs)
    barrier(ctx)
    return FoldsResult(out=out, folds=options.folds, run_dirs=run_dirs, summary=summary, pooled=pooled,
                       summary_path=out / FOLDS_SUMMARY_FILE)


def write_folds_summary(out: Path, run_dirs: list[Path]) -> tuple[dict[str, MetricSummary], dict]:
    """Summarise finished fold runs into OUT/folds_summary.json:

        {"runs": ["fold-0", ...], "folds": K, "groups": {"fold-0": [test groups], ...}, "model", "dataset",
         "data", "preset", "select_metric", "trained_modalities", "std": "sample (n-1)",
         "metrics": {metric: {"mean", "std", "values"}},     (SUMMARY_METRICS, one value per fold)
         "pooled_single_label": {top1_accuracy, weighted_accuracy, unweighted_accuracy,
                                 per_class_recall, support, confusion, confusion_columns, ...}}
    """
    tests, configs = _finished_runs(run_dirs)
    summary = summarize_seeds(tests)
    pooled = pooled_single_label([t["single_label"] for t in tests]).as_dict()
    first = configs[0]
    document = {
        "runs": [Path(r).name for r in run_dirs], "folds": len(run_dirs),
        "groups": {Path(r).name: (c.get("fold_groups") or {}).get("test_groups") for r, c in zip(run_dirs, configs)},
        "model": first["model"], "dataset": first["dataset"], "data": first["data"],
        "preset": first.get("preset", "paper"), "select_metric": first["select_metric"],
        "trained_modalities": first.get("trained_modalities"),
        "std": "sample standard deviation (n - 1) over the folds",
        "metrics": {k: dataclasses.asdict(v) for k, v in summary.items()},
        "pooled_single_label": pooled,
    }
    Path(out).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(out) / FOLDS_SUMMARY_FILE, json.dumps(document, indent=2) + "\n")
    return summary, pooled
