"""`mmer eval`: metrics of a trained checkpoint on a benchmark split (library: mmer.evaluation.evaluate)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Optional

from typing import TYPE_CHECKING

import typer

from mmer.catalog import DATASET_NAMES, PRECISION_CHOICES
from mmer.cli.commands.common import user_errors

if TYPE_CHECKING:
    from rich.console import Console

    from mmer.evaluation import EvalReport


class EvalFormat(str, enum.Enum):
    """How `mmer eval` writes its result."""

    table = "table"
    json = "json"


def render_eval_table(report: EvalReport, console: Console) -> None:
    """Overall metrics + calibration + thresholds, then per-label P/R/F1/support and threshold."""
    from mmer.cli.commands.metric_tables import overall_table, per_label_table, single_label_tables

    overall = overall_table(
        f"{report.model} on {report.dataset} {report.split}: {report.metrics.num_samples} samples", report.metrics,
        [("ECE (15 bins)", f"{report.ece:.4f}"), ("Brier score", f"{report.brier:.4f}"),
         ("Mean uncertainty", f"{report.mean_uncertainty:.4f}")],
    )
    overall.caption = ("per-label thresholds tuned on validation (from the checkpoint)" if report.threshold_mode == "per_label"
                       else f"one threshold for every label: {report.thresholds[0]:g}")
    console.print(overall)
    console.print(per_label_table(report.metrics, report.thresholds))
    if report.single_label is not None:
        for table in single_label_tables(report.single_label):
            console.print(table)

def eval_command(
    dataset: str = typer.Option(..., "--dataset", help=f"Format of --data: {', '.join(DATASET_NAMES)}."),
    data: Path = typer.Option(..., "--data", help="Benchmark feature file (or cache)."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Separate label file, for formats that need one."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint (.safetensors) written by `mmer train`."),
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    output_format: EvalFormat = typer.Option(EvalFormat.table, "--format", help="table (human) or json (one object on stdout)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="One decision threshold for all labels instead of the checkpoint's tuned per-label thresholds."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch."),
    precision: str = typer.Option("fp32", "--precision", help=f"Number format of the network: {', '.join(PRECISION_CHOICES)} (bf16/fp16 = autocast)."),
) -> None:
    """Evaluate a checkpoint: Acc (both conventions), P, R, micro/macro-F1, Hamming loss, per-label F1, ECE, Brier; top-1 accuracy, WA, UA and the confusion matrix."""
    from rich.console import Console

    from mmer.evaluation import evaluate

    with user_errors():
        report = evaluate(checkpoint, dataset, data, labels=labels, split=split, threshold=threshold,
                          device=device, threads=threads, precision=precision)
    if output_format is EvalFormat.json:
        print(json.dumps(report.as_dict()))
    else:
        render_eval_table(report, Console())
