"""Options for speed and scale (issue 12): `--precision` for train/eval/analyze, `--compile`,
`mmer analyze --workers`, `mmer extract --shard K/N` and the merged sharded cache.

Mixed precision is checked against fp32 on the synthetic benchmarks within the tolerances that
docs/training.md states (PROB_TOLERANCE, METRIC_TOLERANCE).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmer.datasets.extract_cache import load_cache
from mmer.errors import UserError
from mmer.evaluation import predict_probs
from mmer.extraction_jobs import ExtractJob, JobList, parse_shard, shard_dir, shard_jobs
from mmer.runtime import Precision, resolve_precision
from mmer.models.checkpoint import load_checkpoint
from tests.conftest import TINY_TRAIN as COMMON
from tests.conftest import mmer as cli
from tests.conftest import ok
from tests import synthetic_benchmarks as sb

pytestmark = pytest.mark.slow  # real extractor networks, shipped models or many training runs

SMALL = (16, 8, 8)
PROB_TOLERANCE = {"bf16": 0.03, "fp16": 0.005}
"""Largest |p - p_fp32| of any label probability of the same checkpoint (docs/training.md)."""
METRIC_TOLERANCE = 0.15
"""Largest |micro-F1 - micro-F1_fp32| after training the same seed in bf16 / fp16 (docs/training.md)."""


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return sb.write_mosei_aligned(tmp_path_factory.mktemp("bench"), SMALL, seq_len=12)


@pytest.fixture(scope="module")
def runs(bench, tmp_path_factory):
    """The same seed trained (3 epochs, LDDU tiny) in fp32 and in bf16: run directory per precision."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for precision in ("fp32", "bf16"):
        out[precision] = root / precision
        ok(cli("train", "--model", "lddu", "--dataset", bench.dataset, "--data", bench.data, *COMMON,
               "--epochs", "3", "--out", out[precision], "--precision", precision))
    return out


