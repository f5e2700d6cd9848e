"""User-facing errors: one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (file, option, data) that the message fully explains."""

    exit_code = 2


class InputFailed(UserError):
    """One input of several could not be processed (the others still run). Exit code 1."""

    exit_code = 1


def user_error_types() -> tuple[type[BaseException], ...]:
    """Every exception type whose message is meant for the user as it is."""
    from extractors.errors import ExtractionError
    from mmer_cli.datasets.base import DatasetError
    from models.checkpoint import CheckpointError
    from models.config import ConfigError
    from models.feature_spec import FeatureSpecMismatch

    return (UserError, CheckpointError, ConfigError, FeatureSpecMismatch, DatasetError, ExtractionError)
