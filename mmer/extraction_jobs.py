"""`mmer extract` as a library: extract features of many labelled media files into a feature cache.

    job_list = jobs_from_labels_csv(Path("media"), Path("labels.csv"))    # or jobs_from_corpus(...)
    report = run_extraction(job_list, Path("cache"), ExtractionSettings(), workers=2)

Worker processes each build one `FeatureExtractor` and turn files into features; the parent alone
writes the cache (`CacheWriter`), so an interrupted run leaves a consistent cache and a re-run skips
every sample already in it. Per-file failures are collected in the report (and in
CACHE_DIR/extract_report.json), never raised. A file that decodes but gives no usable stream (no
face, no speech, no words: silence, a blank screen, noise) is not written as an empty sample: it is
counted and listed in the report (`no_usable_stream`), and tried again by a later run.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import re
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from mmer.extractors.feature_cache import file_sha256
from mmer.extractors.errors import ExtractionError
from mmer.extractors.pipeline import ExtractionSettings, FeatureExtractor, feature_spec_for
from mmer.core.atomic_file import write_text_atomic
from mmer.datasets.base import SPLITS
from mmer.corpora.group_splits import split_sorted_groups
from mmer.datasets.extract_cache import SHARD_DIR_PREFIX, CacheWriter
from mmer.errors import UserError

REPORT_NAME = "extract_report.json"
"""Written into the cache folder after every run (also after an interruption)."""
LABEL_SEPARATORS = re.compile(r"[;,]")
"""Separators between label names in a labels CSV's `labels` column."""
IN_FLIGHT_PER_WORKER = 2  # files queued per worker process at any time (bounds memory and lost work)


@dataclass
class ExtractJob:
    """One file to extract. sample_id: its id in the cache; labels: (q,) 0/1 in the listing's order;
    group: its speaker/actor when known (speaker-independent folds), else None."""

    sample_id: str
    path: Path
    split: str
    labels: np.ndarray
    group: str | None = None


@dataclass
class JobList:
    """What to extract: label names (column order of every job's labels), the jobs, and one line per
    file the listing left out (with the reason)."""

    label_names: list[str]
    jobs: list[ExtractJob]
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the listing's label rules and choices, one line each


@dataclass
class ExtractFailure:
    """A file whose features could not be extracted, with a one-line reason."""

    sample_id: str
    file: str
    error: str


