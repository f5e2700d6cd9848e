"""The output formats of `mmer analyze`: one registry, name -> writer (`get_writer`).

Each format knows how to write the typed outcomes of `mmer.analysis.analyze` to a path or to
standard output; `mmer analyze --format` offers exactly these names. The registry itself imports
nothing heavy (the CLI builds its option choices from it at start-up): each writer imports its
renderer when it runs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from mmer.errors import UserError

if TYPE_CHECKING:
    from mmer.analysis import AnalyzeOptions, AnalyzeOutcome

TABLE_WIDTH = 100  # characters, when tables are written to a file with -o


@dataclass(frozen=True)
class OutputFormat:
    """name: the --format value; help: one phrase for --help; per_clip_suffix: formats written as one
    file per clip (`export_paths`) carry their suffix; timeline: built on per-window results (without
    --window such formats get automatic windows); write(outcomes, output, options)."""

    name: str
    help: str
    write: Callable[[Sequence["AnalyzeOutcome"], "Path | None", "AnalyzeOptions"], None]
    per_clip_suffix: str | None = None
    timeline: bool = False


def write_text(text: str, output: Path | None) -> None:
    """`text` to `output`, or to standard output when it is None; a write error is a UserError."""
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UserError(f"--output {output}: cannot write ({err.strerror or err})") from None


def _write_table(outcomes, output, options) -> None:
    from rich.console import Console

    from mmer.writers import render_tables

    if output is None:
        render_tables(outcomes, Console())
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            render_tables(outcomes, Console(file=handle, width=TABLE_WIDTH, color_system=None))
    except OSError as err:
        raise UserError(f"--output {output}: cannot write ({err.strerror or err})") from None


def _write_json(outcomes, output, options) -> None:
    from mmer.writers import to_json

    write_text(to_json(outcomes), output)


def _write_csv(outcomes, output, options) -> None:
    from mmer.analysis import result_label_names
    from mmer.writers import to_csv

    write_text(to_csv(outcomes, result_label_names(outcomes, options)), output)


def _write_html(outcomes, output, options) -> None:
    from mmer.report_html import to_html

    write_text(to_html(outcomes, output), output)


def _per_clip_writer(suffix: str, render: Callable) -> Callable:
    def write(outcomes, output, options) -> None:
        from mmer.analysis import ClipResult
        from mmer.export_paths import export_paths

        results = [o for o in outcomes if isinstance(o, ClipResult)]
        for result, path in export_paths(output, results, len(outcomes), suffix):
            write_text(render(result, path), path)

    return write


def _eaf(result, path) -> str:
    from mmer.export_elan import to_eaf

    return to_eaf(result, path)


def _vtt(result, path) -> str:
    from mmer.export_vtt import to_vtt

    return to_vtt(result)


_FORMATS = (
    OutputFormat("table", "table (human)", _write_table),
    OutputFormat("json", "json (array, one object per input)", _write_json),
    OutputFormat("csv", "csv (one row per clip)", _write_csv),
    OutputFormat("html", "html (interactive report)", _write_html, timeline=True),
    OutputFormat("eaf", "eaf (ELAN)", _per_clip_writer(".eaf", _eaf), per_clip_suffix=".eaf", timeline=True),
    OutputFormat("vtt", "vtt (WebVTT subtitles)", _per_clip_writer(".vtt", _vtt), per_clip_suffix=".vtt", timeline=True),
)
WRITERS: dict[str, OutputFormat] = {f.name: f for f in _FORMATS}
"""Every output format by name, in the order --help lists them."""


def format_names() -> list[str]:
    return list(WRITERS)


def get_writer(name: str) -> OutputFormat:
    """The output format called `name` (UserError naming `output_format` when there is none)."""
    try:
        return WRITERS[name]
    except KeyError:
        raise UserError(f"output_format must be one of {', '.join(WRITERS)}, got {name!r}",
                        parameter="output_format") from None
