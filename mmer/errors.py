"""User-facing errors: one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from mmer.core.errors import MmerError


class UserError(MmerError):
    """A problem with the user's input (file, option, data) that the message fully explains."""

    exit_code = 2
