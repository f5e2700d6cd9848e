"""The base of every error whose one-line message is meant for the user as it is."""

from __future__ import annotations


class MmerError(Exception):
    """A problem with the user's input (file, option, data, checkpoint) that the message fully explains.

    parameter: the library parameter at fault, when the message begins with its name (e.g.
    "window_s must be > 0 seconds, got -1"); a front end shows it as its own spelling (the CLI:
    "--window must be > 0 seconds, got -1"). None when the message names no parameter first.
    """

    def __init__(self, message: str = "", parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
