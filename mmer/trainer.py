"""The one epoch loop of mmer: `mmer train` (mmer.training) and the recipes' trainings use it.

`Trainer.fit` runs epochs of optimisation steps, then asks its hooks for the validation value that
selects the best epoch, steps the early stopper and the learning-rate schedule, and hands the epoch's
outcome to the hooks (which save checkpoints, log, report). What differs between trainings lives in
the hooks: where an epoch's batches come from, how validation is scored, what is saved.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from mmer.errors import UserError
from mmer.optimization import EarlyStopping, LRSchedule, NonFiniteLoss, optimization_step
from mmer.models.batch import MultimodalBatch


class TrainingFailed(UserError):
    """Training cannot go on (non-finite loss, ...). Exit code 1."""

    exit_code = 1


@dataclass
class EpochOutcome:
    """One finished epoch.

    train: sample-weighted mean of each loss part over the epoch ("total" and the model's parts).
    lr: learning rate of the epoch's last step. value: the validation value the stopper saw.
    improved: the value is the best so far. stop: early stopping ends training after this epoch.
    seconds: wall time of the epoch (steps and validation).
    """

    epoch: int
    train: dict[str, float]
    lr: float
    value: float
    improved: bool
    stop: bool
    seconds: float


class TrainerHooks:
    """What a training supplies to `Trainer.fit`; `batches` and `validate` are required."""

    def epoch_started(self, epoch: int) -> None:
        """Before the epoch's first batch is drawn."""

    def batches(self, epoch: int) -> Iterable[MultimodalBatch]:
        """The epoch's training batches (on any device; the trainer moves them)."""
        raise NotImplementedError

    def batch_done(self, epoch: int, step: int, loss: float) -> None:
        """After optimisation step `step` (1-based) with its total loss."""

    def reduce(self, values: list[float]) -> list[float]:
        """Sum per-process loss sums and sample counts over processes (identity in one process)."""
        return values

    def validate(self, epoch: int) -> float:
        """Score the model on validation data; returns the value that selects the best epoch."""
        raise NotImplementedError

    def epoch_done(self, outcome: EpochOutcome) -> None:
        """Save, log, report the finished epoch."""


class Trainer:
    """Optimisation of `model` by `optimizer` with a per-step/per-epoch `schedule` and early stopping.

    Batches are `MultimodalBatch`es or any object with `.to(device)` and `.batch_size` (a recipe's own,
    e.g. recipes/finetune_text_encoder.py); `model.loss(output, batch)` returns an object with a
    scalar `.total` and a dict of `.parts`.

    forward: batch -> ModelOutput (default: the model itself; DDP passes its wrapped forward).
    autocast: context manager factory for forward passes and losses (mixed precision); default none.
    scaler: fp16 gradient scaler, or None.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, schedule: LRSchedule,
                 stopper: EarlyStopping, grad_clip: float, *, device: torch.device | None = None,
                 forward: Callable | None = None, autocast: Callable | None = None,
                 scaler: torch.amp.GradScaler | None = None) -> None:
        self.model = model
        self.optimizer = optimizer
        self.schedule = schedule
        self.stopper = stopper
        self.grad_clip = grad_clip
        self.device = device or torch.device("cpu")
        self.forward = forward or model
        self.autocast = autocast or contextlib.nullcontext
        self.scaler = scaler

    def train_epoch(self, epoch: int, hooks: TrainerHooks) -> tuple[dict[str, float], float]:
        """One pass over `hooks.batches(epoch)`: ({loss part: sample-weighted mean}, last step's lr).
        Raises TrainingFailed (naming epoch and step) on a non-finite loss, before any update."""
        self.model.train()
        hooks.epoch_started(epoch)
        sums: dict[str, float] = {}
        count, lr = 0, float(self.optimizer.param_groups[0]["lr"])
        for step, batch in enumerate(hooks.batches(epoch), 1):
            batch = batch.to(self.device)
            with self.autocast():
                output = self.forward(batch)
                loss = self.model.loss(output, batch)
            try:
                lr = optimization_step(self.model, loss.total, self.optimizer, self.schedule, self.grad_clip,
                                       self.scaler)
            except NonFiniteLoss as err:
                raise TrainingFailed(f"epoch {epoch}, step {step}: {err}") from None
            size = batch.batch_size
            count += size
            parts = {"total": float(loss.total.detach()), **{k: float(v) for k, v in loss.parts.items()}}
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value * size
            hooks.batch_done(epoch, step, parts["total"])
        keys = sorted(sums)
        totals = hooks.reduce([sums[k] for k in keys] + [float(count)])
        return {k: totals[i] / max(totals[-1], 1.0) for i, k in enumerate(keys)}, lr

    def fit(self, hooks: TrainerHooks, epochs: int, start_epoch: int = 1, stopped: bool = False) -> int:
        """Train epochs `start_epoch`..`epochs` (none when `stopped`: a resumed run that had stopped
        early), stopping early when the stopper says so. Returns the last epoch run (start_epoch - 1
        when none ran)."""
        last_epoch = start_epoch - 1
        for epoch in range(start_epoch, epochs + 1):
            if stopped:
                break
            started = time.perf_counter()
            train, lr = self.train_epoch(epoch, hooks)
            value = float(hooks.validate(epoch))
            improved = self.stopper.update(value, epoch)
            self.schedule.after_epoch(value)
            stopped = self.stopper.should_stop and epoch < epochs
            hooks.epoch_done(EpochOutcome(epoch=epoch, train=train, lr=lr, value=value, improved=improved,
                                          stop=stopped, seconds=time.perf_counter() - started))
            last_epoch = epoch
        return last_epoch
