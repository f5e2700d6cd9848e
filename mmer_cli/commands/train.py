"""`mmer train`: train LDDU/LAMB on a benchmark (library: mmer.training.train; rendering:
mmer.cli.commands.train_render).

Also works unchanged under `torchrun --nproc-per-node N -m mmer train ...` (DistributedDataParallel).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mmer.catalog import DATASET_NAMES, PRECISION_CHOICES, SELECT_METRICS
from mmer.cli.commands.common import user_errors
from mmer.models.config import PRESET_NAMES, THRESHOLD_MODES
from mmer.models.registry import model_names


def train_command(
    model: Optional[str] = typer.Option(None, "--model", help=f"Model to train: {', '.join(model_names())} (options: `mmer models`)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help=f"Format of --data: {', '.join(DATASET_NAMES)}."),
    data: Optional[Path] = typer.Option(None, "--data", help="Benchmark feature file (or cache) to train on."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Separate label file, for formats that need one."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML file of model config values (key = value)."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value (repeatable); wins over --config."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Maximum epochs (overrides the config)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Samples per step and process (overrides the config)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch (default: torch's choice)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random number generator."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<model>-<dataset>-<time>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out exactly where it stopped."),
    quiet: bool = typer.Option(False, "--quiet", help="Plain per-epoch log lines instead of progress bars."),
    select_metric: str = typer.Option("micro_f1", "--select-metric", help=f"Validation metric that picks the best epoch: {', '.join(SELECT_METRICS)}."),
    select_on: Optional[str] = typer.Option(
        None, "--select-on", help="Split that picks the best epoch and tunes thresholds: valid (default) or test "
                                  "(the LDDU authors' protocol: optimistic, labelled in every summary and report)."),
    tiny: bool = typer.Option(False, "--tiny", help="Start from the model's tiny config (smoke tests and demos)."),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes (0 = deterministic, in-process)."),
    preset: Optional[str] = typer.Option(
        None, "--preset", help=f"Starting values: {' or '.join(PRESET_NAMES)} (default paper; values: `mmer models`)."),
    threshold_mode: Optional[str] = typer.Option(
        None, "--threshold-mode", help=f"Decision thresholds: {', '.join(THRESHOLD_MODES)} (tuned per label on the selection split, one fixed value, or one value for all labels tuned there)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="The fixed decision threshold (implies --threshold-mode fixed)."),
    precision: str = typer.Option("fp32", "--precision", help=f"Number format of the networks: {', '.join(PRECISION_CHOICES)} (bf16/fp16 = autocast mixed precision)."),
    compile_model: bool = typer.Option(False, "--compile", help="Compile the training forward pass with torch.compile (needs a C++ compiler on CPU)."),
    seeds: Optional[int] = typer.Option(
        None, "--seeds", help="Train N runs (seeds --seed, --seed+1, ...) into OUT/seed-<seed>/ and summarise them in OUT/seeds_summary.json."),
    folds: Optional[int] = typer.Option(
        None, "--folds", metavar="K", help="Speaker-independent K-fold cross-validation (K >= 3) over the samples' groups "
        "(speakers/actors): K runs into OUT/fold-<k>/, mean ± std and the pooled confusion matrix in OUT/folds_summary.json."),
    modalities: Optional[str] = typer.Option(
        None, "--modalities", metavar="LIST", help="Streams to train on, comma-separated: text,audio,visual (default: all the data has). "
        "The checkpoint records them; `mmer analyze` never reads the others."),
    adapt: Optional[str] = typer.Option(None, "--adapt", metavar="MODE", help="Normalise the voices in their own domain before training: clip, batch (per split), "
                                        "speaker (default with --speakers) or none (default); `mmer analyze --adapt` then reads voices the same way."),
    speakers: Optional[Path] = typer.Option(None, "--speakers", metavar="FILE.csv", help="CSV of sample id,speaker for --adapt speaker (ids as in the cache's index.jsonl)."),
) -> None:
    """Train on a benchmark: select the best epoch and tune thresholds on validation, then test once."""
    from rich.console import Console

    from mmer.cli.commands.train_render import (PlainReporter, ProgressReporter, render_folds, render_result,
                                                  render_seeds)
    from mmer.repeated_runs import FoldsResult, SeedsResult, train_folds, train_seeds
    from mmer.training import TrainOptions, train

    options = TrainOptions(
        model=model, dataset=dataset, data=data, labels=labels, config_file=config, overrides=list(overrides),
        epochs=epochs, batch_size=batch_size, device=device, threads=threads, seed=seed, out=out, resume=resume,
        select_metric=select_metric, tiny=tiny, workers=workers, preset=preset, threshold_mode=threshold_mode,
        threshold=threshold, seeds=1 if seeds is None else seeds, precision=precision, compile=compile_model,
        select_on=select_on,
        modalities=None if modalities is None else modalities.split(","), folds=folds or 0,
        adapt=adapt or ("speaker" if speakers is not None else "none"), speakers=speakers,
    )
    console = Console()
    reporter = PlainReporter(console) if quiet else ProgressReporter(console)
    try:
        with user_errors():
            if folds is not None:
                result = train_folds(options, reporter)
            else:
                result = train(options, reporter) if seeds is None else train_seeds(options, reporter)
    finally:
        if isinstance(reporter, ProgressReporter):
            reporter.close()
    # Only rank 0 prints under torchrun (others have no test report / summary).
    if isinstance(result, FoldsResult):
        if result.summary:
            render_folds(result, console)
    elif isinstance(result, SeedsResult):
        if result.summary:
            render_seeds(result, console)
    elif result.test is not None:
        render_result(result, console)
