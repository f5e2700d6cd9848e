"""`mmer extract`: labelled media -> a feature cache for `mmer train --dataset cache`
(library: mmer.extraction_jobs)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from mmer.cli.commands.common import FileProgress, fail, user_errors
from mmer.catalog import CORPUS_NAMES, DEVICE_CHOICES
from mmer.errors import UserError

MAX_FAILURES_SHOWN = 20  # failure lines printed on stderr; all of them are in the report file


def _corpus_options(items: list[str]) -> dict[str, str]:
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {item!r} is not of the form KEY=VALUE")
        options[key.strip()] = value.strip()
    return options


def extract_command(
    media_dir: Optional[Path] = typer.Argument(None, metavar="[DIR]", help="Folder of media files named in --labels.", show_default=False),
    labels: Optional[Path] = typer.Option(None, "--labels", metavar="CSV", help="Labels CSV: file, split, and one 0/1 column per emotion or a 'labels' column of names."),
    dataset: Optional[str] = typer.Option(None, "--dataset", metavar="CORPUS", help=f"A corpus recipe instead of --labels: {' | '.join(CORPUS_NAMES)} (see docs/corpora.md)."),
    media: Optional[Path] = typer.Option(None, "--media", metavar="DIR", help="The corpus's media folder (with --dataset)."),
    corpus_option: list[str] = typer.Option([], "--option", metavar="KEY=VALUE", help="A corpus recipe option (repeatable)."),
    out: Path = typer.Option(..., "--out", metavar="CACHE_DIR", help="Cache folder to create or continue."),
    workers: int = typer.Option(1, "--workers", metavar="N", help="Parallel extraction processes."),
    device: str = typer.Option("cpu", "--device", help=f"Where the extractor networks run: {' | '.join(DEVICE_CHOICES)}."),
    threads: Optional[int] = typer.Option(None, "--threads", metavar="N", help="torch CPU threads per worker (default 1)."),
    fps: Optional[float] = typer.Option(None, "--fps", metavar="N", help="Video frames sampled per second (default: the extractor's)."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="K/N", help="Extract only the K-th of N disjoint shards of the files, into CACHE_DIR/shard-K-of-N (N machines build one cache; `--dataset cache` reads CACHE_DIR whole)."),
    language: Optional[str] = typer.Option(None, "--language", metavar="CODE", help="Spoken language code for speech recognition (default: detected; the packaged model is English-only)."),
    label_map: list[str] = typer.Option([], "--map", metavar="FROM=TO", help="Rename label FROM to TO, or merge it into TO when that label exists (repeatable), e.g. --map calm=neutral."),
    exclude: list[str] = typer.Option([], "--exclude", metavar="LABEL", help="Leave out every clip with this label (repeatable); each is listed in the report."),
    modalities: Optional[str] = typer.Option(None, "--modalities", metavar="LIST", help="Streams to extract, comma-separated: text,audio,visual (default all). The others are never read (no face search, no speech recognition)."),
) -> None:
    """Extract face, voice and text features of labelled media into a cache folder (resumable).

    Files already in the cache are skipped, so re-running after an interruption continues. A file
    with no usable stream (no face, no speech, no words) is not written as an empty sample: it is
    counted and listed. Exit code 0 when every file was written, 1 when some failed or had no
    usable stream (listed, and in CACHE_DIR/extract_report.json), 2 for a usage error.
    """
    from mmer.extractors.pipeline import ExtractionSettings
    from mmer.runtime import resolve_device
    from mmer.extraction_jobs import (REPORT_NAME, apply_label_choices, jobs_from_corpus, jobs_from_labels_csv,
                                      parse_label_map, parse_shard, run_extraction, shard_dir, shard_jobs)

    if (dataset is None) == (labels is None):
        raise fail("give either DIR --labels CSV, or --dataset CORPUS --media DIR")
    if labels is not None and (media_dir is None or media is not None or corpus_option):
        raise fail("--labels needs the media folder as DIR (and no --media/--option)")
    if dataset is not None and (media is None or media_dir is not None):
        raise fail("--dataset needs --media DIR (and no positional DIR)")
    if threads is not None and threads < 1:
        raise fail(f"--threads must be >= 1, got {threads}")
    if fps is not None and fps <= 0:
        raise fail(f"--fps must be > 0, got {fps:g}")

    with user_errors():
        part = None if shard is None else parse_shard(shard)
    progress = FileProgress("extracting")
    try:
        with user_errors():
            resolved = resolve_device(device)
            if dataset is not None:
                job_list = jobs_from_corpus(dataset, media, _corpus_options(corpus_option))
            else:
                job_list = jobs_from_labels_csv(media_dir, labels)
            job_list = apply_label_choices(job_list, parse_label_map(label_map), exclude)
            for note in job_list.notes:
                print(f"mmer extract: {note}", file=sys.stderr)
            if part is not None:
                job_list, out = shard_jobs(job_list, *part), shard_dir(out, *part)
            values = dict(device=resolved.type, use_cache=False, language=language)
            if modalities is not None:
                values["modalities"] = tuple(m.strip() for m in modalities.split(",") if m.strip())
            if fps is not None:
                values["fps"] = fps
            report = run_extraction(job_list, out, ExtractionSettings(**values), workers=workers,
                                    threads=threads, progress=progress)
    finally:
        progress.close()

    empty = report.no_usable_stream
    print(f"mmer extract: {report.written} written, {report.already_cached} already cached, "
          f"{len(report.failures)} failed, {len(empty)} with no usable stream (not written), "
          f"{len(report.skipped)} skipped by the listing ({report.total} listed) in {report.seconds:.1f} s -> {out}")
    for failure in report.failures[:MAX_FAILURES_SHOWN]:
        print(f"mmer: error: {failure.file}: {failure.error}", file=sys.stderr)
    if len(report.failures) > MAX_FAILURES_SHOWN:
        print(f"mmer: ... and {len(report.failures) - MAX_FAILURES_SHOWN} more", file=sys.stderr)
    for clip in empty[:MAX_FAILURES_SHOWN]:
        print(f"mmer: warning: {clip.file}: no usable stream, not written ({clip.error})", file=sys.stderr)
    if len(empty) > MAX_FAILURES_SHOWN:
        print(f"mmer: ... and {len(empty) - MAX_FAILURES_SHOWN} more with no usable stream", file=sys.stderr)
    if report.failures or empty:
        print(f"mmer: {len(report.failures)} of {report.total} files failed and {len(empty)} had no usable stream; "
              f"see {out / REPORT_NAME}", file=sys.stderr)
        raise typer.Exit(1)
