"""One optimisation step: finite-loss guard, gradient clipping, optimiser and schedule stepping."""

import math

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


def test_bertadam_step_has_no_bias_correction_and_decoupled_decay():
    from mmer.optimization import BertAdam

    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = BertAdam([p], lr=0.1, weight_decay=0.01)
    p.grad = torch.tensor([0.5, 0.2])
    opt.step()
    m, v = 0.1 * p.grad, 0.001 * p.grad ** 2  # first moments, no bias correction
    expected = torch.tensor([1.0, -2.0]) - 0.1 * (m / (v.sqrt() + 1e-6) + 0.01 * torch.tensor([1.0, -2.0]))
    assert torch.allclose(p.detach(), expected, atol=1e-6)
    # torch's Adam would have moved each weight by lr (bias-corrected m/sqrt(v) = sign(g)).
    assert not torch.allclose(p.detach(), torch.tensor([0.9, -2.1]), atol=1e-3)


def test_no_decay_bias_norm_exempts_biases_and_layernorms():
    from mmer.optimization import build_optimizer

    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 1))
    config = OptimSettings(optimizer="bertadam", weight_decay=0.01, no_decay_bias_norm=True)
    decayed, exempt = build_optimizer(model, config).param_groups
    assert decayed["weight_decay"] == 0.01 and exempt["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert len(exempt["params"]) == 4  # two biases, LayerNorm weight and bias
    plain = build_optimizer(model, OptimSettings(optimizer="adamw", weight_decay=0.01)).param_groups
    assert len(plain) == 1 and len(plain[0]["params"]) == 6


def test_warmup_cosine_total_runs_the_cosine_over_the_whole_run():
    from mmer.optimization import warmup_cosine_total_factor

    # 100 steps, 10 % warm-up: linear from 0, then 0.5 * (1 + cos(pi * step / 100)) with no restart.
    assert warmup_cosine_total_factor(0, 100, 0.1) == 0.0
    assert warmup_cosine_total_factor(5, 100, 0.1) == pytest.approx(0.5)
    assert warmup_cosine_total_factor(10, 100, 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.1)))
    assert warmup_cosine_total_factor(50, 100, 0.1) == pytest.approx(0.5)
    model = nn.Linear(2, 1)
    config = OptimSettings(lr=1.0, epochs=2, scheduler="warmup_cosine_total", warmup_ratio=0.1)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    schedule = LRSchedule(optimizer, config, steps_per_epoch=50, maximize=True)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_step()
    assert lrs[0] == 0.0 and lrs[50] == pytest.approx(0.5) and lrs[99] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
