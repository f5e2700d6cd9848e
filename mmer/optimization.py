"""Optimiser, learning-rate schedule and early stopping built from a model config's `OptimSettings`.

Schedules (config.scheduler):
- "none": constant learning rate.
- "cosine_warmup": linear warm-up from 0 over the first `warmup_ratio` of all optimisation steps,
  then cosine decay to 0 at the last step; stepped after every optimiser step.
- "warmup_cosine_total": BERT's `warmup_cosine` (the LDDU authors' BertAdam schedule): at step s of
  S, x = s/S; factor x/warmup_ratio while x < warmup_ratio, then 0.5*(1 + cos(pi*x)) — the cosine
  runs over the whole run's progress, not over the steps after the warm-up, so it starts at
  cos-factor 0.5*(1 + cos(pi*warmup_ratio)) < 1 when the warm-up ends.
- "plateau": multiply the learning rate by `plateau_factor` when the validation selection metric has
  not improved for `plateau_patience` epochs; stepped once per epoch with that metric.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mmer.models.config import ConfigError

OPTIMIZERS = ("adam", "adamw", "bertadam")
SCHEDULERS = ("none", "cosine_warmup", "warmup_cosine_total", "plateau")


class NonFiniteLoss(ArithmeticError):
    """The training loss became NaN or infinite; the weights were left untouched."""


def optimization_step(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                      schedule: "LRSchedule", grad_clip: float, scaler: torch.amp.GradScaler | None = None) -> float:
    """Back-propagate the scalar `loss`, clip the global gradient norm to `grad_clip` (0 = off),
    step the optimiser and the per-step schedule. Returns the learning rate the step used.

    scaler: fp16 loss scaling (`Precision.grad_scaler`); a step whose scaled gradients overflow is
    skipped by the scaler, which then lowers its scale.
    Raises NonFiniteLoss, before any update, when `loss` is NaN or infinite.
    """
    if not torch.isfinite(loss).item():
        raise NonFiniteLoss("non-finite training loss (try a lower lr or grad_clip)")
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    lr = float(optimizer.param_groups[0]["lr"])
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    schedule.after_step()
    return lr


class BertAdam(torch.optim.Optimizer):
    """Adam as in BERT's original code (the optimiser of the LDDU authors' train.py): no bias
    correction, eps added to sqrt(v), weight decay decoupled and added to the update:

        m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;  p -= lr * (m / (sqrt(v) + eps) + weight_decay*p)

    The learning rate comes from the param group, so `LRSchedule` drives it like any optimiser's.
    """

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update + group["weight_decay"] * p
                p.add_(update, alpha=-group["lr"])
        return loss


def _no_decay_parameters(model: nn.Module) -> set[int]:
    """ids of the parameters BERT-style training exempts from weight decay: every bias and every
    parameter of a LayerNorm."""
    exempt = {id(p) for name, p in model.named_parameters() if name.split(".")[-1].endswith("bias")}
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            exempt.update(id(p) for p in module.parameters(recurse=False))
    return exempt


def build_optimizer(model: nn.Module, config) -> torch.optim.Optimizer:
    """Adam, AdamW or BertAdam over every trainable parameter, with config.lr and
    config.weight_decay (none on biases and LayerNorm parameters with `no_decay_bias_norm`)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups: list[dict] | list[torch.Tensor] = params
    if getattr(config, "no_decay_bias_norm", False) and config.weight_decay:
        exempt = _no_decay_parameters(model)
        groups = [{"params": [p for p in params if id(p) not in exempt]},
                  {"params": [p for p in params if id(p) in exempt], "weight_decay": 0.0}]
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "bertadam":
        return BertAdam(groups, lr=config.lr, weight_decay=config.weight_decay)
    raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {config.optimizer!r}")


def cosine_warmup_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier at optimiser step `step` (0-based) of `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def warmup_cosine_total_factor(step: int, total_steps: int, warmup_ratio: float) -> float:
    """BERT's `warmup_cosine` multiplier at optimiser step `step` (0-based) of `total_steps`."""
    x = step / max(1, total_steps)
    if x < warmup_ratio:
        return x / warmup_ratio
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, x)))


class LRSchedule:
    """One interface over the three schedules: `after_step()` per optimiser step,
    `after_epoch(metric)` per epoch; `state_dict()`/`load_state_dict()` for resuming."""

    def __init__(self, optimizer: torch.optim.Optimizer, config, steps_per_epoch: int, maximize: bool) -> None:
        self.kind = config.scheduler
        self.scheduler = None
        if self.kind == "cosine_warmup":
            if not 0.0 <= config.warmup_ratio < 1.0:
                raise ConfigError(f"warmup_ratio must be in [0, 1), got {config.warmup_ratio}")
            total = max(1, steps_per_epoch * config.epochs)
            warmup = int(round(config.warmup_ratio * total))
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: cosine_warmup_factor(step, total, warmup)
            )
        elif self.kind == "warmup_cosine_total":
            if not 0.0 <= config.warmup_ratio < 1.0:
                raise ConfigError(f"warmup_ratio must be in [0, 1), got {config.warmup_ratio}")
            total = max(1, steps_per_epoch * config.epochs)
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: warmup_cosine_total_factor(step, total, config.warmup_ratio)
            )
        elif self.kind == "plateau":
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max" if maximize else "min", factor=config.plateau_factor,
                patience=config.plateau_patience,
            )
        elif self.kind != "none":
            raise ConfigError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.kind!r}")

    @classmethod
    def per_step(cls, scheduler: torch.optim.lr_scheduler.LRScheduler) -> "LRSchedule":
        """A schedule that steps a ready-made torch `scheduler` after every optimiser step (a recipe's
        own schedule, e.g. OneCycleLR, run by `mmer.trainer.Trainer`)."""
        schedule = cls.__new__(cls)
        schedule.kind, schedule.scheduler = "per_step", scheduler
        return schedule

    def after_step(self) -> None:
        if self.kind in ("cosine_warmup", "warmup_cosine_total", "per_step"):
            self.scheduler.step()

    def after_epoch(self, metric: float) -> None:
        if self.kind == "plateau":
            self.scheduler.step(metric)

    def state_dict(self) -> dict:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)


class EarlyStopping:
    """Tracks the best validation value; `update(value)` says whether it improved.

    patience 0 disables stopping (the best epoch is still tracked for model selection).
    """

    def __init__(self, patience: int, maximize: bool) -> None:
        self.patience = patience
        self.maximize = maximize
        self.best: float | None = None
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, value: float, epoch: int) -> bool:
        improved = self.best is None or (value > self.best if self.maximize else value < self.best)
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
