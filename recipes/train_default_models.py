"""Train mmer's default checkpoints: models/weights/lddu_default.safetensors (analyze's default) and
models/weights/lamb_default.safetensors, plus the per-fold LDDU models that give held-out EmoDB numbers.

Data (../shared/data): GoEmotions-Ekman (English Reddit comments, multi-label, official splits) and
EmoDB (German acted speech, 10 speakers). Features come from mmer's own extractors with the default
`ExtractionSettings()` (recipes/default_model_features.py), so the checkpoints' feature spec equals
`feature_spec_for(ExtractionSettings())` - text, audio AND visual; no training sample has visual
features, so the checkpoints record `extra["trained_modalities"] = ["text", "audio"]` and the
application must mask the visual stream for them.

Samples and training loop: recipes/default_model_training.py (docs/corpora.md, "Default model
training data"). Splits:
- every model first fits its input standardisation (`EmotionModel.fit_input_statistics`) on its
  own training pools: the training comments and the training speakers' utterances.
- shipped models: GoEmotions train (all 43,410 comments; --train-size takes a stratified subset)
  + EmoDB speakers 11-16 and 03, 08 (8 speakers) for training; GoEmotions dev + EmoDB speakers
  09, 10 for early stopping and per-label thresholds. GoEmotions test and nothing else is held
  out for the text numbers.
- fold models (LDDU by default, LAMB with --fold-model lamb; recipes/emodb_folds.json): fold k
  trains on GoEmotions train + the fold's 6 training speakers, selects on GoEmotions dev + the
  validation pair, and is scored (by recipes/evaluate_default_models.py) on the test pair it
  never saw.

Run:  python recipes/train_default_models.py [--data DIR] [--work DIR] [--folds 0,1,2,3,4]
      python recipes/train_default_models.py --models '' --fold-model lamb   # LAMB fold models
Writes models/weights/{lddu,lamb}_default.safetensors, models/weights/SHA256SUMS,
<work>/folds/<model>_fold<k>.safetensors and recipes/results/default_training.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from default_model_features import (LABEL_NAMES, default_feature_spec, load_emodb, load_faces, load_goemotions,
                                    prepare_features, stratified_subset)
from default_model_training import (EpochMixture, MixtureSettings, Pools, SyntheticFaces, audio_only_set, fit_fusion,
                                    SELECT_TEXT_WEIGHT, normalised_emodb, paired_set, text_only_set, train_one,
                                    visual_only_set)
from mmer.models.checkpoint import load_checkpoint, save_checkpoint
from mmer.models.config import config_to_dict
from mmer.models.registry import get_entry
from recipe_results import REPO_ROOT, RESULTS_DIR, SHARED_DATA, provenance, write_result

WEIGHTS_DIR = REPO_ROOT / "models" / "weights"
DEFAULT_WORK = Path.home() / ".cache" / "mmer" / "recipes" / "default_models"
FOLDS_FILE = Path(__file__).resolve().parent / "emodb_folds.json"
MAX_CHECKPOINT_BYTES = 20 * 1024 * 1024
THREADS = 1
SEED = 0
TRAIN_SIZE = 43410
"""GoEmotions train comments used: all 43,410 (a smaller --train-size takes a subset stratified by
label set, seeded)."""
SHIPPED_VALID_SPEAKERS = (9, 10)
"""EmoDB speakers held out of the shipped models' training for early stopping and thresholds."""
PAIRS_PER_VALID_UTTERANCE = 2
VALID_FACES_PER_LABEL = 50
"""Synthetic face sequences per label in the validation set (reported per epoch, not selected on)."""

# Small configs: the data is small (43k short comments, a few hundred 2-s utterances) and the
# budget was minutes of a shared CPU. Every model standardises its inputs with statistics of the
# training pools (`train_one`). Higher learning rates than the papers' and, for LDDU, a smaller
# contrastive weight (beta_scl 0.1, paper 0.8): in 5-epoch probes (20k comments, input
# standardisation on) the paper weight reached, at its best epoch, dev text macro-F1 0.486 against
# 0.550 with 0.1 (validation-speaker speech macro-F1 0.545 against 0.459); with the papers' rates
# (2e-5..1e-3) earlier 40-60-step probes still predicted the label priors for every input.
# 8 epochs: a first run with 5 still improved its validation score at epoch 5 (both models).
MODEL_OVERRIDES: dict[str, dict] = {
    "lddu": dict(hidden=64, text_layers=1, audio_layers=1, visual_layers=1, heads=4, ff_dim=128, dropout=0.1,
                 proj_dim=64, d_z=32, latent_dim=16, encoder_hidden=32, classifier_hidden=64, queue_size=2048,
                 beta_scl=0.1, scl_reduction="mean", lr=3e-3, batch_size=128, epochs=8, scheduler="cosine_warmup",
                 warmup_ratio=0.1, early_stop_patience=2),
    # LAMB costs ~5x LDDU per sample on CPU: fewer MC-dropout passes (5, paper 20) and fewer samples.
    "lamb": dict(mc_samples=5, lr=3e-3, batch_size=128, epochs=8, scheduler="plateau", plateau_patience=2,
                 decoder_residual=True,
                 early_stop_patience=3),
}
MIXTURES: dict[str, MixtureSettings] = {"lddu": MixtureSettings(epoch_samples=15000),
                                        "lamb": MixtureSettings(epoch_samples=8000)}
