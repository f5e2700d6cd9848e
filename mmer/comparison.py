"""Compare training runs with the published results of the field: the library behind `mmer report`.

    report = compare_runs([Path("runs/lddu-aligned"), Path("runs/lddu-seeds")])

A run is a run directory of `mmer train` (config.json + test_metrics.json) or the OUT directory of
`mmer train --seeds N` (seeds_summary.json). Each run is placed on a benchmark (CMU-MOSEI aligned,
unaligned, or M3ED) from its dataset and data file, and shown next to the published rows of that
benchmark. Published "P" and "R" are stored swapped back: TAILOR, CARAT and the LDDU authors'
code pass (prediction, truth) to a metric that expects (truth, prediction), so what they print as
precision is recall (shared/reference/benchmarks.md); LAMB builds on the same evaluation code
and its numbers show the same pattern, but its code is not public (stated in its protocol).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mmer.errors import UserError
from mmer.run_dir import CONFIG_FILE, TEST_METRICS_FILE, RunDir
from mmer.repeated_runs import SEEDS_SUMMARY_FILE
from mmer.training import SELECTED_ON_TEST

REPORT_METRICS: tuple[str, ...] = ("acc", "precision", "recall", "micro_f1", "macro_f1", "hamming_loss")
"""Columns of the comparison, in order (keys of `mmer score --format json`)."""

BENCHMARKS: dict[str, str] = {
    "mosei-aligned": "CMU-MOSEI aligned, test",
    "mosei-unaligned": "CMU-MOSEI unaligned, test",
    "m3ed": "M3ED, test",
}


@dataclass(frozen=True)
class PublishedResult:
    """One published row. metrics: REPORT_METRICS keys it reports, with P and R in the right order."""

    model: str
    benchmark: str
    metrics: dict[str, float]
    protocol: str


_SWAPPED = "printed P and R swapped back (known argument-order bug of the reference metric code)"
_PROTOCOLS = {
    "TAILOR": f"checkpoint selected on validation micro-F1; fixed threshold 0.35; {_SWAPPED}",
    "CARAT": f"checkpoint selected on validation micro-F1; fixed threshold 0.25; {_SWAPPED}",
    "LAMB": ("checkpoint selected on validation Acc; threshold not stated; printed P and R swapped back "
             "(same pattern as TAILOR's code; LAMB's code is not public)"),
    "LDDU": ("checkpoint selected on the TEST set every epoch (authors' train.py); threshold fixed 0.21 "
             "(train.py at 4725e27) or searched on the TEST set over 0.150-0.295 (train.py at b33f538): "
             "which one produced the published numbers is not recorded (the committed log, fixed 0.21, "
             f"reaches 0.585); {_SWAPPED}"),
}


def _published(model: str, benchmark: str, acc: float, printed_p: float, printed_r: float, f1: float,
               hamming_loss: float | None = None) -> PublishedResult:
    metrics = {"acc": acc, "precision": printed_r, "recall": printed_p, "micro_f1": f1}
    if hamming_loss is not None:
        metrics["hamming_loss"] = hamming_loss
    return PublishedResult(model, benchmark, metrics, _PROTOCOLS[model])


PUBLISHED: tuple[PublishedResult, ...] = (
    # (Acc, P as printed, R as printed, micro-F1): README / shared/reference/benchmarks.md.
    _published("TAILOR", "mosei-aligned", 0.488, 0.641, 0.512, 0.569),
    _published("CARAT", "mosei-aligned", 0.494, 0.661, 0.518, 0.581),
    _published("LAMB", "mosei-aligned", 0.490, 0.643, 0.517, 0.573, hamming_loss=0.217),
    _published("LDDU", "mosei-aligned", 0.494, 0.647, 0.531, 0.587),
    _published("TAILOR", "mosei-unaligned", 0.460, 0.639, 0.452, 0.529),
    _published("CARAT", "mosei-unaligned", 0.466, 0.652, 0.466, 0.544),
    _published("LAMB", "mosei-unaligned", 0.463, 0.656, 0.454, 0.536),
    _published("LDDU", "mosei-unaligned", 0.496, 0.638, 0.543, 0.587),
    _published("CARAT", "m3ed", 0.664, 0.824, 0.755, 0.788),
    _published("LDDU", "m3ed", 0.690, 0.843, 0.774, 0.807),
)


@dataclass(frozen=True)
class RunMetric:
    """A run's test metric: one value (std None) or the mean and sample std over `n` seeds."""

    mean: float
    std: float | None
    n: int


@dataclass
class RunResult:
    """One run of the comparison."""

    path: Path
    model: str
    dataset: str
    benchmark: str | None  # key of BENCHMARKS; None = no published numbers for this data
    metrics: dict[str, RunMetric]
    protocol: str
    select_on: str = "valid"  # "test": the authors' protocol, labelled SELECTED_ON_TEST


