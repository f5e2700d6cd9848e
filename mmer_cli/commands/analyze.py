"""`mmer analyze`: emotions of media files (library: mmer.analysis.analyze; renderers: mmer.writers)."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Optional

import typer

from mmer.catalog import DEFAULT_MODEL, DEVICE_CHOICES, PRECISION_CHOICES
from mmer.cli.commands.common import FileProgress, check_output_file, fail, report_written, user_errors
from mmer.output_formats import WRITERS, format_names

AnalyzeFormat = enum.Enum("AnalyzeFormat", {name: name for name in format_names()}, type=str)
"""How `mmer analyze` writes its results: the names of the output-format registry (mmer.output_formats)."""


def analyze_command(
    # readable=False: an unreadable file fails alone (exit 1) in `analyze`, like one inside a folder
    inputs: list[Path] = typer.Argument(..., metavar="CLIP|DIR...", help="Media files, or folders of media files.", show_default=False,
                                        readable=False),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", metavar="NAME|CHECKPOINT",
                              help="A model name (its shipped default checkpoint) or a .safetensors checkpoint from `mmer train`."),
    output_format: AnalyzeFormat = typer.Option("table", "--format", "-f",
                                                help=", ".join(w.help for w in WRITERS.values()) + "."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="PATH", help="Write the results to PATH instead of stdout (its folder must exist; eaf/vtt with several inputs: a folder, one file per clip)."),
    device: str = typer.Option("auto", "--device", help=f"Where the networks run: {' | '.join(DEVICE_CHOICES)}."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", help="CPU threads for torch (default: torch's choice)."),
    fps: Optional[float] = typer.Option(None, "--fps", metavar="N", help="Video frames sampled per second (default: the rate the model was trained with)."),
    transcript: Optional[Path] = typer.Option(None, "--transcript", metavar="FILE", readable=False, help="Use this transcript (.txt, .srt or .vtt) instead of speech recognition (single clip only)."),
    window: Optional[float] = typer.Option(None, "--window", metavar="SECONDS", help="Also report results for consecutive windows of this length."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="PNG|DIR", help="Draw a timeline of per-window probabilities (needs --window): "
                                        "to PNG (several clips: PNG's stem + '_' + clip name), or one <clip>.png per clip inside an existing DIR."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the feature cache."),
    features: Optional[Path] = typer.Option(None, "--features", metavar="CACHE_DIR", help="Reuse the features of a `mmer extract` cache for the inputs it holds (same file content, same feature settings); others are extracted."),
    precision: str = typer.Option("fp32", "--precision", help=f"Number format of the emotion network: {' | '.join(PRECISION_CHOICES)} (bf16/fp16 = autocast)."),
    workers: int = typer.Option(1, "--workers", metavar="N", help="Analyse files in N processes, each with its own models and --threads (output order unchanged)."),
    adapt: Optional[str] = typer.Option(None, "--adapt", metavar="MODE", help="Normalise the voice in the target domain: clip (each clip over its own speech; default), "
                                        "batch (all clips of this run together), speaker (each speaker's clips together; default with --speakers), none. See docs/analyze.md."),
    speakers: Optional[Path] = typer.Option(None, "--speakers", metavar="FILE.csv", readable=False, help="CSV of file,speaker: normalise each speaker's voice over all their clips (--adapt speaker)."),
) -> None:
    """Recognise the emotions in media files: probability, decision and uncertainty per emotion.

    Exit code 0 when every input was analysed, 1 when at least one failed (the others are still
    reported), 2 for a usage error (bad option, missing or incompatible checkpoint).
    """
    from mmer import analysis
    from mmer.analysis import AnalyzeOptions, ClipFailure, ClipResult, expand_inputs
    from mmer.writers import failure_lines

    writer = WRITERS[output_format.value]
    if plot is not None and window is None:
        raise fail("--plot needs per-window results: pass --window SECONDS too")
    with user_errors():  # before any analysis: an output that cannot be written wastes no work
        if writer.per_clip_suffix is not None:
            from mmer.export_paths import export_paths

            export_paths(output, [], len(expand_inputs(inputs)), writer.per_clip_suffix)
        elif output is not None:
            check_output_file("--output", output)
        if plot is not None and not plot.is_dir():
            check_output_file("--plot", plot)
    options = AnalyzeOptions(model=model, device=device, threads=threads, fps=fps, transcript=transcript,
                             window_s=window, auto_window=writer.timeline, use_cache=not no_cache, features=features,
                             precision=precision, workers=workers,
                             adapt=adapt or ("speaker" if speakers is not None else "clip"), speakers=speakers)
    progress = FileProgress("analysing", min_total=2)
    try:
        with user_errors():
            outcomes = analysis.analyze(inputs, options, progress=progress)
    finally:
        progress.close()

    with user_errors():
        writer.write(outcomes, output, options)
        if plot is not None:
            from mmer.timeline_plot import plot_paths, plot_timeline

            for result, path in plot_paths(plot, [o for o in outcomes if isinstance(o, ClipResult)]):
                report_written(f"plot of {result.file}", plot_timeline(result, path))
    if output is not None:
        report_written("results", output)

    failures = failure_lines(outcomes)
    for line in failures:
        print(f"mmer: error: {line}", file=sys.stderr)
    unfinished = sum(isinstance(o, ClipFailure) and o.interrupted for o in outcomes)
    if unfinished:  # Ctrl-C: what finished is reported above; exit like an interrupted command
        print(f"mmer: interrupted: {unfinished} of {len(outcomes)} inputs not analysed; "
              f"{len(outcomes) - unfinished} reported", file=sys.stderr)
        raise typer.Exit(130)
    if failures:
        print(f"mmer: {len(failures)} of {len(outcomes)} inputs failed", file=sys.stderr)
        raise typer.Exit(1)
