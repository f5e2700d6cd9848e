"""`mmer extract` and its library: labels CSV formats, cache contents, failures report, resume after
an interruption, corpus recipes and the worker pool."""

from __future__ import annotations

import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmer.extractors.face import VISUAL_DIM
from mmer.extractors.pipeline import ExtractionSettings, feature_spec_for
from mmer.cli.app import app
from mmer.cli.commands import extract as extract_command_module
from mmer.datasets.extract_cache import load_cache
from mmer.errors import UserError
from mmer.extraction_jobs import REPORT_NAME, jobs_from_labels_csv
from tests.conftest import SHARED

pytestmark = pytest.mark.slow  # real extractor networks, shipped models or many training runs

EMODB = SHARED / "data" / "emodb" / "wav"
needs_emodb = pytest.mark.skipif(not EMODB.is_dir(), reason="../shared/data/emodb not available")

runner = CliRunner()


def write_wav(path: Path, seconds: float = 1.0, rate: int = 16_000) -> Path:
    """Near-silent 16-bit mono WAV (no speech, so no speech model is loaded)."""
    rng = np.random.default_rng(len(path.name))
    samples = (rng.standard_normal(int(seconds * rate)) * 3).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path


def extract(*args: str):
    return runner.invoke(app, ["extract", *args, "--threads", "1"])


def report(cache: Path) -> dict:
    return json.loads((cache / REPORT_NAME).read_text())


# ----------------------------------------------------------------------------- labels CSV


def test_labels_csv_with_one_column_per_emotion(tmp_path):
    (tmp_path / "labels.csv").write_text("file,split,joy,anger\nsub/a.wav,train,1,0\nb.wav,test,1,1\n")
    jobs = jobs_from_labels_csv(tmp_path, tmp_path / "labels.csv")
    assert jobs.label_names == ["joy", "anger"]
    assert [(j.sample_id, j.path, j.split, j.labels.tolist()) for j in jobs.jobs] == [
        ("sub/a.wav", tmp_path / "sub" / "a.wav", "train", [1.0, 0.0]),
        ("b.wav", tmp_path / "b.wav", "test", [1.0, 1.0]),
    ]


def test_labels_csv_with_a_names_column(tmp_path):
    (tmp_path / "labels.csv").write_text('file,split,labels\na.wav,train,joy;surprise\nb.wav,valid,"sadness, joy"\nc.wav,test,\n')
    jobs = jobs_from_labels_csv(tmp_path, tmp_path / "labels.csv")
    assert jobs.label_names == ["joy", "sadness", "surprise"]
    assert [j.labels.tolist() for j in jobs.jobs] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("text, message", [
    ("name,split,joy\na.wav,train,1\n", "missing column(s) file"),
    ("file,split,joy\na.wav,training,1\n", "line 2: split 'training' is not one of train, valid, test"),
    ("file,split,joy\na.wav,train,1\nb.wav,test,yes\n", "line 3: emotion columns must be 0 or 1 (joy='yes')"),
    ("file,split,joy\na.wav,train,1\na.wav,test,0\n", "line 3: file 'a.wav' is listed twice"),
    ("file,split\na.wav,train\n", "no emotions found"),
    ("file,split,joy\n", "no rows"),
])
def test_bad_labels_csv_is_a_one_line_usage_error(tmp_path, text, message):
    (tmp_path / "labels.csv").write_text(text)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        jobs_from_labels_csv(tmp_path, tmp_path / "labels.csv")
    result = extract(str(tmp_path), "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "cache"))
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("args", [
    [],  # neither --labels nor --dataset
    ["--labels", "x.csv", "--dataset", "ravdess"],
    ["--dataset", "ravdess"],  # no --media
])
def test_source_options_must_be_one_of_the_two_forms(tmp_path, args):
    result = extract(*args, "--out", str(tmp_path / "cache"))
    assert result.exit_code == 2
    assert result.stderr.startswith("mmer: error: ")


# ----------------------------------------------------------------------------- extraction runs


ASTRONAUT = SHARED / "media" / "astronaut.png"


def write_face_video(path: Path, seconds: float = 1.0, fps: int = 5) -> Path:
    """A small silent video of a real face (../shared/media/astronaut.png): a usable visual stream
    without any speech model."""
    import av
    import cv2

    if not ASTRONAUT.exists():
        pytest.skip("needs ../shared/media/astronaut.png")
    rgb = cv2.resize(cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGB), (192, 192))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 192, 192, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def quiet_media(tmp_path_factory) -> Path:
    """Three near-silent clips and a labels CSV over them: no usable stream in any."""
    root = tmp_path_factory.mktemp("quiet")
    for name in ("a.wav", "b.wav", "c.wav"):
        write_wav(root / name)
    (root / "labels.csv").write_text("file,split,joy,anger\na.wav,train,1,0\nb.wav,valid,0,1\nc.wav,test,1,1\n")
    return root


