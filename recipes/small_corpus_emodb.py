"""Small-corpus training, measured: LDDU and LAMB on EmoDB through the user's path, speaker-independent.

The path a researcher takes with their own labelled clips, on a real corpus that may be used here:
EmoDB (../shared/data/emodb: 535 German acted utterances, 10 speakers, CC0), its own 7 classes.

1. a labels CSV (`file`, `group` = speaker, `labels` = the EmoDB emotion) -> `mmer extract` with
   `--modalities audio` (the library calls `jobs_from_labels_csv` + `run_extraction`) into a cache;
2. `mmer train --dataset cache --folds 5 --preset small` for LDDU and LAMB (`train_folds`): the 10
   speakers sorted by number form 5 pairs (as recipes/emodb_folds.json); fold k tests pair k,
   selects the epoch and calibrates on pair (k + 1) mod 5 and trains on the other 6 speakers;
   selection metric: validation unweighted accuracy;
3. the diagnosis (`--part presets`): on fold 0 only, each model with the presets the docs gave
   before (`paper`, and LDDU's `authors`), and LDDU with the small preset's optimisation but the
   paper's network (`paper-net`), to separate the optimisation from the network size.

Every run's learning curve (train loss and validation macro-F1 / UA per epoch) and held-out test
metrics (top-1 accuracy, UA, WA, macro-F1; pooled confusion matrix over the folds) go to
recipes/results/small_corpus_emodb.json; `--part folds` and `--part presets` may run separately
(in parallel) and merge into that file.

Run:  python recipes/small_corpus_emodb.py --work /tmp/emodb-small [--part all|extract|folds|presets]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from recipe_results import RESULTS_DIR, SHARED_DATA, provenance

from mmer.extraction_jobs import jobs_from_labels_csv, run_extraction
from mmer.extractors.pipeline import ExtractionSettings
from mmer.repeated_runs import train_folds
from mmer.training import TrainOptions, train

RESULT_NAME = "small_corpus_emodb"
FOLDS = 5
SELECT_METRIC = "unweighted_accuracy"
PRESET_RUNS: dict[str, tuple[str, str, list[str]]] = {
    "lddu-paper": ("lddu", "paper", []),
    "lddu-authors": ("lddu", "authors", []),
    "lddu-paper-net": ("lddu", "small", [f"{k}={v}" for k, v in {
        "hidden": 256, "text_layers": 3, "audio_layers": 3, "visual_layers": 3, "heads": 8, "ff_dim": 512,
        "dropout": 0.3, "proj_dim": 256, "d_z": 128, "latent_dim": 64, "encoder_hidden": 128,
        "classifier_hidden": 128}.items()]),
    "lamb-paper": ("lamb", "paper", []),
}
"""The diagnosis runs (fold 0): name -> (model, preset, --set overrides). `lddu-paper-net` = the
small preset's optimisation (batch 16, lr 1e-3, queue 256, beta_scl 0.1) on the paper's network."""


def write_labels_csv(emodb: Path, out: Path) -> Path:
    """file, group (speaker), labels (EmoDB emotion) for every utterance of EmoDB's labels.csv."""
    with (emodb / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "group", "labels"])
        for r in rows:
            writer.writerow([r["file"], r["speaker"], r["emotion"]])
    return out


def extract(emodb: Path, work: Path) -> dict:
    """`mmer extract DIR --labels CSV --modalities audio --out CACHE` (resumable)."""
    labels = write_labels_csv(emodb, work / "emodb_labels.csv")
    report = run_extraction(jobs_from_labels_csv(emodb, labels), work / "cache",
                            ExtractionSettings(use_cache=False, modalities=("audio",)), workers=1, threads=1)
    if report.failures:
        raise SystemExit(f"{len(report.failures)} files failed: {report.failures[0]}")
    return {"written": report.written, "already_cached": report.already_cached, "seconds": report.seconds}


def curve(run: Path) -> list[dict]:
    """Per epoch: train loss, validation macro-F1, top-1, UA (at the epoch's tuned thresholds), lr."""
    out = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append({"epoch": r["epoch"], "train_loss": round(r["train"]["total"], 4),
                     "val_macro_f1": round(r["val"]["macro_f1"], 4), "val_top1": round(r["val"]["top1_accuracy"], 4),
                     "val_ua": round(r["val"]["unweighted_accuracy"], 4), "lr": r["lr"], "seconds": round(r["seconds"], 1)})
    return out


