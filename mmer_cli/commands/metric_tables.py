"""Rich tables of multi-label metrics, shared by `mmer score` and `mmer eval`."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from mmer.metrics import MultilabelMetrics

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