@pytest.fixture(scope="module")
def face_media(tmp_path_factory) -> Path:
    """Three silent clips of a face and a labels CSV over them."""
    root = tmp_path_factory.mktemp("faces")
    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write_face_video(root / name)
    (root / "labels.csv").write_text("file,split,joy,anger\na.mp4,train,1,0\nb.mp4,valid,0,1\nc.mp4,test,1,1\n")
    return root


@needs_emodb
def test_extract_speech_clips_with_a_corrupt_one(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    clips = sorted(EMODB.glob("*.wav"))[:2]
    for clip in clips:
        shutil.copy(clip, media / clip.name)
    (media / "broken.wav").write_text("not audio\n")
    (tmp_path / "labels.csv").write_text(
        f"file,split,labels\n{clips[0].name},train,anger\n{clips[1].name},valid,joy;neutral\nbroken.wav,test,anger\n")
    cache = tmp_path / "cache"

    result = extract(str(media), "--labels", str(tmp_path / "labels.csv"), "--out", str(cache))
    assert result.exit_code == 1, result.output
    assert f"mmer: error: {media / 'broken.wav'}: cannot open as media" in result.stderr
    assert "2 written, 0 already cached, 1 failed" in result.stdout
    first = report(cache)
    assert (first["total"], first["written"], first["already_cached"]) == (3, 2, 0)
    assert [f["sample_id"] for f in first["failures"]] == ["broken.wav"]

    data = load_cache(cache)
    assert data.label_names == ["anger", "joy", "neutral"]
    assert data.feature_spec == feature_spec_for(ExtractionSettings())
    assert data.splits["train"].ids == [clips[0].name] and data.splits["valid"].ids == [clips[1].name]
    assert data.splits["valid"].labels.tolist() == [[0, 1, 1]]
    sample = data.splits["train"][0]
    assert sample.features["visual"].shape == (0, VISUAL_DIM)  # audio-only clip
    assert sample.features["audio"].shape[0] > 10
    # German: the English-only recogniser's words fail its own confidence check, so no text features
    assert sample.features["text"].shape[0] == 0

    again = extract(str(media), "--labels", str(tmp_path / "labels.csv"), "--out", str(cache))
    assert again.exit_code == 1  # the corrupt file is tried again and still fails
    second = report(cache)
    assert (second["written"], second["already_cached"], len(second["failures"])) == (0, 2, 1)


def test_interrupted_run_resumes_where_it_stopped(face_media, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    args = [str(face_media), "--labels", str(face_media / "labels.csv"), "--out", str(cache)]
    calls = []

    def interrupt_after_first(self, done, total, file):
        calls.append(file)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(extract_command_module.FileProgress, "__call__", interrupt_after_first)
        stopped = extract(*args)
    assert stopped.exit_code == 130
    assert stopped.stderr.strip() == "mmer: error: interrupted"
    assert len(calls) == 1
    partial = report(cache)
    assert partial["interrupted"] is True and partial["written"] == 1
    assert sum(len(s) for s in load_cache(cache).splits.values()) == 1

    resumed = extract(*args)
    assert resumed.exit_code == 0, resumed.output
    final = report(cache)
    assert (final["written"], final["already_cached"], final["failures"]) == (2, 1, [])
    data = load_cache(cache)
    assert {split: d.ids for split, d in data.splits.items()} == {"train": ["a.mp4"], "valid": ["b.mp4"], "test": ["c.mp4"]}
    assert data.splits["test"].labels.tolist() == [[1, 1]]


def test_clips_without_any_usable_stream_are_counted_not_written(quiet_media, face_media, tmp_path):
    """Silence and a blank screen give no face, no voice and no words: such a clip is reported, never
    written as an empty training sample; the clip with a face next to them is."""
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(quiet_media / "a.wav", media / "quiet.wav")
    write_silent_video(media / "blank.mp4")
    shutil.copy(face_media / "a.mp4", media / "face.mp4")
    (tmp_path / "labels.csv").write_text("file,split,labels\nquiet.wav,train,joy\nblank.mp4,valid,anger\n"
                                         "face.mp4,test,joy\n")
    cache = tmp_path / "cache"
    result = extract(str(media), "--labels", str(tmp_path / "labels.csv"), "--out", str(cache))
    assert result.exit_code == 1, result.output
    assert "1 written, 0 already cached, 0 failed, 2 with no usable stream (not written)" in result.stdout
    assert f"mmer: warning: {media / 'quiet.wav'}: no usable stream, not written (" in result.stderr
    assert "no speech in the audio" in result.stderr and "no face found" in result.stderr
    summary = report(cache)
    assert (summary["written"], summary["failures"]) == (1, [])
    assert sorted(c["sample_id"] for c in summary["no_usable_stream"]) == ["blank.mp4", "quiet.wav"]
    data = load_cache(cache)
    assert {split: d.ids for split, d in data.splits.items() if len(d)} == {"test": ["face.mp4"]}
    assert data.splits["test"][0].features["visual"].shape[0] > 0


def test_cache_of_other_labels_is_refused(quiet_media, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "unrelated.txt").write_text("x")
    result = extract(str(quiet_media), "--labels", str(quiet_media / "labels.csv"), "--out", str(cache))
    assert result.exit_code == 2
    assert "not an mmer feature cache" in result.stderr


def write_silent_video(path: Path, seconds: float = 1.0, fps: int = 5) -> Path:
    """A small grey video without an audio track (only the face detector is needed for it)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((64, 96, 3), 100 + i, np.uint8), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_corpus_recipe_with_worker_processes(tmp_path):
    media = tmp_path / "ravdess"
    media.mkdir()
    # RAVDESS names: modality-channel-emotion-intensity-statement-repetition-actor
    for name in ("01-01-03-01-01-01-01.mp4", "01-01-05-01-01-01-24.mp4"):
        write_face_video(media / name)
    write_silent_video(media / "not-a-ravdess-name.mp4")
    cache = tmp_path / "cache"
    result = extract("--dataset", "ravdess", "--media", str(media), "--out", str(cache), "--workers", "2")
    assert result.exit_code == 0, result.output
    summary = report(cache)
    assert (summary["total"], summary["written"]) == (2, 2)
    assert len(summary["skipped"]) == 1 and "not-a-ravdess-name.mp4" in summary["skipped"][0]
    data = load_cache(cache)
    ids = {split: d.ids for split, d in data.splits.items()}
    assert ids["train"] == ["01-01-03-01-01-01-01"] and ids["test"] == ["01-01-05-01-01-01-24"]
    assert data.splits["train"].labels[0, data.label_names.index("happy")] == 1
    assert data.splits["test"].labels[0, data.label_names.index("anger")] == 1
    assert data.splits["train"][0].features["audio"].shape[0] == 0  # no audio track
