"""Input standardisation: fitted statistics, masking, checkpoint round trip, for every model."""

import numpy as np
import pytest
import torch

from mmer.datasets.base import Sample, collate
from mmer.models.checkpoint import load_checkpoint, save_checkpoint
from mmer.core.feature_spec import MODALITIES, FeatureSpec, ModalitySpec
from mmer.models.input_standardization import InputStandardizer
from mmer.models.registry import build_model, get_entry, model_names

DIMS = {"text": 4, "audio": 3, "visual": 2}


def _samples(rng, n=6):
    out = []
    for i in range(n):
        feats = {m: rng.normal(5.0, 3.0, size=(rng.integers(1, 6), d)).astype(np.float32) for m, d in DIMS.items()}
        feats["audio"][:, 2] = 7.0  # a constant dimension
        out.append(Sample(features=feats, labels=np.zeros(3, np.float32), index=i))
    return out


def test_identity_until_fitted_and_padding_stays_zero():
    rng = np.random.default_rng(0)
    batch = collate(_samples(rng))
    std = InputStandardizer(DIMS)
    out = std(batch)
    for m in MODALITIES:
        assert torch.equal(out.features[m], batch.features[m])
    std.fit(s.features for s in _samples(rng))
    out = std(batch)
    for m in MODALITIES:
        assert torch.all(out.features[m][~batch.masks[m]] == 0)


def test_fit_gives_zero_mean_unit_std_on_valid_frames_and_centres_constant_dims():
    rng = np.random.default_rng(1)
    samples = _samples(rng)
    std = InputStandardizer(DIMS)
    std.fit(s.features for s in samples)
    out = std(collate(samples))
    for m in MODALITIES:
        valid = out.features[m][out.masks[m]].double()  # (N_valid, D)
        assert torch.allclose(valid.mean(0), torch.zeros(DIMS[m], dtype=torch.float64), atol=1e-5)
        expected_std = torch.ones(DIMS[m], dtype=torch.float64)
        if m == "audio":
            expected_std[2] = 0.0  # constant feature: centred, not scaled
        assert torch.allclose(valid.std(0, unbiased=False), expected_std, atol=1e-4)
    assert float(std.std_audio[2]) == 1.0 and float(std.mean_audio[2]) == pytest.approx(7.0)


def test_absent_modality_keeps_identity():
    rng = np.random.default_rng(2)
    samples = _samples(rng)
    for s in samples:
        s.features["visual"] = np.zeros((0, DIMS["visual"]), np.float32)
    std = InputStandardizer(DIMS)
    std.fit(s.features for s in samples)
    assert torch.equal(std.mean_visual, torch.zeros(2)) and torch.equal(std.std_visual, torch.ones(2))


def test_dimension_mismatch_is_a_clear_error():
    std = InputStandardizer(DIMS)
    batch = collate(_samples(np.random.default_rng(3)))
    batch.features["text"] = torch.zeros(batch.batch_size, 2, 9)
    batch.masks["text"] = torch.ones(batch.batch_size, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="text features have dimension 9"):
        std(batch)


@pytest.mark.parametrize("name", model_names())
def test_fitted_statistics_change_predictions_and_survive_checkpoints(name, tmp_path):
    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    model = build_model(name, get_entry(name).config_class.tiny(num_labels=3, input_dims=DIMS)).eval()
    samples = _samples(rng)
    batch = collate(samples)
    before = model.predict(batch).probs
    model.fit_input_statistics(s.features for s in samples)
    after = model.predict(batch).probs
    assert not torch.allclose(before, after)
    spec = FeatureSpec(**{m: ModalitySpec("synthetic", d) for m, d in DIMS.items()})
    path = save_checkpoint(tmp_path / "m.safetensors", model, ["a", "b", "c"], spec)
    loaded, _ = load_checkpoint(path)
    assert torch.equal(loaded.standardize.mean_audio, model.standardize.mean_audio)
    assert torch.allclose(loaded.predict(batch).probs, after)
