"""`mmer score` and its library `score_files`: output formats, probabilities, and every input error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmer.cli.app import app
from mmer.errors import UserError
from mmer.scoring import score_files
from tests.conftest import REPO


# Same case as tests/test_metrics.py: Acc 5/12, Acc(empty=1) 2/3, P 4/6, R 4/5, micro-F1 8/11, HL 3/12.
TRUTH_CSV = "a,b,c\n1,0,1\n0,1,0\n0,0,0\n1,1,0\n"
PRED_CSV = "a,b,c\n1,0,0\n0,1,1\n0,0,0\n1,1,1\n"
# Probabilities whose decisions at t = 0.5 equal PRED_CSV, columns in another order (c, a, b).
PROB_CSV = "c,a,b\n0.2,0.9,0.1\n0.7,0.3,0.6\n0.1,0.2,0.3\n0.55,0.8,0.9\n"

runner = CliRunner()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_score(*args: str):
    return runner.invoke(app, ["score", *args])


def test_json_output_is_one_object_with_the_metrics(tmp_path):
    truth, pred = write(tmp_path, "t.csv", TRUTH_CSV), write(tmp_path, "p.csv", PRED_CSV)
    result = run_score("--truth", str(truth), "--pred", str(pred), "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["acc"] == pytest.approx(5 / 12)
    assert data["acc_empty_as_one"] == pytest.approx(2 / 3)
    assert data["precision"] == pytest.approx(4 / 6)
    assert data["recall"] == pytest.approx(4 / 5)
    assert data["micro_f1"] == pytest.approx(8 / 11)
    assert data["macro_f1"] == pytest.approx(2 / 3)
    assert data["hamming_loss"] == pytest.approx(3 / 12)
    assert data["num_samples"] == 4
    assert data["per_label"]["c"]["support"] == 1
    assert "ece" not in data and "brier" not in data


def test_table_output_lists_metrics_and_labels(tmp_path):
    truth, pred = write(tmp_path, "t.csv", TRUTH_CSV), write(tmp_path, "p.csv", PRED_CSV)
    result = run_score("--truth", str(truth), "--pred", str(pred))
    assert result.exit_code == 0, result.stderr
    for text in ("Hamming loss", "F1 (micro)", "0.7273", "0.4167", "0.6667", "0.8000", "per label"):
        assert text in result.stdout


def test_probabilities_with_threshold_reordered_columns(tmp_path):
    truth, probs = write(tmp_path, "t.csv", TRUTH_CSV), write(tmp_path, "p.csv", PROB_CSV)
    result = run_score("--truth", str(truth), "--pred", str(probs), "--threshold", "0.5", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    # decisions at 0.5 equal PRED_CSV once columns are matched by name
    assert data["micro_f1"] == pytest.approx(8 / 11)
    assert data["pred_columns_reordered"] is True
    assert data["threshold"] == 0.5
    # Brier over the 12 decisions (truth order a, b, c):
    # a: (0.9-1)^2 + 0.3^2 + 0.2^2 + (0.8-1)^2 = 0.01 + 0.09 + 0.04 + 0.04 = 0.18
    # b: 0.1^2 + (0.6-1)^2 + 0.3^2 + (0.9-1)^2 = 0.01 + 0.16 + 0.09 + 0.01 = 0.27
    # c: (0.2-1)^2 + 0.7^2 + 0.1^2 + 0.55^2    = 0.64 + 0.49 + 0.01 + 0.3025 = 1.4425
    # total 1.8925 / 12
    assert data["brier"] == pytest.approx(1.8925 / 12)
    # ECE, 15 bins of width 1/15 (decision: p, truth -> bin gap |frac_positive - mean_prob| x count):
    # p 0.1 (b1 0, c3 0): gap 0.1 x2 | p 0.2 (a3 0, c1 1): gap |0.5-0.2| = 0.3 x2 | p 0.3 (a2 0, b3 0): 0.3 x2
    # p 0.55 (c4 0): 0.55 | p 0.6 (b2 1): 0.4 | p 0.7 (c2 0): 0.7 | p 0.8 (a4 1): 0.2 | p 0.9 (a1 1, b4 1): 0.1 x2
    # sum = 0.2 + 0.6 + 0.6 + 0.55 + 0.4 + 0.7 + 0.2 + 0.2 = 3.45; ECE = 3.45 / 12
    assert data["ece"] == pytest.approx(3.45 / 12)
    assert len(data["reliability"]) == data["ece_bins"] == 15


def test_threshold_changes_decisions(tmp_path):
    truth, probs = write(tmp_path, "t.csv", TRUTH_CSV), write(tmp_path, "p.csv", PROB_CSV)
    report = score_files(truth, probs, threshold=0.95)
    # nothing reaches 0.95 -> no predicted positives -> precision 0 (zero-division rule), recall 0
    assert (report.metrics.precision, report.metrics.recall) == (0.0, 0.0)
    assert report.calibration is not None


def expect_user_error(tmp_path, truth_text, pred_text, *extra: str, match: str) -> None:
    """The CLI exits 2 with one stderr line containing `match`; the library raises UserError."""
    truth = write(tmp_path, "t.csv", truth_text) if truth_text is not None else tmp_path / "missing.csv"
    pred = write(tmp_path, "p.csv", pred_text)
    result = run_score("--truth", str(truth), "--pred", str(pred), *extra)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmer: error:"), result.stderr
    assert match in lines[0]
    assert result.stdout == ""
    threshold = float(extra[1]) if extra else None
    with pytest.raises(UserError, match=match):
        score_files(truth, pred, threshold=threshold)


@pytest.mark.parametrize("truth_text, pred_text, extra, match", [
    (TRUTH_CSV, PROB_CSV.replace("c,a,b", "a,b,c"), (), "--threshold"),      # probabilities without --threshold
    (TRUTH_CSV, "a,b,d\n1,0,0\n", (), "missing from"),                        # different label sets
    (TRUTH_CSV, PRED_CSV + "1,1,1\n", (), "has 4 sample rows"),               # different row counts
    (None, PRED_CSV, (), "no such file"),                                     # missing file
    ("", PRED_CSV, (), "empty"),                                              # empty file
    ("a,b,c\n", PRED_CSV, (), "no sample rows"),                              # header only
    (TRUTH_CSV, "a,b,c\n1,0,0\n0,x,1\n0,0,0\n1,1,1\n", (), "'x' is not a number"),  # non-numeric cell
    (TRUTH_CSV, "a,b,c\n1,0\n0,1,1\n0,0,0\n1,1,1\n", (), "expected 3 values"),      # wrong column count
    (TRUTH_CSV.replace("0,1,0", "0,2,0"), PRED_CSV, (), "truth labels must be 0/1"),  # non-binary truth
    (TRUTH_CSV, PROB_CSV.replace("0.55", "1.5"), ("--threshold", "0.5"), "not a probability"),
    (TRUTH_CSV, PROB_CSV, ("--threshold", "1.5"), "between 0 and 1"),
    (TRUTH_CSV, PRED_CSV.replace("a,b,c", "a,b,b"), (), "duplicate label names"),
    ("1,0,1\n0,1,0\n", PRED_CSV, (), "expected a header row of label names"),
    (TRUTH_CSV, PRED_CSV.replace("1,1,1", "nan,1,1"), (), "not a finite number"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, truth_text, pred_text, extra, match):
    expect_user_error(tmp_path, truth_text, pred_text, *extra, match=match)


def test_error_names_file_line_and_column(tmp_path):
    truth = write(tmp_path, "t.csv", TRUTH_CSV)
    pred = write(tmp_path, "p.csv", "a,b,c\n1,0,0\n0,0.4,1\n0,0,0\n1,1,1\n")
    with pytest.raises(UserError) as err:
        score_files(truth, pred)
    # header is line 1, so the second sample is line 3
    assert f"{pred} line 3, column 'b': 0.4 is not 0 or 1" in str(err.value)


def test_real_process_reports_one_line_and_exit_2(tmp_path):
    pred = write(tmp_path, "p.csv", PRED_CSV)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mmer", "score", "--truth", str(tmp_path / "missing.csv"), "--pred", str(pred)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"mmer: error: {tmp_path / 'missing.csv'}: no such file"]


# ----------------------------------------------------------------------------- --key: rows joined by a key column


def _keyed(table: str, keys: list[str], order: list[int], extra: str = "") -> str:
    """`table` with a leading `file` key column (and `extra` columns after the labels), rows in `order`."""
    header, *rows = table.strip().splitlines()
    extra_cells = "," + ",".join("x" for _ in extra.split(",")) if extra else ""
    lines = [f"file,{header}" + (f",{extra}" if extra else "")]
    lines += [f"{keys[i]},{rows[i]}{extra_cells}" for i in order]
    return "\n".join(lines) + "\n"


KEYS = ["clips/a.mp4", "clips/b.mp4", "clips/c.mp4", "clips/d.mp4"]


def test_key_joins_rows_by_value_and_ignores_other_columns(tmp_path):
    """An `mmer analyze -f csv`-like prediction file: rows in another order, extra non-label columns."""
    truth = write(tmp_path, "t.csv", _keyed(TRUTH_CSV, KEYS, [0, 1, 2, 3]))
    pred = write(tmp_path, "p.csv", _keyed(PROB_CSV, KEYS, [3, 1, 0, 2],
                                           extra="uncertainty_a,predicted,transcript,text_a"))
    result = run_score("--truth", str(truth), "--pred", str(pred), "--key", "file", "--threshold", "0.5",
                       "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["label_names"] == ["a", "b", "c"]
    assert data["micro_f1"] == pytest.approx(8 / 11) and data["acc"] == pytest.approx(5 / 12)


def test_without_key_the_same_files_are_refused(tmp_path):
    truth = write(tmp_path, "t.csv", _keyed(TRUTH_CSV, KEYS, [0, 1, 2, 3]))
    pred = write(tmp_path, "p.csv", _keyed(PROB_CSV, KEYS, [0, 1, 2, 3]))
    result = run_score("--truth", str(truth), "--pred", str(pred), "--threshold", "0.5")
    assert result.exit_code == 2
    assert "'clips/a.mp4' is not a number" in result.stderr


@pytest.mark.parametrize("pred_keys, order, match", [
    (KEYS, [0, 1, 2], "1 file value(s) of {truth} missing from {pred} (first: 'clips/d.mp4')"),
    (KEYS[:3] + ["clips/z.mp4"], [0, 1, 2, 3], "(first: 'clips/d.mp4'); 1 file value(s) of {pred} not in {truth}"),
    (KEYS[:3] + ["clips/a.mp4"], [0, 1, 2, 3], "{pred} line 5: key 'clips/a.mp4' appears twice"),
    (KEYS[:3] + [" "], [0, 1, 2, 3], "{pred} line 5: empty key ('file' column)"),
])
def test_key_mismatches_are_one_line_errors(tmp_path, pred_keys, order, match):
    truth = write(tmp_path, "t.csv", _keyed(TRUTH_CSV, KEYS, [0, 1, 2, 3]))
    pred = write(tmp_path, "p.csv", _keyed(PRED_CSV, pred_keys, order))
    result = run_score("--truth", str(truth), "--pred", str(pred), "--key", "file")
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert match.format(truth=truth, pred=pred) in line


def test_key_column_missing_or_no_shared_label(tmp_path):
    truth = write(tmp_path, "t.csv", _keyed(TRUTH_CSV, KEYS, [0, 1, 2, 3]))
    pred = write(tmp_path, "p.csv", PRED_CSV)
    with pytest.raises(UserError, match=f"{pred}: no key column 'file' in the header"):
        score_files(truth, pred, key="file")
    other = write(tmp_path, "o.csv", "file,x\nclips/a.mp4,1\n")
    with pytest.raises(UserError, match="share no label column besides the key 'file'"):
        score_files(truth, other, key="file")
