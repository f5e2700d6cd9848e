"""The model config a training run uses: class defaults (or the tiny config), then the preset, then a
TOML file, then `--set key=value` overrides, then the run's own options (`resolve_config`)."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path

from mmer.errors import UserError
from mmer.models.config import (
    THRESHOLD_MODES, ConfigError, apply_overrides, check_optim_settings, preset_overrides,
)
from mmer.models.registry import get_entry



def read_toml_config(path: Path) -> dict:
    """Top-level key = value pairs of a TOML file (a [model] or [train] table is merged in too)."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read config file ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: invalid TOML ({err})") from None
    values = {k: v for k, v in raw.items() if not (isinstance(v, dict) and k in ("model", "train"))}
    for table in ("model", "train"):
        if isinstance(raw.get(table), dict):
            values.update(raw[table])
    return values


def _coerce_toml_values(config_class: type, values: dict, source: Path) -> dict:
    """TOML integers for float fields become floats; other type mismatches are errors naming the key."""
    hints = typing.get_type_hints(config_class)
    out = {}
    for key, value in values.items():
        hint = hints.get(key)
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif hint in (int, float, str, bool) and not isinstance(value, hint):
            raise ConfigError(f"{source}: {key} must be {hint.__name__}, got {value!r}")
        out[key] = value
    return out


def resolve_config(
    model: str,
    label_names: list[str],
    input_dims: dict[str, int],
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    tiny: bool = False,
    preset: str = "paper",
    threshold_mode: str | None = None,
    threshold: float | None = None,
):
    """The model config a run uses (precedence: defaults/tiny < preset < TOML < --set <
    epochs/batch_size/threshold_mode/threshold).

    num_labels = len(label_names) and input_dims are the dataset's; a TOML file or --set that tries
    to give them another value is an error.
    """
    entry = get_entry(model)
    num_labels = len(label_names)
    if tiny:
        config = entry.config_class.tiny(num_labels, dict(input_dims))
    else:
        config = entry.config_class()
    config = dataclasses.replace(config, num_labels=num_labels, input_dims=dict(input_dims))
    config = apply_overrides(config, preset_overrides(entry.config_class, preset))
    if config_file is not None:
        values = _coerce_toml_values(entry.config_class, read_toml_config(config_file), config_file)
        config = apply_overrides(config, values)
    if overrides:
        config = apply_overrides(config, list(overrides))
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    if batch_size is not None:
        config = dataclasses.replace(config, batch_size=batch_size)
    config = _with_threshold_options(config, threshold_mode, threshold)
    if config.num_labels != num_labels or dict(config.input_dims) != dict(input_dims):
        raise ConfigError(
            f"num_labels/input_dims come from the dataset ({num_labels} labels, dims {dict(input_dims)}); do not set them"
        )
    check_optim_settings(config)
    return config


def _with_threshold_options(config, threshold_mode: str | None, threshold: float | None):
    """Apply --threshold-mode / --threshold: a threshold alone means "fixed"; "tuned" with a
    threshold is contradictory."""
    if threshold_mode is not None and threshold_mode not in THRESHOLD_MODES:
        raise ConfigError(f"threshold_mode must be one of {', '.join(THRESHOLD_MODES)}, got {threshold_mode!r}", parameter="threshold_mode")
    if threshold is not None:
        if threshold_mode in ("tuned", "tuned_global"):
            raise ConfigError("--threshold sets a fixed threshold; it cannot go with --threshold-mode tuned")
        return dataclasses.replace(config, threshold_mode="fixed", threshold=float(threshold))
    if threshold_mode is not None:
        return dataclasses.replace(config, threshold_mode=threshold_mode)
    return config
