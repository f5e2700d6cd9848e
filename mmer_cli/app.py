"""The `mmer` command line: thin Typer commands over the library (see each command module)."""

from __future__ import annotations

import sys

import typer

from mmer.cli.commands import analyze, calibrate, evaluate, extract, info, report, score, train
from mmer.cli.help_types import use_readable_types

use_readable_types()  # `--help` shows N, SECONDS, [a|b], TEXT, PATH: not <str>, <bool>, <list[Path]>

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Multimodal multi-label emotion recognition (LDDU, LAMB) from face, voice and words.",
)

def _version(value: bool) -> None:
    if value:
        from mmer.core import __version__

        typer.echo(f"mmer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the installed mmer version and exit."),
) -> None:
    """Multimodal multi-label emotion recognition (LDDU, LAMB) from face, voice and words."""


app.command("analyze")(analyze.analyze_command)
app.command("extract")(extract.extract_command)
app.command("train")(train.train_command)
app.command("eval")(evaluate.eval_command)
app.command("calibrate")(calibrate.calibrate_command)
app.command("score")(score.score_command)
app.command("models")(info.models_command)
app.command("report")(report.report_command)


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
