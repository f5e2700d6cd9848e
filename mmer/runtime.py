"""Device, thread and precision selection shared by every command that computes (`--device`,
`--threads`, `--precision`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from mmer.catalog import DEVICE_CHOICES, PRECISION_CHOICES
from mmer.errors import UserError


def resolve_device(choice: str = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without a GPU is a user error."""
    if choice not in DEVICE_CHOICES:
        raise UserError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}", parameter="device")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda: no CUDA GPU is available on this machine", parameter="device")
    return torch.device(choice)


def set_threads(threads: int | None) -> None:
    """Limit torch's intra-op CPU threads (None keeps torch's default).

    On a busy 2-core machine one thread is often faster than two, hence the option.
    """
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"threads must be >= 1, got {threads}", parameter="threads")
    torch.set_num_threads(threads)


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """Number format of the networks' matrix products (`--precision`): "fp32" runs as built;
    "bf16"/"fp16" run eligible ops under torch.autocast on `device_type` (weights, optimiser state
    and losses stay float32). fp16 training scales the loss (`grad_scaler`) against underflow."""

    name: str = "fp32"
    device_type: str = "cpu"

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype; None for fp32."""
        return _AUTOCAST_DTYPES.get(self.name)

    def autocast(self):
        """Context manager for forward passes (and losses): autocast, or nothing for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 training, None otherwise (bf16 has float32's range)."""
        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None


def resolve_precision(choice: str, device: torch.device) -> Precision:
    """--precision on `device`; a one-line UserError when the device cannot run it."""
    if choice not in PRECISION_CHOICES:
        raise UserError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {choice!r}", parameter="precision")
    if choice == "fp32":
        return Precision("fp32", device.type)
    if not torch.amp.is_autocast_available(device.type):
        raise UserError(f"precision {choice}: mixed precision (autocast) is not supported on {device.type}; use fp32", parameter="precision")
    if device.type == "cuda" and choice == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"precision bf16: this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16 support; "
                        "use fp16 or fp32", parameter="precision")
    return Precision(choice, device.type)


MMAP_THRESHOLD_BYTES = 128 * 1024
"""Allocations at least this large get their own memory mapping, returned to the system when freed."""


def keep_heap_flat() -> bool:
    """Pin glibc's mmap threshold at MMAP_THRESHOLD_BYTES (process-wide; a no-op without glibc).

    By default glibc raises the threshold (up to 32 MB) each time a large mapped block is freed, after
    which large blocks (frame batches, activations) come from the heap, where fragmentation makes the
    resident size creep up with every batch: a long clip ends with a higher peak than a short one. A
    fixed threshold turns this off. Returns whether the setting was applied."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    m_mmap_threshold = -3  # glibc's M_MMAP_THRESHOLD
    return bool(mallopt(m_mmap_threshold, MMAP_THRESHOLD_BYTES))
