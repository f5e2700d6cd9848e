"""`mmer models`: list the registered networks and their config options with defaults."""

from __future__ import annotations

import dataclasses

from rich.console import Console
from rich.table import Table

from models.registry import get_entry, model_names


def models_command() -> None:
    """List registered models and every config option with its default."""
    console = Console()
    for name in model_names():
        entry = get_entry(name)
        table = Table(title=f"{name} ({entry.config_class.__name__})")
        table.add_column("option")
        table.add_column("default")
        for f in dataclasses.fields(entry.config_class):
            default = getattr(entry.config_class(), f.name)
            table.add_row(f.name, repr(default))
        console.print(table)