def test_resolve_precision_choices_and_errors():
    assert resolve_precision("fp32", torch.device("cpu")).dtype is None
    assert resolve_precision("bf16", torch.device("cpu")).dtype is torch.bfloat16
    assert resolve_precision("fp16", torch.device("cpu")).grad_scaler() is not None
    assert resolve_precision("bf16", torch.device("cpu")).grad_scaler() is None
    with pytest.raises(UserError, match="^precision must be one of fp32, bf16, fp16"):
        resolve_precision("int8", torch.device("cpu"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_predictions_stay_within_tolerance_of_fp32(runs, bench, precision):
    model, _ = load_checkpoint(runs["fp32"] / "best.safetensors")
    test = bench.load().splits["test"]
    reference, _ = predict_probs(model, test, 8, torch.device("cpu"))
    probs, _ = predict_probs(model, test, 8, torch.device("cpu"), precision=Precision(precision, "cpu"))
    difference = np.abs(probs - reference).max()
    assert 0 < difference <= PROB_TOLERANCE[precision]  # > 0: autocast really ran in another format


def test_bf16_training_and_eval_match_fp32_within_tolerance(runs, bench):
    fp32 = json.loads((runs["fp32"] / "test_metrics.json").read_text())
    bf16 = json.loads((runs["bf16"] / "test_metrics.json").read_text())
    assert abs(bf16["micro_f1"] - fp32["micro_f1"]) <= METRIC_TOLERANCE
    assert json.loads((runs["bf16"] / "config.json").read_text())["precision"] == "bf16"
    result = cli("eval", "--dataset", bench.dataset, "--data", bench.data, "--checkpoint",
                 runs["bf16"] / "best.safetensors", "--format", "json", "--device", "cpu", "--threads", "1",
                 "--precision", "bf16")
    ok(result)
    report = json.loads(result.stdout)
    assert report["precision"] == "bf16" and report["micro_f1"] == bf16["micro_f1"]


def test_precision_not_supported_is_a_one_line_error(bench, tmp_path):
    result = cli("eval", "--dataset", bench.dataset, "--data", bench.data, "--checkpoint", tmp_path / "x.safetensors",
                 "--device", "cpu", "--precision", "fp8")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == ["mmer: error: --precision must be one of fp32, bf16, fp16, got 'fp8'"]


def test_fp16_training_scales_the_loss_and_learns(bench, tmp_path):
    ok(cli("train", "--model", "lamb", "--dataset", bench.dataset, "--data", bench.data, *COMMON,
           "--epochs", "2", "--out", tmp_path / "run", "--precision", "fp16"))
    metrics = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert np.isfinite(metrics["micro_f1"])


# ----------------------------------------------------------------------------- shards


def _jobs(n: int) -> JobList:
    return JobList(["joy"], [ExtractJob(f"clip{i:02d}.wav", Path(f"clip{i:02d}.wav"), "train", np.ones(1))
                             for i in reversed(range(n))], skipped=["x.txt: not media"])


def test_shards_are_disjoint_deterministic_and_cover_the_listing():
    shards = [shard_jobs(_jobs(10), k, 3) for k in (1, 2, 3)]
    ids = [[j.sample_id for j in s.jobs] for s in shards]
    assert sorted(sum(ids, [])) == [f"clip{i:02d}.wav" for i in range(10)]
    assert [len(i) for i in ids] == [4, 3, 3]
    assert ids == [[j.sample_id for j in shard_jobs(_jobs(10), k, 3).jobs] for k in (1, 2, 3)]
    assert shards[0].skipped == ["x.txt: not media"] and shards[1].skipped == []
    assert shard_dir(Path("cache"), 3, 12) == Path("cache/shard-03-of-12")
    assert parse_shard("2/8") == (2, 8)
    for bad in ("0/3", "4/3", "3", "a/b"):
        with pytest.raises(UserError, match="^shard must be K/N"):
            parse_shard(bad)


def test_sharded_cache_reads_as_one(tmp_path):
    """Three shards written separately read as the union; training on the folder works."""
    whole = sb.write_cache(tmp_path / "whole", SMALL, 0)
    data = load_cache(whole.data)
    root = tmp_path / "sharded"
    from mmer.datasets.extract_cache import CacheWriter

    for k in (1, 2, 3):
        writer = CacheWriter(shard_dir(root, k, 3), data.label_names, data.feature_spec)
        for split, dataset in data.splits.items():
            for i, sample_id in enumerate(dataset.ids):
                if sum(map(ord, sample_id)) % 3 == k - 1:
                    sample = dataset[i]
                    writer.add(sample_id, split, sample.features, dataset.labels[i])
    merged = load_cache(root)
    for split, dataset in data.splits.items():
        assert sorted(merged.splits[split].ids) == sorted(dataset.ids)
    ok(cli("train", "--model", "lamb", "--dataset", "cache", "--data", root, *COMMON, "--epochs", "1",
           "--out", tmp_path / "run"))


def test_extract_shards_build_one_cache(tmp_path):
    """`mmer extract --shard K/N` for K = 1..N writes N shard folders that read as the whole cache."""
    from tests.test_extract_cli import write_face_video

    names = [f"q{i}.mp4" for i in range(5)]
    for name in names:  # silent face videos: a usable stream without any speech model
        write_face_video(tmp_path / name)
    (tmp_path / "labels.csv").write_text("file,split,joy\n" + "".join(f"{n},train,1\n" for n in names))
    cache = tmp_path / "cache"
    for k in (1, 2):
        ok(cli("extract", tmp_path, "--labels", tmp_path / "labels.csv", "--out", cache, "--shard", f"{k}/2",
               "--threads", "1"))
    assert sorted(p.name for p in cache.iterdir()) == ["shard-1-of-2", "shard-2-of-2"]
    assert len(load_cache(cache / "shard-1-of-2").splits["train"]) == 3
    assert sorted(load_cache(cache).splits["train"].ids) == names
    bad = cli("extract", tmp_path, "--labels", tmp_path / "labels.csv", "--out", cache, "--shard", "3/2")
    assert bad.exit_code == 2 and "--shard must be K/N" in bad.stderr


def test_compiled_training_step_runs(bench, tmp_path, monkeypatch):
    """--compile routes the training forward through torch.compile (dynamo with its eager backend
    here: inductor's C++ code generation takes minutes on this CPU; the wiring is the same)."""
    compiled = []
    real = torch.compile

    def compile_eager(module, **kwargs):
        compiled.append(type(module).__name__)
        return real(module, backend="eager")

    monkeypatch.setattr(torch, "compile", compile_eager)
    ok(cli("train", "--model", "lamb", "--dataset", bench.dataset, "--data", bench.data, *COMMON,
           "--epochs", "1", "--out", tmp_path / "run", "--compile"))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["compile"] is True
    assert compiled == ["LAMB"]


def test_lddu_activation_checkpointing_gives_the_same_step():
    """activation_checkpointing recomputes encoder layers in the backward pass: same loss and
    gradients (dropout on: the recomputation draws the same masks)."""
    import dataclasses

    from mmer.datasets.base import MultimodalDataset, collate
    from mmer.models.lddu import LDDUConfig
    from mmer.models.registry import build_model

    rng = np.random.default_rng(0)
    dims = {"text": 12, "audio": 5, "visual": 7}
    dataset = MultimodalDataset(lambda i: {m: np.random.default_rng(i).standard_normal((9, d), dtype=np.float32)
                                           for m, d in dims.items()}, (rng.random((6, 3)) < 0.5).astype(np.float32))
    batch = collate([dataset[i] for i in range(6)])
    results = []
    for checkpointing in (False, True):
        config = dataclasses.replace(LDDUConfig.tiny(3, dims), dropout=0.3, activation_checkpointing=checkpointing)
        torch.manual_seed(0)
        model = build_model("lddu", config)
        model.prepare_training(6)
        model.train()
        loss = model.loss(model(batch), batch).total
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert torch.equal(loss_a, loss_b) and len(grads_a) == len(grads_b)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


# ----------------------------------------------------------------------------- analyze --workers


def _without_timings(outcomes) -> list[dict]:
    from mmer.writers import to_json

    rows = json.loads(to_json(outcomes))
    for row in rows:
        row.pop("timings_s", None)
    return rows


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "media").is_dir(),
                    reason="../shared/media not available")
