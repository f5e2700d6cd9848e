"""Held-out evaluation of the default checkpoints -> recipes/results/default_models.json.

- Text: the shipped models/weights/{lddu,lamb}_default.safetensors on the GoEmotions-Ekman official
  test split (5,427 comments), text-only input (audio and visual absent), at the per-label
  thresholds stored in each checkpoint (tuned on validation data only); macro-/micro-F1 from
  `mmer.metrics`, next to the TF-IDF + LR baseline (recipes/results/baseline_goemotions.json)
  and the external fine-tuned bert-base-cased (0.624 macro-F1, not measured here).
- Speech: the LDDU and (where trained) LAMB fold models (<work>/folds/<model>_fold<k>.safetensors,
  written by recipes/train_default_models.py) on the EmoDB test speakers of their fold
  (recipes/emodb_folds.json), audio-only input; arg-max over the six labels EmoDB has; unweighted
  accuracy and macro-F1 pooled over the folds, for boredom -> neutral and boredom excluded, next to
  the eGeMAPS + SVM baseline (recipes/results/baseline_emodb.json) on the same folds.
- Text + speech: synthetic pairs (docs/corpora.md) of GoEmotions test comments and each fold's test
  utterances, fold models; labelled synthetic: no real clip has both.
- Every number is given twice: "application" = what `mmer analyze` reports (each stream alone,
  calibrated and fused by the checkpoint's late fusion, mmer/stream_fusion.py: fusion
  thresholds, entropy uncertainty) and "network" = the raw network pass (its own probabilities,
  the checkpoint's joint thresholds and the model's own uncertainty: LDDU sigma-based, LAMB
  MC-dropout), i.e. before calibration.
- Calibration: ECE (15 bins) and Brier score of the probabilities, and the error rate of the label
  decisions by uncertainty bin (`error_rate_by_uncertainty`, 5 equal-count bins).

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
                                    extract_goemotions, load_emodb, load_faces, load_goemotions)
from default_model_training import (EvalSet, Pools, SyntheticFaces, audio_only_set, normalised_emodb, paired_set,
                                    speech_scores, text_only_set)
from mmer.voice_normalisation import VoiceNormaliser
from mmer.extractors.pipeline import ExtractionSettings
from mmer.evaluation import predict_probs
from mmer.metrics import brier_score, error_rate_by_uncertainty, expected_calibration_error, multilabel_metrics
from mmer.stream_fusion import LateFusion
from mmer.thresholds import apply_thresholds
from mmer.models.checkpoint import load_checkpoint
from recipe_results import RESULTS_DIR, SHARED_DATA, provenance, write_result
from train_default_models import DEFAULT_WORK, FOLDS_FILE, SEED, THREADS, WEIGHTS_DIR

PAIRS_PER_TEST_UTTERANCE = 2
BATCH = 256


def scored(probs: np.ndarray, unc: np.ndarray, truth: np.ndarray, thresholds: list[float], step: str) -> dict:
    """Multi-label metrics at `thresholds`, at 0.5, and calibration of probs (N, q) / unc (N, q)."""
    truth = truth.astype(np.int64)
    pred = apply_thresholds(probs, thresholds)
    metrics = multilabel_metrics(truth, pred, LABEL_NAMES).as_dict()
    at_half = multilabel_metrics(truth, apply_thresholds(probs, 0.5), LABEL_NAMES)
    return {
        "tuned_thresholds": metrics,
        "threshold_0_5": {"macro_f1": at_half.macro_f1, "micro_f1": at_half.micro_f1},
        "calibration": {"ece_15_bins": expected_calibration_error(probs, truth), "brier": brier_score(probs, truth),
                        "calibration_step": step},
        "error_rate_by_uncertainty": error_rate_by_uncertainty(unc, pred == truth),
    }


def fused(fusion: LateFusion, readings: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise late fusion of single-stream probabilities {stream: (N, q)} -> probs, unc (N, q)."""
    n = len(next(iter(readings.values())))
    rows = [fusion.fuse({m: p[i] for m, p in readings.items()}) for i in range(n)]
    return np.stack([p for p, _ in rows]), np.stack([u for _, u in rows])


def voice_readings(fusion: LateFusion, probs: np.ndarray, frames: list[np.ndarray]) -> np.ndarray:
    """The voice stream's reading as `mmer analyze` forms it: the network's audio-only probabilities
    (N, q) with the checkpoint's summary head mixed in (`LateFusion.stream_probs`), frames (T_i, D)."""
    return np.stack([fusion.stream_probs("audio", p, x) for p, x in zip(probs, frames)])


def head_readings(fusion: LateFusion, frames: list[np.ndarray], q: int) -> np.ndarray:
    """The voice summary head alone: (N, q) with its class probabilities on its labels, 0 elsewhere."""
    out = np.zeros((len(frames), q))
    if "audio" in fusion.heads:
        head = fusion.heads["audio"]
        for i, x in enumerate(frames):
            out[i, head.labels] = head.probs(x)
    return out


