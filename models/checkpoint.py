"""Checkpoints: one `.safetensors` file, tensors plus JSON metadata. Loading never unpickles.

The metadata (safetensors header, key "mmer") holds everything needed to rebuild the model:
format version, mmer version, model name, config, label names, feature spec, decision thresholds
and free-form training info.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmer.core import MmerError, __version__
from mmer.core.feature_spec import FeatureSpec
from mmer.models.config import config_from_dict, config_to_dict
from mmer.models.registry import build_model, get_entry

CHECKPOINT_FORMAT = 1
"""Bumped whenever the metadata layout changes incompatibly."""


class CheckpointError(MmerError, ValueError):
    """A checkpoint that is missing, corrupt, or not an mmer checkpoint."""


@dataclass
class CheckpointInfo:
    """Everything a checkpoint says about its model besides the weights.

    thresholds: per-label decision thresholds (probability), length q.
    extra: training provenance and results (dataset, epochs, metrics, calibration, ...).
    """

    model_name: str
    config: object
    label_names: list[str]
    feature_spec: FeatureSpec
    thresholds: list[float]
    mmer_version: str
    extra: dict = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model,
    label_names: list[str],
    feature_spec: FeatureSpec,
    thresholds: list[float] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write `model` and its metadata to `path` (a `.safetensors` file)."""
    if len(label_names) != model.config.num_labels:
        raise ValueError(f"{len(label_names)} label names for a model with {model.config.num_labels} labels")
    meta = {
        "format": CHECKPOINT_FORMAT,
        "mmer_version": __version__,
        "model": model.registry_name,
        "config": config_to_dict(model.config),
        "label_names": list(label_names),
        "feature_spec": feature_spec.to_dict(),
        "thresholds": [float(t) for t in (thresholds or [0.5] * len(label_names))],
        "extra": extra or {},
    }
    # safetensors refuses shared/non-contiguous storage: store independent contiguous copies.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"mmer": json.dumps(meta)})
    return path


def read_checkpoint_info(path: str | Path) -> tuple[CheckpointInfo, dict]:
    """Parse the metadata of a checkpoint; returns (info, raw metadata dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({err})") from None
    if "mmer" not in header:
        raise CheckpointError(f"{path}: safetensors file without mmer metadata")
    try:
        meta = json.loads(header["mmer"])
        if not isinstance(meta, dict):
            raise CheckpointError(f"{path}: malformed mmer metadata (not a JSON object)")
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: checkpoint format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        entry = get_entry(meta["model"])
        info = CheckpointInfo(
            model_name=meta["model"],
            config=config_from_dict(entry.config_class, meta["config"]),
            label_names=list(meta["label_names"]),
            feature_spec=FeatureSpec.from_dict(meta["feature_spec"]),
            thresholds=[float(t) for t in meta["thresholds"]],
            mmer_version=str(meta.get("mmer_version", "")),
            extra=dict(meta.get("extra", {})),
        )
    except CheckpointError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:  # JSON, config, spec errors
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise CheckpointError(f"{path}: malformed mmer metadata ({reason})") from None
    if not all(isinstance(name, str) and name.strip() for name in info.label_names):
        raise CheckpointError(f"{path}: label names must be non-empty strings")
    if len(info.label_names) != info.config.num_labels or len(info.thresholds) != info.config.num_labels:
        raise CheckpointError(f"{path}: label names/thresholds do not match num_labels")
    for name, t in zip(info.label_names, info.thresholds):
        if not math.isfinite(t):
            raise CheckpointError(f"{path}: decision threshold of {name!r} is {t!r}, expected a finite number")
    return info, meta


def check_finite_state(path: str | Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse weights or standardisation statistics that are NaN or infinite, and
    non-positive standard deviations (`...std_<modality>` buffers): CheckpointError naming the tensor."""
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: tensor {key!r} holds NaN or infinite values")
        if key.rsplit(".", 1)[-1].startswith("std_") and not bool((tensor > 0).all()):
            raise CheckpointError(f"{path}: standard deviations {key!r} must be > 0")


def _shape(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, tensor.shape)) + ")"


def check_state_fits(path: str | Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                     model_name: str) -> None:
    """Refuse weights that do not fit the model its config builds, naming the first tensor that
    does not: one whose shape differs (both shapes given), one missing, or one the model has no
    place for. CheckpointError."""
    for key, tensor in state.items():
        if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{path}: tensor {key!r} has shape {_shape(tensor)} in the checkpoint, but its "
                                  f"{model_name} config needs {_shape(expected[key])}")
    missing = [key for key in expected if key not in state]
    if missing:
        raise CheckpointError(f"{path}: tensor {missing[0]!r} (shape {_shape(expected[missing[0]])}) that the "
                              f"{model_name} config needs is missing" + (f", and {len(missing) - 1} more" if len(missing) > 1 else ""))
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        raise CheckpointError(f"{path}: tensor {unexpected[0]!r} (shape {_shape(state[unexpected[0]])}) has no place "
                              f"in the {model_name} model its config builds"
                              + (f", and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the model from a checkpoint alone. Returns (model in eval mode, CheckpointInfo)."""
    info, _ = read_checkpoint_info(path)
    try:
        model = build_model(info.model_name, info.config)
    except (ValueError, TypeError, RuntimeError, OverflowError) as err:
        raise CheckpointError(f"{path}: its config does not build a {info.model_name} model "
                              f"({' '.join(str(err).split())[:200]})") from None
    try:
        state = load_file(str(path), device="cpu")
        check_finite_state(path, state)
        check_state_fits(path, state, model.state_dict(), info.model_name)
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, OSError) as err:
        raise CheckpointError(f"{path}: weights do not fit the {info.model_name} config ({str(err).splitlines()[0]})") from None
    model.to(device).eval()
    return model, info