def held_out(run: Path) -> dict:
    test = json.loads((run / "test_metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    return {"test_groups": config["fold_groups"]["test_groups"], "best_epoch": test["best_epoch"],
            "epochs_run": len(curve(run)), "top1_accuracy": test["top1_accuracy"], "ua": test["unweighted_accuracy"],
            "wa": test["weighted_accuracy"], "macro_f1": test["macro_f1"], "num_samples": test["num_samples"],
            "warnings": config.get("warnings", [])}


def common_options(model: str, preset: str, cache: Path, out: Path, overrides: list[str]) -> TrainOptions:
    return TrainOptions(model=model, dataset="cache", data=cache, preset=preset, overrides=overrides, out=out,
                        device="cpu", threads=1, seed=0, select_metric=SELECT_METRIC, folds=FOLDS, resume=out.exists())


def run_folds(work: Path, models: list[str]) -> dict:
    results = {}
    for model in models:
        out = work / "runs" / f"{model}-small"
        started = time.perf_counter()
        folds = train_folds(common_options(model, "small", work / "cache", out, []))
        summary = json.loads(folds.summary_path.read_text())
        results[f"{model}-small"] = {
            "model": model, "preset": "small", "seconds": round(time.perf_counter() - started, 1),
            "mean_std": {k: summary["metrics"][k] for k in ("top1_accuracy", "unweighted_accuracy",
                                                           "weighted_accuracy", "macro_f1")},
            "pooled": {k: summary["pooled_single_label"][k] for k in (
                "top1_accuracy", "weighted_accuracy", "unweighted_accuracy", "per_class_recall", "confusion",
                "confusion_columns", "num_samples")},
            "folds": [{**held_out(r), "curve": curve(r)} for r in folds.run_dirs],
        }
    return results


def run_presets(work: Path, names: list[str]) -> dict:
    results = {}
    for name in names:
        model, preset, overrides = PRESET_RUNS[name]
        out = work / "runs" / f"{name}-fold0"
        options = common_options(model, preset, work / "cache", out, overrides)
        options.fold = 0
        if options.resume:  # continue (or, when finished, re-test) with the saved config
            options.overrides, options.preset = [], None
        started = time.perf_counter()
        train(options)
        results[name] = {"model": model, "preset": preset, "overrides": overrides, "fold": 0,
                         "seconds": round(time.perf_counter() - started, 1), **held_out(out), "curve": curve(out)}
    return results


def markdown(result: dict) -> str:
    """The result file as tables: held-out scores per run, learning curves (every 3rd epoch)."""
    lines = [f"# Small corpora: {result['data']}", "", result["protocol"] + f"; chance UA {result['chance_ua']}.", "",
             "## Speaker-independent folds, `--preset small`", "",
             "| model | top-1 (mean ± std) | UA | WA | macro-F1 | pooled UA | pooled WA | wall time |",
             "|---|---|---|---|---|---|---|---|"]
    for name, run in result.get("small_preset_folds", {}).items():
        m = run["mean_std"]
        lines.append(f"| {name} | " + " | ".join(f"{m[k]['mean']:.3f} ± {m[k]['std']:.3f}" for k in (
            "top1_accuracy", "unweighted_accuracy", "weighted_accuracy", "macro_f1"))
            + f" | {run['pooled']['unweighted_accuracy']:.3f} | {run['pooled']['weighted_accuracy']:.3f}"
            + f" | {run['seconds'] / 60:.0f} min |")
    lines += ["", "## Fold 0 (test speakers 03 + 08) with each preset", "",
              "| run | best epoch / run | test top-1 | test UA | test WA | test macro-F1 | warning |", "|---|---|---|---|---|---|---|"]
    runs = {**{k: v for k, v in result.get("presets_fold0", {}).items()},
            **{f"{k} (fold 0)": v["folds"][0] for k, v in result.get("small_preset_folds", {}).items()}}
    for name, run in runs.items():
        lines.append(f"| {name} | {run['best_epoch']} / {run['epochs_run']} | {run['top1_accuracy']:.3f} | {run['ua']:.3f} | "
                     f"{run['wa']:.3f} | {run['macro_f1']:.3f} | {'yes' if run['warnings'] else ''} |")
    lines += ["", "## Learning curves, fold 0 (train loss / validation UA, every 3rd epoch)", ""]
    for name, run in runs.items():
        points = [f"{c['epoch']}: {c['train_loss']:.3f} / {c['val_ua']:.3f}" for c in run["curve"][::3]]
        lines.append(f"- **{name}**: " + ", ".join(points))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="cache and run directories (outside the repository)")
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "emodb")
    parser.add_argument("--part", choices=("all", "extract", "folds", "presets", "report"), default="all",
                        help="report: only render recipes/results/small_corpus_emodb.md from the JSON")
    parser.add_argument("--models", nargs="+", default=["lddu", "lamb"])
    parser.add_argument("--presets", nargs="+", default=list(PRESET_RUNS), choices=list(PRESET_RUNS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    path = RESULTS_DIR / f"{RESULT_NAME}.json"
    if args.part == "report":
        (RESULTS_DIR / f"{RESULT_NAME}.md").write_text(markdown(json.loads(path.read_text())))
        print(f"wrote {RESULTS_DIR / f'{RESULT_NAME}.md'}")
        return
    result: dict = {}
    result.update({"recipe": "recipes/small_corpus_emodb.py", "data": "EmoDB (../shared/data/emodb), 535 utterances, "
                   "10 speakers, its 7 classes; audio only (eGeMAPS LLDs of the speech, mmer extract --modalities audio)",
                   "protocol": f"{FOLDS} speaker-independent folds (pairs of speakers: test pair k, validation pair "
                               f"k+1 mod {FOLDS}, 6 training speakers); epoch selected on validation {SELECT_METRIC}; "
                               "test split read once per run", "chance_ua": round(1 / 7, 4)})
    parts: dict = {}
    if args.part in ("all", "extract"):
        extraction = extract(args.data, args.work)
        if extraction["written"]:
            result["extraction"] = extraction
    if args.part in ("all", "folds"):
        parts["small_preset_folds"] = run_folds(args.work, args.models)
    if args.part in ("all", "presets"):
        parts["presets_fold0"] = run_presets(args.work, args.presets)
    # Parts may run in parallel: merge into the file as it is now, never over another part's runs.
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved.update(result)
    for key, runs in parts.items():
        saved.setdefault(key, {}).update(runs)
    saved.setdefault("provenance", {})[args.part] = {**provenance(threads=1),
                                                     "wall_time_s": round(time.perf_counter() - started, 1)}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