"""Samples drawn per epoch (time budget: a 2-core CPU; LAMB had 5,000 until its text score fell below
LDDU's with faces in the mix)."""
FOLD_BUDGET: dict[str, dict] = {"lddu": {"epochs": 6, "epoch_samples": 10000},
                                "lamb": {"epochs": 6, "epoch_samples": 4000}}
"""The fold models (EmoDB numbers only) train on a smaller budget than the shipped models: ten
models on a shared 2-core CPU. Same mixture shares, configs and selection otherwise."""
VALID_TEXT_LIMIT: dict[str, int | None] = {"lddu": None, "lamb": 1500}
"""GoEmotions dev comments used for selection/thresholds (None: all 5,426; LAMB: a stratified
1,500 because its MC-dropout prediction is slow on CPU)."""


def model_config(name: str, fold: bool = False):
    spec = default_feature_spec()
    config_class = get_entry(name).config_class
    overrides = dict(MODEL_OVERRIDES[name])
    if fold:
        overrides["epochs"] = FOLD_BUDGET[name]["epochs"]
    return config_class(num_labels=len(LABEL_NAMES), input_dims=spec.dims, **overrides)


def mixture_settings(name: str, fold: bool = False) -> MixtureSettings:
    if not fold:
        return MIXTURES[name]
    return MixtureSettings(**{**MIXTURES[name].__dict__, "epoch_samples": FOLD_BUDGET[name]["epoch_samples"]})


def speakers_rows(speakers: np.ndarray, wanted) -> np.ndarray:
    return np.flatnonzero(np.isin(speakers, list(wanted)))


def split_sets(name: str, parts: dict, train_speakers, valid_speakers):
    """Training pools and the validation sets of one split: (train_pools, valid_text, valid_audio,
    valid_paired, valid_faces, valid-text rows or None, voice normaliser). The voice frames of every
    speaker are normalised with that speaker's statistics, shrunk towards the training speakers'
    (`normalised_emodb`)."""
    emodb, normaliser = normalised_emodb(parts["emodb"], speakers_rows(parts["emodb"].speakers, train_speakers))
    visual_dim = default_feature_spec().visual.dim
    faces = SyntheticFaces(parts["faces"])
    train_pools = Pools(parts["train"], emodb, speakers_rows(emodb.speakers, train_speakers), visual_dim, faces)
    valid_pools = Pools(parts["valid"], emodb, speakers_rows(emodb.speakers, valid_speakers), visual_dim, faces)
    limit = VALID_TEXT_LIMIT[name]
    rows = None if limit is None else stratified_subset(parts["valid"].labels, limit, SEED)
    return (train_pools, text_only_set(valid_pools, "valid_text", rows), audio_only_set(valid_pools, "valid_audio"),
            paired_set(valid_pools, "valid_paired", PAIRS_PER_VALID_UTTERANCE, SEED),
            visual_only_set(valid_pools, "valid_synthetic_faces", VALID_FACES_PER_LABEL, SEED + 1), rows, normaliser)


def train_split(name: str, parts: dict, train_speakers, valid_speakers, log, fold: bool = False) -> dict:
    """Train `name` on GoEmotions train + `train_speakers`; select on dev + `valid_speakers`."""
    train_pools, valid_text, valid_audio, valid_paired, valid_faces, rows, normaliser = split_sets(
        name, parts, train_speakers, valid_speakers)
    outcome = train_one(name, model_config(name, fold), EpochMixture(train_pools, mixture_settings(name, fold), SEED),
                        valid_text, valid_audio, valid_paired, valid_faces, SEED, log)
    return {"outcome": outcome, "model": name, "mixture": mixture_settings(name, fold),
            "valid_text_comments": len(outcome_rows(rows, parts)),
            "voice_normalisation": normaliser,
            "train_speakers": sorted(int(s) for s in train_speakers),
            "valid_speakers": sorted(int(s) for s in valid_speakers)}


