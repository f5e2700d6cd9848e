"""Rich tables of multi-label and single-label metrics, shared by `mmer score`, `mmer eval` and `mmer train`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from mmer.metrics import MultilabelMetrics

if TYPE_CHECKING:
    from mmer.single_label import SingleLabelMetrics

OVERALL_ROWS: tuple[tuple[str, str], ...] = (
    ("acc", "Acc (Jaccard, empty/empty = 0; as published)"),
    ("acc_empty_as_one", "Acc (Jaccard, empty/empty = 1)"),
    ("precision", "Precision (micro)"),
    ("recall", "Recall (micro)"),
    ("micro_f1", "F1 (micro)"),
    ("macro_f1", "F1 (macro)"),
    ("hamming_loss", "Hamming loss"),
)
"""as_dict() key -> row title of the overall metrics, in display order."""


def overall_table(title: str, metrics: MultilabelMetrics, extra_rows: list[tuple[str, str]]) -> Table:
    """The overall metrics (4 decimals), followed by `extra_rows` (title, formatted value)."""
    values = metrics.as_dict()
    table = Table(title=Text(title))  # user strings (paths, label names) are never Rich markup
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, row_title in OVERALL_ROWS:
        table.add_row(row_title, f"{values[key]:.4f}")
    for row in extra_rows:
        table.add_row(*row)
    return table


def per_label_table(metrics: MultilabelMetrics, thresholds: list[float] | None = None) -> Table:
    """Precision, recall, F1 and support per label, plus each label's threshold when given."""
    columns = ["precision", "recall", "F1", "support"] + (["threshold"] if thresholds is not None else [])
    table = Table(title="per label")
    table.add_column("label")
    for column in columns:
        table.add_column(column, justify="right")
    for i, (name, scores) in enumerate(metrics.per_label.items()):
        cells = [f"{scores.precision:.4f}", f"{scores.recall:.4f}", f"{scores.f1:.4f}", str(scores.support)]
        if thresholds is not None:
            cells.append(f"{thresholds[i]:g}")
        table.add_row(Text(name), *cells)
    return table


def single_label_tables(single: "SingleLabelMetrics") -> list[Table]:
    """Top-1 accuracy, WA, UA; per-class recall with support; and the confusion matrix (rows = true
    class, columns = predicted class, last column the ambiguous predictions)."""
    from mmer.single_label import AMBIGUOUS

    overall = Table(title=f"single-label (arg-max): {single.num_single_label} of {single.num_samples} samples "
                          "have exactly one true label")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    overall.add_row("Top-1 accuracy (all samples)", f"{single.top1_accuracy:.4f}")
    overall.add_row("WA (weighted accuracy)", f"{single.weighted_accuracy:.4f}")
    overall.add_row("UA (unweighted accuracy, mean class recall)", f"{single.unweighted_accuracy:.4f}")
    names = list(single.label_names)
    confusion = Table(title="confusion matrix (rows: true, columns: predicted)")
    confusion.add_column("true \\ predicted")
    for name in names + [AMBIGUOUS]:
        confusion.add_column(name, justify="right")
    confusion.add_column("recall", justify="right")
    for name, row in zip(names, single.confusion):
        recall = single.per_class_recall[name]
        confusion.add_row(name, *map(str, row), "-" if recall is None else f"{recall:.4f}")
    return [overall, confusion]
