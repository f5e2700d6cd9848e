"""`mmer analyze` on bad input: every case fails alone with a one-line reason (exit 1), or, for a
bad checkpoint or option, stops with exit 2 -- never a traceback.

Media cases run once through the library (one analyzer for all files); the CLI and a real
subprocess check exit codes and stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from mmer.analysis import AnalyzeOptions, ClipFailure, ClipResult, analyze
from mmer.cli.app import app
from tests.conftest import LABELS, REPO, SAMPLE, SHARED, tiny_checkpoint
from tests.privileges import shared_tmpdir, unprivileged

pytestmark = pytest.mark.slow  # real extractor networks, shipped models or many training runs

needs_shared = pytest.mark.skipif(not (SHARED / "media").is_dir(), reason="../shared/media not available")

runner = CliRunner()


def write_video(path: Path, seconds: float, fps: int = 10, size=(128, 72), audio: np.ndarray | None = None,
                options: dict | None = None) -> Path:
    """A plain grey video (no face) of `seconds`; `audio`: optional (N,) float32 mono at 16 kHz."""
    width, height = size
    with av.open(str(path), "w", options=options or {}) as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        stream = None
        if audio is not None:
            stream = container.add_stream("aac", rate=16_000)
            stream.layout = "mono"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 90 + i % 50, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if stream is not None:
            for start in range(0, len(audio), 1024):
                chunk = audio[start:start + 1024].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="flt", layout="mono")
                frame.sample_rate, frame.pts = 16_000, start
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Every bad (and odd) input, made in a temporary folder."""
    root = tmp_path_factory.mktemp("bad-media")
    files = {
        "missing": root / "does_not_exist.mp4",
        "text_as_mp4": root / "notes.mp4",
        "zero_bytes": root / "zero.mp4",
        "truncated_header": root / "cut_header.mp4",
        "no_audio": write_video(root / "no_audio.mp4", 2.0),
        "silence": write_video(root / "silence.mp4", 2.0, audio=np.zeros(32_000, np.float32)),
        "empty_dir": root / "no_media_here",
    }
    files["text_as_mp4"].write_text("this is not a video\n")
    files["zero_bytes"].write_bytes(b"")
    files["truncated_header"].write_bytes(SAMPLE.read_bytes()[:60_000])  # moov atom (at the end) lost
    # a "fast start" file (index first) cut to half: opens fine, the streams end early
    faststart = write_video(root / "faststart.mp4", 6.0, size=(320, 180), audio=np.zeros(96_000, np.float32),
                            options={"movflags": "faststart"})
    files["truncated_streams"] = root / "cut_streams.mp4"
    files["truncated_streams"].write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    faststart.unlink()
    files["empty_dir"].mkdir()
    (files["empty_dir"] / "readme.txt").write_text("no media\n")
    files["png_as_mp4"] = root / "picture.mp4"
    files["one_frame_gif_as_mp4"] = root / "animation.mp4"
    write_picture(files["png_as_mp4"], "PNG")
    write_picture(files["one_frame_gif_as_mp4"], "GIF")
    return files


def write_picture(path: Path, image_format: str) -> Path:
    """A 32x32 still picture (PIL format name), whatever the suffix of `path`."""
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 30, 30)).save(path, format=image_format)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def outcomes(media, checkpoint) -> dict[str, ClipResult | ClipFailure]:
    """All inputs through one `analyze` call (one checkpoint load, one extractor)."""
    names = list(media)
    paths = [media[n] for n in names]
    extra = []
    if (SHARED / "media").is_dir():
        names += ["no_face", "audio_only"]
        extra = [SHARED / "media" / "no_face.mp4", sorted((SHARED / "data" / "emodb" / "wav").glob("*.wav"))[0]]
    results = analyze(paths + extra, AnalyzeOptions(model=str(checkpoint), device="cpu", threads=1, use_cache=False))
    assert len(results) == len(names)
    return dict(zip(names, results))


def failure(outcomes, name: str) -> str:
    outcome = outcomes[name]
    assert isinstance(outcome, ClipFailure), f"{name} should have failed: {outcome}"
    assert "\n" not in outcome.error and outcome.error
    return outcome.error


def present(result: ClipResult) -> dict[str, bool]:
    stats = result.modalities
    return {"visual": stats.face_frames > 0, "audio": stats.seconds > 0, "text": stats.tokens > 0}


# ----------------------------------------------------------------------------- inputs that fail alone


def test_missing_path(outcomes):
    assert failure(outcomes, "missing") == "no such file or folder"


def test_folder_without_media(outcomes):
    assert "folder contains no media files" in failure(outcomes, "empty_dir")


def test_text_file_named_mp4(outcomes):
    assert "not a media file" in failure(outcomes, "text_as_mp4")


