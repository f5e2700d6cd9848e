"""Greedy non-maximum suppression over boxes (torch), grouped by an index.

This replaces `torchvision.ops.batched_nms` for the MTCNN face detector (torchvision cannot be
installed here, see docs/extractors.md). Boxes are `(x1, y1, x2, y2)` in pixels; a box's area is
`(x2 - x1) * (y2 - y1)` like torchvision's. Results follow torchvision's contract: indices of the
kept boxes, sorted by decreasing score.
"""

from __future__ import annotations

import numpy as np
import torch

OVERLAP_MODES = ("union", "min")
"""How overlap is measured: intersection over union, or intersection over the smaller area."""

_ROW_BLOCK = 1024  # rows of the pairwise overlap matrix computed at once (bounds float memory)


def box_overlap(boxes_a: torch.Tensor, boxes_b: torch.Tensor, mode: str = "union") -> torch.Tensor:
    """Pairwise overlap of `boxes_a` (N, 4) and `boxes_b` (M, 4) -> (N, M) in [0, 1]."""
    if mode not in OVERLAP_MODES:
        raise ValueError(f"overlap mode must be one of {OVERLAP_MODES}, got {mode!r}")
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]).clamp(min=0) * (boxes_a[:, 3] - boxes_a[:, 1]).clamp(min=0)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]).clamp(min=0) * (boxes_b[:, 3] - boxes_b[:, 1]).clamp(min=0)
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])  # (N, M, 2)
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]  # (N, M)
    if mode == "union":
        denom = area_a[:, None] + area_b[None, :] - inter
    else:
        denom = torch.minimum(area_a[:, None], area_b[None, :])
    return inter / denom.clamp(min=1e-12)


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, mode: str = "union") -> torch.Tensor:
    """Keep boxes greedily by score, dropping any box overlapping a kept one by more than `threshold`.

    boxes (N, 4), scores (N,) -> int64 indices (K,) into `boxes`, highest score first.
    """
    order = torch.argsort(scores, descending=True)
    n = int(order.numel())
    if n == 0:
        return order
    ranked = boxes[order].float()
    # suppresses[i, j]: box of rank i overlaps box of rank j too much, (N, N) bool on the CPU.
    suppresses = np.concatenate([
        (box_overlap(ranked[i:i + _ROW_BLOCK], ranked, mode) > threshold).cpu().numpy()
        for i in range(0, n, _ROW_BLOCK)
    ])
    removed = np.zeros(n, dtype=bool)
    kept = []
    for rank in range(n):
        if removed[rank]:
            continue
        kept.append(rank)
        removed |= suppresses[rank]
    return order[torch.as_tensor(kept, dtype=torch.long, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, threshold: float,
                mode: str = "union") -> torch.Tensor:
    """`nms` run separately within each group (e.g. per image): boxes of different groups never
    suppress each other.

    boxes (N, 4), scores (N,), groups (N,) integer ids -> int64 indices (K,), highest score first.
    """
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    kept = []
    for group in torch.unique(groups):
        members = torch.nonzero(groups == group).flatten()
        kept.append(members[nms(boxes[members], scores[members], threshold, mode)])
    keep = torch.cat(kept)
    return keep[torch.argsort(scores[keep], descending=True)]
