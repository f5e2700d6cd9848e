"""The shipped default checkpoints (models/weights/*_default.safetensors, made by
recipes/train_default_models.py): integrity, metadata `mmer analyze` relies on, and sane outputs on
a few sentences embedded with the real default text encoder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from mmer.extractors.pipeline import ExtractionSettings, feature_spec_for
from mmer.face_reading import FaceReading
from mmer.stream_fusion import LateFusion
from mmer.models.checkpoint import load_checkpoint, read_checkpoint_info

pytestmark = pytest.mark.slow  # real extractor networks, shipped models or many training runs

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights"
NAMES = ("lddu", "lamb")
LABELS = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
MAX_BYTES = 20 * 1024 * 1024


def _path(name: str) -> Path:
    return WEIGHTS / f"{name}_default.safetensors"


def _sums() -> dict[str, str]:
    lines = (WEIGHTS / "SHA256SUMS").read_text().splitlines()
    return {file: digest for digest, file in (line.split() for line in lines if line.strip())}


@pytest.mark.parametrize("name", NAMES)
def test_file_present_small_and_hash_listed(name):
    path = _path(name)
    assert path.is_file(), f"{path} missing (python recipes/train_default_models.py)"
    assert path.stat().st_size <= MAX_BYTES
    assert _sums()[path.name] == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_metadata_matches_default_extraction(name):
    info, _ = read_checkpoint_info(_path(name))
    assert info.model_name == name
    assert info.label_names == LABELS
    expected = feature_spec_for(ExtractionSettings())
    assert info.feature_spec.to_dict() == expected.to_dict()
    assert not info.feature_spec.mismatches(expected)
    assert info.extra["trained_modalities"] == ["text", "audio", "visual"]
    assert len(info.thresholds) == len(LABELS) and all(0.0 < t < 1.0 for t in info.thresholds)


@pytest.mark.parametrize("name", NAMES)
def test_late_fusion_is_calibrated_on_held_out_data(name):
    """The defaults carry their late fusion: a temperature and a measured reliability per stream,
    the face's measured on real faces (London development photographs) and no higher than the
    other streams', thresholds per label; and the face's own reading fitted on those photographs."""
    info, _ = read_checkpoint_info(_path(name))
    fusion = LateFusion.from_dict(info.extra["fusion"])
    assert set(fusion.streams) == {"text", "audio", "visual"}
    text, audio, visual = (fusion.streams[m] for m in ("text", "audio", "visual"))
    assert 0 < text.reliability <= 1 and 0 < audio.reliability <= 1
    assert 0 < visual.reliability <= min(text.reliability, audio.reliability) and "London" in visual.basis
    assert all(0.1 < c.temperature < 10 for c in (text, audio, visual))
    face = FaceReading.from_dict(info.extra["face_reading"], len(LABELS), info.feature_spec.visual.dim)
    assert [LABELS[k] for k in face.labels] == ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert 0.0 <= face.share <= 1.0 and "development" in face.basis
    # Real faces inform neutral vs happy only: the other five FER classes keep bias 0.
    assert [b for k, b in enumerate(face.bias) if LABELS[face.labels[k]] not in ("happy", "neutral")] == [0.0] * 5
    assert len(fusion.thresholds) == len(LABELS) and all(0.0 < t < 1.0 for t in fusion.thresholds)
    # The voice is mixed with its summary head over the six labels EmoDB has; the network keeps a share.
    assert set(fusion.heads) == {"audio"}
    head = fusion.heads["audio"]
    assert sorted(head.labels) == sorted(LABELS.index(n) for n in LABELS if n != "surprise")
    assert 0.5 <= head.share < 1.0 and "validation" in head.basis


@pytest.mark.parametrize("name", NAMES)
def test_input_standardisation_fitted_on_every_stream(name):
    """The recipe fits the input statistics on its training pools: the training comments, the
    training speakers' utterances and synthetic face sequences; none keeps the identity."""
    model, _ = load_checkpoint(_path(name))
    s = model.standardize
    for m in ("text", "audio", "visual"):
        assert not np.allclose(getattr(s, f"mean_{m}").numpy(), 0.0), m
        assert not np.allclose(getattr(s, f"std_{m}").numpy(), 1.0), m
        assert (getattr(s, f"std_{m}").numpy() > 0).all(), m


@pytest.fixture(scope="module")
def encoder():
    from mmer.extractors.text import TextEncoder, encoder_info

    return TextEncoder(encoder_info(None), "cpu")


def _text_batch(encoder, sentences: list[str]):
    """Text-only batch (audio and visual absent), features from the real default text encoder."""
    from mmer.extractors.speech import spread_words
    from mmer.datasets.base import Sample, collate

    spec = feature_spec_for(ExtractionSettings())
    samples = []
    for i, sentence in enumerate(sentences):
        text, _ = encoder.encode(spread_words(sentence, 0.0, 1.0))
        samples.append(Sample({"text": text, "audio": np.zeros((0, spec.audio.dim), np.float32),
                               "visual": np.zeros((0, spec.visual.dim), np.float32)},
                              np.zeros(len(LABELS), np.float32), i))
    return collate(samples)


ANGRY = "I am so furious with you, this is outrageous and it makes me really angry!"
HAPPY = "Thank you so much, I love this, it made my day and I am so happy!"
SAD = "I miss her so much, I cried all night, I feel so lonely and sad."


@pytest.mark.parametrize("name", NAMES)
def test_outputs_on_fixed_sentences(name, encoder):
    model, info = load_checkpoint(_path(name))
    prediction = model.predict(_text_batch(encoder, [ANGRY, HAPPY, SAD]))
    probs, unc = prediction.probs.numpy(), prediction.uncertainty.numpy()
    assert probs.shape == unc.shape == (3, len(LABELS))
    assert np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all()
    assert np.isfinite(unc).all() and ((unc >= 0) & (unc <= 1)).all()
    # The angry and the happy sentence score highest, among the three, on their own emotion.
    # (Not asserted for the sad sentence: the shipped LAMB gives the angry one a higher "sad".)
    for row, label in ((0, "anger"), (1, "happy")):
        j = LABELS.index(label)
        others = [probs[r, j] for r in range(3) if r != row]
        assert probs[row, j] > max(others), (label, probs[:, j])
    happy = LABELS.index("happy")
    assert probs[1].argmax() == happy and probs[1, happy] > info.thresholds[happy]
