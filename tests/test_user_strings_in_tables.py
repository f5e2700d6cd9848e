"""File names, labels, words and run names are shown as written in Rich tables, never read as
markup (issue 22): `a[/]b.mp4` used to raise a traceback and lose the tables, `[red]boom.mp4`
printed as `boom.mp4`."""

from __future__ import annotations

import io

from rich.console import Console

from mmer.analysis import ClipFailure, ClipResult, EmotionScore, Segment
from mmer.extractors.featureset import ModalityStats
from mmer.writers import render_tables

NAMES = ["clips/a[/]b.mp4", "clips/[red]boom.mp4", "clips/[bold]x[/bold].mp4"]


def _result(file: str) -> ClipResult:
    scores = [EmotionScore("[i]joy", 0.9, True, 0.1), EmotionScore("sad", 0.1, False, 0.2)]
    return ClipResult(file=file, model="runs/[b]m[/b]/best.safetensors", duration_s=2.0, emotions=scores,
                      transcript="say [red]hi[/]", modalities=ModalityStats(), timings_s={},
                      warnings=["no face in [/] frames"], segments=[Segment(0.0, 2.0, scores)])


def test_tables_print_user_strings_as_written():
    buffer = io.StringIO()
    render_tables([_result(name) for name in NAMES] + [ClipFailure("c.mp4", "x")], Console(file=buffer, width=200))
    text = buffer.getvalue()
    for name in NAMES:
        assert name in text
    for shown in ("runs/[b]m[/b]/best.safetensors", "[i]joy", "say [red]hi[/]", "no face in [/] frames"):
        assert shown in text


def test_progress_bar_shows_file_names_as_written():
    from mmer.cli.commands.common import FileProgress

    progress = FileProgress("analysing")
    progress.console = Console(file=io.StringIO(), force_terminal=True, width=120)
    progress(0, 2, "clips/a[/]b.mp4")
    progress.bar.refresh()  # draws the description: raised a MarkupError before
    progress(1, 2, "clips/[red]boom.mp4")
    progress.bar.refresh()
    assert "clips/[red]boom.mp4".rsplit("/", 1)[1] in progress.console.file.getvalue()
    progress.close()


def test_metric_and_comparison_tables_show_names_as_written():
    from mmer.metrics import multilabel_metrics
    from mmer.cli.commands.metric_tables import overall_table, per_label_table
    import numpy as np

    metrics = multilabel_metrics(np.array([[1, 0], [0, 1]]), np.array([[1, 0], [1, 1]]), ["[red]a", "b[/]"])
    buffer = io.StringIO()
    console = Console(file=buffer, width=200)
    console.print(overall_table("data/[x]/test.pkl", metrics, []))
    console.print(per_label_table(metrics))
    text = buffer.getvalue()
    assert "data/[x]/test.pkl" in text and "[red]a" in text and "b[/]" in text
