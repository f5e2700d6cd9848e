"""Score prediction files against truth files: the library behind `mmer score`.

File format (both files): CSV, UTF-8 (a BOM is accepted), a header row of label names, then one row
per sample. Truth cells are 0 or 1. Prediction cells are 0 or 1, or probabilities in [0, 1] when a
decision threshold is given (a label is then predicted when `probability >= threshold`). Blank lines
are ignored. Rows are paired by order, or, with a key column (e.g. `file`), by that column's value;
with a key the labels are the columns both files share besides the key, and every other column
(e.g. `predicted`, `transcript`, `uncertainty_<label>` of `mmer analyze -f csv`) is ignored.
Every problem raises `UserError` with a one-line message naming the file (and line/column).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmer.errors import UserError
from mmer.metrics import (
    DEFAULT_CALIBRATION_BINS,
    MultilabelMetrics,
    brier_score,
    expected_calibration_error,
    multilabel_metrics,
    reliability_bins,
)
from mmer.single_label import SingleLabelMetrics, single_label_metrics
from mmer.thresholds import apply_thresholds


@dataclass
class LabelTable:
    """A label CSV as read: column names and an (N, q) float64 matrix of its cells, in file order."""

    path: Path
    label_names: list[str]
    values: np.ndarray
    line_numbers: list[int]  # 1-based file line of each row, for error messages


@dataclass
class CalibrationReport:
    """Calibration of the probabilities over all N*q decisions (see mmer.metrics)."""

    ece: float
    brier: float
    n_bins: int
    bins: list[dict]


@dataclass
class ScoreReport:
    """Result of `score_files`: metrics, and calibration when the predictions were probabilities."""

    truth_path: Path
    pred_path: Path
    label_names: list[str]
    threshold: float | None
    pred_columns_reordered: bool
    metrics: MultilabelMetrics
    calibration: CalibrationReport | None
    single_label: SingleLabelMetrics | None = None

    def as_dict(self) -> dict:
        """One flat JSON-ready dict: the metric keys of `MultilabelMetrics.as_dict`, plus the inputs,
        and `ece`, `brier`, `reliability` when probabilities were scored."""
        out = self.metrics.as_dict()
        if self.single_label is not None:
            out.update(self.single_label.report_fields())
        out.update({
            "label_names": list(self.label_names),
            "threshold": self.threshold,
            "pred_columns_reordered": self.pred_columns_reordered,
            "truth": str(self.truth_path),
            "pred": str(self.pred_path),
        })
        if self.calibration is not None:
            out.update({
                "ece": self.calibration.ece,
                "ece_bins": self.calibration.n_bins,
                "brier": self.calibration.brier,
                "reliability": self.calibration.bins,
            })
        return out


def _read_text(path: Path) -> str:
    """File contents as text, or a UserError naming the file."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a CSV file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise UserError(f"{path}: cannot be read ({err.strerror or err})") from None


@dataclass
class _CsvRows:
    """A CSV as text cells: the header's names and the non-blank rows, each with its 1-based line."""

    path: Path
    names: list[str]
    header_line: int
    rows: list[tuple[int, list[str]]]


def _read_rows(path: Path) -> _CsvRows:
    """Parse a CSV into a header and rows of equal length. Raises UserError."""
    text = _read_text(path)
    try:
        rows = [(number, row) for number, row in enumerate(csv.reader(text.splitlines()), start=1)
                if any(cell.strip() for cell in row)]
    except csv.Error as err:
        raise UserError(f"{path}: not a valid CSV file ({' '.join(str(err).split())})") from None
    if not rows:
        raise UserError(f"{path}: file is empty, expected a header row of label names")
    header_line, header = rows[0]
    names = [cell.strip() for cell in header]
    if len(rows) == 1:
        raise UserError(f"{path}: has a header but no sample rows")
    for line, row in rows[1:]:
        if len(row) != len(names):
            raise UserError(f"{path} line {line}: expected {len(names)} values (one per column), found {len(row)}")
    return _CsvRows(path=path, names=names, header_line=header_line, rows=rows[1:])