def recalibrate(path: Path, parts: dict, train_speakers, valid_speakers) -> None:
    """Fit the late fusion of an existing checkpoint again (`fit_fusion`, deterministic given the
    weights and the validation data) and rewrite the checkpoint with it; weights unchanged."""
    model, info = load_checkpoint(path)
    train_pools, valid_text, valid_audio, _, _, _, _ = split_sets(info.model_name, parts, train_speakers,
                                                                  valid_speakers)
    extra = dict(info.extra)
    extra["fusion"] = fit_fusion(model, valid_text, valid_audio, train_pools).to_dict()
    extra["fusion_fitted"] = {"by": "recipes/train_default_models.py --calibrate-only",
                              "commit": provenance(THREADS)["git"]["commit"]}
    save_checkpoint(path, model, info.label_names, info.feature_spec, thresholds=info.thresholds, extra=extra)


def outcome_rows(rows, parts: dict):
    return range(len(parts["valid"])) if rows is None else rows


def checkpoint_extra(run: dict, data: dict, role: str) -> dict:
    outcome, mixture = run["outcome"], run["mixture"]
    prov = provenance(THREADS)
    return {
        "trained_modalities": ["text", "audio", "visual"],
        "visual_training": "synthetic expression sequences only (default_model_training.SyntheticFaces); "
                           "no labelled face video",
        "fusion": outcome.fusion.to_dict(),
        "voice_normalisation": run["voice_normalisation"].to_dict(),
        "voice_normalisation_training": "every EmoDB speaker's frames z-scored with that speaker's statistics, "
                                        "shrunk towards the prior (mmer/voice_normalisation.py)",
        "role": role,
        "data": {**data, "emodb_train_speakers": run["train_speakers"],
                 "emodb_valid_speakers": run["valid_speakers"]},
        "label_mapping": {"goemotions": "joy->happy, sadness->sad, others by name",
                          "emodb": "happiness->happy, sadness->sad, boredom->neutral; no surprise"},
        "mixture": mixture.__dict__,
        "selection": {"split": "GoEmotions dev + EmoDB validation speakers",
                      "metric": f"{SELECT_TEXT_WEIGHT[run['model']]} * dev text-only macro-F1 + "
                                f"{1 - SELECT_TEXT_WEIGHT[run['model']]} * validation-speaker speech macro-F1",
                      "best_epoch": outcome.best_epoch, "epochs_run": outcome.epochs_run},
        "valid_text_comments": run["valid_text_comments"],
        "thresholds_tuned_on": "GoEmotions dev (text-only) + EmoDB validation speakers (audio-only and paired)",
        "history": outcome.history,
        "recipe": "recipes/train_default_models.py",
        "commit": prov["git"]["commit"],
        "uncommitted_changes": prov["git"]["uncommitted_changes"],
        "train_wall_time_s": round(outcome.seconds, 1),
        "hardware": prov["hardware"],
        "date_utc": prov["date_utc"],
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_sha256sums(paths: list[Path]) -> Path:
    out = WEIGHTS_DIR / "SHA256SUMS"
    out.write_text("".join(f"{sha256(p)}  {p.name}\n" for p in sorted(paths)))
    return out


def record_runs(args, prep: dict, data: dict, spec, runs: dict, started: float) -> Path:
    """Merge this invocation's finished runs into recipes/results/default_training.json (called after
    every run, so an interrupted invocation keeps what it finished; runs of other invocations, e.g.
    fold models trained by a separate command, are kept, newer entries win)."""
    command = "python recipes/train_default_models.py " + " ".join(
        f"--{k.replace('_', '-')} {v or chr(39) * 2}" for k, v in vars(args).items()
        if k in ("folds", "fold_model", "models", "train_size"))
    invocation = {"command": command, "feature_extraction_s": prep["seconds"],
                  "cached_features_extraction_s": prep["recorded_seconds"],
                  "trained": sorted(runs), **provenance(THREADS),
                  "wall_time_s": round(time.perf_counter() - started, 1)}
    previous = RESULTS_DIR / "default_training.json"
    old = json.loads(previous.read_text()) if previous.exists() else {}
    result = {
        "recipe": "recipes/train_default_models.py",
        "data": data,
        "feature_spec": spec.to_dict(),
        "mixtures": {k: v.__dict__ for k, v in MIXTURES.items()},
        "fold_budget": FOLD_BUDGET,
        "runs": {**old.get("runs", {}), **runs},
        "invocations": [i for i in old.get("invocations", [])
                        if i["command"] != command or not set(i["trained"]) <= set(runs)] + [invocation],
    }
    return write_result("default_training", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="feature + fold-model folder (outside the repo)")
    parser.add_argument("--train-size", type=int, default=TRAIN_SIZE)
    parser.add_argument("--folds", default="0,1,2,3,4", help="EmoDB folds to train fold models for ('' = none)")
    parser.add_argument("--fold-model", default="lddu", choices=("lddu", "lamb"), help="model of the fold models")
    parser.add_argument("--models", default="lddu,lamb", help="shipped models to (re)train")
    parser.add_argument("--calibrate-only", action="store_true",
                        help="do not train: fit the late fusion of the existing shipped / fold checkpoints again")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(THREADS)
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    prep = prepare_features(args.data, args.work, args.train_size, SEED)
    features_s = time.perf_counter() - started
    log(f"features ready ({features_s:.0f} s; extracted now: {prep['seconds'] or 'none, cached'})")
    feats = args.work / "features"
    parts = {"train": load_goemotions(feats, "train"), "valid": load_goemotions(feats, "valid"),
             "emodb": load_emodb(feats), "faces": load_faces(feats)}
    data = {"goemotions": str(args.data / "goemotions" / "ekman"),
            "goemotions_train_comments": len(parts["train"]), "goemotions_train_total": 43410,
            "goemotions_train_subset": ("none (all comments)" if len(parts["train"]) == 43410
                                        else f"stratified by exact label set, seed {SEED}"),
            "emodb": str(args.data / "emodb")}
    spec = default_feature_spec()
    all_speakers = sorted(set(int(s) for s in parts["emodb"].speakers))
    runs: dict[str, dict] = {}
    folds = json.loads(FOLDS_FILE.read_text())["folds"]
    if args.calibrate_only:
        for name in [m for m in args.models.split(",") if m]:
            recalibrate(WEIGHTS_DIR / f"{name}_default.safetensors", parts,
                        [s for s in all_speakers if s not in SHIPPED_VALID_SPEAKERS], SHIPPED_VALID_SPEAKERS)
            log(f"recalibrated shipped {name}")
        write_sha256sums(sorted(WEIGHTS_DIR.glob("*_default.safetensors")))
        record = RESULTS_DIR / "default_training.json"
        if record.exists():  # the shipped files changed: their recorded size and hash follow
            result = json.loads(record.read_text())
            for run_name, run in result.get("runs", {}).items():
                if run_name.endswith("_default") and (REPO_ROOT / run["file"]).exists():
                    run.update(bytes=(REPO_ROOT / run["file"]).stat().st_size, sha256=sha256(REPO_ROOT / run["file"]))
            write_result("default_training", result)
        for k in [int(f) for f in args.folds.split(",") if f.strip()]:
            path = args.work / "folds" / f"{args.fold_model}_fold{k}.safetensors"
            if path.exists():
                recalibrate(path, parts, folds[k]["train_speakers"], folds[k]["valid_speakers"])
                log(f"recalibrated {path.name}")
        return

    for name in [m for m in args.models.split(",") if m]:
        log(f"shipped {name}")
        train_spk = [s for s in all_speakers if s not in SHIPPED_VALID_SPEAKERS]
        run = train_split(name, parts, train_spk, SHIPPED_VALID_SPEAKERS, log)
        path = WEIGHTS_DIR / f"{name}_default.safetensors"
        save_checkpoint(path, run["outcome"].model, LABEL_NAMES, spec, thresholds=run["outcome"].thresholds,
                        extra=checkpoint_extra(run, data, "shipped default"))
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise SystemExit(f"{path}: {path.stat().st_size} bytes exceeds the 20 MB limit")
        runs[f"{name}_default"] = {"file": str(path.relative_to(REPO_ROOT)), "bytes": path.stat().st_size,
                                   "sha256": sha256(path), "best_epoch": run["outcome"].best_epoch,
                                   "epochs_run": run["outcome"].epochs_run,
                                   "train_wall_time_s": round(run["outcome"].seconds, 1),
                                   "history": run["outcome"].history, "config": config_to_dict(model_config(name))}
        write_sha256sums(sorted(WEIGHTS_DIR.glob("*_default.safetensors")))
        record_runs(args, prep, data, spec, runs, started)

    for k in [int(f) for f in args.folds.split(",") if f.strip()]:
        fold, name = folds[k], args.fold_model
        log(f"{name} fold {k} (test speakers {fold['test_speakers']})")
        run = train_split(name, parts, fold["train_speakers"], fold["valid_speakers"], log, fold=True)
        path = args.work / "folds" / f"{name}_fold{k}.safetensors"
        extra = checkpoint_extra(run, data, f"EmoDB fold {k} model (not shipped)")
        extra["emodb_test_speakers"] = fold["test_speakers"]
        save_checkpoint(path, run["outcome"].model, LABEL_NAMES, spec, thresholds=run["outcome"].thresholds,
                        extra=extra)
        runs[f"{name}_fold{k}"] = {"file": str(path), "test_speakers": fold["test_speakers"],
                                   "best_epoch": run["outcome"].best_epoch, "epochs_run": run["outcome"].epochs_run,
                                   "train_wall_time_s": round(run["outcome"].seconds, 1),
                                   "history": run["outcome"].history}
        record_runs(args, prep, data, spec, runs, started)

    path = record_runs(args, prep, data, spec, runs, started)
    log(f"wrote {path} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
