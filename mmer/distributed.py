"""Data-parallel training under `torchrun`: process-group set-up, the DDP wrapper, gathers.

`torchrun --nproc-per-node N [--nnodes M ...] -m mmer train ...` starts N*M processes with
WORLD_SIZE/RANK/LOCAL_RANK in the environment; `init_distributed` joins them into one process group
(gloo on CPU, nccl on CUDA, one GPU per local rank). Without those variables it returns a
single-process context and nothing here touches torch.distributed.

Conventions: every rank runs the same code; only rank 0 writes files and reports progress;
anything that decides the course of training (validation metrics, early stopping, learning-rate
plateaus) is computed from gathered, identical data on every rank so that ranks never diverge.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from mmer.errors import UserError
from mmer.runtime import resolve_device
from mmer.models.batch import ModelOutput, MultimodalBatch


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job. world_size 1 = plain single-process training."""

    world_size: int
    rank: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(device_choice: str) -> DistContext:
    """Join the torchrun process group if WORLD_SIZE > 1, else return a single-process context.

    device_choice: "auto" | "cpu" | "cuda". Under DDP with CUDA each process uses GPU LOCAL_RANK.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_choice)
    if world_size <= 1:
        return DistContext(1, 0, 0, device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) on this node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return DistContext(world_size, rank, local_rank, device)


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_from_main(ctx: DistContext, value):
    """Rank 0's `value` on every rank (any picklable object; in-memory only, never from a file)."""
    if not ctx.distributed:
        return value
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_to_all(ctx: DistContext, value) -> list:
    """[value of rank 0, value of rank 1, ...] on every rank."""
    if not ctx.distributed:
        return [value]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def all_reduce_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum of a list of floats over all ranks (float64)."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


class _TupleOutput(nn.Module):
    """Presents a model's forward as `(probs, aux)` so DDP can trace every output tensor.

    DDP flattens outputs with torch's pytree, which sees the `ModelOutput` dataclass as one opaque
    leaf; a (tensor, dict) tuple lets it mark parameters unused in this step correctly.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: MultimodalBatch):
        out = self.model(batch)
        return out.probs, out.aux


def unused_parameter_names(model: nn.Module, batch: MultimodalBatch, device: torch.device) -> list[str]:
    """Names of the trainable parameters that `model(batch)`'s outputs do not depend on.

    Runs one forward pass (train mode, RNG state and buffers restored afterwards so training is
    unaffected) and asks autograd which parameters reach any floating-point output tensor.
    """
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        out = model(batch.to(device))
    with torch.no_grad():
        for name, value in model.named_buffers():
            if name in buffers and value.shape == buffers[name].shape:
                value.copy_(buffers[name])
    outputs = [t for t in (out.probs, *out.aux.values())
               if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]
    if not outputs:
        return [n for n, _ in params]
    total = sum(t.sum() for t in outputs)
    grads = torch.autograd.grad(total, [p for _, p in params], allow_unused=True)
    return [n for (n, _), g in zip(params, grads) if g is None]


class TrainForward:
    """Callable `batch -> ModelOutput` for the training step, through DDP when distributed.

    DDP settings and why:
    - find_unused_parameters is switched on only when a probe forward pass (`unused_parameter_names`)
      finds parameters the outputs do not depend on (e.g. an ablation that bypasses a branch);
      without it DDP would wait forever for their gradients, with it every step pays an extra
      traversal of the autograd graph, so it stays off when every parameter is used.
    - buffers are re-broadcast from rank 0 before every forward (DDP's default): buffers that
      models update during training (e.g. LDDU's contrastive queue and correctness history) stay
      identical on every rank, and the checkpoint rank 0 writes is the model every rank trained.
      Updates that a rank > 0 makes to them are overwritten by rank 0's on the next step, so such
      state reflects rank 0's samples unless the model gathers it across ranks itself.
    """

    def __init__(self, model: nn.Module, ctx: DistContext, probe_batch: MultimodalBatch | None) -> None:
        """probe_batch: a training batch for `unused_parameter_names` (required when distributed)."""
        self.model = model
        self.ddp = None
        self.unused: list[str] = []
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            if probe_batch is None:
                raise ValueError("distributed training needs a probe batch to configure DDP")
            self.unused = unused_parameter_names(model, probe_batch, ctx.device)
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(
                _TupleOutput(model), device_ids=device_ids, find_unused_parameters=bool(self.unused)
            )

    def __call__(self, batch: MultimodalBatch) -> ModelOutput:
        if self.ddp is None:
            return self.model(batch)
        probs, aux = self.ddp(batch)
        return ModelOutput(probs=probs, aux=aux)
