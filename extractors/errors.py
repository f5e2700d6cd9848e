"""Errors raised while turning a media file into features; messages are one line, for the user."""

from mmer.core.errors import MmerError


class ExtractionError(MmerError, ValueError):
    """The input cannot be turned into features (corrupt, truncated, wrong format, unreadable...)."""
