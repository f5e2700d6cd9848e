"""Placeholder until the `train` command lands (being written now)."""

from mmer_cli.commands.common import fail


def train_command() -> None:
    """Not available yet."""
    raise fail("this command is not implemented yet")
