"""Device and thread selection shared by every command that computes (`--device`, `--threads`)."""

from __future__ import annotations

import torch

from mmer_cli.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(choice: str = "auto") -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without a GPU is a user error."""
    if choice not in DEVICE_CHOICES:
        raise UserError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available on this machine")
    return torch.device(choice)


def set_threads(threads: int | None) -> None:
    """Limit torch's intra-op CPU threads (None keeps torch's default).

    On a busy 2-core machine one thread is often faster than two, hence the option.
    """
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
