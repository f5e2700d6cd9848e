"""`mmer models`: list the registered networks and their config options under each preset
(library: mmer.models.registry.model_presets)."""

from __future__ import annotations

import enum
import json

import typer


class ModelsFormat(str, enum.Enum):
    """How `mmer models` writes the presets."""

    table = "table"
    json = "json"


def models_command(
    output_format: ModelsFormat = typer.Option(ModelsFormat.table, "--format",
                                               help="table, or json (every preset's values and sources, for scripts)."),
) -> None:
    """List registered models and every config option's value under each preset (--preset), with
    the file and line of the authors' code each "authors" value was read from."""
    from mmer.models.config import PRESET_NAMES
    from mmer.models.registry import model_presets

    models = model_presets()
    if output_format is ModelsFormat.json:
        print(json.dumps({"preset_names": list(PRESET_NAMES), "models": [m.as_dict() for m in models]}))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    for model in models:
        table = Table(title=f"{model.name} ({model.config_class}); presets for `mmer train --preset`")
        table.add_column("option")
        for preset in PRESET_NAMES:
            table.add_column(preset)
        table.add_column("source of the authors' value")
        for option in model.options:
            table.add_row(option.name, *(Text(repr(option.values[p])) for p in PRESET_NAMES), Text(option.source))
        if model.authors_code is None:
            table.caption = "no public code of the authors found: the authors preset equals the paper preset"
        else:
            table.caption = f"authors' code: {model.authors_code}"
        console.print(table)
