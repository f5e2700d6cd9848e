"""The one registry of networks. CLI choices and tests are built from it, never from a second list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from models.config import PRESET_NAMES, preset_overrides

_REGISTRY: dict[str, "ModelEntry"] = {}


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


def register_model(name: str, config_class: type) -> Callable[[type], type]:
    """Class decorator: `@register_model("lddu", LDDUConfig)` on an `EmotionModel` subclass."""

    def decorate(model_class: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        model_class.registry_name = name
        _REGISTRY[name] = ModelEntry(name, model_class, config_class)
        return model_class

    return decorate


def _load_builtin_models() -> None:
    # Importing the modules runs their @register_model decorators.
    import models.lamb  # noqa: F401
    import models.lddu  # noqa: F401


def model_names() -> list[str]:
    """Registered model names, sorted."""
    _load_builtin_models()
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    _load_builtin_models()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(sorted(_REGISTRY))}") from None


def build_model(name: str, config=None):
    """Instantiate a registered model; `config` defaults to the config class's defaults."""
    entry = get_entry(name)
    return entry.model_class(config if config is not None else entry.config_class())
