"""Rendering of `mmer train`: progress reporters (Rich bars or plain lines) and result tables."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mmer.repeated_runs import SUMMARY_METRICS, FoldsResult, SeedsResult
from mmer.training import SELECTED_ON_TEST, EpochRecord, RunStart, TrainReporter, TrainResult


def _split_name(select_on: str) -> str:
    """How a line names the split that selects: "val", or "TEST" under the authors' protocol."""
    return "TEST" if select_on == "test" else "val"


def _epoch_line(record: EpochRecord, epochs: int) -> str:
    val = record.val
    marker = " *" if record.improved else ""
    split = _split_name(record.select_on)
    return (
        f"epoch {record.epoch}/{epochs}  loss {record.train.get('total', float('nan')):.4f}  "
        f"{split} micro-F1 {val['micro_f1']:.4f}  macro-F1 {val['macro_f1']:.4f}  acc {val['acc']:.4f}  "
        f"{record.select_metric} best {record.best_value:.4f} @ {record.best_epoch}  "
        f"lr {record.lr:.2e}  {record.seconds:.1f}s{marker}"
    )


def _start_line(start: RunStart) -> str:
    sizes = ", ".join(f"{k} {v}" for k, v in start.split_sizes.items())
    verb = f"resuming at epoch {start.start_epoch}" if start.resumed else "training"
    return (
        f"{verb}: {start.model} ({start.preset} preset) on {start.dataset} ({sizes}), {start.num_parameters:,} parameters, "
        f"{start.steps_per_epoch} steps/epoch, {start.world_size} process(es) on {start.device}, "
        f"streams {','.join(start.trained_modalities)} -> {start.run_dir}"
        + (f"; epochs and thresholds {SELECTED_ON_TEST}" if start.select_on == "test" else "")
    ) + "".join(f"\nwarning: {w}" for w in start.warnings)


class PlainReporter(TrainReporter):
    """--quiet: one plain line per epoch (and at start/test), no progress bars."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.epochs = 0

    def run_started(self, start: RunStart) -> None:
        self.epochs = start.epochs
        self.console.print(_start_line(start), markup=False, highlight=False, soft_wrap=True)

    def epoch_done(self, record: EpochRecord) -> None:
        self.console.print(_epoch_line(record, self.epochs), markup=False, highlight=False, soft_wrap=True)

    def testing(self, best_epoch: int) -> None:
        self.console.print(f"evaluating best epoch {best_epoch} on the test split", markup=False, highlight=False, soft_wrap=True)


class ProgressReporter(PlainReporter):
    """Rich progress bars: epochs, and the current epoch's steps with the running loss."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console,
        )
        self.epoch_task = None
        self.step_task = None

    def run_started(self, start: RunStart) -> None:
        super().run_started(start)
        for task in (self.epoch_task, self.step_task):  # the previous seed's bars (--seeds)
            if task is not None:
                self.progress.remove_task(task)
        self.step_task = None
        self.progress.start()
        self.epoch_task = self.progress.add_task("epochs", total=start.epochs, completed=start.start_epoch - 1, info="")

    def epoch_started(self, epoch: int, num_batches: int) -> None:
        if self.step_task is not None:
            self.progress.remove_task(self.step_task)
        self.step_task = self.progress.add_task(f"epoch {epoch}", total=num_batches, info="")

    def batch_done(self, epoch: int, batch: int, num_batches: int, loss: float) -> None:
        self.progress.update(self.step_task, completed=batch, info=f"loss {loss:.4f}")

    def validating(self, epoch: int) -> None:
        self.progress.update(self.step_task, info="validating")

    def epoch_done(self, record: EpochRecord) -> None:
        self.progress.console.print(_epoch_line(record, self.epochs), markup=False, highlight=False, soft_wrap=True)
        self.progress.update(self.epoch_task, completed=record.epoch,
                             info=f"val micro-F1 {record.val['micro_f1']:.4f} (best {record.select_metric} "
                                  f"{record.best_value:.4f} @ {record.best_epoch})")

    def testing(self, best_epoch: int) -> None:
        self.close()
        super().testing(best_epoch)

    def close(self) -> None:
        self.progress.stop()


def render_result(result: TrainResult, console: Console) -> None:
    """Summary table: best epoch and the test metrics of the best checkpoint."""
    test = result.test.as_dict()
    on_test = result.select_on == "test"
    tuned_on = "TEST" if on_test else "validation"
    thresholds = {"per_label": f"per-label thresholds tuned on {tuned_on}",
                  "global": f"one threshold {result.test.thresholds[0]:g} tuned on {tuned_on}"}.get(
        result.test.threshold_mode, f"fixed threshold {result.test.thresholds[0]:g}")
    table = Table(title=f"best epoch {result.best_epoch} of {result.epochs_run} ({tuned_on} {result.select_metric} "
                        f"{result.best_value:.4f}); test split, {thresholds}"
                        + (f"; {SELECTED_ON_TEST}" if on_test else ""))
    table.add_column("metric")
    table.add_column("test", justify="right")
    for key in SUMMARY_METRICS:
        if key in test:
            table.add_row(key, f"{test[key]:.4f}")
    console.print(table)
    if on_test:
        console.print(f"{SELECTED_ON_TEST}: the test split chose the epoch and thresholds; not a held-out result",
                      markup=False, highlight=False, soft_wrap=True)
    if result.test.single_label is not None:
        from mmer.cli.commands.metric_tables import single_label_tables

        console.print(single_label_tables(result.test.single_label)[1])
    console.print(f"run directory: {result.run_dir}", markup=False, highlight=False, soft_wrap=True)


def _summary_table(title: str, per: str, summary: dict) -> Table:
    """One row per SUMMARY_METRICS key: mean ± std and each run's value (`per`: "per seed", "per fold")."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("mean ± std", justify="right")
    table.add_column(per, justify="right")
    for key in SUMMARY_METRICS:
        row = summary[key]
        table.add_row(key, f"{row.mean:.4f} ± {row.std:.4f}", " ".join(f"{v:.4f}" for v in row.values))
    return table


def render_seeds(result: SeedsResult, console: Console) -> None:
    """Test metrics over the seeds: mean ± std (sample) and each seed's value."""
    console.print(_summary_table(f"test split over {len(result.seeds)} seeds ({', '.join(map(str, result.seeds))}): "
                                 f"mean ± std (sample std, n - 1)"
                                 + (f"; {SELECTED_ON_TEST}" if result.select_on == "test" else ""),
                                 "per seed", result.summary))
    console.print(f"summary: {result.summary_path}", markup=False, highlight=False, soft_wrap=True)


def render_folds(result: FoldsResult, console: Console) -> None:
    """Test metrics over the folds (mean ± std, per fold), then the pooled confusion matrix."""
    from mmer.cli.commands.metric_tables import single_label_tables
    from mmer.single_label import SingleLabelMetrics

    console.print(_summary_table(f"test split over {result.folds} speaker-independent folds: mean ± std "
                                 "(sample std, n - 1)", "per fold", result.summary))
    pooled = {k: v for k, v in result.pooled.items() if k != "confusion_columns"}
    overall, confusion = single_label_tables(SingleLabelMetrics(**pooled))
    overall.title = f"all folds' test samples pooled: {overall.title}"
    console.print(overall)
    console.print(confusion)
    console.print(f"summary: {result.summary_path}", markup=False, highlight=False, soft_wrap=True)