def _check_label_names(table: _CsvRows, names: list[str]) -> None:
    if any(not name for name in names):
        raise UserError(f"{table.path} line {table.header_line}: the header has an empty label name")
    if all(_is_number(name) for name in names):
        raise UserError(f"{table.path} line {table.header_line}: expected a header row of label names, found numbers")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"{table.path} line {table.header_line}: duplicate label names in the header: "
                        f"{', '.join(duplicates)}")


def _label_table(table: _CsvRows, names: list[str], order: list[int] | None = None) -> LabelTable:
    """The columns `names` of `table` as numbers, rows in `order` (row indices; default: file order)."""
    columns = [table.names.index(name) for name in names]
    picked = [table.rows[i] for i in (order if order is not None else range(len(table.rows)))]
    values = np.empty((len(picked), len(names)), dtype=np.float64)
    for i, (line, row) in enumerate(picked):
        for j, column in enumerate(columns):
            cell = row[column].strip()
            try:
                value = float(cell)
            except ValueError:
                raise UserError(f"{table.path} line {line}, column '{names[j]}': '{cell}' is not a number") from None
            if not math.isfinite(value):
                raise UserError(f"{table.path} line {line}, column '{names[j]}': '{cell}' is not a finite number")
            values[i, j] = value
    return LabelTable(path=table.path, label_names=list(names), values=values, line_numbers=[line for line, _ in picked])


def read_label_csv(path: str | Path) -> LabelTable:
    """Read a label CSV (header of label names, one numeric row per sample). Raises UserError."""
    table = _read_rows(Path(path))
    _check_label_names(table, table.names)
    return _label_table(table, table.names)


def _key_index(table: _CsvRows, key: str) -> dict[str, int]:
    """key value -> row index; UserError when the column is missing, a value is blank or repeated."""
    if key not in table.names:
        raise UserError(f"{table.path}: no key column {key!r} in the header ({', '.join(table.names)})")
    column = table.names.index(key)
    index: dict[str, int] = {}
    for i, (line, row) in enumerate(table.rows):
        value = row[column].strip()
        if not value:
            raise UserError(f"{table.path} line {line}: empty key ({key!r} column)")
        if value in index:
            raise UserError(f"{table.path} line {line}: key {value!r} appears twice")
        index[value] = i
    return index


def read_keyed_pair(truth_path: str | Path, pred_path: str | Path, key: str) -> tuple[LabelTable, LabelTable]:
    """Truth and prediction tables joined on the `key` column: the labels are the columns both
    files share besides the key (in the truth's order), the prediction rows follow the truth's keys,
    other columns are ignored. Raises UserError when the key sets differ or no label is shared."""
    truth, pred = _read_rows(Path(truth_path)), _read_rows(Path(pred_path))
    truth_keys, pred_keys = _key_index(truth, key), _key_index(pred, key)
    names = [n for n in truth.names if n and n != key and n in pred.names]
    if not names:
        raise UserError(f"{truth.path} and {pred.path} share no label column besides the key {key!r}")
    _check_label_names(truth, names)
    _check_label_names(pred, names)
    missing = [k for k in truth_keys if k not in pred_keys]
    extra = [k for k in pred_keys if k not in truth_keys]
    if missing or extra:
        parts = [f"{len(missing)} {key} value(s) of {truth.path} missing from {pred.path} (first: {missing[0]!r})"] if missing else []
        parts += [f"{len(extra)} {key} value(s) of {pred.path} not in {truth.path} (first: {extra[0]!r})"] if extra else []
        raise UserError("; ".join(parts))
    return (_label_table(truth, names),
            _label_table(pred, names, order=[pred_keys[k] for k in truth_keys]))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_violation(table: LabelTable, bad: np.ndarray) -> str:
    """`path line L, column 'name': value` for the first True cell of bad (N, q)."""
    i, j = np.argwhere(bad)[0]
    return f"{table.path} line {table.line_numbers[i]}, column '{table.label_names[j]}': {table.values[i, j]:g}"


