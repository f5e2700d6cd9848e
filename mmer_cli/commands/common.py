"""What every command shares: turning user-facing errors into one line on stderr and an exit code."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

import typer

from mmer_cli.errors import user_error_types


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print `mmer: error: message` (one line) on stderr and return the Exit to raise."""
    first_line = " ".join(str(message).split("\n")[0].split())
    print(f"mmer: error: {first_line}", file=sys.stderr)
    return typer.Exit(code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Inside a command: known user errors become one stderr line and their exit code."""
    try:
        yield
    except user_error_types() as err:
        raise fail(str(err), getattr(err, "exit_code", 2)) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
