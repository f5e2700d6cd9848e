"""The one epoch loop (mmer.trainer.Trainer): hooks order, loss averaging, early stopping, failures.

`mmer train` itself is covered end to end (determinism, exact resume, DDP) by test_train_cli,
test_reproduction and test_ddp, which all run through this loop."""

from __future__ import annotations

import pytest
import torch

from mmer.optimization import EarlyStopping, LRSchedule, build_optimizer
from mmer.trainer import EpochOutcome, Trainer, TrainerHooks, TrainingFailed
from tests.test_models import build, make_batch


class Recorder(TrainerHooks):
    def __init__(self, values: list[float], batches_per_epoch: int = 2) -> None:
        self.values, self.per_epoch = values, batches_per_epoch
        self.calls: list[tuple] = []
        self.outcomes: list[EpochOutcome] = []

    def epoch_started(self, epoch):
        self.calls.append(("start", epoch))

    def batches(self, epoch):
        return [make_batch(seed=epoch * 10 + i) for i in range(self.per_epoch)]

    def batch_done(self, epoch, step, loss):
        self.calls.append(("batch", epoch, step))

    def validate(self, epoch):
        self.calls.append(("validate", epoch))
        return self.values[epoch - 1]

    def epoch_done(self, outcome):
        self.calls.append(("done", outcome.epoch))
        self.outcomes.append(outcome)


def trainer_for(model, patience: int) -> Trainer:
    config = model.config
    optimizer = build_optimizer(model, config)
    return Trainer(model, optimizer, LRSchedule(optimizer, config, 2, True), EarlyStopping(patience, True),
                   config.grad_clip)


def test_hooks_run_in_order_and_early_stopping_ends_training():
    model = build("lddu")
    hooks = Recorder(values=[0.5, 0.7, 0.6, 0.6, 0.9, 0.9])
    last = trainer_for(model, patience=2).fit(hooks, epochs=6)
    assert last == 4  # no improvement after epoch 2 for two epochs
    assert hooks.calls[:4] == [("start", 1), ("batch", 1, 1), ("batch", 1, 2), ("validate", 1)]
    assert [o.improved for o in hooks.outcomes] == [True, True, False, False]
    assert [o.stop for o in hooks.outcomes] == [False, False, False, True]
    assert all(o.train["total"] > 0 and "total" in o.train for o in hooks.outcomes)


def test_a_stopped_run_trains_no_further_epoch():
    hooks = Recorder(values=[0.5])
    assert trainer_for(build("lamb"), patience=0).fit(hooks, epochs=3, start_epoch=2, stopped=True) == 1
    assert hooks.calls == []


def test_a_non_finite_loss_names_epoch_and_step():
    model = build("lddu")
    hooks = Recorder(values=[0.5])
    real_loss, calls = model.loss, []

    def loss(output, batch):  # the second step's loss is NaN
        result = real_loss(output, batch)
        calls.append(1)
        if len(calls) == 2:
            result.total = result.total * float("nan")
        return result

    model.loss = loss
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TrainingFailed, match=r"^epoch 1, step 2: non-finite training loss"):
        trainer_for(model, patience=0).fit(hooks, epochs=1)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # step 1 did update
