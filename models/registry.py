"""The one registry of networks. CLI choices and tests are built from it, never from a second list.

Names come from a static table, so listing them imports nothing (no torch); an implementation module
is imported only when its entry is asked for (the way timm's registry works).
"""

from __future__ import annotations

import dataclasses
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

    @property
    def authors_code(self) -> str | None:
        """Where the authors' public code was read (repository and commits), or None: no public code."""
        return getattr(self.config_class, "AUTHORS_CODE", None)


@dataclass(frozen=True)
class PresetOption:
    """One config option: its value under each preset and where the authors' value was read
    ("" when the authors preset keeps the paper's value)."""

    name: str
    values: dict[str, object]
    source: str


@dataclass(frozen=True)
class ModelPresets:
    """A registered model's options under every preset (what `mmer models` shows)."""

    name: str
    config_class: str
    authors_code: str | None
    options: list[PresetOption]

    def as_dict(self) -> dict:
        """JSON-ready: tuples become lists; {"presets": {preset: {option: value}}, "sources": {...}}."""
        def plain(value: object) -> object:
            if isinstance(value, (tuple, list)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return {
            "name": self.name, "config_class": self.config_class, "authors_code": self.authors_code,
            "presets": {preset: {o.name: plain(o.values[preset]) for o in self.options} for preset in PRESET_NAMES},
            "sources": {o.name: o.source for o in self.options if o.source},
        }


def model_presets() -> list[ModelPresets]:
    """Every registered model's config options under each preset, with the authors' sources."""
    result = []
    for name in model_names():
        entry = get_entry(name)
        defaults = entry.config_class()
        presets, sources = entry.presets, entry.preset_sources
        options = [PresetOption(f.name, {p: presets[p].get(f.name, getattr(defaults, f.name)) for p in PRESET_NAMES},
                                sources.get(f.name, ""))
                   for f in dataclasses.fields(entry.config_class)]
        result.append(ModelPresets(name, entry.config_class.__name__, entry.authors_code, options))
    return result


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