def both_views(model, info, fusion: LateFusion, single: dict[str, EvalSet], joint: EvalSet) -> dict:
    """Scores of the application (each stream of `single` alone, fused) and of the raw network pass
    over `joint` (the same samples with every stream together)."""
    device = torch.device("cpu")
    readings = {m: predict_probs(model, s.dataset(), BATCH, device)[0] for m, s in single.items()}
    probs, unc = fused(fusion, readings)
    raw_probs, raw_unc = predict_probs(model, joint.dataset(), BATCH, device)
    return {"application": scored(probs, unc, joint.labels, fusion.thresholds,
                                  "per-stream temperature scaling (validation), late fusion, entropy uncertainty"),
            "network": scored(raw_probs, raw_unc, joint.labels, info.thresholds,
                              "none (raw network probabilities, model's own uncertainty)")}


def load_default(name: str):
    model, info = load_checkpoint(WEIGHTS_DIR / f"{name}_default.safetensors")
    info.feature_spec.require_compatible(default_feature_spec(), f"{name}: checkpoint does not fit the default extraction")
    if info.label_names != LABEL_NAMES:
        raise SystemExit(f"{name}: checkpoint labels {info.label_names} are not {LABEL_NAMES}")
    return model, info, LateFusion.from_dict(info.extra["fusion"])


def text_test(name: str, pools: Pools) -> dict:
    model, info, fusion = load_default(name)
    started = time.perf_counter()
    test = text_only_set(pools, "test")
    result = both_views(model, info, fusion, {"text": test}, test)
    result["predict_s"] = round(time.perf_counter() - started, 1)
    result["fusion"] = fusion.to_dict()
    result["checkpoint_extra"] = {k: info.extra.get(k) for k in ("trained_modalities", "data", "selection", "commit")}
    return result


def synthetic_face_test(name: str, pools: Pools) -> dict:
    """The visual stream on held-out synthetic expression sequences (seed unseen in training): how
    faithfully the network reads the expression network's output. Not a measure of accuracy on
    real faces (there is no labelled face video)."""
    from default_model_training import visual_only_set

    model, info, fusion = load_default(name)
    faces = visual_only_set(pools, "synthetic_faces", 100, SEED + 99)
    result = both_views(model, info, fusion, {"visual": faces}, faces)
    probs = predict_probs(model, faces.dataset(), BATCH, torch.device("cpu"))[0]
    result["top1_accuracy"] = float(np.mean(probs.argmax(1) == faces.labels.argmax(1)))
    return result


