"""`mmer analyze` and its library: results on the sample clip, windows, thresholds, every output
format, --plot, --transcript, model resolution and the feature-spec check.

The checkpoints are tiny random-weight networks built with the real extractor spec: these tests
check the pipeline (media -> features -> model -> typed result -> writers), not accuracy.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from mmer.extractors.pipeline import ExtractionSettings, FeatureExtractor, feature_spec_for
from mmer import analysis
from mmer.analysis import AnalyzeOptions, Analyzer, ClipFailure, ClipResult, analyze, expand_inputs
from mmer.errors import UserError
from mmer.models.checkpoint import save_checkpoint
from mmer.core.feature_spec import FeatureSpecMismatch, ModalitySpec
from mmer.models.registry import build_model, get_entry, model_names

from tests.conftest import LABELS, SAMPLE, SAMPLE_SRT, mmer
from tests.conftest import tiny_checkpoint as shared_tiny_checkpoint

pytestmark = pytest.mark.slow  # real extractor networks, shipped models or many training runs

# Extreme thresholds make the decisions independent of the random weights: p >= 0 is always
# present, p >= 1.01 never; the middle ones exercise real comparisons.
THRESHOLDS = [0.0, 0.0, 0.3, 0.5, 0.7, 1.01, 1.01]
JSON_KEYS = {"file", "model", "duration_s", "signal", "predicted", "emotions", "by_modality", "transcript",
             "modalities", "timings_s", "warnings"}


def tiny_checkpoint(path: Path, model: str = "lddu", spec=None, seed: int = 0) -> Path:
    """conftest's tiny checkpoint with this file's THRESHOLDS."""
    return shared_tiny_checkpoint(path, model, spec, THRESHOLDS, seed)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("analyze")


@pytest.fixture(scope="module")
def feature_cache(workdir):
    """A private feature cache for the whole module (CLI runs find it through MMER_CACHE_DIR)."""
    directory = workdir / "feature-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MMER_CACHE_DIR", str(directory))
        yield directory


@pytest.fixture(scope="module")
def checkpoint(workdir):
    return tiny_checkpoint(workdir / "tiny_lddu.safetensors")


@pytest.fixture(scope="module")
def analyzer(checkpoint, feature_cache):
    return Analyzer(AnalyzeOptions(model=str(checkpoint), device="cpu", threads=1, window_s=2.0,
                                   cache_dir=feature_cache))


@pytest.fixture(scope="module")
def sample_result(analyzer) -> ClipResult:
    """The sample clip analysed once (real extraction; fills the module's feature cache)."""
    return analyzer.analyze_file(SAMPLE)


def cli(*args: str):
    return mmer("analyze", *args)


# ----------------------------------------------------------------------------- library


def test_sample_clip_result_reports_every_modality(sample_result):
    r = sample_result
    assert r.file == str(SAMPLE) and r.model == "lddu"
    assert 5.5 < r.duration_s < 6.5
    assert r.modalities.frames >= 25 and r.modalities.face_frames >= 0.8 * r.modalities.frames
    assert 5.5 < r.modalities.seconds < 6.5 and r.modalities.voiced > 1.0
    assert r.modalities.tokens > 5
    assert "happy" in r.transcript.lower()  # espeak-ng speech recognised by the packaged ASR model
    assert r.warnings == []
    for stage in ("decode", "face", "acoustic", "asr", "text", "model"):
        assert stage in r.timings_s and r.timings_s[stage] >= 0.0


def test_decisions_use_the_checkpoint_thresholds(sample_result):
    assert [e.label for e in sample_result.emotions] == LABELS
    for emotion, threshold in zip(sample_result.emotions, THRESHOLDS):
        assert 0.0 <= emotion.probability <= 1.0 and 0.0 <= emotion.uncertainty <= 1.0
        assert emotion.present == (emotion.probability >= threshold)
    assert {"anger", "disgust"} <= set(sample_result.predicted)
    assert not {"sadness", "surprise"} & set(sample_result.predicted)


def test_windows_tile_the_clip_and_differ_from_the_whole(sample_result):
    segments = sample_result.segments
    assert len(segments) == 3  # 6.0 s in windows of 2 s
    assert segments[0].start_s == 0.0 and segments[-1].end_s == pytest.approx(sample_result.duration_s)
    for before, after in zip(segments, segments[1:]):
        assert before.end_s == pytest.approx(after.start_s)
    for s in segments:
        assert [e.label for e in s.emotions] == LABELS
        assert s.predicted == [e.label for e, t in zip(s.emotions, THRESHOLDS) if e.probability >= t]
    # each window sees a different part of the clip, so the network's outputs differ
    window_probs = np.array([[e.probability for e in s.emotions] for s in segments])
    whole = np.array([e.probability for e in sample_result.emotions])
    assert not np.allclose(window_probs, whole[None, :], atol=1e-6)


def test_long_clips_reach_the_network_in_bounded_pieces(analyzer, sample_result, monkeypatch):
    """With the piece length lowered to 2 s, the 6 s sample is a "long" clip: the network never
    sees more than one piece at once, and the whole-clip result is the duration-weighted mean of
    the pieces, i.e. of the 2 s windows (before the clip is made to agree with its windows, which
    is left out here: test_clip_and_windows)."""
    monkeypatch.setattr(analysis, "consistent_with_windows", lambda clip, segments, duration_s: clip)
    monkeypatch.setattr(analysis, "MAX_SPAN_S", 3.0)
    monkeypatch.setattr(analysis, "CHUNK_S", 2.0)
    monkeypatch.setattr(analysis, "MEDIA_S_PER_BATCH", 4.0)
    seen = []
    original = Analyzer._predict

    def spy(self, feature_sets, only=None):
        seen.append([fs.features["visual"].shape[0] for fs in feature_sets])
        return original(self, feature_sets, only)

    monkeypatch.setattr(Analyzer, "_predict", spy)
    chunked = analyzer.analyze_file(SAMPLE)  # features come from the module's cache
    assert max(n for batch in seen for n in batch) <= 2.5 * 5  # <= one piece of ~2 s at 5 fps
    assert max(len(batch) for batch in seen) <= 2  # MEDIA_S_PER_BATCH / CHUNK_S pieces per pass
    spans = [(s.start_s, s.end_s) for s in chunked.segments]
    weights = np.array([b - a for a, b in spans])
    windows = np.array([[e.probability for e in s.emotions] for s in chunked.segments])
    expected = (weights[:, None] * windows).sum(axis=0) / weights.sum()
    assert [e.probability for e in chunked.emotions] == pytest.approx(expected.tolist(), abs=1e-6)
    # the segments themselves are unchanged by the piece length (each is shorter than MAX_SPAN_S)
    assert windows == pytest.approx(np.array([[e.probability for e in s.emotions] for s in sample_result.segments]))


def test_cache_hit_gives_the_same_result(analyzer, sample_result):
    again = analyzer.analyze_file(SAMPLE)
    assert "cache" in again.timings_s and "asr" not in again.timings_s
    assert again.transcript == sample_result.transcript
    assert [e.probability for e in again.emotions] == pytest.approx([e.probability for e in sample_result.emotions])


def test_a_window_longer_than_the_clip_gives_one_segment(checkpoint, feature_cache):
    options = AnalyzeOptions(model=str(checkpoint), device="cpu", window_s=60.0, cache_dir=feature_cache)
    [result] = analyze([SAMPLE], options)
    assert [(s.start_s, s.end_s) for s in result.segments] == [(0.0, pytest.approx(result.duration_s))]


def test_transcript_file_replaces_speech_recognition(checkpoint, feature_cache):
    options = AnalyzeOptions(model=str(checkpoint), device="cpu", transcript=SAMPLE_SRT, cache_dir=feature_cache)
    [result] = analyze([SAMPLE], options)
    assert result.transcript == Path(SAMPLE.with_suffix(".txt")).read_text().strip()
    assert result.segments is None


def test_folders_expand_to_sorted_media_files(tmp_path):
    for name in ("b.mp4", "a.wav", "notes.txt", ".hidden.mp4", "sub/c.mov"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()
    expanded = expand_inputs([tmp_path, tmp_path / "empty", tmp_path / "nope.mp4"])
    files = [p for p in expanded if isinstance(p, Path)]
    assert files == [tmp_path / "a.wav", tmp_path / "b.mp4", tmp_path / "sub" / "c.mov"]
    failures = [f for f in expanded if isinstance(f, ClipFailure)]
    assert [Path(f.file).name for f in failures] == ["empty", "nope.mp4"]
    assert "no media files" in failures[0].error and "no such file" in failures[1].error


@pytest.mark.parametrize("name", model_names())
def test_every_registered_model_analyses_the_sample(name, workdir, feature_cache, sample_result):
    path = tiny_checkpoint(workdir / f"tiny_{name}_all.safetensors", model=name, seed=1)
    # windows of 2 s: those the clip agrees with when none are asked for (a 6 s clip's automatic ones)
    [result] = analyze([SAMPLE], AnalyzeOptions(model=str(path), device="cpu", window_s=2.0, cache_dir=feature_cache))
    assert result.model == name
    assert len(result.emotions) == 7 and len(result.segments) == 3
    assert all(0.0 <= e.probability <= 1.0 and 0.0 <= e.uncertainty <= 1.0 for e in result.emotions)
    [plain] = analyze([SAMPLE], AnalyzeOptions(model=str(path), device="cpu", cache_dir=feature_cache))
    assert plain.segments is None
    assert [e.probability for e in plain.emotions] == pytest.approx([e.probability for e in result.emotions], abs=1e-6)
    assert [e.uncertainty for e in plain.emotions] == pytest.approx([e.uncertainty for e in result.emotions], abs=1e-6)


def test_shipped_default_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(analysis, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(UserError, match=r"shipped default 'lddu' model is not installed.*--model PATH"):
        analysis.resolve_checkpoint("lddu")
    (tmp_path / "lamb_default.safetensors").write_bytes(b"stand-in")
    assert analysis.resolve_checkpoint("lamb") == tmp_path / "lamb_default.safetensors"
    with pytest.raises(UserError, match="neither a model name"):
        analysis.resolve_checkpoint(str(tmp_path / "nothing.safetensors"))


def test_spec_mismatch_is_refused_before_any_extraction(tmp_path, monkeypatch):
    spec = feature_spec_for(ExtractionSettings())
    other = type(spec)(text=spec.text, audio=ModalitySpec("compare-lld", 65, 100.0, "x"), visual=spec.visual)
    path = tiny_checkpoint(tmp_path / "other.safetensors", spec=other)

    def boom(self, p):
        raise AssertionError("extraction must not start")

    monkeypatch.setattr(FeatureExtractor, "extract", boom)
    with pytest.raises(FeatureSpecMismatch, match=r"other features.*audio extractor: model expects 'compare-lld'"):
        analyze([SAMPLE], AnalyzeOptions(model=str(path), device="cpu"))


def test_a_checkpoint_of_the_old_face_crop_is_refused_with_a_hint(tmp_path, monkeypatch):
    """Visual layout 3 reads faces from a new crop: a checkpoint made for the old one is refused,
    and the message says what changed and what to do."""
    spec = feature_spec_for(ExtractionSettings())
    old_visual = ModalitySpec(spec.visual.extractor, spec.visual.dim, spec.visual.frame_rate_hz,
                              spec.visual.version.rsplit("/", 1)[0] + "/2")
    path = tiny_checkpoint(tmp_path / "old_face.safetensors", spec=type(spec)(text=spec.text, audio=spec.audio,
                                                                               visual=old_visual))
    monkeypatch.setattr(FeatureExtractor, "extract", lambda self, p: pytest.fail("extraction must not start"))
    with pytest.raises(FeatureSpecMismatch, match=r"upright crop.*fit_face_reading.*visual version: model expects .*/2'"):
        analyze([SAMPLE], AnalyzeOptions(model=str(path), device="cpu"))


# ----------------------------------------------------------------------------- CLI


def test_cli_json_follows_the_contract(checkpoint, sample_result, tmp_path):
    result = cli(str(SAMPLE), str(tmp_path / "missing.mp4"), "--model", str(checkpoint), "-f", "json",
                 "--window", "2", "--threads", "1")
    assert result.exit_code == 1, result.output  # one input failed, the other is still reported
    data = json.loads(result.stdout)
    assert len(data) == 2
    clip, failure = data
    assert set(clip) == JSON_KEYS | {"segments"}
    assert clip["file"] == str(SAMPLE) and clip["model"] == "lddu"
    assert [e["label"] for e in clip["emotions"]] == LABELS
    assert set(clip["emotions"][0]) == {"label", "probability", "present", "uncertainty"}
    assert clip["predicted"] == sample_result.predicted
    assert clip["transcript"] == sample_result.transcript
    assert set(clip["modalities"]) == {"visual", "audio", "text"}
    assert set(clip["modalities"]["visual"]) == {"frames", "face_frames", "usable_face_frames"}
    assert clip["modalities"]["visual"]["usable_face_frames"] <= clip["modalities"]["visual"]["face_frames"]
    assert set(clip["modalities"]["audio"]) == {"seconds", "voiced"}
    assert set(clip["modalities"]["text"]) == {"tokens", "words_trust"}
    assert "model" in clip["timings_s"]
    assert [set(s) for s in clip["segments"]] == [{"start_s", "end_s", "signal", "emotions", "predicted", "by_modality",
                                                   "warnings"}] * 3
    for evidence in [clip["by_modality"], *(s["by_modality"] for s in clip["segments"])]:
        assert set(evidence) == {"visual", "audio", "text"}
        for probs in evidence.values():
            assert probs is None or (set(probs) == set(LABELS) and all(0 <= p <= 1 for p in probs.values()))
    # the sample has a face, a voice and words: each stream alone gives its own reading
    assert all(clip["by_modality"][m] is not None for m in ("visual", "audio", "text"))
    assert clip["by_modality"]["text"] != clip["by_modality"]["audio"]
    assert failure == {"file": str(tmp_path / "missing.mp4"), "error": "no such file or folder"}
    assert result.stderr.strip().splitlines()[0] == f"mmer: error: {tmp_path / 'missing.mp4'}: no such file or folder"


def test_cli_json_without_window_has_no_segments(checkpoint, sample_result):
    result = cli(str(SAMPLE), "--model", str(checkpoint), "--format", "json")
    assert result.exit_code == 0, result.output
    [clip] = json.loads(result.stdout)
    assert set(clip) == JSON_KEYS
    # same cached features, and the clip agrees with the same windows (a 6 s clip's automatic ones are 2 s)
    assert [e["probability"] for e in clip["emotions"]] == pytest.approx(
        [e.probability for e in sample_result.emotions], abs=1e-4)


CSV_HEADER = ["scope", "file", "start_s", "end_s", *LABELS, *(f"uncertainty_{label}" for label in LABELS), "predicted", "transcript",
              *(f"{m}_{label}" for m in ("visual", "audio", "text") for label in LABELS)]


def test_cli_csv_has_probability_and_uncertainty_columns_per_emotion(checkpoint, sample_result, tmp_path):
    out = tmp_path / "results.csv"
    result = cli(str(SAMPLE), str(tmp_path / "gone.wav"), "--model", str(checkpoint), "-f", "csv", "-o", str(out))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "gone.wav: no such file" in result.stderr
    assert f"mmer: results written to {out}" in result.stderr.splitlines()
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == CSV_HEADER
    assert float(rows[0]["text_joy"]) == pytest.approx(sample_result.by_modality["text"]["joy"], abs=1e-4)
    assert len(rows) == 1
    assert float(rows[0]["joy"]) == pytest.approx(sample_result.emotions[3].probability, abs=1e-4)
    assert float(rows[0]["uncertainty_joy"]) == pytest.approx(sample_result.emotions[3].uncertainty, abs=1e-4)
    assert rows[0]["scope"] == "clip" and float(rows[0]["end_s"]) == pytest.approx(sample_result.duration_s, abs=1e-3)
    assert rows[0]["predicted"] == (";".join(sample_result.predicted) or "none")
    assert rows[0]["transcript"] == sample_result.transcript


def test_cli_table_shows_emotions_transcript_and_windows(checkpoint, sample_result):
    result = cli(str(SAMPLE), "--model", str(checkpoint), "--window", "2")
    assert result.exit_code == 0, result.output
    for label in LABELS:
        assert label in result.stdout
    assert "windows" in result.stdout
    assert sample_result.transcript.split()[0] in result.stdout


def test_cli_csv_keeps_its_columns_when_every_input_failed(checkpoint, tmp_path):
    result = cli(str(tmp_path / "gone.wav"), "--model", str(checkpoint), "-f", "csv")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [",".join(CSV_HEADER)]  # the labels come from the checkpoint


def test_cli_plot_writes_a_png_per_clip(checkpoint, sample_result, tmp_path):
    plot = tmp_path / "timeline.png"
    result = cli(str(SAMPLE), "--model", str(checkpoint), "--window", "1", "--plot", str(plot), "-f", "json")
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert len(json.loads(result.stdout)[0]["segments"]) == 6
    assert result.stderr.splitlines() == [f"mmer: plot of {SAMPLE} written to {plot}"]


def test_cli_plot_into_a_folder_writes_one_png_per_clip_inside_it(checkpoint, sample_result, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (clips / name).write_bytes(SAMPLE.read_bytes())
    plots = tmp_path / "plots"
    plots.mkdir()
    result = cli(str(clips), "--model", str(checkpoint), "--window", "3", "--plot", str(plots), "-f", "json")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in plots.iterdir()) == ["a.png", "b.png"]
    assert not list(tmp_path.glob("*.png"))  # nothing beside the folder
    assert result.stderr.splitlines() == [f"mmer: plot of {clips / n}.mp4 written to {plots / n}.png" for n in "ab"]


@pytest.mark.parametrize("option", ["--output", "--plot"])
def test_cli_outputs_into_a_missing_folder_fail_before_any_analysis(option, checkpoint, tmp_path, monkeypatch):
    from mmer import analysis

    monkeypatch.setattr(analysis, "analyze", lambda *a, **k: pytest.fail("analysis ran"))
    target = tmp_path / "no" / "such" / "folder" / "out.png"
    result = cli(str(SAMPLE), "--model", str(checkpoint), "--window", "2", option, str(target))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"mmer: error: {option} {target}: folder {target.parent} does not exist (create it first)"
    assert not (tmp_path / "no").exists()


def test_cli_output_that_is_a_folder_is_refused(checkpoint, tmp_path):
    result = cli(str(SAMPLE), "--model", str(checkpoint), "-o", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"mmer: error: --output {tmp_path}: is a folder, expected a file name"


def test_cli_plot_needs_a_window(checkpoint, tmp_path):
    result = cli(str(SAMPLE), "--model", str(checkpoint), "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 2
    assert result.stderr.strip() == "mmer: error: --plot needs per-window results: pass --window SECONDS too"
    assert not (tmp_path / "p.png").exists()


def test_cli_fps_other_than_the_checkpoint_is_a_spec_mismatch(checkpoint):
    result = cli(str(SAMPLE), "--model", str(checkpoint), "--fps", "10")
    assert result.exit_code == 2
    assert "visual frame_rate_hz: model expects 5.0, features have 10.0" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_modalities_a_checkpoint_was_not_trained_on_are_ignored(workdir, feature_cache, sample_result):
    """A checkpoint recording trained_modalities without "visual" never searches the clip for a
    face, and predicts exactly as a checkpoint that uses every stream does when no face is found;
    the result says so in the warnings."""
    import torch

    spec = feature_spec_for(ExtractionSettings())
    torch.manual_seed(3)
    network = build_model("lddu", get_entry("lddu").config_class.tiny(len(LABELS), spec.dims))
    no_face = save_checkpoint(workdir / "no_face.safetensors", network, LABELS, spec, THRESHOLDS,
                              extra={"trained_modalities": ["text", "audio"]})
    all_three = save_checkpoint(workdir / "all_three.safetensors", network, LABELS, spec, THRESHOLDS)
    ignoring = Analyzer(AnalyzeOptions(model=str(no_face), device="cpu", threads=1, cache_dir=feature_cache))
    using = Analyzer(AnalyzeOptions(model=str(all_three), device="cpu", threads=1, cache_dir=feature_cache))
    assert ignoring.ignored_modalities == ["visual"] and using.ignored_modalities == []
    features = using.extractor.extract(SAMPLE)
    assert features.present("visual")
    without_face = type(features)(
        features={**features.features, "visual": features.features["visual"][:0]},
        times={**features.times, "visual": features.times["visual"][:0]}, spec=features.spec)
    p_ignoring, _ = ignoring._predict([features])
    p_no_face, _ = using._predict([without_face])
    p_using, _ = using._predict([features])
    np.testing.assert_allclose(p_ignoring, p_no_face, rtol=0, atol=1e-6)
    assert not np.allclose(p_ignoring, p_using)
    result = ignoring.analyze_file(SAMPLE)
    assert any("visual stream not used" in w for w in result.warnings)
    assert result.modalities.face_frames == 0 and result.by_modality["visual"] is None  # never searched
    assert not {"faces", "expression"} & set(ignoring.extractor.loaded_models)


def test_a_voice_only_checkpoint_never_reads_the_face_or_the_words(workdir, feature_cache):
    """trained_modalities ["audio"]: on a clip with a face and speech, neither the face detector nor
    the expression network, speech recogniser or text encoder is loaded; only the voice is read."""
    import torch

    spec = feature_spec_for(ExtractionSettings())
    torch.manual_seed(4)
    network = build_model("lamb", get_entry("lamb").config_class.tiny(len(LABELS), spec.dims))
    voice = save_checkpoint(workdir / "voice_only.safetensors", network, LABELS, spec, THRESHOLDS,
                            extra={"trained_modalities": ["audio"]})
    analyzer = Analyzer(AnalyzeOptions(model=str(voice), device="cpu", threads=1, cache_dir=feature_cache))
    result = analyzer.analyze_file(SAMPLE)
    assert set(analyzer.extractor.loaded_models) <= {"vad", "acoustic"}
    assert result.transcript == "" and result.modalities.face_frames == 0 and result.modalities.tokens == 0
    assert result.by_modality["audio"] is not None
    assert result.by_modality["visual"] is None and result.by_modality["text"] is None
    assert sum("stream not used" in w for w in result.warnings) == 2


def test_analyze_reuses_the_features_of_an_extract_cache(workdir, feature_cache, tmp_path):
    """--features CACHE: a clip the cache holds (same content, same settings, the streams the
    checkpoint reads) is not extracted again and gets the same result; another is extracted."""
    import shutil

    import torch

    from mmer.extraction_jobs import jobs_from_labels_csv, run_extraction

    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(SAMPLE, media / "renamed.mp4")  # found by content, not by name
    (tmp_path / "labels.csv").write_text("file,split,labels\nrenamed.mp4,train,joy\n")
    cache = tmp_path / "cache"
    report = run_extraction(jobs_from_labels_csv(media, tmp_path / "labels.csv"), cache,
                            ExtractionSettings(use_cache=False, modalities=("audio",)), threads=1)
    assert report.written == 1
    spec = feature_spec_for(ExtractionSettings())
    torch.manual_seed(5)
    network = build_model("lddu", get_entry("lddu").config_class.tiny(len(LABELS), spec.dims))
    voice = save_checkpoint(workdir / "voice_for_cache.safetensors", network, LABELS, spec, THRESHOLDS,
                            extra={"trained_modalities": ["audio"]})
    fresh = Analyzer(AnalyzeOptions(model=str(voice), device="cpu", threads=1, use_cache=False)).analyze_file(SAMPLE)
    reusing = Analyzer(AnalyzeOptions(model=str(voice), device="cpu", threads=1, use_cache=False, features=cache))

    def no_extraction(path):
        raise AssertionError("extracted although the cache holds the clip")

    reusing.extractor.extract = no_extraction
    reused = reusing.analyze_file(SAMPLE)
    assert any("features read from the extract cache" in w for w in reused.warnings)
    assert [e.probability for e in reused.emotions] == pytest.approx([e.probability for e in fresh.emotions], abs=1e-6)
    full = tiny_checkpoint(workdir / "all_streams_for_cache.safetensors")  # reads the face too: not in that cache
    needs_more = Analyzer(AnalyzeOptions(model=str(full), device="cpu", threads=1, features=cache,
                                         cache_dir=feature_cache))
    assert needs_more._extracted_before(SAMPLE) is None
    other_spec = feature_spec_for(ExtractionSettings(fps=10.0))
    assert other_spec.mismatches(spec)
    mismatch = save_checkpoint(workdir / "fps10.safetensors", network, LABELS, other_spec, THRESHOLDS)
    with pytest.raises(UserError, match="extracted with other feature settings"):
        Analyzer(AnalyzeOptions(model=str(mismatch), device="cpu", threads=1, features=cache, fps=10.0))
