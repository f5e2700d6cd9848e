"""Checks every registered model must pass (parametrised over `mmer.models.registry.model_names()`,
tiny configs from `Config.tiny()`): finite training steps, over-fitting a tiny batch, checkpoint
round trips, absent modalities and padding invariance; plus checkpoint error handling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from mmer.metrics import multilabel_metrics
from mmer.models.batch import MultimodalBatch
from mmer.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mmer.models.config import config_from_dict, config_to_dict
from mmer.core.feature_spec import MODALITIES, FeatureSpec, ModalitySpec
from mmer.models.registry import get_entry, model_names

NAMES = model_names()
DIMS = {"text": 12, "audio": 8, "visual": 6}
LENGTHS = {"text": 5, "audio": 7, "visual": 4}
Q = 3
LABEL_NAMES = ["a", "b", "c"]
SPEC = FeatureSpec(**{m: ModalitySpec(extractor=f"synthetic-{m}", dim=DIMS[m]) for m in MODALITIES})


def build(name: str, num_train_samples: int = 8, seed: int = 0, input_dims: dict[str, int] = DIMS):
    """A tiny model of the registered `name`, prepared for a training split of the given size."""
    entry = get_entry(name)
    torch.manual_seed(seed)
    model = entry.model_class(entry.config_class.tiny(num_labels=Q, input_dims=dict(input_dims)))
    model.prepare_training(num_train_samples)
    return model


def make_batch(batch_size: int = 8, lengths: dict[str, int] = LENGTHS, seed: int = 0) -> MultimodalBatch:
    """Random features with variable lengths (sample i drops its last i frames, keeping >= 1).
    Labels run through all 2^3 label sets, and every modality carries them as a signal in its
    first Q feature dimensions, so the batch is learnable from any single modality."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([[(i >> j) & 1 for j in range(Q)] for i in range(batch_size)], dtype=torch.float32)
    features, masks = {}, {}
    for m in MODALITIES:
        t = lengths[m]
        x = torch.randn(batch_size, t, DIMS[m], generator=g)  # (B, T, D)
        x[:, :, :Q] += 2.0 * (labels[:, None, :] - 0.5)
        valid_len = torch.clamp(t - torch.arange(batch_size), min=1)  # (B,)
        masks[m] = torch.arange(t)[None, :] < valid_len[:, None]  # (B, T)
        features[m] = x * masks[m][..., None]
    return MultimodalBatch(features=features, masks=masks, labels=labels, index=torch.arange(batch_size))


def finite_grads(model) -> bool:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return bool(grads) and all(torch.isfinite(g).all() for g in grads)