def test_analyze_workers_keep_order_results_and_failures(tmp_path):
    """Two worker processes give the same outcomes, in input order, as one process: a broken file
    and a missing path fail alone."""
    import shutil

    from mmer.analysis import AnalyzeOptions, analyze
    from tests.conftest import SAMPLE, tiny_checkpoint

    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(SAMPLE, media / "a_joy.mp4")
    (media / "b_broken.mp4").write_bytes(b"not a video")
    shutil.copy(Path(__file__).resolve().parents[2] / "shared" / "media" / "single_face.mp4", media / "c_face.mp4")
    inputs = [media, tmp_path / "missing.mp4"]
    options = AnalyzeOptions(model=str(tiny_checkpoint(tmp_path / "tiny.safetensors")), device="cpu", threads=1,
                             cache_dir=tmp_path / "cache", window_s=2.0)
    one = analyze(inputs, options)
    seen = []
    two = analyze(inputs, AnalyzeOptions(**{**options.__dict__, "workers": 2}),
                  progress=lambda done, total, name: seen.append((done, total)))
    assert [o.file for o in two] == [str(media / "a_joy.mp4"), str(media / "b_broken.mp4"),
                                     str(media / "c_face.mp4"), str(tmp_path / "missing.mp4")]
    assert _without_timings(two) == _without_timings(one)
    assert [type(o).__name__ for o in two] == ["ClipResult", "ClipFailure", "ClipResult", "ClipFailure"]
    assert seen[-1] == (3, 3)
    with pytest.raises(UserError, match="^workers must be >= 1"):
        analyze(inputs, AnalyzeOptions(**{**options.__dict__, "workers": 0}))


# ----------------------------------------------------------------------------- the GPU script


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "shared" / "media").is_dir(),
                    reason="../shared/media not available")
