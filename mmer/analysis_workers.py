"""`analyze` with `--workers N`: the files shared among N spawned processes, each with its own
`Analyzer`; Ctrl-C and a dead parent are handled by `mmer.worker_pool`."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from mmer.analysis import AnalyzeOptions, Analyzer, analyze_one
from mmer.results import INTERRUPTED, AnalyzeOutcome, ClipFailure, ProgressCallback
from mmer.worker_pool import interrupt_blocked, start_worker_process, stop_pool

_worker_analyzer: Analyzer | None = None  # the Analyzer of a worker process (`_start_worker`)


def _start_worker(options: AnalyzeOptions, parent_pid: int) -> None:
    global _worker_analyzer
    start_worker_process(parent_pid)  # ignore Ctrl-C (the parent handles it), exit with the parent
    _worker_analyzer = Analyzer(options)


def _worker_analyze(item: Path) -> AnalyzeOutcome:
    return analyze_one(_worker_analyzer, item)


def analyze_in_workers(inputs: list[Path | ClipFailure], options: AnalyzeOptions, workers: int,
                        progress: ProgressCallback | None) -> list[AnalyzeOutcome]:
    """The files of `inputs` analysed by `workers` spawned processes (fresh interpreters: no state
    forked from this one), results put back in input order. Without --threads each worker gets an
    equal share of the CPUs. A worker that dies fails only the file it was analysing (ClipFailure):
    the unfinished files are rerun, one worker at a time until the culprit is found. A Ctrl-C ends
    the workers at once (`mmer.worker_pool`); the files not finished become INTERRUPTED failures."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    threads = options.threads or max(1, (os.cpu_count() or 1) // workers)
    worker_options = replace(options, workers=1, threads=threads)
    files = [i for i, item in enumerate(inputs) if isinstance(item, Path)]
    outcomes: dict[int, AnalyzeOutcome] = {i: item for i, item in enumerate(inputs) if isinstance(item, ClipFailure)}
    done, size = 0, workers
    while len(outcomes) < len(inputs):
        pending = [i for i in files if i not in outcomes]
        broken = False
        pool = None
        try:
            with interrupt_blocked():  # the workers start with Ctrl-C blocked, then ignore it
                pool = ProcessPoolExecutor(max_workers=min(size, len(pending)),
                                           mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_start_worker, initargs=(worker_options, os.getpid()))
                futures = {pool.submit(_worker_analyze, inputs[i]): i for i in pending}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    outcomes[i] = future.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                done += 1
                if progress is not None:
                    progress(done, len(files), str(inputs[i]))
            pool.shutdown(wait=True)
        except KeyboardInterrupt:
            if pool is not None:
                stop_pool(pool)  # cancel what has not started, end the workers now
            for i in files:
                outcomes.setdefault(i, ClipFailure(str(inputs[i]), INTERRUPTED, interrupted=True))
            return [outcomes[i] for i in range(len(inputs))]
        if broken and size == 1:
            # One worker runs its files in order: the first unfinished one killed it.
            first = next(i for i in pending if i not in outcomes)
            outcomes[first] = ClipFailure(str(inputs[first]), "the worker process analysing it died "
                                                              "(out of memory or a crash in a native library)")
            done += 1
            size = workers
        elif broken:
            size = 1  # several files were in flight: rerun the unfinished ones one by one to find the culprit
    if progress is not None:
        progress(done, len(files), "")
    return [outcomes[i] for i in range(len(inputs))]