def test_zero_byte_file(outcomes):
    assert failure(outcomes, "zero_bytes") == "empty file (0 bytes)"


def test_still_image_named_mp4_is_an_input_error(outcomes):
    assert failure(outcomes, "png_as_mp4") == "a still image (png), not a video or audio recording"


def test_media_without_duration_is_an_input_error(outcomes):
    """A one-picture GIF opens as video, but has no duration and no audio: nothing to analyse."""
    assert failure(outcomes, "one_frame_gif_as_mp4") == "no duration: a single picture and no audio, not a recording"


def test_truncated_mp4_without_its_index(outcomes):
    assert "corrupt, truncated" in failure(outcomes, "truncated_header")


def test_truncated_mp4_whose_streams_end_early(outcomes):
    assert "truncated" in failure(outcomes, "truncated_streams")


def test_unreadable_file_named_or_in_a_folder_fails_alone(checkpoint):
    """Through the CLI in a real process that obeys file permissions: the mode-000 file named on the
    command line and the one inside a folder each fail alone (exit 1); the readable clip is analysed."""
    prefix = unprivileged()
    with shared_tmpdir() as root:
        model = shutil.copy(checkpoint, root / "tiny.safetensors")
        folder = root / "folder"
        folder.mkdir()
        named, inside = root / "locked.mp4", folder / "also_locked.mp4"
        for path in (named, inside):
            path.write_bytes(SAMPLE.read_bytes())
            path.chmod(0)
        readable = shutil.copy(SAMPLE, root / "readable.mp4")
        for path in (folder, model, readable):
            path.chmod(0o755 if path.is_dir() else 0o644)
        proc = subprocess.run([*prefix, sys.executable, "-m", "mmer", "analyze", str(named), str(folder),
                               str(readable), "--model", str(model), "-f", "json", "--no-cache"],
                              cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(root)})
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "Usage:" not in proc.stderr
    data = json.loads(proc.stdout)
    assert [d.get("error") for d in data] == ["permission denied (file is not readable)"] * 2 + [None]
    assert data[2]["file"] == str(readable) and len(data[2]["emotions"]) == len(LABELS)
    assert proc.stderr.splitlines() == [f"mmer: error: {named}: permission denied (file is not readable)",
                                        f"mmer: error: {inside}: permission denied (file is not readable)",
                                        "mmer: 2 of 3 inputs failed"]


# ----------------------------------------------------------------------------- odd inputs that still give a result


def test_video_without_audio_track(outcomes):
    result = outcomes["no_audio"]
    assert isinstance(result, ClipResult)
    assert present(result) == {"visual": False, "audio": False, "text": False}
    assert "no audio track: audio and text features absent" in result.warnings
    assert len(result.emotions) == 7 and all(0 <= e.probability <= 1 for e in result.emotions)


def test_silence_gives_an_empty_transcript(outcomes):
    result = outcomes["silence"]
    assert isinstance(result, ClipResult)
    assert result.transcript == "" and result.modalities.tokens == 0
    assert result.modalities.seconds == pytest.approx(2.0, abs=0.1)
    assert any("silence" in w for w in result.warnings)


@needs_shared
def test_video_without_a_face(outcomes):
    result = outcomes["no_face"]
    assert isinstance(result, ClipResult)
    assert result.modalities.frames > 0 and result.modalities.face_frames == 0
    assert present(result)["visual"] is False and present(result)["audio"] is True
    assert any(w.startswith("no face found") for w in result.warnings)


@needs_shared
def test_audio_only_file(outcomes):
    result = outcomes["audio_only"]
    assert isinstance(result, ClipResult)
    assert result.modalities.frames == 0 and present(result)["audio"]
    assert "no video stream: visual features absent" in result.warnings
    assert result.duration_s == pytest.approx(2.0, abs=0.05)


