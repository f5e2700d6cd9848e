"""Placeholder until the `evaluate` command lands (being written now)."""

from mmer_cli.commands.common import fail


def eval_command() -> None:
    """Not available yet."""
    raise fail("this command is not implemented yet")
