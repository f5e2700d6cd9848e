"""Speech baseline on EmoDB: openSMILE eGeMAPSv02 functionals + linear SVM, speaker-independent.

Data: ../shared/data/emodb (535 German acted utterances, 10 speakers, 2.0 s, 22.05 kHz mono;
labels.csv). EmoDB has no "surprise", and "boredom" is not in mmer's label set, so three label
variants are scored (all on the same folds):
- "boredom_excluded" (main): the 454 utterances of anger, disgust, fear, happy, neutral, sad;
- "boredom_as_neutral": all 535 utterances, boredom counted as neutral (6 classes);
- "emodb_7_classes": EmoDB's own 7 classes, for comparison with the speech literature.

Folds (saved to recipes/emodb_folds.json so later models are scored on the SAME folds): the 10
speakers sorted by number form 5 consecutive pairs (03+08, 09+10, 11+12, 13+14, 15+16). Fold k
tests pair k, validates on pair (k+1) mod 5 and trains on the other 6 speakers.

Per fold: features standardised on the training speakers, SVC(kernel="linear",
class_weight="balanced"); C chosen from C_GRID by unweighted accuracy on the validation pair,
then refitted on train + validation speakers and applied to the test pair once.
Metrics over the pooled test predictions of the 5 folds: unweighted accuracy (UA = mean per-class
recall), weighted accuracy (WA = plain accuracy) and macro-F1; per-fold values are saved too.

Run:  python recipes/baseline_emodb.py [--data DIR]   -> recipes/results/baseline_emodb.json
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import opensmile
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from recipe_results import SHARED_DATA, provenance, write_result

FOLDS_FILE = Path(__file__).resolve().parent / "emodb_folds.json"
NUM_FOLDS = 5
C_GRID: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)
THREADS = 1
EMODB_TO_MMER = {"happiness": "happy", "sadness": "sad", "anger": "anger", "disgust": "disgust",
                 "fear": "fear", "neutral": "neutral"}
VARIANTS: dict[str, dict[str, str | None]] = {
    # variant -> EmoDB class -> class scored (None: utterance left out)
    "boredom_excluded": {**EMODB_TO_MMER, "boredom": None},
    "boredom_as_neutral": {**EMODB_TO_MMER, "boredom": "neutral"},
    "emodb_7_classes": {**EMODB_TO_MMER, "boredom": "boredom"},
}


def read_labels(data: Path) -> list[dict[str, str]]:
    """Rows of labels.csv (file, speaker, emotion, ...), in file order."""
    with (data / "labels.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def make_folds(rows: list[dict[str, str]]) -> dict:
    """The fold assignment: speakers sorted by number, consecutive pairs; test k, valid k+1."""
    speakers = sorted({int(r["speaker"]) for r in rows})
    pairs = [speakers[2 * k: 2 * k + 2] for k in range(NUM_FOLDS)]
    folds = []
    for k in range(NUM_FOLDS):
        test, valid = pairs[k], pairs[(k + 1) % NUM_FOLDS]
        train = [s for s in speakers if s not in test and s not in valid]
        folds.append({
            "fold": k,
            "test_speakers": test,
            "valid_speakers": valid,
            "train_speakers": train,
            "test_files": sorted(r["file"] for r in rows if int(r["speaker"]) in test),
        })
    return {
        "dataset": "EmoDB (../shared/data/emodb, 535 utterances, 10 speakers)",
        "scheme": "5 folds of 2 speakers: speakers sorted by number, consecutive pairs; fold k tests pair k, "
                  "validates on pair (k+1) mod 5, trains on the other 6 speakers",
        "speakers": speakers,
        "folds": folds,
    }


def extract_features(data: Path, rows: list[dict[str, str]]) -> tuple[np.ndarray, list[str]]:
    """(N, 88) eGeMAPSv02 functionals, one row per labels.csv row, and the feature names."""
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    table = [smile.process_file(str(data / r["file"])).to_numpy()[0] for r in rows]
    return np.stack(table).astype(np.float64), list(smile.feature_names)


def score(y_true: list[str], y_pred: list[str], classes: list[str]) -> dict:
    """UA (mean per-class recall), WA (accuracy), macro-F1 and the confusion matrix (rows = truth)."""
    return {
        "unweighted_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "weighted_accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "num_samples": len(y_true),
    }


def run_variant(features: np.ndarray, rows: list[dict[str, str]], folds: dict, mapping: dict) -> dict:
    """Cross-validate one label variant over the folds; returns pooled and per-fold scores."""
    keep = [i for i, r in enumerate(rows) if mapping[r["emotion"]] is not None]
    target = {i: mapping[rows[i]["emotion"]] for i in keep}
    classes = sorted(set(target.values()))
    speaker = {i: int(rows[i]["speaker"]) for i in keep}
    pooled_true, pooled_pred, per_fold = [], [], []
    for fold in folds["folds"]:
        part = {name: [i for i in keep if speaker[i] in fold[f"{name}_speakers"]] for name in ("train", "valid", "test")}

        def fit(indices: list[int], c: float):
            model = make_pipeline(StandardScaler(), SVC(kernel="linear", C=c, class_weight="balanced"))
            return model.fit(features[indices], [target[i] for i in indices])

        valid_ua = {}
        for c in C_GRID:
            predicted = fit(part["train"], c).predict(features[part["valid"]])
            valid_ua[c] = balanced_accuracy_score([target[i] for i in part["valid"]], predicted)
        best_c = max(C_GRID, key=lambda c: (valid_ua[c], -c))  # ties -> smaller C
        predicted = list(fit(part["train"] + part["valid"], best_c).predict(features[part["test"]]))
        truth = [target[i] for i in part["test"]]
        pooled_true += truth
        pooled_pred += predicted
        per_fold.append({"fold": fold["fold"], "test_speakers": fold["test_speakers"], "selected_c": best_c,
                         **score(truth, predicted, classes)})
    pooled = score(pooled_true, pooled_pred, classes)
    matrix = confusion_matrix(pooled_true, pooled_pred, labels=classes)
    return {
        "classes": classes,
        "pooled": pooled,
        "per_class_recall": {c: float(matrix[j, j] / matrix[j].sum()) for j, c in enumerate(classes)},
        "confusion_matrix": {"rows_truth_cols_prediction": classes, "counts": matrix.tolist()},
        "fold_mean_unweighted_accuracy": float(np.mean([f["unweighted_accuracy"] for f in per_fold])),
        "fold_std_unweighted_accuracy": float(np.std([f["unweighted_accuracy"] for f in per_fold])),
        "per_fold": per_fold,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "emodb")
    args = parser.parse_args()
    started = time.perf_counter()

    rows = read_labels(args.data)
    folds = make_folds(rows)
    FOLDS_FILE.write_text(json.dumps(folds, indent=2) + "\n")
    with threadpool_limits(limits=THREADS):
        t0 = time.perf_counter()
        features, feature_names = extract_features(args.data, rows)
        extraction_s = time.perf_counter() - t0
        variants = {name: run_variant(features, rows, folds, mapping) for name, mapping in VARIANTS.items()}

    result = {
        "recipe": "recipes/baseline_emodb.py",
        "task": "EmoDB single-label speech emotion, speaker-independent (5 folds of 2 speakers)",
        "data": {"path": str(args.data), "num_utterances": len(rows), "folds_file": "recipes/emodb_folds.json"},
        "method": {
            "features": f"openSMILE {opensmile.__version__} eGeMAPSv02 functionals ({len(feature_names)} per utterance)",
            "classifier": "StandardScaler + SVC(kernel='linear', class_weight='balanced'), one-vs-one",
            "c_grid": list(C_GRID),
            "c_selection": "per fold, best unweighted accuracy on the validation speaker pair, then refit on train+valid",
            "surprise": "absent from EmoDB: not a class in any variant, cannot be scored on EmoDB",
        },
        "variants": variants,
        "feature_extraction_s": round(extraction_s, 1),
        **provenance(THREADS),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    path = write_result("baseline_emodb", result)
    for name, v in variants.items():
        p = v["pooled"]
        print(f"{name:20s} n={p['num_samples']:3d}  UA {p['unweighted_accuracy']:.4f}  WA {p['weighted_accuracy']:.4f}  "
              f"macro-F1 {p['macro_f1']:.4f}  (fold UA {v['fold_mean_unweighted_accuracy']:.3f} "
              f"+- {v['fold_std_unweighted_accuracy']:.3f})")
    print(f"folds: {FOLDS_FILE}")
    print(f"wrote {path} ({result['wall_time_s']} s, feature extraction {result['feature_extraction_s']} s)")


if __name__ == "__main__":
    main()
