"""Reproducing the papers through the CLI: presets, fixed/tuned thresholds, multi-seed runs and their
summary, deterministic LAMB evaluation, and `mmer report` next to the published rows (tiny configs,
synthetic files in the exact benchmark formats)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmer.comparison import PUBLISHED, benchmark_of, compare_runs
from mmer.evaluation import predict_probs
from mmer.repeated_runs import SUMMARY_METRICS, summarize_seeds
from mmer.models.checkpoint import load_checkpoint, read_checkpoint_info
from mmer.models.registry import get_entry, model_names
from tests import synthetic_benchmarks as sb
from tests.test_train_cli import COMMON, cli, data_args, ok, one_line_error

pytestmark = pytest.mark.slow  # real extractor networks, shipped models or many training runs

SIZES = (16, 8, 8)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return sb.write_mosei_aligned(tmp_path_factory.mktemp("repro"), SIZES, seq_len=12)


@pytest.fixture(scope="module")
def lamb_seeds(bench, tmp_path_factory):
    """`mmer train --model lamb --seeds 2` (seeds 3 and 4), shared by the tests that read it."""
    out = tmp_path_factory.mktemp("seeds") / "out"
    result = cli("train", "--model", "lamb", *data_args(bench), *COMMON, "--epochs", "2", "--seeds", "2",
                 "--seed", "3", "--out", out)
    ok(result)
    return out, result


def _as_json(value):
    """A config value as config.json stores it (tuples become lists)."""
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("preset", ["paper", "authors"])
@pytest.mark.parametrize("model", model_names())
def test_each_preset_trains_and_evaluates(model, preset, bench, tmp_path):
    run = tmp_path / "run"
    ok(cli("train", "--model", model, *data_args(bench), *COMMON, "--epochs", "1", "--preset", preset, "--out", run))
    saved = json.loads((run / "config.json").read_text())
    assert saved["preset"] == preset
    entry = get_entry(model)
    tiny = entry.config_class.tiny(len(bench.label_names), bench.load().feature_spec.dims)
    for key, value in entry.presets[preset].items():
        if key != "batch_size":  # --batch-size 8 wins over the preset
            assert saved["config"][key] == _as_json(value), key
    for key in set(entry.presets["authors"]) - set(entry.presets[preset]) - {"batch_size"}:
        assert saved["config"][key] == _as_json(getattr(tiny, key)), key  # the other preset's values stay out
    test = json.loads((run / "test_metrics.json").read_text())
    info, _ = read_checkpoint_info(run / "best.safetensors")
    fixed = saved["config"]["threshold_mode"] == "fixed"
    assert test["threshold"]["mode"] == ("fixed" if fixed else "per_label")
    if fixed:
        assert info.thresholds == [saved["config"]["threshold"]] * len(bench.label_names)
    result = cli("eval", *data_args(bench), "--checkpoint", run / "best.safetensors", "--format", "json",
                 "--device", "cpu", "--threads", "1")
    ok(result)
    report = json.loads(result.stdout)
    assert report["threshold"]["mode"] == test["threshold"]["mode"]
    for key in SUMMARY_METRICS:
        assert report[key] == test[key], key


def test_lddu_authors_preset_is_the_authors_code(bench, tmp_path):
    run = tmp_path / "run"
    ok(cli("train", "--model", "lddu", *data_args(bench), *COMMON, "--epochs", "1", "--preset", "authors",
           "--set", "lr=0.001", "--out", run))
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["lr"] == 0.001  # --set wins over the preset
    assert (config["latent_dim"], config["weight_decay"], config["grad_clip"]) == (128, 0.01, 1.0)
    assert config["scl_absent_labels"] and config["scl_renormalise"] and not config["encoder_per_label"]
    assert (config["threshold_mode"], config["threshold"]) == ("fixed", 0.21)
    assert json.loads((run / "test_metrics.json").read_text())["threshold"]["values"]["happy"] == 0.21


def test_threshold_modes(bench, tmp_path):
    fixed = tmp_path / "fixed"
    ok(cli("train", "--model", "lamb", *data_args(bench), *COMMON, "--epochs", "1", "--threshold", "0.5", "--out", fixed))
    record = json.loads((fixed / "metrics.jsonl").read_text().splitlines()[0])
    assert record["thresholds"] == [0.5] * len(bench.label_names) and record["global_threshold"] == 0.5
    # the authors' fixed threshold replaced by tuning
    tuned = tmp_path / "tuned"
    ok(cli("train", "--model", "lddu", *data_args(bench), *COMMON, "--epochs", "1", "--preset", "authors",
           "--threshold-mode", "tuned", "--out", tuned))
    config = json.loads((tuned / "config.json").read_text())["config"]
    assert config["threshold_mode"] == "tuned"
    assert json.loads((tuned / "test_metrics.json").read_text())["threshold"]["mode"] == "per_label"
    one_line_error(cli("train", "--model", "lamb", *data_args(bench), *COMMON, "--threshold-mode", "tuned",
                       "--threshold", "0.3", "--out", tmp_path / "x"), "--threshold")
    one_line_error(cli("train", "--model", "lamb", *data_args(bench), *COMMON, "--threshold", "1.5",
                       "--out", tmp_path / "y"), "threshold")
    one_line_error(cli("train", "--model", "lamb", *data_args(bench), *COMMON, "--preset", "mine",
                       "--out", tmp_path / "z"), "preset", "paper", "authors")


def test_seeds_summary_matches_the_per_seed_runs(lamb_seeds):
    out, result = lamb_seeds
    assert sorted(p.name for p in out.iterdir()) == ["seed-3", "seed-4", "seeds_summary.json"]
    summary = json.loads((out / "seeds_summary.json").read_text())
    assert summary["seeds"] == [3, 4] and summary["runs"] == ["seed-3", "seed-4"]
    tests = [json.loads((out / f"seed-{s}" / "test_metrics.json").read_text()) for s in (3, 4)]
    assert [json.loads((out / f"seed-{s}" / "config.json").read_text())["seed"] for s in (3, 4)] == [3, 4]
    assert set(summary["metrics"]) == set(SUMMARY_METRICS)
    for key in SUMMARY_METRICS:
        values = [t[key] for t in tests]
        entry = summary["metrics"][key]
        assert entry["values"] == values
        assert entry["mean"] == pytest.approx(np.mean(values))
        assert entry["std"] == pytest.approx(np.std(values, ddof=1))
        assert f"{entry['mean']:.4f} ± {entry['std']:.4f}" in result.stdout
    assert result.stdout.count("training: lamb") == 2


def test_summarize_seeds_by_hand():
    runs = [{k: 0.0 for k in SUMMARY_METRICS}, {k: 1.0 for k in SUMMARY_METRICS}, {k: 2.0 for k in SUMMARY_METRICS}]
    summary = summarize_seeds(runs)
    assert summary["micro_f1"].mean == 1.0 and summary["micro_f1"].std == 1.0  # sample std, n - 1
    assert summary["acc"].values == [0.0, 1.0, 2.0]
    assert summarize_seeds(runs[:1])["acc"].std == 0.0


def test_seeds_resume_keeps_finished_seeds_and_adds_missing_ones(lamb_seeds, bench, tmp_path):
    out, _ = lamb_seeds
    copy = tmp_path / "out"
    copy.mkdir()
    (copy / "seed-3").mkdir()
    for f in (out / "seed-3").iterdir():
        (copy / "seed-3" / f.name).write_bytes(f.read_bytes())
    ok(cli("train", "--model", "lamb", *data_args(bench), *COMMON, "--epochs", "2", "--seeds", "2", "--seed", "3",
           "--resume", "--out", copy))
    summary = json.loads((copy / "seeds_summary.json").read_text())
    original = json.loads((out / "seeds_summary.json").read_text())
    assert summary["metrics"] == original["metrics"]  # seed 3 kept, seed 4 retrained identically


def test_lamb_evaluations_of_one_checkpoint_give_identical_probabilities(lamb_seeds, bench):
    out, _ = lamb_seeds
    checkpoint = out / "seed-3" / "best.safetensors"
    data = bench.load()
    first_model, _ = load_checkpoint(checkpoint)
    second_model, _ = load_checkpoint(checkpoint)
    a, _ = predict_probs(first_model, data.splits["test"], 8, torch.device("cpu"))
    b, _ = predict_probs(second_model, data.splits["test"], 8, torch.device("cpu"))
    assert np.array_equal(a, b)
    c, _ = predict_probs(first_model, data.splits["test"], 3, torch.device("cpu"))  # other batch composition
    assert np.allclose(a, c, atol=1e-6)
    model = first_model.eval()
    with torch.no_grad():
        from mmer.datasets.base import collate

        batch = collate([data.splits["test"][i] for i in range(len(data.splits["test"]))])
        direct = model(batch).probs.double().numpy()
    assert np.allclose(a, direct, atol=1e-6)  # the deterministic eval-mode pass, not an MC mean
    results = [cli("eval", *data_args(bench), "--checkpoint", checkpoint, "--format", "json", "--device", "cpu")
               for _ in range(2)]
    for r in results:
        ok(r)
    assert json.loads(results[0].stdout) == json.loads(results[1].stdout)
    # validation skips the MC passes: no uncertainty recorded for LAMB epochs
    record = json.loads((out / "seed-3" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["val"]["mean_uncertainty"] is None


def test_report_renders_runs_next_to_the_published_rows(lamb_seeds, bench, tmp_path):
    out, _ = lamb_seeds
    single = out / "seed-3"
    result = cli("report", single, out, "--format", "json")
    ok(result)
    report = json.loads(result.stdout)
    assert [p["model"] for p in report["published"]] == ["TAILOR", "CARAT", "LAMB", "LDDU"]
    tailor = report["published"][0]["metrics"]
    assert (tailor["precision"], tailor["recall"]) == (0.512, 0.641)  # printed P 0.641 / R 0.512 swapped back
    assert all(p["benchmark"] == "mosei-aligned" and p["protocol"] for p in report["published"])
    test = json.loads((single / "test_metrics.json").read_text())
    first, multi = report["runs"]
    assert first["metrics"]["micro_f1"] == {"mean": test["micro_f1"], "std": None, "n": 1}
    summary = json.loads((out / "seeds_summary.json").read_text())
    assert multi["metrics"]["acc"] == {"mean": summary["metrics"]["acc"]["mean"],
                                       "std": summary["metrics"]["acc"]["std"], "n": 2}
    assert "paper preset" in first["protocol"] and "validation micro_f1" in first["protocol"]
    assert "2 seeds" in multi["protocol"]

    markdown = cli("report", single, out, "--format", "markdown")
    ok(markdown)
    lines = markdown.stdout.strip().splitlines()
    assert lines[0].startswith("| benchmark | row | Acc | P | R | micro-F1 |")
    assert any("LDDU (published)" in line and "TEST set" in line for line in lines)
    assert any(str(single) in line and f"{test['micro_f1']:.4f}" in line for line in lines)
    assert any(str(out) + " " in line or f"{str(out)} |" in line for line in lines)
    table = cli("report", single)
    ok(table)
    assert "CARAT paper" in table.stdout and "[4] checkpoint selected on the TEST set" in table.stdout

    broken = tmp_path / "broken"
    broken.mkdir()
    partial = cli("report", broken, single, "--format", "json")
    assert partial.exit_code == 1
    assert partial.stderr.strip().startswith("mmer: error: ") and str(broken) in partial.stderr
    assert len(json.loads(partial.stdout)["runs"]) == 1  # the readable run is still reported
    one_line_error(cli("report", broken), str(broken), "test_metrics.json")


def test_benchmark_of_each_dataset():
    assert benchmark_of("mosei-mmsa", "/d/unaligned_50.pkl") == "mosei-unaligned"
    assert benchmark_of("mosei-mmsa", "/d/aligned_50.pkl") == "mosei-aligned"
    assert benchmark_of("m3ed", "m3ed.pt") == "m3ed"
    assert benchmark_of("cache", "x.npz") is None
    assert {p.model for p in PUBLISHED if p.benchmark == "m3ed"} == {"CARAT", "LDDU"}


def test_report_of_a_run_without_published_numbers(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "lddu", "dataset": "cache", "data": "f.npz", "seed": 0,
                                                 "select_metric": "acc", "config": {}}))
    (run / "test_metrics.json").write_text(json.dumps({k: 0.5 for k in SUMMARY_METRICS}))
    report = compare_runs([run])
    assert report.published == [] and report.runs[0].benchmark is None
    assert "per-label thresholds tuned" in report.runs[0].protocol


def test_models_lists_both_presets():
    result = cli("models")
    ok(result)
    assert "paper" in result.stdout and "authors" in result.stdout
    assert "0.0002" in result.stdout and "train.sh" in result.stdout


def test_one_seed_and_bad_seed_counts(bench, tmp_path):
    out = tmp_path / "one"
    ok(cli("train", "--model", "lddu", *data_args(bench), *COMMON, "--epochs", "1", "--seeds", "1", "--out", out))
    summary = json.loads((out / "seeds_summary.json").read_text())
    assert summary["runs"] == ["seed-0"] and summary["metrics"]["micro_f1"]["std"] == 0.0
    one_line_error(cli("train", "--model", "lddu", *data_args(bench), *COMMON, "--seeds", "0",
                       "--out", tmp_path / "none"), "--seeds")


def test_authors_preset_selected_on_test_end_to_end(bench, tmp_path):
    """`--preset authors --select-on test` on the MOSEI aligned format fixture: the authors' network
    trains, the TEST split picks the epoch (their train.py), and every output says so."""
    from mmer.training import SELECTED_ON_TEST

    valid_run, test_run = tmp_path / "valid", tmp_path / "test"
    ok(cli("train", "--model", "lddu", *data_args(bench), *COMMON, "--epochs", "2", "--preset", "authors",
           "--out", valid_run))
    result = cli("train", "--model", "lddu", *data_args(bench), *COMMON, "--epochs", "2", "--preset", "authors",
                 "--select-on", "test", "--out", test_run)
    ok(result)
    assert SELECTED_ON_TEST in result.stdout and "TEST micro-F1" in result.stdout
    config = json.loads((test_run / "config.json").read_text())
    assert config["select_on"] == "test" and config["preset"] == "authors"
    assert config["config"]["scl_reduction"] == "all_rows" and config["config"]["optimizer"] == "bertadam"
    records = [json.loads(line) for line in (test_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["select_on"] for r in records] == ["test", "test"]
    test = json.loads((test_run / "test_metrics.json").read_text())
    assert test["select_on"] == "test" and test["protocol"] == SELECTED_ON_TEST
    best = next(r for r in records if r["epoch"] == test["best_epoch"])
    for key in ("micro_f1", "acc", "precision", "recall"):  # the epoch was chosen on these very numbers
        assert best["val"][key] == pytest.approx(test[key]), key
    info, _ = read_checkpoint_info(test_run / "best.safetensors")
    assert info.extra["selection"]["split"] == "test"
    assert json.loads((valid_run / "config.json").read_text())["select_on"] == "valid"
    assert "protocol" not in json.loads((valid_run / "test_metrics.json").read_text())

    report = cli("report", valid_run, test_run, "--format", "json")
    ok(report)
    runs = json.loads(report.stdout)["runs"]
    assert [r["select_on"] for r in runs] == ["valid", "test"]
    assert SELECTED_ON_TEST in runs[1]["protocol"] and "TEST" not in runs[0]["protocol"]
    assert "authors preset" in runs[1]["protocol"] and "fixed threshold 0.21" in runs[1]["protocol"]
    table = cli("report", valid_run, test_run)
    ok(table)
    assert "lddu (selected on TEST) test" in table.stdout and SELECTED_ON_TEST in table.stdout
    assert "lddu valid" in table.stdout  # both rows
    one_line_error(cli("train", "--model", "lddu", *data_args(bench), *COMMON, "--select-on", "train",
                       "--out", tmp_path / "bad"), "--select-on", "valid, test")
    one_line_error(cli("train", "--resume", "--out", test_run, "--select-on", "valid", "--device", "cpu",
                       "--threads", "1", "--quiet"), "--select-on test", "not valid")

    searched = tmp_path / "searched"  # the b33f538 protocol: one threshold searched on TEST
    ok(cli("train", "--model", "lddu", *data_args(bench), *COMMON, "--epochs", "1", "--preset", "authors",
           "--select-on", "test", "--threshold-mode", "tuned_global", "--out", searched))
    test = json.loads((searched / "test_metrics.json").read_text())
    values = set(test["threshold"]["values"].values())
    assert test["threshold"]["mode"] == "global" and len(values) == 1
    assert values.pop() in [round(0.15 + 0.005 * k, 6) for k in range(30)]  # their grid
    record = json.loads((searched / "metrics.jsonl").read_text().splitlines()[0])
    assert record["val"]["micro_f1"] == pytest.approx(test["micro_f1"])
    protocol = compare_runs([searched]).runs[0].protocol
    assert "one threshold for all labels tuned on TEST" in protocol and SELECTED_ON_TEST in protocol


def test_models_json_lists_presets_and_sources():
    result = cli("models", "--format", "json")
    ok(result)
    document = json.loads(result.stdout)
    assert document["preset_names"] == ["paper", "authors", "small"]
    models = {m["name"]: m for m in document["models"]}
    lddu = models["lddu"]
    authors = get_entry("lddu").presets["authors"]
    assert set(lddu["sources"]) == set(authors)
    assert lddu["presets"]["authors"]["d_z"] == 256 and lddu["presets"]["paper"]["d_z"] == 128
    assert lddu["presets"]["authors"]["encoder_extra_hidden"] == [192, 128]
    assert lddu["sources"]["d_z"].startswith("src/models/myModels.py:41")
    assert "201983290498/lddu_mmer" in lddu["authors_code"]
    assert models["lamb"]["authors_code"] is None and models["lamb"]["sources"] == {}
