"""`mmer models`: list the registered networks and their config options under each preset."""

from __future__ import annotations

import dataclasses



def models_command() -> None:
    """List registered models and every config option's value under each preset (--preset)."""
    from rich.console import Console
    from rich.table import Table

    from mmer.models.config import PRESET_NAMES
    from mmer.models.registry import get_entry, model_names

    console = Console()
    for name in model_names():
        entry = get_entry(name)
        defaults = entry.config_class()
        presets = entry.presets
        sources = entry.preset_sources
        table = Table(title=f"{name} ({entry.config_class.__name__}); presets for `mmer train --preset`")
        table.add_column("option")
        for preset in PRESET_NAMES:
            table.add_column(preset)
        table.add_column("source of the authors' value")
        for f in dataclasses.fields(entry.config_class):
            default = getattr(defaults, f.name)
            cells = [repr(presets[preset].get(f.name, default)) for preset in PRESET_NAMES]
            table.add_row(f.name, *cells, sources.get(f.name, ""))
        if not presets["authors"]:
            table.caption = "no public code of the authors found: the authors preset equals the paper preset"
        console.print(table)