@dataclass
class ComparisonReport:
    """Runs and the published rows of their benchmarks (in BENCHMARKS order); problems: one line
    per run directory that could not be read (the others are still compared)."""

    runs: list[RunResult]
    published: list[PublishedResult]
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "metrics": list(REPORT_METRICS),
            "benchmarks": {b: BENCHMARKS[b] for b in _benchmarks_of(self.runs)},
            "published": [{"model": p.model, "benchmark": p.benchmark, "metrics": p.metrics, "protocol": p.protocol}
                          for p in self.published],
            "runs": [{"path": str(r.path), "model": r.model, "dataset": r.dataset, "benchmark": r.benchmark,
                      "metrics": {k: {"mean": m.mean, "std": m.std, "n": m.n} for k, m in r.metrics.items()},
                      "protocol": r.protocol, "select_on": r.select_on} for r in self.runs],
            "problems": list(self.problems),
        }


def _benchmarks_of(runs: list[RunResult]) -> list[str]:
    present = {r.benchmark for r in runs}
    return [b for b in BENCHMARKS if b in present]


def benchmark_of(dataset: str, data: str) -> str | None:
    """The published benchmark a run's data belongs to: MMSA files are aligned unless their name
    says "unaligned" (aligned_50.pkl / unaligned_50.pkl); feature caches have none."""
    if dataset == "mosei-mmsa":
        return "mosei-unaligned" if "unaligned" in Path(data).name.lower() else "mosei-aligned"
    return dataset if dataset in BENCHMARKS else None


def _protocol(preset: str, select_metric: str, threshold_mode: str, threshold: float, seeds: int,
              select_on: str = "valid") -> str:
    split = "TEST" if select_on == "test" else "validation"
    thresholds = {"tuned": f"per-label thresholds tuned on {split}",
                  "tuned_global": f"one threshold for all labels tuned on {split}"}.get(
        threshold_mode, f"fixed threshold {threshold:g}")
    spread = f"; mean ± sample std over {seeds} seeds" if seeds > 1 else ""
    selection = f"checkpoint selected on {split} {select_metric}"
    if select_on == "test":
        selection = f"{SELECTED_ON_TEST}: {selection}"
    return f"{preset} preset; {selection}; {thresholds}{spread}"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: unreadable ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a JSON object")
    return data


def read_run(path: Path) -> RunResult:
    """A single run (config.json + test_metrics.json) or a multi-seed OUT (seeds_summary.json)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a run directory")
    try:
        if (path / SEEDS_SUMMARY_FILE).is_file():
            summary = _read_json(path / SEEDS_SUMMARY_FILE)
            values = summary["metrics"]
            n = len(summary["seeds"])
            metrics = {k: RunMetric(float(values[k]["mean"]), float(values[k]["std"]), n)
                       for k in REPORT_METRICS if k in values}
            return RunResult(path, summary["model"], summary["dataset"],
                             benchmark_of(summary["dataset"], summary["data"]), metrics,
                             _protocol(summary["preset"], summary["select_metric"], summary["threshold_mode"],
                                       float(summary["threshold"]), n, summary.get("select_on", "valid")),
                             summary.get("select_on", "valid"))
        if not (path / TEST_METRICS_FILE).is_file():
            raise UserError(f"{path}: neither {SEEDS_SUMMARY_FILE} nor {TEST_METRICS_FILE} (unfinished run?)")
        config = RunDir(path).read_config()
        test = _read_json(path / TEST_METRICS_FILE)
        metrics = {k: RunMetric(float(test[k]), None, 1) for k in REPORT_METRICS if k in test}
        settings = config["config"]
        return RunResult(path, config["model"], config["dataset"], benchmark_of(config["dataset"], config["data"]),
                         metrics, _protocol(config.get("preset", "paper"), config["select_metric"],
                                            settings.get("threshold_mode", "tuned"),
                                            float(settings.get("threshold", 0.5)), 1,
                                            config.get("select_on", "valid")),
                         config.get("select_on", "valid"))
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{path}: not an mmer run ({CONFIG_FILE}/{TEST_METRICS_FILE} or "
                        f"{SEEDS_SUMMARY_FILE} lack {err})") from None


def compare_runs(paths: list[Path]) -> ComparisonReport:
    """Read every run (a bad one becomes a line in `problems`) and pick the published rows of
    their benchmarks."""
    runs, problems = [], []
    for path in paths:
        try:
            runs.append(read_run(path))
        except UserError as err:
            problems.append(str(err))
    benchmarks = _benchmarks_of(runs)
    published = [p for b in benchmarks for p in PUBLISHED if p.benchmark == b]
    return ComparisonReport(runs=runs, published=published, problems=problems)
