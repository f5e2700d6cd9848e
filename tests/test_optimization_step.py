"""One optimisation step: finite-loss guard, gradient clipping, optimiser and schedule stepping."""

import pytest
import torch
from torch import nn

from mmer.optimization import LRSchedule, NonFiniteLoss, optimization_step
from mmer.models.config import OptimSettings


def _setup(grad_clip: float = 0.0):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    config = OptimSettings(lr=0.1, epochs=1, scheduler="cosine_warmup", warmup_ratio=0.5, grad_clip=grad_clip)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    return model, optimizer, LRSchedule(optimizer, config, steps_per_epoch=4, maximize=True), config


def test_non_finite_loss_raises_before_touching_the_weights():
    model, optimizer, schedule, config = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.ones(2, 3)).sum() * float("nan")
    with pytest.raises(NonFiniteLoss):
        optimization_step(model, loss, optimizer, schedule, config.grad_clip)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_step_clips_the_gradient_and_advances_the_schedule():
    model, optimizer, schedule, config = _setup(grad_clip=0.01)
    lr_before = optimizer.param_groups[0]["lr"]
    loss = (model(torch.full((4, 3), 100.0)) ** 2).sum()  # huge gradient
    used = optimization_step(model, loss, optimizer, schedule, config.grad_clip)
    assert used == lr_before
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
    assert norm == pytest.approx(0.01, rel=1e-4)  # clipped to grad_clip
    assert optimizer.param_groups[0]["lr"] != lr_before  # warm-up moved the learning rate
