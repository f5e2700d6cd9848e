"""`mmer calibrate`: refit a checkpoint's per-stream calibration and fusion on held-out data
(library: mmer.stream_calibration.calibrate_checkpoint)."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Optional

import typer

from mmer.catalog import DATASET_NAMES
from mmer.cli.commands.common import user_errors


class CalibrateFormat(str, enum.Enum):
    """How `mmer calibrate` writes its result."""

    table = "table"
    json = "json"


def calibrate_command(
    checkpoint: Path = typer.Argument(..., metavar="CKPT", help="Checkpoint (.safetensors) written by `mmer train`."),
    data: Path = typer.Option(..., "--data", help="Held-out labelled data with the checkpoint's labels and features (a cache folder, or a benchmark file)."),
    dataset: str = typer.Option("cache", "--dataset", help=f"Format of --data: {', '.join(DATASET_NAMES)}."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Separate label file, for formats that need one."),
    split: str = typer.Option("valid", "--split", help="The split of --data to fit on: valid (default), train or test (never the split you report)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the calibrated checkpoint here (default: replace CKPT)."),
    output_format: CalibrateFormat = typer.Option(CalibrateFormat.table, "--format", help="table (human) or json."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch."),
) -> None:
    """Fit each trained stream's temperature and reliability, and the fused decision thresholds, on held-out data."""
    from rich.console import Console
    from rich.table import Table

    from mmer.stream_calibration import calibrate_checkpoint

    with user_errors():
        result = calibrate_checkpoint(checkpoint, dataset, data, labels=labels, split=split, out=out, device=device,
                                      threads=threads)
    if output_format is CalibrateFormat.json:
        print(json.dumps(result.as_dict()))
        return
    console = Console()
    streams = Table(title=f"{result.written}: fusion fitted on {result.dataset} {result.split}")
    for column in ("stream", "samples", "temperature", "reliability (2 AUC - 1)"):
        streams.add_column(column, justify="left" if column == "stream" else "right")
    for name, calibration in result.fusion.streams.items():
        streams.add_row(name, str(result.samples.get(name, 0)), f"{calibration.temperature:.3f}",
                        f"{calibration.reliability:.3f}")
    console.print(streams)
    thresholds = Table(title="decision thresholds of the fused probability")
    thresholds.add_column("label")
    thresholds.add_column("threshold", justify="right")
    for name, t in zip(result.label_names, result.fusion.thresholds):
        thresholds.add_row(name, f"{t:.3f}")
    console.print(thresholds)
