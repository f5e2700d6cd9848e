"""`mmer report`: runs next to the published numbers (library: mmer.comparison.compare_runs;
rendering: mmer.cli.commands.report_render)."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path

import typer


class ReportFormat(str, enum.Enum):
    """How `mmer report` writes its table."""

    table = "table"
    markdown = "markdown"
    json = "json"


def report_command(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories of `mmer train` (single runs or --seeds OUT)."),
    output_format: ReportFormat = typer.Option(ReportFormat.table, "--format", help="table, markdown or json."),
) -> None:
    """Compare runs with TAILOR, CARAT, LAMB and LDDU as published, each row with its protocol.

    An unreadable run directory gets one error line on stderr and exit code 1; the others are still
    reported (exit 2 when none is readable)."""
    from rich.console import Console

    from mmer.cli.commands.report_render import render_markdown, render_table
    from mmer.comparison import compare_runs

    report = compare_runs(run_dirs)
    for problem in report.problems:
        print(f"mmer: error: {problem}", file=sys.stderr)
    if not report.runs:
        raise typer.Exit(2)
    if output_format is ReportFormat.json:
        print(json.dumps(report.as_dict()))
    elif output_format is ReportFormat.markdown:
        print(render_markdown(report))
    else:
        render_table(report, Console())
    if report.problems:
        raise typer.Exit(1)

