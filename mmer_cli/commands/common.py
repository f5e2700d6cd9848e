"""What every command shares: turning user-facing errors into one line on stderr and an exit code."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import typer

from mmer.errors import UserError
from mmer.core.errors import MmerError


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print `mmer: error: message` (one line) on stderr and return the Exit to raise."""
    first_line = " ".join(str(message).split("\n")[0].split())
    print(f"mmer: error: {first_line}", file=sys.stderr)
    return typer.Exit(code)


PARAMETER_FLAGS: dict[str, str] = {"window_s": "--window", "config_file": "--config", "output_format": "--format"}
"""Library parameters whose command-line flag is not `--` + the name with dashes for underscores."""


def flag_message(err: MmerError) -> str:
    """The error's message with the library parameter it begins with spelled as its flag
    ("window_s must be > 0" -> "--window must be > 0")."""
    message, parameter = str(err), err.parameter
    if parameter and message.startswith(parameter):
        return PARAMETER_FLAGS.get(parameter, "--" + parameter.replace("_", "-")) + message[len(parameter):]
    return message


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Inside a command: known user errors become one stderr line and their exit code."""
    try:
        yield
    except MmerError as err:
        raise fail(flag_message(err), getattr(err, "exit_code", 2)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None


def check_output_file(option: str, path: Path) -> None:
    """An output file named by `option` must be a file name in an existing folder: mmer never creates
    folders for its outputs (a mistyped path would otherwise leave stray folders). Raises UserError."""
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder, expected a file name")
    if not path.parent.is_dir():
        raise UserError(f"{option} {path}: folder {path.parent} does not exist (create it first)")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{option} {path}: folder {path.parent} is not writable")


def report_written(what: str, path: Path) -> None:
    """Tell the user (one line on stderr) where an output file went."""
    print(f"mmer: {what} written to {path}", file=sys.stderr)


class FileProgress:
    """A Rich progress bar on stderr over files (only on a terminal; transient).

    Called as progress(done, total, file) before each file and once at the end; `min_total`
    files are needed before a bar is shown.
    """

    def __init__(self, verb: str, min_total: int = 1) -> None:
        from rich.console import Console

        self.verb = verb
        self.min_total = min_total
        self.console = Console(stderr=True)
        self.bar = None
        self.task = None

    def __call__(self, done: int, total: int, file: str) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if total < self.min_total or not self.console.is_terminal:
            return
        if self.bar is None:
            self.bar = Progress(TextColumn(self.verb), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("{task.description}"), console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("", total=total)
        self.bar.update(self.task, completed=done, description=Path(file).name if file else "")
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