@dataclass
class ExtractReport:
    """Outcome of one `run_extraction`.

    total: jobs listed; written: samples added to the cache by this run; already_cached: jobs
    skipped because the cache had them (resumed run); failures: files that failed this run;
    no_usable_stream: files that decoded but gave no face, no voice and no words (not written; the
    error says what the extractor found); skipped: files the listing left out; interrupted: the run
    was stopped before the end.
    """

    cache_dir: str
    total: int
    written: int = 0
    already_cached: int = 0
    failures: list[ExtractFailure] = field(default_factory=list)
    no_usable_stream: list[ExtractFailure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    finished_at: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


ProgressCallback = Callable[[int, int, str], None]
"""progress(done, total, file): called after each file (done counts cached, written and failed)."""


# ----------------------------------------------------------------------------- job listings


def _read_csv_rows(labels_csv: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not labels_csv.is_file():
        raise UserError(f"{labels_csv}: labels file not found")
    try:
        with open(labels_csv, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = []
            for row in reader:
                if None in row:  # DictReader's key for values beyond the header
                    raise UserError(f"{labels_csv}: line {reader.line_num}: more values than the header has columns")
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{labels_csv}: cannot read labels CSV ({type(err).__name__}: {' '.join(str(err).split())})") from None
    return header, rows


def jobs_from_labels_csv(media_dir: Path, labels_csv: Path) -> JobList:
    """Jobs from a labels CSV whose `file` column names media files relative to `media_dir`.

    Columns: `file`, `split` (train | valid | test), an optional `group` (the speaker or actor;
    `mmer train --folds` splits by it), and either one 0/1 column per emotion (their header order is
    the label order) or a `labels` column of emotion names separated by ';' or ',' (label order: the
    names sorted alphabetically). With a `group` column the `split` column may be left out: whole
    groups then go to train/valid/test by their sorted order (`split_sorted_groups`: about 70/15/15 %).
    The cache id of a sample is its `file` value.
    Raises UserError (one line, naming the CSV line) for any malformed row.
    """
    media_dir, labels_csv = Path(media_dir), Path(labels_csv)
    if not media_dir.is_dir():
        raise UserError(f"{media_dir}: media folder not found")
    header, rows = _read_csv_rows(labels_csv)
    has_group = "group" in header
    missing = [c for c in ("file",) + (() if has_group else ("split",)) if c not in header]
    if missing:
        raise UserError(f"{labels_csv}: missing column(s) {', '.join(missing)} (header: {', '.join(map(repr, header)) or 'empty'})")
    names_column = "labels" in header
    if names_column:
        per_row = [[n.strip() for n in LABEL_SEPARATORS.split(row["labels"]) if n.strip()] for row in rows]
        label_names = sorted({n for names in per_row for n in names})
    else:
        label_names = [c for c in header if c not in ("file", "split", "group")]
        per_row = []
    if not label_names:
        raise UserError(f"{labels_csv}: no emotions found (add one 0/1 column per emotion, or a 'labels' column of names)")
    if not rows:
        raise UserError(f"{labels_csv}: no rows")

    jobs, seen = [], set()
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{labels_csv}: line {number}"
        file = row["file"]
        if not file:
            raise UserError(f"{where}: empty 'file'")
        if file in seen:
            raise UserError(f"{where}: file {file!r} is listed twice")
        seen.add(file)
        group = row.get("group") or None
        if has_group and group is None:
            raise UserError(f"{where}: empty 'group'")
        if "split" in header and row["split"] not in SPLITS:
            raise UserError(f"{where}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
        if names_column:
            labels = np.array([name in per_row[number - 2] for name in label_names], dtype=np.float32)
        else:
            values = [row[name] for name in label_names]
            bad = [f"{n}={v!r}" for n, v in zip(label_names, values) if v not in ("0", "1")]
            if bad:
                raise UserError(f"{where}: emotion columns must be 0 or 1 ({', '.join(bad)})")
            labels = np.array([float(v) for v in values], dtype=np.float32)
        path = Path(file) if Path(file).is_absolute() else media_dir / file
        jobs.append(ExtractJob(sample_id=file, path=path, split=row.get("split", ""), labels=labels, group=group))
    if "split" not in header:  # whole groups per split, by their sorted order (speaker-independent)
        assignment = split_sorted_groups(job.group for job in jobs)
        for job in jobs:
            job.split = assignment[job.group]
    return JobList(label_names=label_names, jobs=jobs)


def jobs_from_corpus(name: str, media_dir: Path, options: dict[str, str] | None = None) -> JobList:
    """Jobs from a registered corpus recipe (`mmer.corpora`); cache ids are the corpus clip ids."""
    from mmer.corpora import list_corpus

    listing = list_corpus(name, Path(media_dir), **(options or {}))
    jobs = [ExtractJob(sample_id=c.clip_id, path=Path(c.path), split=c.split, labels=np.asarray(c.labels),
                       group=c.group) for c in listing.clips]
    return JobList(label_names=list(listing.label_names), jobs=jobs, skipped=list(listing.skipped),
                   notes=list(listing.notes))


def parse_label_map(items: Sequence[str]) -> dict[str, str]:
    """["calm=neutral", ...] -> {"calm": "neutral"}; UserError (parameter "map") when malformed."""
    mapping: dict[str, str] = {}
    for item in items:
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise UserError(f"map {item!r} is not of the form FROM=TO (e.g. calm=neutral)", parameter="map")
        mapping[source.strip()] = target.strip()
    return mapping


def apply_label_choices(job_list: JobList, mapping: dict[str, str] | None = None,
                        exclude: Sequence[str] = ()) -> JobList:
    """A listing's labels as chosen: `mapping` {FROM: TO} renames label FROM to TO, or merges it into
    TO when that label exists (a clip then has TO when it had either); `exclude` leaves out every
    clip that has one of these labels (each named in `skipped`) and drops their columns.
    Raises UserError for a label the listing does not have."""
    mapping, exclude = dict(mapping or {}), list(exclude)
    names = list(job_list.label_names)
    unknown = [n for n in list(mapping) + exclude if n not in names]
    if unknown:
        raise UserError(f"no label {unknown[0]!r} in this listing (labels: {', '.join(names)})",
                        parameter="map" if unknown[0] in mapping else "exclude")
    if not mapping and not exclude:
        return job_list
    skipped, notes, kept = list(job_list.skipped), list(job_list.notes), []
    dropped = [names.index(n) for n in exclude]
    for job in job_list.jobs:
        hit = [names[k] for k in dropped if job.labels[k] > 0]
        if hit:
            skipped.append(f"{job.path}: label {hit[0]} (--exclude {hit[0]})")
        else:
            kept.append(job)
    final: list[str] = []
    for n in names:
        if n in exclude:
            continue
        target = mapping.get(n, n)
        if target not in final:
            final.append(target)
    columns = {t: [k for k, n in enumerate(names) if n not in exclude and mapping.get(n, n) == t] for t in final}
    jobs = [ExtractJob(job.sample_id, job.path, job.split,
                       np.array([float(job.labels[columns[t]].max()) for t in final], dtype=np.float32), job.group)
            for job in kept]
    notes += [f"label {a} -> {b} (--map {a}={b})" for a, b in mapping.items()]
    notes += [f"clips labelled {n} left out, {len(job_list.jobs) - len(kept)} in all (--exclude)" for n in exclude[:1]]
    if not jobs:
        raise UserError("every clip was left out by --exclude", parameter="exclude")
    return JobList(final, jobs, skipped, notes)


# ----------------------------------------------------------------------------- workers

_WORKER_EXTRACTOR: FeatureExtractor | None = None


def _init_worker(settings: ExtractionSettings, threads: int | None) -> None:
    """Runs once in each worker process: one FeatureExtractor for all its files."""
    global _WORKER_EXTRACTOR
    import torch

    torch.set_num_threads(threads or 1)
    _WORKER_EXTRACTOR = FeatureExtractor(settings)


@dataclass
class NoUsableStream:
    """A file that decoded but gave no frame of any stream; reason: the extractor's warnings."""

    reason: str


def _extract_one(path: Path) -> tuple[dict, dict] | str | NoUsableStream:
    """features {m: (T_m, D_m)} and times {m: (T_m,)} of one file, a one-line error, or
    `NoUsableStream` when every stream is empty."""
    assert _WORKER_EXTRACTOR is not None, "worker not initialised"
    try:
        fs = _WORKER_EXTRACTOR.extract(path)
    except ExtractionError as err:
        message, prefix = str(err), f"{path}: "
        return message[len(prefix):] if message.startswith(prefix) else message
    except Exception as err:  # noqa: BLE001 - one broken file must not stop the run
        return f"unexpected {type(err).__name__} while extracting: {(str(err).splitlines() or [''])[0]}"
    if not any(fs.present(m) for m in fs.features):
        return NoUsableStream("; ".join(fs.warnings) or "no face, no speech and no words")
    return fs.features, fs.times


def _results_in_process(jobs: Sequence[ExtractJob], settings: ExtractionSettings,
                        threads: int | None) -> Iterator[tuple[ExtractJob, tuple[dict, dict] | str | NoUsableStream]]:
    _init_worker(settings, threads)
    for job in jobs:
        yield job, _extract_one(job.path)


def _results_in_pool(jobs: Sequence[ExtractJob], settings: ExtractionSettings, workers: int,
                     threads: int | None) -> Iterator[tuple[ExtractJob, tuple[dict, dict] | str | NoUsableStream]]:
    """Results in completion order; at most IN_FLIGHT_PER_WORKER files queued per worker."""
    context = multiprocessing.get_context("spawn")  # fork after torch threads start can deadlock
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(settings, threads)) as pool:
        pending: dict[Future, ExtractJob] = {}
        queue = iter(jobs)
        try:
            while True:
                while len(pending) < workers * IN_FLIGHT_PER_WORKER:
                    job = next(queue, None)
                    if job is None:
                        break
                    pending[pool.submit(_extract_one, job.path)] = job
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    try:
                        yield job, future.result()
                    except Exception as err:  # noqa: BLE001 - a worker died (e.g. killed for memory)
                        yield job, f"worker process failed: {type(err).__name__}: {err}"
        finally:
            for future in pending:
                future.cancel()


# ----------------------------------------------------------------------------- shards

SHARD_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" -> (K, N) with 1 <= K <= N; UserError otherwise."""
    match = SHARD_PATTERN.match(text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise UserError(f"shard must be K/N with 1 <= K <= N (e.g. 3/8), got {text!r}", parameter="shard")
    return int(match.group(1)), int(match.group(2))


def shard_jobs(job_list: JobList, k: int, n: int) -> JobList:
    """The K-th of N disjoint shards of `job_list`: the jobs at positions K-1, K-1+N, ... of the
    listing sorted by sample id. Deterministic (the same listing gives the same shards on every
    machine), sizes differ by at most one, and the N shards together are the whole listing."""
    ordered = sorted(job_list.jobs, key=lambda job: job.sample_id)
    return JobList(job_list.label_names, ordered[k - 1::n], job_list.skipped if k == 1 else [])


def shard_dir(out_dir: Path, k: int, n: int) -> Path:
    """Where shard K of N writes: a cache folder inside `out_dir`, which `--dataset cache` then
    reads as one merged cache (mmer.datasets.extract_cache)."""
    return Path(out_dir) / f"{SHARD_DIR_PREFIX}{k:0{len(str(n))}d}-of-{n}"


# ----------------------------------------------------------------------------- the run


def run_extraction(job_list: JobList, out_dir: Path, settings: ExtractionSettings, workers: int = 1,
                   threads: int | None = None, progress: ProgressCallback | None = None) -> ExtractReport:
    """Extract every job not yet in the cache at `out_dir` and add it there.

    workers: processes extracting in parallel (1: in this process). threads: torch threads per
    worker (default 1). Writes REPORT_NAME into the cache folder, also when interrupted (the
    KeyboardInterrupt is re-raised after the report is written).
    Raises UserError/DatasetError when the cache folder belongs to other labels or features.
    """
    if workers < 1:
        raise UserError(f"workers must be >= 1, got {workers}", parameter="workers")
    out_dir = Path(out_dir)
    writer = CacheWriter(out_dir, job_list.label_names, feature_spec_for(settings))
    started = time.perf_counter()
    report = ExtractReport(cache_dir=str(out_dir), total=len(job_list.jobs), skipped=list(job_list.skipped))
    todo = [job for job in job_list.jobs if not writer.has(job.sample_id)]
    report.already_cached = len(job_list.jobs) - len(todo)
    done = report.already_cached
    results = (_results_in_process(todo, settings, threads) if workers == 1 or len(todo) < 2
               else _results_in_pool(todo, settings, min(workers, len(todo)), threads))
    try:
        for job, result in results:
            if isinstance(result, str):
                report.failures.append(ExtractFailure(job.sample_id, str(job.path), result))
            elif isinstance(result, NoUsableStream):
                report.no_usable_stream.append(ExtractFailure(job.sample_id, str(job.path), result.reason))
            else:
                features, times = result
                writer.add(job.sample_id, job.split, features, job.labels, times=times, group=job.group,
                           source_sha256=file_sha256(job.path), streams=list(settings.modalities))
                report.written += 1
            done += 1
            if progress is not None:
                progress(done, report.total, str(job.path))
    except KeyboardInterrupt:
        report.interrupted = True
        raise
    finally:
        report.seconds = round(time.perf_counter() - started, 3)
        report.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_report(report, out_dir / REPORT_NAME)
    return report


def write_report(report: ExtractReport, path: Path) -> None:
    """The report as indented JSON (replaced atomically)."""
    write_text_atomic(path, json.dumps(report.to_dict(), indent=2) + "\n")