def _aligned_predictions(truth: LabelTable, pred: LabelTable) -> tuple[np.ndarray, bool]:
    """Prediction matrix with columns in the truth's label order; (matrix, whether columns were reordered)."""
    if pred.label_names == truth.label_names:
        return pred.values, False
    if set(pred.label_names) != set(truth.label_names):
        missing = [n for n in truth.label_names if n not in pred.label_names]
        extra = [n for n in pred.label_names if n not in truth.label_names]
        parts = []
        if missing:
            parts.append(f"missing from {pred.path}: {', '.join(missing)}")
        if extra:
            parts.append(f"not in {truth.path}: {', '.join(extra)}")
        raise UserError(f"label names differ between the files ({'; '.join(parts)})")
    order = [pred.label_names.index(name) for name in truth.label_names]
    return pred.values[:, order], True


def score_files(truth_path: str | Path, pred_path: str | Path, threshold: float | None = None,
                n_bins: int = DEFAULT_CALIBRATION_BINS, key: str | None = None) -> ScoreReport:
    """Score a prediction CSV against a truth CSV.

    threshold: None -> predictions must be 0/1. A number in [0, 1] -> predictions are probabilities in
    [0, 1], decided with `probability >= threshold`, and calibration (ECE with n_bins equal-width bins,
    Brier score, reliability bins) is reported too.
    Prediction columns may be in a different order than the truth's (they are matched by name).
    key: None -> rows are paired in file order; a column name -> rows are paired by that column's
    value and only the label columns both files share are scored (`read_keyed_pair`).
    Single-label metrics (top-1 accuracy, WA, UA, confusion matrix; mmer.single_label) use the
    arg-max of the probabilities, or with 0/1 predictions the one predicted label (a row with none
    or several counts as ambiguous).
    Raises UserError for any problem with the files, the key or the threshold.
    """
    if threshold is not None and not (0.0 <= threshold <= 1.0):
        raise UserError(f"threshold must be between 0 and 1, got {threshold:g}", parameter="threshold")
    if key is None:
        truth = read_label_csv(truth_path)
        pred = read_label_csv(pred_path)
    else:
        truth, pred = read_keyed_pair(truth_path, pred_path, key)

    not_binary = ~np.isin(truth.values, (0.0, 1.0))
    if not_binary.any():
        raise UserError(f"{_first_violation(truth, not_binary)} is not 0 or 1 (truth labels must be 0/1)")
    pred_values, reordered = _aligned_predictions(truth, pred)
    if len(pred_values) != len(truth.values):
        raise UserError(f"{truth.path} has {len(truth.values)} sample rows but {pred.path} has {len(pred_values)}")

    y_true = truth.values.astype(np.int64)
    calibration = None
    if threshold is None:
        not_binary = ~np.isin(pred.values, (0.0, 1.0))
        if not_binary.any():
            raise UserError(f"{_first_violation(pred, not_binary)} is not 0 or 1; "
                            "to score probabilities pass --threshold (e.g. --threshold 0.5)")
        y_pred = pred_values.astype(np.int64)
    else:
        out_of_range = (pred.values < 0.0) | (pred.values > 1.0)
        if out_of_range.any():
            raise UserError(f"{_first_violation(pred, out_of_range)} is not a probability in [0, 1]")
        y_pred = apply_thresholds(pred_values, threshold)
        calibration = CalibrationReport(
            ece=expected_calibration_error(pred_values, y_true, n_bins),
            brier=brier_score(pred_values, y_true),
            n_bins=n_bins,
            bins=reliability_bins(pred_values, y_true, n_bins),
        )
    return ScoreReport(
        truth_path=truth.path,
        pred_path=pred.path,
        label_names=list(truth.label_names),
        threshold=threshold,
        pred_columns_reordered=reordered,
        metrics=multilabel_metrics(y_true, y_pred, truth.label_names),
        calibration=calibration,
        # arg-max of the probabilities, or of the 0/1 decisions (ambiguous unless exactly one label)
        single_label=single_label_metrics(y_true, pred_values if threshold is not None else y_pred,
                                          list(truth.label_names)),
    )