def _peak_rss_decoding(video: Path) -> tuple[int, int]:
    """(sampled frames, peak RSS in kB) of a fresh process that streams `video` through the decoder.
    VmHWM is per address space; ru_maxrss would also count the forking parent's pages."""
    code = (
        "import sys\n"
        "from mmer.extractors.media import MediaReader, probe_media\n"
        "reader = MediaReader(probe_media(sys.argv[1]), fps=5.0, max_side_px=320, batch_frames=16)\n"
        "largest = max(len(b.frames) for b in reader.frame_batches())\n"
        "assert largest <= 16, largest\n"
        "peak = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:'))\n"
        "print(reader.frames_sampled, peak)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(video)], cwd=REPO, capture_output=True, text=True, check=True)
    frames, kb = out.stdout.split()
    return int(frames), int(kb)


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc for peak RSS")
def test_very_long_video_decodes_in_flat_memory(tmp_path):
    """A 20x longer video must not need more memory: sampled frames are streamed in batches.
    Holding the long video's 1,200 sampled 320x180 frames would add about 200 MB."""
    short = write_video(tmp_path / "short.mp4", 12.0, fps=5, size=(320, 180))
    long = write_video(tmp_path / "long.mp4", 240.0, fps=5, size=(320, 180))
    short_frames, short_kb = _peak_rss_decoding(short)
    long_frames, long_kb = _peak_rss_decoding(long)
    assert (short_frames, long_frames) == (60, 1200)
    assert long_kb - short_kb < 25_000, f"peak RSS grew by {(long_kb - short_kb) / 1024:.0f} MB"


# ----------------------------------------------------------------------------- CLI: exit codes, one-line errors


def test_cli_reports_every_failure_and_exits_1(media, checkpoint):
    result = runner.invoke(app, ["analyze", str(media["zero_bytes"]), str(media["missing"]),
                                 "--model", str(checkpoint), "-f", "json", "--no-cache"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data == [{"file": str(media["zero_bytes"]), "error": "empty file (0 bytes)"},
                    {"file": str(media["missing"]), "error": "no such file or folder"}]
    assert result.stderr.splitlines() == [f"mmer: error: {media['zero_bytes']}: empty file (0 bytes)",
                                          f"mmer: error: {media['missing']}: no such file or folder",
                                          "mmer: 2 of 2 inputs failed"]


def _bad_checkpoints(root: Path, good: Path) -> dict[str, Path]:
    from safetensors.torch import save_file
    import torch

    paths = {"random_bytes": root / "random.safetensors", "truncated": root / "truncated.safetensors",
             "no_metadata": root / "plain.safetensors", "folder": root / "a_folder"}
    paths["random_bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    paths["truncated"].write_bytes(good.read_bytes()[:2000])
    save_file({"w": torch.zeros(2)}, str(paths["no_metadata"]))
    paths["folder"].mkdir()
    return paths


@pytest.mark.parametrize("kind", ["random_bytes", "truncated", "no_metadata", "folder", "unknown_name"])
def test_corrupt_or_wrong_checkpoint_exits_2(kind, checkpoint, tmp_path):
    model = "no-such-model" if kind == "unknown_name" else str(_bad_checkpoints(tmp_path, checkpoint)[kind])
    result = runner.invoke(app, ["analyze", str(SAMPLE), "--model", model])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmer: error: ")
    assert result.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--threads", "0"], "--threads must be >= 1"),
    (["--window", "0"], "--window must be > 0 seconds (a finite number), got 0"),
    (["--window", "-1"], "--window must be > 0 seconds (a finite number), got -1"),
    (["--window", "nan"], "--window must be > 0 seconds (a finite number), got nan"),
    (["--window", "inf"], "--window must be > 0 seconds (a finite number), got inf"),
    (["--fps", "inf"], "--fps must be > 0 (a finite number), got inf"),
    (["--device", "tpu"], "--device must be one of auto, cpu, cuda"),
    (["--transcript", "nope.srt"], "--transcript nope.srt: file not found"),
])
def test_bad_options_exit_2(args, message, checkpoint):
    result = runner.invoke(app, ["analyze", str(SAMPLE), "--model", str(checkpoint), *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"mmer: error: {message}")
    assert len(result.stderr.strip().splitlines()) == 1


def test_transcript_with_several_clips_exits_2(checkpoint, media):
    result = runner.invoke(app, ["analyze", str(SAMPLE), str(media["no_audio"]), "--model", str(checkpoint),
                                 "--transcript", str(SAMPLE.with_suffix(".srt"))])
    assert result.exit_code == 2
    assert "--transcript applies to a single clip" in result.stderr


def test_unknown_format_is_a_usage_error(checkpoint):
    result = runner.invoke(app, ["analyze", str(SAMPLE), "--model", str(checkpoint), "-f", "xml"])
    assert result.exit_code == 2


def _mmer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmer", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


def test_real_process_bad_media_exit_1_without_traceback(media, checkpoint):
    proc = _mmer("analyze", str(media["text_as_mp4"]), str(media["truncated_header"]), str(media["empty_dir"]),
                 str(media["png_as_mp4"]), "--model", str(checkpoint), "-f", "json", "--no-cache")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert [set(o) for o in json.loads(proc.stdout)] == [{"file", "error"}] * 4
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mmer: error: ")]
    assert len(errors) == 4
    assert errors[3] == f"mmer: error: {media['png_as_mp4']}: a still image (png), not a video or audio recording"


# ----------------------------------------------------------------------------- --transcript checked before media work


def _no_media_work(monkeypatch) -> None:
    import mmer.extractors.pipeline

    monkeypatch.setattr(mmer.extractors.pipeline, "probe_media", lambda *a, **k: pytest.fail("media was probed"))


@pytest.mark.parametrize("content, message", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "transcript is not UTF-8 text (binary file?)"),
    (b"hello\x00world", "transcript is not text (it contains NUL bytes: a binary file?)"),
])
def test_binary_transcript_is_a_usage_error_before_any_media_work(content, message, checkpoint, tmp_path, monkeypatch):
    _no_media_work(monkeypatch)
    transcript = tmp_path / "words.srt"
    transcript.write_bytes(content)
    result = runner.invoke(app, ["analyze", str(SAMPLE), "--model", str(checkpoint), "--transcript", str(transcript)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"mmer: error: {transcript}: {message}"


def test_malformed_subtitles_are_refused_before_any_media_work(checkpoint, tmp_path, monkeypatch):
    _no_media_work(monkeypatch)
    transcript = tmp_path / "words.vtt"
    transcript.write_text("WEBVTT\n\n00:01.000 --> soon\nhello\n")
    result = runner.invoke(app, ["analyze", str(SAMPLE), "--model", str(checkpoint), "--transcript", str(transcript)])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"mmer: error: {transcript}: line 3: bad timestamp 'soon'"


def test_empty_transcript_warns_that_the_words_are_absent(checkpoint, media, tmp_path):
    transcript = tmp_path / "empty.txt"
    transcript.write_text("")
    result = runner.invoke(app, ["analyze", str(media["silence"]), "--model", str(checkpoint), "--no-cache",
                                 "--transcript", str(transcript), "-f", "json"])
    assert result.exit_code == 0, result.output
    [clip] = json.loads(result.stdout)
    assert clip["transcript"] == "" and clip["modalities"]["text"]["tokens"] == 0
    assert "the transcript file has no words: text features absent" in clip["warnings"]


# ----------------------------------------------------------------------------- checkpoints with non-finite values


def _poisoned_checkpoint(good: Path, out: Path, what: str) -> Path:
    """`good` with NaN thresholds (metadata), an infinite weight, or NaN standardisation statistics."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(good), framework="pt") as f:
        meta = json.loads(f.metadata()["mmer"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if what == "threshold":
        meta["thresholds"][2] = float("nan")
    else:
        key = next(k for k in tensors if (k.rsplit(".", 1)[-1].startswith("mean_") if what == "statistics"
                                          else k.endswith("weight")))
        tensors[key][0] = float("nan") if what == "statistics" else float("inf")
    save_file(tensors, str(out), metadata={"mmer": json.dumps(meta)})
    return out


@pytest.mark.parametrize("what, message", [
    ("threshold", "decision threshold of 'fear' is nan, expected a finite number"),
    ("weight", "holds NaN or infinite values"),
    ("statistics", "holds NaN or infinite values"),
])
def test_checkpoint_with_non_finite_values_is_refused_at_load(what, message, checkpoint, tmp_path):
    poisoned = _poisoned_checkpoint(checkpoint, tmp_path / f"{what}.safetensors", what)
    result = runner.invoke(app, ["analyze", str(SAMPLE), "--model", str(poisoned)])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"mmer: error: {poisoned}: ") and message in line


# ----------------------------------------------------------------------------- nothing written outside cache and outputs


def test_analyze_writes_only_its_cache_and_the_requested_outputs(checkpoint, tmp_path):
    """A real run with speech recognition (onnxruntime voice-activity detection), JSON to -o and a
    --plot: HOME, the working folder and the temp folder hold nothing else afterwards."""
    home, work, temp = tmp_path / "home", tmp_path / "work", tmp_path / "tmp"
    for folder in (home, work, temp):
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MMER_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
                                                           "MPLCONFIGDIR", "HF_HOME", "ORT_DISABLE_TELEMETRY")}
    proc = subprocess.run([sys.executable, "-m", "mmer", "analyze", str(SAMPLE), "--model", str(checkpoint),
                           "-f", "json", "-o", str(work / "out.json"), "--window", "3", "--plot", str(work)],
                          cwd=work, capture_output=True, text=True, timeout=300,
                          env={**env, "HOME": str(home), "TMPDIR": str(temp), "OMP_NUM_THREADS": "1",
                               "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert json.loads((work / "out.json").read_text())[0]["transcript"]  # speech recognition ran
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    cache = Path("home", ".cache", "mmer")
    assert [w for w in written if not Path(w).is_relative_to(cache)] == ["work/out.json", "work/sample_joy.png"]
    assert any(w.endswith(".npz") for w in written)  # the feature cache was used
    assert proc.stderr.splitlines() == [f"mmer: plot of {SAMPLE} written to {work / 'sample_joy.png'}",
                                        f"mmer: results written to {work / 'out.json'}"]
