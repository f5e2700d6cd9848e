"""The one registry of networks. CLI choices and tests are built from it, never from a second list.

Names come from a static table, so listing them imports nothing (no torch); an implementation module
is imported only when its entry is asked for (the way timm's registry works).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from mmer.models.config import PRESET_NAMES, preset_overrides

# name -> (module, model class, config class); the model class sets `registry_name` to the same name.
_BUILTIN: dict[str, tuple[str, str, str]] = {
    "lamb": ("mmer.models.lamb", "LAMB", "LAMBConfig"),
    "lddu": ("mmer.models.lddu", "LDDU", "LDDUConfig"),
}


@dataclass(frozen=True)
class ModelEntry:
    name: str
    model_class: type
    config_class: type

    @property
    def presets(self) -> dict[str, dict[str, object]]:
        """{preset name: {field: value}} overrides of the config defaults, for every name in PRESET_NAMES."""
        return {preset: preset_overrides(self.config_class, preset) for preset in PRESET_NAMES}

    @property
    def preset_sources(self) -> dict[str, str]:
        """{field: where the "authors" preset's value was read} (empty when the model has none)."""
        return dict(getattr(self.config_class, "PRESET_SOURCES", {}))


def model_names() -> list[str]:
    """Registered model names, sorted (imports no implementation)."""
    return sorted(_BUILTIN)


def get_entry(name: str) -> ModelEntry:
    """The entry of model `name`, importing its implementation module. KeyError for an unknown name."""
    try:
        module_name, model_class, config_class = _BUILTIN[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(model_names())}") from None
    module = importlib.import_module(module_name)
    return ModelEntry(name, getattr(module, model_class), getattr(module, config_class))


def build_model(name: str, config=None):
    """Instantiate a registered model; `config` defaults to the config class's defaults."""
    entry = get_entry(name)
    return entry.model_class(config if config is not None else entry.config_class())
