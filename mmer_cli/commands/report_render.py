"""Rendering of `mmer report`: the comparison as Rich tables or Markdown (rows built once)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from mmer.comparison import BENCHMARKS, REPORT_METRICS, ComparisonReport, RunMetric

HEADERS: dict[str, str] = {
    "acc": "Acc", "precision": "P", "recall": "R", "micro_f1": "micro-F1", "macro_f1": "macro-F1",
    "hamming_loss": "HL",
}



def _run_cell(metric: RunMetric | None) -> str:
    if metric is None:
        return "—"
    if metric.std is None:
        return f"{metric.mean:.4f}"
    return f"{metric.mean:.4f} ± {metric.std:.4f}"


def comparison_rows(report: ComparisonReport) -> list[list[str]]:
    """[benchmark, row, *metrics, protocol] per row: per benchmark its published rows, then its
    runs; runs without published numbers last."""
    rows = []
    groups = [b for b in BENCHMARKS if any(r.benchmark == b for r in report.runs)] + [None]
    for benchmark in groups:
        title = BENCHMARKS[benchmark] if benchmark else "no published results"
        for pub in (p for p in report.published if p.benchmark == benchmark):
            cells = [f"{pub.metrics[k]:.3f}" if k in pub.metrics else "—" for k in REPORT_METRICS]
            rows.append([title, f"{pub.model} (published)", *cells, pub.protocol])
        for run in (r for r in report.runs if r.benchmark == benchmark):
            cells = [_run_cell(run.metrics.get(k)) for k in REPORT_METRICS]
            name = f"{run.model} (selected on TEST)" if run.select_on == "test" else run.model
            rows.append([title, f"{name}: {run.path}", *cells, run.protocol])
    return rows


def _columns() -> list[str]:
    return ["benchmark", "row", *(HEADERS[k] for k in REPORT_METRICS), "protocol"]


def render_markdown(report: ComparisonReport) -> str:
    """A GitHub-flavoured Markdown table, pipes in cells escaped."""
    lines = ["| " + " | ".join(_columns()) + " |", "|" + "---|" * len(_columns())]
    for row in comparison_rows(report):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def render_table(report: ComparisonReport, console: Console) -> None:
    """One table per benchmark; each row's protocol as a numbered note below the tables (so the
    numbers stay readable in a narrow terminal)."""
    notes: list[str] = []
    current, table = None, None
    for benchmark, row, *cells, protocol in comparison_rows(report):
        if benchmark != current:
            if table is not None:
                console.print(table)
            current = benchmark
            table = Table(title=f"{benchmark} (P and R in the right order)",
                          caption="'paper' rows: as published; others: test split of the run")
            table.add_column("row", no_wrap=True)
            for key in REPORT_METRICS:  # terse headers: six numbers and a note fit 80 columns
                table.add_column(HEADERS[key].replace("micro-", "mi").replace("macro-", "ma"), justify="right",
                                 min_width=6)
            table.add_column("note", no_wrap=True)
        name, _, path = row.partition(": ")  # a run's row: "model: path" -> note carries the path
        note = f"{path}: {protocol}" if path else protocol
        if note not in notes:
            notes.append(note)
        label = f"{name} {Path(path).name}" if path else name.replace(" (published)", " paper")
        table.add_row(label, *cells, f"[{notes.index(note) + 1}]")
    if table is not None:
        console.print(table)
    for number, protocol in enumerate(notes, 1):
        console.print(f"[{number}] {protocol}", markup=False, highlight=False, soft_wrap=True)
