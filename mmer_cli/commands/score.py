"""`mmer score`: metrics of a prediction CSV against a truth CSV (library: mmer.scoring.score_files)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Optional

from typing import TYPE_CHECKING

import typer

from mmer.cli.commands.common import user_errors

if TYPE_CHECKING:
    from rich.console import Console

    from mmer.scoring import ScoreReport


class ScoreFormat(str, enum.Enum):
    """How `mmer score` writes its result."""

    table = "table"
    json = "json"


def render_score_table(report: ScoreReport, console: Console) -> None:
    """Rich tables: overall metrics (plus calibration when present), then per-label P/R/F1/support."""
    from mmer.cli.commands.metric_tables import overall_table, per_label_table, single_label_tables

    extra = []
    if report.threshold is not None:
        extra.append(("Decision threshold (p >= t)", f"{report.threshold:g}"))
    if report.calibration is not None:
        extra.append((f"ECE ({report.calibration.n_bins} bins)", f"{report.calibration.ece:.4f}"))
        extra.append(("Brier score", f"{report.calibration.brier:.4f}"))
    overall = overall_table(f"mmer score: {report.metrics.num_samples} samples, {len(report.label_names)} labels",
                            report.metrics, extra)
    if report.pred_columns_reordered:
        overall.caption = "prediction columns were matched to the truth's label order by name"
    console.print(overall)
    console.print(per_label_table(report.metrics))
    if report.single_label is not None:
        for table in single_label_tables(report.single_label):
            console.print(table)

def score_command(
    truth: Path = typer.Option(..., "--truth", readable=False, help="CSV of true labels: header of label names, one 0/1 row per sample."),
    pred: Path = typer.Option(..., "--pred", readable=False, help="CSV of predictions with the same label names: 0/1, or probabilities with --threshold."),
    output_format: ScoreFormat = typer.Option(ScoreFormat.table, "--format", help="table (human) or json (one object on stdout)."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", help="Treat --pred as probabilities in [0, 1]; a label is predicted when p >= THRESHOLD. Adds ECE and Brier."),
    key: Optional[str] = typer.Option(
        None, "--key", metavar="COLUMN", help="Pair rows by this column (e.g. file) instead of by row order; "
        "only the label columns both files share are scored, other columns are ignored (e.g. `mmer analyze -f csv` output)."),
) -> None:
    """Score predictions against truth: Acc (both empty-set conventions), micro P/R/F1, macro-F1, Hamming loss, per-label scores; top-1 accuracy, WA, UA, confusion matrix."""
    from rich.console import Console

    from mmer.scoring import score_files

    with user_errors():
        report = score_files(truth, pred, threshold=threshold, key=key)
    if output_format is ScoreFormat.json:
        print(json.dumps(report.as_dict()))
    else:
        render_score_table(report, Console())
