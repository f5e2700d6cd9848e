"""Text baseline on GoEmotions-Ekman: TF-IDF + one-vs-rest logistic regression.

Data: the official train / dev / test splits of GoEmotions mapped to Ekman's 7 labels
(../shared/data/goemotions/ekman/{train,dev,test}.tsv: text, comma-separated label ids into
labels.txt, comment id). Ekman names map to mmer's: joy -> happy, sadness -> sad, the rest as is,
which gives exactly mmer's default label order.

Protocol:
1. Word 1-2-gram TF-IDF (sublinear tf, min_df 2) fitted on train only.
2. One logistic regression per label (liblinear), for each C in C_GRID, fitted on train.
3. On dev: one threshold per label maximising that label's F1 (mmer.thresholds), then the C
   with the best dev macro-F1 is kept.
4. Test is scored once, with that C and those thresholds (and, for reference, with 0.5).
Metrics: mmer.metrics.multilabel_metrics (macro-F1 = mean of per-label F1; micro-F1 over all
label decisions).

Run:  python recipes/baseline_goemotions.py [--data DIR]   -> recipes/results/baseline_goemotions.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from threadpoolctl import threadpool_limits

from mmer.corpora.label_sets import DEFAULT_LABEL_NAMES
from mmer.metrics import multilabel_metrics
from mmer.thresholds import NEUTRAL_THRESHOLD, apply_thresholds, tune_label_thresholds
from recipe_results import SHARED_DATA, provenance, write_result

EKMAN_TO_MMER = {"joy": "happy", "sadness": "sad"}
C_GRID: tuple[float, ...] = (0.25, 1.0, 4.0, 16.0)
"""Inverse L2 regularisation strengths tried (selected on dev macro-F1)."""
TFIDF = {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True, "lowercase": True}
THREADS = 1


def read_split(path: Path, num_labels: int) -> tuple[list[str], np.ndarray]:
    """Texts and an (N, q) 0/1 matrix from one GoEmotions TSV (text, label ids, comment id)."""
    texts, rows = [], []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) != 3:
            raise SystemExit(f"{path}: line {line_number}: expected 3 tab-separated fields")
        target = np.zeros(num_labels, dtype=np.int64)  # (q,)
        target[[int(i) for i in fields[1].split(",")]] = 1
        texts.append(fields[0])
        rows.append(target)
    return texts, np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "goemotions" / "ekman")
    args = parser.parse_args()
    started = time.perf_counter()

    ekman = (args.data / "labels.txt").read_text().split()
    names = [EKMAN_TO_MMER.get(n, n) for n in ekman]
    if names != list(DEFAULT_LABEL_NAMES):
        raise SystemExit(f"{args.data / 'labels.txt'}: labels {ekman} do not map onto {list(DEFAULT_LABEL_NAMES)}")
    splits = {s: read_split(args.data / f"{s}.tsv", len(names)) for s in ("train", "dev", "test")}

    with threadpool_limits(limits=THREADS):
        vectorizer = TfidfVectorizer(**TFIDF)
        x = {"train": vectorizer.fit_transform(splits["train"][0])}
        x.update({s: vectorizer.transform(splits[s][0]) for s in ("dev", "test")})
        y = {s: splits[s][1] for s in splits}

        candidates = []
        for c in C_GRID:
            model = OneVsRestClassifier(LogisticRegression(C=c, solver="liblinear", max_iter=1000, random_state=0), n_jobs=1)
            model.fit(x["train"], y["train"])
            dev_probs = model.predict_proba(x["dev"])  # (N_dev, q)
            thresholds = tune_label_thresholds(dev_probs, y["dev"])
            dev = multilabel_metrics(y["dev"], apply_thresholds(dev_probs, thresholds), names)
            print(f"C={c:g}: dev macro-F1 {dev.macro_f1:.4f}  micro-F1 {dev.micro_f1:.4f}")
            candidates.append((dev.macro_f1, c, model, thresholds, dev))
        _, best_c, model, thresholds, dev = max(candidates, key=lambda t: t[0])
        test_probs = model.predict_proba(x["test"])
        test = multilabel_metrics(y["test"], apply_thresholds(test_probs, thresholds), names)
        test_half = multilabel_metrics(y["test"], apply_thresholds(test_probs, NEUTRAL_THRESHOLD), names)

    result = {
        "recipe": "recipes/baseline_goemotions.py",
        "task": "GoEmotions-Ekman multi-label text emotion, official test split",
        "data": {
            "path": str(args.data),
            "num_samples": {s: int(len(y[s])) for s in y},
            "label_names": names,
            "ekman_names": ekman,
        },
        "method": {
            "features": f"TF-IDF {TFIDF}, vocabulary {len(vectorizer.vocabulary_)} terms (train only)",
            "classifier": "one-vs-rest logistic regression (liblinear, L2)",
            "c_grid": list(C_GRID),
            "selected_c": best_c,
            "thresholds": "one per label, maximising that label's dev F1 (grid 0.01..0.99)",
            "dev_thresholds": dict(zip(names, thresholds)),
        },
        "dev": {"macro_f1": dev.macro_f1, "micro_f1": dev.micro_f1},
        "test": test.as_dict(),
        "test_threshold_0_5": {"macro_f1": test_half.macro_f1, "micro_f1": test_half.micro_f1},
        "external_reference": {
            "model": "bert-base-cased fine-tuned on GoEmotions-Ekman (GoEmotions-pytorch, public results)",
            "test_macro_f1": 0.624,
            "measured_here": False,
        },
        **provenance(THREADS),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    path = write_result("baseline_goemotions", result)
    print(f"test (C={best_c:g}, dev-tuned thresholds): macro-F1 {test.macro_f1:.4f}  micro-F1 {test.micro_f1:.4f}")
    print("per label F1: " + ", ".join(f"{n} {s.f1:.3f}" for n, s in test.per_label.items()))
    print(f"test at threshold 0.5: macro-F1 {test_half.macro_f1:.4f}  micro-F1 {test_half.micro_f1:.4f}")
    print(f"wrote {path} ({result['wall_time_s']} s)")


if __name__ == "__main__":
    main()
