"""Dataclass configs: (de)serialisation and `key=value` overrides, shared by every model."""

from __future__ import annotations

import dataclasses
import typing

from mmer.core.errors import MmerError
from mmer.core.text_values import parse_text


class ConfigError(MmerError, ValueError):
    """A config key or value that does not fit the model's config dataclass."""


PRESET_NAMES: tuple[str, ...] = ("paper", "authors", "small")
"""Starting points of a config: "paper" = the values printed in the model's paper (the config
class defaults); "authors" = the values of the authors' public code where they differ; "small" =
mmer's settings for corpora of a few hundred to a few thousand clips, chosen by measurement
(recipes/small_corpus_emodb.py, docs/training.md "Small corpora"). Each config
class holds its own presets in `PRESETS` {preset: {field: value}} and, for every "authors" value,
where it was read in `PRESET_SOURCES` {field: source file}; a missing preset means no differences."""

THRESHOLD_MODES: tuple[str, ...] = ("tuned", "fixed", "tuned_global")


def preset_overrides(config_class: type, preset: str) -> dict[str, object]:
    """The {field: value} overrides that turn `config_class()` defaults into `preset`."""
    if preset not in PRESET_NAMES:
        raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
    return dict(getattr(config_class, "PRESETS", {}).get(preset, {}))


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(config_class: type, data: dict):
    """Build `config_class` from a dict; unknown keys are an error (a checkpoint from another model)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown {config_class.__name__} keys: {', '.join(unknown)}")
    hints = typing.get_type_hints(config_class)
    # JSON has no tuples: a tuple field (e.g. threshold_grid) comes back as a list
    data = {k: tuple(v) if isinstance(v, list) and typing.get_origin(hints.get(k)) is tuple else v
            for k, v in data.items()}
    return config_class(**data)


def apply_overrides(config, overrides: dict[str, object] | list[str]):
    """Return a copy of `config` with overrides applied.

    overrides: either {"key": value} or ["key=value", ...] strings as typed on the command line.
    """
    if isinstance(overrides, list):
        parsed: dict[str, object] = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            key, raw = item.split("=", 1)
            parsed[key.strip()] = raw.strip()
        overrides = parsed
    hints = typing.get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}
    values = {}
    for key, value in overrides.items():
        if key not in fields:
            raise ConfigError(
                f"{type(config).__name__} has no option {key!r}; options: {', '.join(sorted(fields))}"
            )
        if isinstance(value, str):
            try:
                value = parse_text(value, hints[key])
            except ValueError as err:
                raise ConfigError(f"bad value for {key}: {err}") from None
        values[key] = value
    return dataclasses.replace(config, **values)


@dataclasses.dataclass
class OptimSettings:
    """Training hyper-parameters; every model config inherits these and overrides the defaults
    its paper states. The trainer reads them from the model's config, so a checkpoint records them.
    """

    lr: float = 1e-3  # initial learning rate
    batch_size: int = 64  # samples per optimisation step (per process under DDP)
    epochs: int = 30  # maximum number of epochs
    optimizer: str = "adam"  # "adam" | "adamw" | "bertadam" (BERT's Adam: no bias correction, eps 1e-6)
    weight_decay: float = 0.0
    no_decay_bias_norm: bool = False  # True: biases and LayerNorm parameters get no weight decay
    grad_clip: float = 0.0  # max global gradient norm; 0 disables clipping
    scheduler: str = "none"  # "none" | "cosine_warmup" | "warmup_cosine_total" | "plateau" (validation metric)
    warmup_ratio: float = 0.0  # fraction of total steps with linear warm-up (cosine_warmup, warmup_cosine_total)
    plateau_factor: float = 0.5  # lr multiplier when the validation metric plateaus
    plateau_patience: int = 3  # epochs without improvement before lowering lr
    early_stop_patience: int = 0  # epochs without validation improvement before stopping; 0 = off
    label_smoothing: float = 0.0  # targets become y*(1-eps) + eps/2 in the BCE loss
    threshold_mode: str = "tuned"  # "tuned": per-label thresholds tuned on validation | "fixed" |
    # "tuned_global": one threshold shared by every label, tuned on validation (micro-F1)
    threshold: float = 0.5  # the one decision threshold of every label when threshold_mode = "fixed"
    threshold_grid: tuple[float, ...] = ()  # (start, stop, step) of the tuning grid, stop included;
    # () = 0.01, 0.02, ..., 0.99


def check_optim_settings(config: OptimSettings) -> None:
    """Raise ConfigError naming the field when a training setting is out of range."""
    if config.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {config.epochs}")
    if config.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {config.batch_size}")
    if config.threshold_mode not in THRESHOLD_MODES:
        raise ConfigError(f"threshold_mode must be one of {', '.join(THRESHOLD_MODES)}, got {config.threshold_mode!r}")
    if not 0.0 <= config.threshold <= 1.0:
        raise ConfigError(f"threshold must lie in [0, 1], got {config.threshold}")
    grid = tuple(getattr(config, "threshold_grid", ()))
    if grid and (len(grid) != 3 or not 0.0 <= grid[0] <= grid[1] <= 1.0 or grid[2] <= 0):
        raise ConfigError(f"threshold_grid must be () or (start, stop, step) with 0 <= start <= stop <= 1 "
                          f"and step > 0, got {grid}", parameter="threshold_grid")