def speech_folds(name: str, test_part, raw_emodb, faces: SyntheticFaces, work: Path, adapt: str = "speaker") -> dict:
    """Pooled held-out EmoDB scores (audio-only) and synthetic-pair scores of the fold models of
    model `name` (<work>/folds/<name>_fold<k>.safetensors)."""
    folds = json.loads(FOLDS_FILE.read_text())["folds"]
    visual_dim = default_feature_spec().visual.dim
    rows_all, probs_all, pair_probs, pair_unc, pair_truth, per_fold, missing = [], [], [], [], [], [], []
    audio_unc, fold_thresholds, net_all, head_all = [], [], [], []
    for fold in folds:
        path = work / "folds" / f"{name}_fold{fold['fold']}.safetensors"
        if not path.exists():
            missing.append(fold["fold"])
            continue
        model, info = load_checkpoint(path)
        fusion = LateFusion.from_dict(info.extra["fusion"])
        emodb = raw_emodb
        if "voice_normalisation" in info.extra:  # the test speakers' voices normalised as `mmer analyze --adapt`
            emodb, _ = normalised_emodb(raw_emodb, np.zeros(0, np.int64), adapt,
                                        VoiceNormaliser.from_dict(info.extra["voice_normalisation"]))
        rows = np.flatnonzero(np.isin(emodb.speakers, fold["test_speakers"]))
        pools = Pools(test_part, emodb, rows, visual_dim, faces)
        frames = [emodb.audio.get(int(i)) for i in rows]
        net, _ = predict_probs(model, audio_only_set(pools, "test_audio").dataset(), BATCH, torch.device("cpu"))
        p, u = fused(fusion, {"audio": voice_readings(fusion, net, frames)})  # temperature keeps the arg-max
        net_all.append(net)
        head_all.append(head_readings(fusion, frames, len(LABEL_NAMES)))
        rows_all.append(rows)
        probs_all.append(p)
        audio_unc.append(u)
        fold_thresholds.append(fusion.thresholds)
        keep = np.array([emodb.emotions[i] != "boredom" for i in rows])
        per_fold.append({"fold": fold["fold"], "test_speakers": fold["test_speakers"],
                         "boredom_as_neutral": speech_scores(p, emodb.labels[rows]),
                         "boredom_excluded": speech_scores(p[keep], emodb.labels[rows][keep])})
        pairs = paired_set(pools, "test_pairs", PAIRS_PER_TEST_UTTERANCE, SEED + fold["fold"])
        single = {m: EvalSet(m, pools, [(t, None) if m == "text" else (None, a) for t, a in pairs.items], pairs.labels)
                  for m in ("text", "audio")}
        readings = {m: predict_probs(model, e.dataset(), BATCH, torch.device("cpu"))[0] for m, e in single.items()}
        readings["audio"] = voice_readings(fusion, readings["audio"], [emodb.audio.get(int(a)) for _, a in pairs.items])
        pp, pu = fused(fusion, readings)
        pair_probs.append(pp)
        pair_unc.append(pu)
        pair_truth.append((pairs.labels, apply_thresholds(pp, fusion.thresholds)))
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
        "pooled_parts": {
            "what": "the voice reading mixes the network and the summary head (mmer/stream_fusion.py); each "
                    "part alone, boredom -> neutral",
            "network_alone": speech_scores(np.concatenate(net_all), truth),
            "summary_head_alone": speech_scores(np.concatenate(head_all), truth)},
        "fold_mean_unweighted_accuracy": {
            v: float(np.mean([f[v]["unweighted_accuracy"] for f in per_fold]))
            for v in ("boredom_as_neutral", "boredom_excluded")},
        "per_fold": per_fold,
        "calibration_audio_only": {"ece_15_bins": expected_calibration_error(probs, truth.astype(np.int64)),
                                   "brier": brier_score(probs, truth.astype(np.int64)),
                                   "calibration_step": "per-stream temperature scaling (fold validation speakers)",
                                   "error_rate_by_uncertainty": error_rate_by_uncertainty(
                                       np.concatenate(audio_unc),
                                       np.concatenate([(p >= np.asarray(t)) for p, t in zip(probs_all, fold_thresholds)])
                                       == truth.astype(bool))},
        "synthetic_pairs": {
            "what": f"{PAIRS_PER_TEST_UTTERANCE} GoEmotions test comments per held-out EmoDB utterance, "
                    "paired by label (docs/corpora.md); synthetic, no real clip has both; each stream read "
                    "alone and fused as in mmer analyze",
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
    parser.add_argument("--models", default="lddu,lamb",
                        help="models to evaluate; the entries of the others are kept from the existing result file")
    args = parser.parse_args()
    names = tuple(m for m in args.models.split(",") if m)
    started = time.perf_counter()
    torch.set_num_threads(THREADS)
    feats = args.work / "features"
    if not (feats / "goemotions_test.npz").exists():
        feats.mkdir(parents=True, exist_ok=True)
        extract_goemotions(args.data / "goemotions" / "ekman", "test", feats, None, ExtractionSettings())
    if not (feats / "emodb.npz").exists():
        raise SystemExit(f"{feats}/emodb.npz missing: run recipes/train_default_models.py first")
    test_part, emodb = load_goemotions(feats, "test"), load_emodb(feats)
    faces = SyntheticFaces(load_faces(feats))
    pools = Pools(test_part, emodb, np.zeros(0, np.int64), default_feature_spec().visual.dim, faces)

    baseline_text = json.loads((RESULTS_DIR / "baseline_goemotions.json").read_text())
    baseline_speech = json.loads((RESULTS_DIR / "baseline_emodb.json").read_text())
    previous = RESULTS_DIR / "default_models.json"
    old = json.loads(previous.read_text()) if previous.exists() else {}
    text = {**old.get("text_goemotions_test", {}).get("models", {}),
            **{name: text_test(name, pools) for name in names}}
    speech = {**{k: v for k, v in old.get("speech_emodb_speaker_independent", {}).items() if k.endswith("_folds")},
              **{f"{name}_folds": speech_folds(name, test_part, emodb, faces, args.work) for name in names}}
    synthetic_faces = {**old.get("visual_synthetic_expression_sequences", {}).get("models", {}),
                       **{name: synthetic_face_test(name, pools) for name in names}}
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
        "visual_synthetic_expression_sequences": {
            "what": "700 held-out synthetic face sequences (100 per label, default_model_training.SyntheticFaces, "
                    "a seed unused in training): checks that the visual stream reads the expression network; "
                    "NOT an accuracy on real faces",
            "models": synthetic_faces},
        "feature_extraction_s": (json.loads((feats / "extraction_seconds.json").read_text())
                                 if (feats / "extraction_seconds.json").exists() else None),
        "training": "recipes/results/default_training.json",
        "evaluated_now": list(names),
        **provenance(THREADS),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    path = write_result("default_models", result)
    for name, r in {n: text[n] for n in names}.items():
        for view in ("application", "network"):
            m = r[view]["tuned_thresholds"]
            print(f"{name} GoEmotions test ({view}): macro-F1 {m['macro_f1']:.3f} micro-F1 {m['micro_f1']:.3f} "
                  f"ECE {r[view]['calibration']['ece_15_bins']:.3f} error by uncertainty bin "
                  f"{[round(b['error_rate'], 3) for b in r[view]['error_rate_by_uncertainty']]}")
    for name in names:
        folds = speech[f"{name}_folds"]
        for v, s in folds.get("pooled", {}).items():
            print(f"{name} EmoDB {v}: UA {s['unweighted_accuracy']:.3f} macro-F1 {s['macro_f1']:.3f} "
                  f"(folds {folds['folds_scored']})")
    print(f"wrote {path} ({result['wall_time_s']} s)")


if __name__ == "__main__":
    main()