def train_steps(model, batch: MultimodalBatch, steps: int) -> None:
    """`steps` optimiser steps with the model's own optimizer settings (Adam/AdamW, lr, clip)."""
    config = model.config
    opt_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    opt = opt_class(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        model.loss(model(batch), batch).total.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_finite(name):
    model = build(name)
    batch = make_batch()
    model.train()
    out = model(batch)
    assert out.probs.shape == (8, Q)
    assert ((out.probs >= 0) & (out.probs <= 1)).all()
    loss = model.loss(out, batch)
    assert loss.total.dim() == 0 and torch.isfinite(loss.total)
    loss.total.backward()
    assert finite_grads(model)
    pred = model.predict(batch)
    assert pred.probs.shape == pred.uncertainty.shape == (8, Q)
    assert ((pred.uncertainty >= 0) & (pred.uncertainty <= 1)).all()


@pytest.mark.parametrize("name", NAMES)
def test_overfits_a_tiny_batch(name):
    """8 samples covering all 8 label sets of 3 labels: learned to micro-F1 = 1 (threshold 0.5)."""
    model = build(name)
    batch = make_batch()
    truth = batch.labels.numpy().astype(int)
    micro_f1 = 0.0
    for _ in range(50):  # at most 50 x 10 = 500 steps
        train_steps(model, batch, 10)
        pred = (model.predict(batch).probs.numpy() >= 0.5).astype(int)
        micro_f1 = multilabel_metrics(truth, pred, LABEL_NAMES).micro_f1
        if micro_f1 == 1.0:
            break
    assert micro_f1 == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip_gives_identical_predictions(name, tmp_path):
    model = build(name)
    batch = make_batch()
    train_steps(model, batch, 3)  # move the weights away from any initial value
    path = save_checkpoint(tmp_path / "model.safetensors", model, LABEL_NAMES, SPEC, thresholds=[0.4, 0.5, 0.6],
                           extra={"note": "test"})
    loaded, info = load_checkpoint(path)
    assert info.model_name == name and info.config == model.config
    assert info.label_names == LABEL_NAMES and info.feature_spec == SPEC and info.thresholds == [0.4, 0.5, 0.6]
    assert not loaded.training
    model.eval()
    assert torch.equal(model(batch).probs, loaded(batch).probs)
    torch.manual_seed(123)
    expected = model.predict(batch)
    torch.manual_seed(123)
    got = loaded.predict(batch)
    assert torch.equal(expected.probs, got.probs) and torch.equal(expected.uncertainty, got.uncertainty)


@pytest.mark.parametrize("name", NAMES)
def test_config_survives_json(name):
    config = build(name).config
    assert config_from_dict(type(config), json.loads(json.dumps(config_to_dict(config)))) == config


def _assert_finite_everywhere(model, batch: MultimodalBatch) -> None:
    model.train()
    model.zero_grad()
    out = model(batch)
    loss = model.loss(out, batch)
    assert torch.isfinite(out.probs).all() and torch.isfinite(loss.total)
    loss.total.backward()
    assert finite_grads(model)
    pred = model.predict(batch)
    assert torch.isfinite(pred.probs).all() and torch.isfinite(pred.uncertainty).all()
    assert ((pred.uncertainty >= 0) & (pred.uncertainty <= 1)).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("modality", MODALITIES)
def test_one_sample_without_a_modality(name, modality):
    model = build(name)
    batch = make_batch()
    batch.masks[modality][2] = False
    batch.features[modality][2] = 5.0  # garbage under an all-False mask
    _assert_finite_everywhere(model, batch)


@pytest.mark.parametrize("name", NAMES)
def test_one_sample_without_any_modality(name):
    model = build(name)
    batch = make_batch()
    for m in MODALITIES:
        batch.masks[m][3] = False
        batch.features[m][3] = 0.0
    _assert_finite_everywhere(model, batch)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("modality", MODALITIES)
def test_modality_absent_for_the_whole_batch(name, modality):
    model = build(name)
    batch = make_batch()
    batch.features[modality] = torch.zeros(8, 1, DIMS[modality])  # T = 1, all masked
    batch.masks[modality] = torch.zeros(8, 1, dtype=torch.bool)
    _assert_finite_everywhere(model, batch)


@pytest.mark.parametrize("name", NAMES)
def test_padding_frames_do_not_change_the_output(name):
    """Appending masked garbage frames to every modality leaves eval-mode outputs unchanged."""
    model = build(name)
    train_steps(model, make_batch(), 2)
    model.eval()
    batch = make_batch()
    extra = 6
    g = torch.Generator().manual_seed(1)
    features = {m: torch.cat([x, 10 * torch.randn(8, extra, DIMS[m], generator=g)], dim=1)
                for m, x in batch.features.items()}
    masks = {m: torch.cat([v, torch.zeros(8, extra, dtype=torch.bool)], dim=1) for m, v in batch.masks.items()}
    padded = MultimodalBatch(features=features, masks=masks, labels=batch.labels, index=batch.index)
    with torch.no_grad():
        assert torch.allclose(model(batch).probs, model(padded).probs, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Checkpoint errors


def test_missing_checkpoint_raises(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_corrupt_checkpoint_raises(tmp_path):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(CheckpointError, match="corrupt.safetensors"):
        load_checkpoint(path)


def test_truncated_checkpoint_raises(tmp_path):
    model = build(NAMES[0])
    path = save_checkpoint(tmp_path / "full.safetensors", model, LABEL_NAMES, SPEC)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors"):
        load_checkpoint(truncated)


def test_safetensors_without_mmer_metadata_raises(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(CheckpointError, match="without mmer metadata"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", NAMES)
def test_weights_that_do_not_fit_the_config_raise(name, tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", build(name), LABEL_NAMES, SPEC)
    with safe_open(str(good), framework="pt") as f:
        metadata = f.metadata()
    other = build(name, input_dims={**DIMS, "text": DIMS["text"] + 5})  # different weight shapes
    bad = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous().clone() for k, v in other.state_dict().items()}, str(bad), metadata=metadata)
    # the first tensor that does not fit is named with both shapes
    with pytest.raises(CheckpointError, match=rf"tensor '[\w.]+' has shape \(\d+(, \d+)*\) in the checkpoint, but its "
                                              rf"{name} config needs \(\d+(, \d+)*\)"):
        load_checkpoint(bad)
    state = {k: v.contiguous().clone() for k, v in build(name).state_dict().items()}
    first = next(iter(state))
    save_file({k: v for k, v in state.items() if k != first}, str(bad), metadata=metadata)
    with pytest.raises(CheckpointError, match=rf"tensor '{first}' \(shape .*\) that the {name} config needs is missing"):
        load_checkpoint(bad)
    save_file({**state, "extra.weight": torch.zeros(3, 4)}, str(bad), metadata=metadata)
    with pytest.raises(CheckpointError, match=r"tensor 'extra.weight' \(shape \(3, 4\)\) has no place"):
        load_checkpoint(bad)