def test_gpu_script_dry_run_on_cpu():
    """benchmarks/gpu.sh --device cpu --dry-run goes through every part and writes every result."""
    import os
    import re
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(["bash", str(repo / "benchmarks" / "gpu.sh"), "--device", "cpu", "--dry-run"],
                          capture_output=True, text=True, cwd=repo, timeout=1500,
                          env=dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = Path(re.search(r"gpu.sh: results in (\S+) \(status 0\)", done.stdout).group(1))
    assert out != repo / "benchmarks" / "results"  # a dry run never replaces recorded results
    names = {p.name for p in out.iterdir()}
    assert {"gpu_cpu.md", "throughput_cpu.md", "analyze_cpu.md", "analyze_cpu_bf16.md"} <= names
    rows = json.loads((out / "throughput_cpu.json").read_text())["results"]
    assert {(r["model"], r["precision"]) for r in rows} == {(m, p) for m in ("lamb", "lddu") for p in ("fp32", "bf16")}
    assert all("error" not in r for r in rows)
    assert json.loads((out / "analyze_cpu_bf16.json").read_text())["precision"] == "bf16"


# ----------------------------------------------------------------------------- flat memory, same features


def test_voice_activity_in_bounded_passes_matches_faster_whisper(monkeypatch):
    """speech_probabilities (passes of CHUNKS_PER_PASS chunks, no copy of the audio) gives exactly
    faster-whisper's probabilities, and spans_of exactly its spans, at any pass size and length
    (whole chunks or not, with or without speech); the lowered pass, made and heard in blocks, gives
    faster-whisper's probabilities of the whole resampled audio; speech_spans is faster-whisper's
    rule over the higher of the two."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps, get_vad_model
    from scipy.signal import resample_poly

    from mmer.extractors import voice_activity as va
    from mmer.extractors.media import MediaReader, probe_media
    from tests.test_analyze import SAMPLE

    reader = MediaReader(probe_media(SAMPLE), 5.0, 320, 16)
    for _ in reader.frame_batches():
        pass
    speech = reader.audio.samples
    quiet = np.random.default_rng(1).standard_normal(30_000).astype(np.float32) * 0.01
    options = VadOptions(threshold=va.SPEECH_THRESHOLD, min_speech_duration_ms=va.MIN_SPEECH_MS,
                         min_silence_duration_ms=va.MIN_SILENCE_MS, speech_pad_ms=va.SPEECH_PAD_MS)
    for audio in (np.concatenate([speech] * 3), speech[:512 * 40], quiet):
        stock = get_vad_model()(np.pad(audio, (0, 512 - audio.shape[0] % 512)))
        for per_pass in (1, 7, 256):
            monkeypatch.setattr(va, "CHUNKS_PER_PASS", per_pass)
            assert np.array_equal(va.speech_probabilities(audio), stock)
        spans = [(s["start"] / 16_000, s["end"] / 16_000) for s in get_speech_timestamps(audio, options, 16_000)]
        assert va.spans_of(audio, stock) == spans
        # The lowered pass: faster-whisper's model on the audio resampled by LOWERED_PASS, at any pass size.
        up, down = va.LOWERED_PASS
        lowered = resample_poly(audio, up, down).astype(np.float32)
        lowered_stock = get_vad_model()(np.pad(lowered, (0, 512 - lowered.shape[0] % 512)))
        for per_pass in (1, 7, 256):
            monkeypatch.setattr(va, "CHUNKS_PER_PASS", per_pass)
            # all but the last chunk: faster-whisper's model zeroes the last 64 samples of its input in place
            np.testing.assert_allclose(va._silero(va._lowered_blocks(audio))[:-1], lowered_stock[:-1], atol=1e-5)
        voice = va.voice_probabilities(audio)
        assert voice.shape == stock.shape and (voice >= stock).all()
        with va.silero_answers(voice):  # faster-whisper's rule reading the two-pass probabilities
            two_pass = [(s["start"] / 16_000, s["end"] / 16_000) for s in get_speech_timestamps(audio, options, 16_000)]
        assert va.speech_spans(audio) == two_pass
    assert va.speech_spans(np.concatenate([speech] * 3)) and not va.speech_spans(quiet)
