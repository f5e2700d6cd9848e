"""Training on your own small corpus: speaker groups and --folds, --modalities, the small preset and
its step warning, single-label metrics in eval/score/train, and the fitted fusion every checkpoint
carries (`mmer calibrate` refits it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_TRAIN, mmer, ok
from tests.synthetic_benchmarks import SYNTHETIC_CACHE_SPEC, signal_frames

LABELS = ["anger", "happy", "neutral", "sad"]
SPEAKERS = [f"{k}" for k in (3, 8, 9, 10, 11, 12)]


def write_grouped_cache(directory: Path, per_speaker: int = 8, seed: int = 0, with_text: bool = True) -> Path:
    """A cache of single-label clips from 6 speakers (group = speaker, all in split "train"): every
    clip has a voice carrying its label; the words (when `with_text`) carry it too; no face."""
    from mmer.datasets import CacheWriter

    rng = np.random.default_rng(seed)
    writer = CacheWriter(directory, LABELS, SYNTHETIC_CACHE_SPEC)
    for speaker in SPEAKERS:
        for i in range(per_speaker):
            y = np.zeros(len(LABELS), dtype=np.int64)
            y[i % len(LABELS)] = 1
            features = {m: signal_frames(rng, int(rng.integers(3, 12)) if (m == "audio" or (m == "text" and with_text))
                                         else 0, SYNTHETIC_CACHE_SPEC[m].dim, y) for m in ("text", "audio", "visual")}
            writer.add(f"s{speaker}/clip{i}.wav", "train", features, y, group=speaker)
    return directory


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    return write_grouped_cache(tmp_path_factory.mktemp("grouped") / "cache")


def test_folds_split_whole_speakers_and_test_each_once():
    from mmer.datasets.folds import plan_folds

    plans = plan_folds(["10", "3", "9", "8", "12", "11", "3"], 3)
    assert [p.test for p in plans] == [["3", "8"], ["9", "10"], ["11", "12"]]  # numeric order, consecutive blocks
    for p in plans:
        assert not set(p.test) & set(p.valid) and not set(p.test) & set(p.train) and not set(p.valid) & set(p.train)
        assert sorted(p.test + p.valid + p.train, key=int) == ["3", "8", "9", "10", "11", "12"]
    assert plans[0].valid == ["9", "10"] and plans[2].valid == ["3", "8"]


def test_folds_need_groups_and_enough_of_them(grouped, tmp_path):
    from mmer.datasets import load_dataset
    from mmer.datasets.folds import fold_data
    from mmer.errors import UserError

    bench = load_dataset("cache", grouped)
    data, plan = fold_data(bench, 3, 1)
    assert {len(data.splits[s]) for s in ("train", "valid", "test")} == {16, 16}
    assert set(data.splits["test"].groups) == set(plan.test) == {"9", "10"}
    assert data.splits["test"][0].features["audio"].shape[1] == SYNTHETIC_CACHE_SPEC.audio.dim
    with pytest.raises(UserError, match="at least 7 groups"):
        fold_data(bench, 7, 0)
    bench.splits["train"].groups[0] = None
    with pytest.raises(UserError, match="has no group"):
        fold_data(bench, 3, 0)


@pytest.fixture(scope="module")
def folds_run(grouped, tmp_path_factory):
    out = tmp_path_factory.mktemp("folds") / "folds"
    result = mmer("train", "--model", "lamb", "--dataset", "cache", "--data", grouped, *TINY_TRAIN, "--epochs", "2",
                  "--folds", "3", "--modalities", "audio", "--select-metric", "unweighted_accuracy", "--out", out)
    ok(result)
    return out, result


def test_train_folds_summary_and_voice_only_checkpoint(folds_run):
    out, result = folds_run
    assert "confusion matrix" in result.stdout and "unweighted_accuracy" in result.stdout
    assert "warning: only 2 optimisation steps per epoch (4 in all) on 16 training samples" in result.stdout
    assert "streams audio" in result.stdout
    summary = json.loads((out / "folds_summary.json").read_text())
    assert summary["runs"] == ["fold-0", "fold-1", "fold-2"]
    assert summary["groups"] == {"fold-0": ["3", "8"], "fold-1": ["9", "10"], "fold-2": ["11", "12"]}
    assert summary["trained_modalities"] == ["audio"]
    pooled = summary["pooled_single_label"]
    assert np.asarray(pooled["confusion"]).sum() == 48 and pooled["num_samples"] == 48  # every clip tested once
    tests = [json.loads((out / f"fold-{k}" / "test_metrics.json").read_text()) for k in range(3)]
    assert summary["metrics"]["unweighted_accuracy"]["values"] == [t["unweighted_accuracy"] for t in tests]

    from mmer.models.checkpoint import read_checkpoint_info
    from mmer.stream_fusion import LateFusion

    info, _ = read_checkpoint_info(out / "fold-0" / "best.safetensors")
    assert info.extra["trained_modalities"] == ["audio"]  # text was in the cache but not asked for
    fusion = LateFusion.from_dict(info.extra["fusion"])
    assert list(fusion.streams) == ["audio"] and fusion.exclusive_label == LABELS.index("neutral")
    assert info.extra["fusion_fit"]["samples_per_stream"] == {"audio": 16}


def test_trained_modalities_are_those_the_training_split_has(tmp_path):
    cache = write_grouped_cache(tmp_path / "voice", with_text=False)
    out = tmp_path / "run"
    ok(mmer("train", "--model", "lddu", "--dataset", "cache", "--data", cache, *TINY_TRAIN, "--epochs", "1",
            "--folds", "3", "--out", out))
    config = json.loads((out / "fold-0" / "config.json").read_text())
    assert config["trained_modalities"] == ["audio"] and config["modalities"] is None
    bad = mmer("train", "--model", "lddu", "--dataset", "cache", "--data", cache, *TINY_TRAIN, "--epochs", "1",
               "--modalities", "voice", "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "--modalities must be" in bad.stderr and "Traceback" not in bad.stderr


def test_few_steps_per_epoch_warn_and_small_preset_does_not():
    from mmer.training import step_warnings

    assert step_warnings(3, 30, 318) and "--preset small" in step_warnings(3, 30, 318)[0]  # LDDU paper on EmoDB
    assert step_warnings(5, 50, 318)  # LAMB paper: 250 steps in all
    assert step_warnings(20, 30, 318) == []  # the small preset: batch 16


def test_small_preset_exists_for_every_model():
    from mmer.models.config import preset_overrides
    from mmer.models.registry import get_entry, model_names

    for name in model_names():
        small = preset_overrides(get_entry(name).config_class, "small")
        assert small["batch_size"] == 16 and small["early_stop_patience"] > 0


def test_single_label_metrics_by_hand():
    from mmer.single_label import AMBIGUOUS, pooled_single_label, single_label_metrics

    truth = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1]])
    scores = np.array([[.9, .1, 0], [.2, .7, .1], [.1, .8, .1], [.5, .5, .1], [.1, .1, .8]])
    m = single_label_metrics(truth, scores, ["a", "b", "c"])
    assert m.top1_accuracy == pytest.approx(3 / 5)  # rows 0, 2, 4 (multi-label row 4: c is true)
    assert m.num_single_label == 4 and m.weighted_accuracy == pytest.approx(2 / 4)
    assert m.per_class_recall == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert m.unweighted_accuracy == pytest.approx(0.5)
    assert m.confusion == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]  # row c: a tie -> ambiguous
    assert m.as_dict()["confusion_columns"] == ["a", "b", "c", AMBIGUOUS]
    pooled = pooled_single_label([m.as_dict(), m.as_dict()])
    assert pooled.confusion == [[2, 2, 0, 0], [0, 2, 0, 0], [0, 0, 0, 2]]
    assert pooled.unweighted_accuracy == pytest.approx(0.5) and pooled.num_samples == 10


def test_score_prints_single_label_metrics(tmp_path):
    truth, pred = tmp_path / "t.csv", tmp_path / "p.csv"
    truth.write_text("a,b\n1,0\n0,1\n0,1\n")
    pred.write_text("a,b\n0.8,0.2\n0.3,0.7\n0.6,0.4\n")
    result = mmer("score", "--truth", truth, "--pred", pred, "--threshold", "0.5", "--format", "json")
    ok(result)
    report = json.loads(result.stdout)
    assert report["top1_accuracy"] == pytest.approx(2 / 3) and report["unweighted_accuracy"] == pytest.approx(0.75)
    assert report["single_label"]["confusion"] == [[1, 0, 0], [1, 1, 0]]
    table = mmer("score", "--truth", truth, "--pred", pred, "--threshold", "0.5")
    ok(table)
    assert "UA (unweighted accuracy" in table.stdout and "confusion matrix" in table.stdout


def test_shrunk_thresholds_follow_the_global_one_with_few_positives():
    from mmer.stream_calibration import shrunk_thresholds

    rng = np.random.default_rng(0)
    truth = np.zeros((400, 2), dtype=np.int64)
    truth[:200, 0] = 1  # label 0: 200 positives
    truth[200:203, 1] = 1  # label 1: 3 positives
    probs = np.clip(rng.normal(0.3, 0.15, size=truth.shape) + 0.4 * truth, 0, 1)
    probs[200:203, 1] = 0.95  # its own tuned threshold would jump far from the global one
    thresholds, common = shrunk_thresholds(probs, truth)
    from mmer.thresholds import tune_label_thresholds

    own = tune_label_thresholds(probs, truth)
    assert abs(thresholds[1] - common) < abs(own[1] - common) * 0.2  # 3 / (3 + 30) of its own
    assert abs(thresholds[0] - own[0]) < abs(own[0] - common) * 0.2 + 1e-9  # 200 / 230 of its own


def test_eval_prints_single_label_metrics(folds_run, grouped):
    out, _ = folds_run
    checkpoint = out / "fold-0" / "best.safetensors"
    args = ("eval", "--dataset", "cache", "--data", grouped, "--checkpoint", checkpoint, "--split", "train",
            "--device", "cpu", "--threads", "1")
    table = mmer(*args)
    ok(table)
    for row in ("Top-1 accuracy", "WA (weighted accuracy)", "UA (unweighted accuracy", "confusion matrix"):
        assert row in table.stdout
    report = json.loads(mmer(*args, "--format", "json").stdout)
    single = report["single_label"]
    assert np.asarray(single["confusion"]).shape == (len(LABELS), len(LABELS) + 1)
    assert np.asarray(single["confusion"]).sum() == report["num_samples"] == 48
    assert report["unweighted_accuracy"] == pytest.approx(np.mean(list(single["per_class_recall"].values())))


def test_calibrate_refits_the_fusion_of_a_checkpoint(folds_run, grouped, tmp_path):
    from mmer.models.checkpoint import read_checkpoint_info
    from mmer.stream_fusion import LateFusion

    out, _ = folds_run
    checkpoint = out / "fold-1" / "best.safetensors"
    before, _ = read_checkpoint_info(checkpoint)
    target = tmp_path / "calibrated.safetensors"
    result = mmer("calibrate", checkpoint, "--data", grouped, "--split", "train", "--out", target, "--format", "json",
                  "--device", "cpu", "--threads", "1")
    ok(result)
    report = json.loads(result.stdout)
    assert report["samples_per_stream"] == {"audio": 48}
    after, _ = read_checkpoint_info(target)
    fusion = LateFusion.from_dict(after.extra["fusion"])
    assert list(fusion.streams) == ["audio"] and after.extra["fusion_fit"]["split"] == "train"
    assert after.thresholds == before.thresholds and after.extra["trained_modalities"] == ["audio"]
    assert read_checkpoint_info(checkpoint)[0].extra["fusion"] == before.extra["fusion"]  # --out: untouched
    other = write_grouped_cache(tmp_path / "other", per_speaker=2)
    (other / "manifest.json").write_text((other / "manifest.json").read_text().replace('"sad"', '"sadness"'))
    bad = mmer("calibrate", checkpoint, "--data", other, "--device", "cpu")
    assert bad.exit_code == 2 and "trained on labels" in bad.stderr and "Traceback" not in bad.stderr


def test_extract_refuses_unknown_streams_and_labels_before_any_media(tmp_path):
    (tmp_path / "labels.csv").write_text("file,group,labels\na.wav,1,joy\nb.wav,2,calm\n")
    bad = mmer("extract", tmp_path, "--labels", tmp_path / "labels.csv", "--modalities", "voice", "--out", tmp_path / "c")
    assert bad.exit_code == 2 and "modalities must be a non-empty subset of text, audio, visual" in bad.stderr
    unknown = mmer("extract", tmp_path, "--labels", tmp_path / "labels.csv", "--map", "sad=neutral", "--out", tmp_path / "d")
    assert unknown.exit_code == 2 and "no label 'sad'" in unknown.stderr and "Traceback" not in unknown.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
