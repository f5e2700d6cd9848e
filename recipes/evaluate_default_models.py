"""Held-out evaluation of the default checkpoints -> recipes/results/default_models.json.

- Text: the shipped models/weights/{lddu,lamb}_default.safetensors on the GoEmotions-Ekman official
  test split (5,427 comments), text-only input (audio and visual absent), at the per-label
  thresholds stored in each checkpoint (tuned on validation data only); macro-/micro-F1 from
  `mmer_cli.metrics`, next to the TF-IDF + LR baseline (recipes/results/baseline_goemotions.json)
  and the external fine-tuned bert-base-cased (0.624 macro-F1, not measured here).
- Speech: the LDDU and (where trained) LAMB fold models (<work>/folds/<model>_fold<k>.safetensors,
  written by recipes/train_default_models.py) on the EmoDB test speakers of their fold
  (recipes/emodb_folds.json), audio-only input; arg-max over the six labels EmoDB has; unweighted
  accuracy and macro-F1 pooled over the folds, for boredom -> neutral and boredom excluded, next to
  the eGeMAPS + SVM baseline (recipes/results/baseline_emodb.json) on the same folds.
- Text + speech: synthetic pairs (docs/corpora.md) of GoEmotions test comments and each fold's test
  utterances, fold models; labelled synthetic: no real clip has both.
- Calibration: ECE (15 bins) and Brier score of the probabilities, and the error rate of the label
  decisions by uncertainty bin (`error_rate_by_uncertainty`, 5 equal-count bins). No calibration
  step (temperature scaling etc.) is applied: the numbers are those of the shipped probabilities.

Run:  python recipes/evaluate_default_models.py [--data DIR] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from default_model_features import (GOEMOTIONS_SPLITS, LABEL_NAMES, default_feature_spec,
                                    extract_goemotions, load_emodb, load_goemotions)
from default_model_training import Pools, audio_only_set, paired_set, speech_scores, text_only_set
from extractors.pipeline import ExtractionSettings
from mmer_cli.evaluation import predict_probs
from mmer_cli.metrics import brier_score, error_rate_by_uncertainty, expected_calibration_error, multilabel_metrics
from models.checkpoint import load_checkpoint
from provenance import RESULTS_DIR, SHARED_DATA, provenance, write_result
from train_default_models import DEFAULT_WORK, FOLDS_FILE, SEED, THREADS, WEIGHTS_DIR

PAIRS_PER_TEST_UTTERANCE = 2
BATCH = 256


def scored(probs: np.ndarray, unc: np.ndarray, truth: np.ndarray, thresholds: list[float]) -> dict:
    """Multi-label metrics at `thresholds`, at 0.5, and calibration of probs (N, q) / unc (N, q)."""
    truth = truth.astype(np.int64)
    pred = (probs >= np.asarray(thresholds)[None, :]).astype(np.int64)
    metrics = multilabel_metrics(truth, pred, LABEL_NAMES).as_dict()
    at_half = multilabel_metrics(truth, (probs >= 0.5).astype(np.int64), LABEL_NAMES)
    return {
        "tuned_thresholds": metrics,
        "threshold_0_5": {"macro_f1": at_half.macro_f1, "micro_f1": at_half.micro_f1},
        "calibration": {"ece_15_bins": expected_calibration_error(probs, truth), "brier": brier_score(probs, truth),
                        "calibration_step": "none"},
        "error_rate_by_uncertainty": error_rate_by_uncertainty(unc, pred == truth),
    }


def text_test(name: str, test_part, emodb) -> dict:
    model, info = load_checkpoint(WEIGHTS_DIR / f"{name}_default.safetensors")
    mismatches = info.feature_spec.mismatches(default_feature_spec())
    if mismatches or info.label_names != LABEL_NAMES:
        raise SystemExit(f"{name}: checkpoint does not fit the default extraction: {mismatches or info.label_names}")
    pools = Pools(test_part, emodb, np.zeros(0, np.int64), default_feature_spec().visual.dim)
    started = time.perf_counter()
    probs, unc = predict_probs(model, text_only_set(pools, "test").dataset(), BATCH, torch.device("cpu"))
    result = scored(probs, unc, test_part.labels, info.thresholds)
    result["predict_s"] = round(time.perf_counter() - started, 1)
    result["thresholds"] = info.thresholds
    result["checkpoint_extra"] = {k: info.extra.get(k) for k in ("trained_modalities", "data", "selection", "commit")}
    return result


def speech_folds(name: str, test_part, emodb, work: Path) -> dict:
    """Pooled held-out EmoDB scores (audio-only) and synthetic-pair scores of the fold models of
    model `name` (<work>/folds/<name>_fold<k>.safetensors)."""
    folds = json.loads(FOLDS_FILE.read_text())["folds"]
    visual_dim = default_feature_spec().visual.dim
    rows_all, probs_all, pair_probs, pair_unc, pair_truth, per_fold, missing = [], [], [], [], [], [], []
    audio_unc = []
    for fold in folds:
        path = work / "folds" / f"{name}_fold{fold['fold']}.safetensors"
        if not path.exists():
            missing.append(fold["fold"])
            continue
        model, info = load_checkpoint(path)
        rows = np.flatnonzero(np.isin(emodb.speakers, fold["test_speakers"]))
        pools = Pools(test_part, emodb, rows, visual_dim)
        p, u = predict_probs(model, audio_only_set(pools, "test_audio").dataset(), BATCH, torch.device("cpu"))
        rows_all.append(rows)
        probs_all.append(p)
        audio_unc.append(u)
        keep = np.array([emodb.emotions[i] != "boredom" for i in rows])
        per_fold.append({"fold": fold["fold"], "test_speakers": fold["test_speakers"],
                         "boredom_as_neutral": speech_scores(p, emodb.labels[rows]),
                         "boredom_excluded": speech_scores(p[keep], emodb.labels[rows][keep])})
        pairs = paired_set(pools, "test_pairs", PAIRS_PER_TEST_UTTERANCE, SEED + fold["fold"])
        pp, pu = predict_probs(model, pairs.dataset(), BATCH, torch.device("cpu"))
        thresholds = np.asarray(info.thresholds)[None, :]
        pair_probs.append(pp)
        pair_unc.append(pu)
        pair_truth.append((pairs.labels, (pp >= thresholds).astype(np.int64)))
    if not rows_all:
        return {"missing_folds": missing, "note": "no fold models found: run recipes/train_default_models.py"}
    rows = np.concatenate(rows_all)
    probs = np.concatenate(probs_all)
    truth = emodb.labels[rows]
    keep = np.array([emodb.emotions[i] != "boredom" for i in rows])
    pair_labels = np.concatenate([t for t, _ in pair_truth]).astype(np.int64)
    pair_pred = np.concatenate([p for _, p in pair_truth])
    pair_metrics = multilabel_metrics(pair_labels, pair_pred, LABEL_NAMES).as_dict()
    pp = np.concatenate(pair_probs)
    return {
        "folds_scored": [f["fold"] for f in per_fold],
        "missing_folds": missing,
        "pooled": {"boredom_as_neutral": speech_scores(probs, truth),
                   "boredom_excluded": speech_scores(probs[keep], truth[keep])},
        "fold_mean_unweighted_accuracy": {
            v: float(np.mean([f[v]["unweighted_accuracy"] for f in per_fold]))
            for v in ("boredom_as_neutral", "boredom_excluded")},
        "per_fold": per_fold,
        "calibration_audio_only": {"ece_15_bins": expected_calibration_error(probs, truth.astype(np.int64)),
                                   "brier": brier_score(probs, truth.astype(np.int64)), "calibration_step": "none"},
        "synthetic_pairs": {
            "what": f"{PAIRS_PER_TEST_UTTERANCE} GoEmotions test comments per held-out EmoDB utterance, "
                    "paired by label (docs/corpora.md); synthetic, no real clip has both",
            "metrics_at_fold_thresholds": {k: v for k, v in pair_metrics.items() if k != "per_label"},
            "per_label_f1": {k: v["f1"] for k, v in pair_metrics["per_label"].items()},
            "ece_15_bins": expected_calibration_error(pp, pair_labels),
            "error_rate_by_uncertainty": error_rate_by_uncertainty(np.concatenate(pair_unc), pair_pred == pair_labels),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(THREADS)
    feats = args.work / "features"
    if not (feats / "goemotions_test.npz").exists():
        feats.mkdir(parents=True, exist_ok=True)
        extract_goemotions(args.data / "goemotions" / "ekman", "test", feats, None, ExtractionSettings())
    if not (feats / "emodb.npz").exists():
        raise SystemExit(f"{feats}/emodb.npz missing: run recipes/train_default_models.py first")
    test_part, emodb = load_goemotions(feats, "test"), load_emodb(feats)

    baseline_text = json.loads((RESULTS_DIR / "baseline_goemotions.json").read_text())
    baseline_speech = json.loads((RESULTS_DIR / "baseline_emodb.json").read_text())
    text = {name: text_test(name, test_part, emodb) for name in ("lddu", "lamb")}
    speech = {f"{name}_folds": speech_folds(name, test_part, emodb, args.work) for name in ("lddu", "lamb")}
    result = {
        "recipe": "recipes/evaluate_default_models.py",
        "checkpoints": {n: f"models/weights/{n}_default.safetensors" for n in ("lddu", "lamb")},
        "text_goemotions_test": {
            "data": f"{args.data / 'goemotions' / 'ekman' / GOEMOTIONS_SPLITS['test']} ({len(test_part)} comments), "
                    "text-only input",
            "models": text,
            "baselines": {
                "tfidf_lr": {"macro_f1": baseline_text["test"]["macro_f1"], "micro_f1": baseline_text["test"]["micro_f1"],
                             "source": "recipes/results/baseline_goemotions.json"},
                "bert_base_cased_external": baseline_text["external_reference"],
            },
        },
        "speech_emodb_speaker_independent": {
            "data": f"{args.data / 'emodb'}, folds recipes/emodb_folds.json, audio-only input",
            "scoring": "arg-max over anger, disgust, fear, happy, neutral, sad (surprise excluded)",
            **speech,
            "baseline_egemaps_svm": {
                v: {**baseline_speech["variants"][v]["pooled"], "source": "recipes/results/baseline_emodb.json"}
                for v in ("boredom_as_neutral", "boredom_excluded")},
        },
        "feature_extraction_s": (json.loads((feats / "extraction_seconds.json").read_text())
                                 if (feats / "extraction_seconds.json").exists() else None),
        "training": "recipes/results/default_training.json",
        **provenance(THREADS),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    path = write_result("default_models", result)
    for name, r in text.items():
        m = r["tuned_thresholds"]
        print(f"{name} GoEmotions test: macro-F1 {m['macro_f1']:.3f} micro-F1 {m['micro_f1']:.3f} "
              f"ECE {r['calibration']['ece_15_bins']:.3f}")
    for name in ("lddu", "lamb"):
        folds = speech[f"{name}_folds"]
        for v, s in folds.get("pooled", {}).items():
            print(f"{name} EmoDB {v}: UA {s['unweighted_accuracy']:.3f} macro-F1 {s['macro_f1']:.3f} "
                  f"(folds {folds['folds_scored']})")
    print(f"wrote {path} ({result['wall_time_s']} s)")


if __name__ == "__main__":
    main()
