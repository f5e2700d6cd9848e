"""LDDU's training objectives and the training-time state they need.

- `supcon_loss`: supervised contrastive loss over (label, modality) distributions (paper Eq. 5-7).
- `DistributionQueue`: FIFO memory of past distribution representations and their class ids.
- `ordinality_loss`: bidirectional-KL ordinality calibration between soft rankings (Eq. 10-15).
- `CorrectnessTracker`: each training sample's running share of correct info-classifier
  predictions (the proxy r_i of Eq. 14).
- `smooth_targets`: label smoothing shared by the BCE terms.

The queue and the tracker hold non-persistent buffers: they move with `.to(device)` but stay out
of `state_dict()` (inference checkpoints do not need them); `state()` / `load_state()` expose them
for resumable training.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

OCL_SCORES: tuple[str, ...] = ("S", "D", "R")
"""Per-sample scores of the ordinality loss: S = 1/||sigma||, D = 1 - d(y_dir, y), R = r_i."""


def gather_across_ranks(rows: torch.Tensor) -> torch.Tensor:
    """Concatenate `rows` (n_r, ...) from every process of an initialised torch.distributed group,
    in rank order (n_r may differ per rank); `rows` itself when not distributed. No autograd.

    LDDU's training state (queue, correctness history, reference norms) is updated with the rows
    of every rank, so all ranks hold identical state and DDP's re-broadcast of rank 0's buffers
    loses nothing. Every rank must call this the same number of times (once per training step).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    world = dist.get_world_size()
    count = torch.tensor([rows.shape[0]], dtype=torch.long, device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    if max(sizes) == 0:
        return rows
    padded = rows.new_zeros((max(sizes), *rows.shape[1:]))  # all_gather needs equal shapes
    padded[: rows.shape[0]] = rows
    chunks = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    return torch.cat([chunk[:n] for chunk, n in zip(chunks, sizes)], dim=0)


def smooth_targets(labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """(B, q) multi-hot -> y*(1-eps) + eps/2 (identity when eps = 0)."""
    if smoothing <= 0.0:
        return labels
    return labels * (1.0 - smoothing) + 0.5 * smoothing


SUPCON_REDUCTIONS: tuple[str, ...] = ("sum", "mean", "all_rows")
"""How `supcon_loss` reduces the per-anchor losses (see its docstring)."""


def supcon_loss(
    anchors: torch.Tensor,
    classes: torch.Tensor,
    bank: torch.Tensor | None = None,
    bank_classes: torch.Tensor | None = None,
    temperature: float = 0.07,
    reduction: str = "sum",
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) as LDDU's Eq. 5-7.

    anchors: (A, D) representations e of the batch's positive distributions (already normalised
             as the caller wants; similarity is the plain dot product z = e1^T e2, Eq. 6).
    classes: (A,) int64 class id of each anchor ((label, modality) pair).
    bank:    (K, D) extra contrast entries (the queue; treated as constants), or None.
    bank_classes: (K,) int64; entries < 0 are empty slots and are ignored.

    For each anchor e, T_e = every other anchor plus every filled bank entry, P_e = the members
    of T_e with e's class. Per anchor (Eq. 5):
        L(e) = -1/|P_e| * sum_{p in P_e} log( exp(z(e,p)/tau) / sum_{t in T_e} exp(z(e,t)/tau) )
    Anchors with an empty P_e contribute nothing. reduction "sum" adds L(e) over anchors (Eq. 7);
    "mean" averages over the anchors that contribute; "all_rows" makes every filled bank entry an
    anchor too (its T and P drawn from the batch anchors and the other bank entries) and divides
    the sum of L over all these rows by their number, rows without a positive counting 0 (the LDDU
    authors' code: myModels.py:359 contrasts every row of batch + queue, SupConLoss's
    `loss.mean()` at :149 averages over all of them). Bank rows are constants, so they add
    gradient only through the batch anchors in their T.
    Returns a scalar (0, still attached to the graph, when no anchor has a positive).
    """
    if reduction not in SUPCON_REDUCTIONS:
        raise ValueError(f"unknown SupCon reduction {reduction!r}")
    if reduction == "all_rows":
        return _supcon_all_rows(anchors, classes, bank, bank_classes, temperature)
    if bank is not None and bank.shape[0] > 0:
        contrast = torch.cat([anchors, bank.detach()], dim=0)  # (A+K, D)
        contrast_classes = torch.cat([classes, bank_classes], dim=0)  # (A+K,)
    else:
        contrast, contrast_classes = anchors, classes
    num_anchors = anchors.shape[0]
    not_self = torch.ones(num_anchors, contrast.shape[0], dtype=torch.bool, device=anchors.device)
    not_self[:, :num_anchors].fill_diagonal_(False)
    in_t = not_self & (contrast_classes >= 0).unsqueeze(0)  # (A, A+K) membership of T_e
    positives = in_t & (classes.unsqueeze(1) == contrast_classes.unsqueeze(0))  # (A, A+K) P_e
    num_pos = positives.sum(dim=1)  # (A,)
    keep = num_pos > 0
    if not bool(keep.any()):
        return anchors.sum() * 0.0
    # Only anchors with a positive are scored; each of them has a non-empty T_e, so the
    # log-sum-exp below never sees an all -inf row (which would poison the gradients).
    logits = anchors[keep] @ contrast.T / temperature  # (A', A+K)
    logits = logits.masked_fill(~in_t[keep], float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (A', A+K)
    pos = positives[keep]
    per_anchor = -log_prob.masked_fill(~pos, 0.0).sum(dim=1) / num_pos[keep].to(log_prob.dtype)
    return per_anchor.sum() if reduction == "sum" else per_anchor.mean()


def _supcon_all_rows(anchors: torch.Tensor, classes: torch.Tensor, bank: torch.Tensor | None,
                     bank_classes: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """`supcon_loss` with reduction "all_rows": rows = the A anchors and the K' filled bank
    entries; for each row, T = every other row, P = the members of T of its class;
    loss = sum over rows with a positive of L(row) / (A + K')."""
    rows, row_classes = anchors, classes
    if bank is not None and bank.shape[0] > 0:
        filled = bank_classes >= 0
        rows = torch.cat([anchors, bank.detach()[filled]], dim=0)  # (N, D), N = A + K'
        row_classes = torch.cat([classes, bank_classes[filled]], dim=0)  # (N,)
    n = rows.shape[0]
    if n < 2:
        return anchors.sum() * 0.0
    not_self = ~torch.eye(n, dtype=torch.bool, device=rows.device)  # (N, N) membership of T
    positives = not_self & (row_classes.unsqueeze(1) == row_classes.unsqueeze(0))  # (N, N)
    num_pos = positives.sum(dim=1)  # (N,)
    if not bool((num_pos > 0).any()):
        return anchors.sum() * 0.0
    logits = (rows @ rows.T / temperature).masked_fill(~not_self, float("-inf"))  # (N, N)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    per_row = -log_prob.masked_fill(~positives, 0.0).sum(dim=1) / num_pos.clamp(min=1).to(log_prob.dtype)
    return per_row.sum() / n


class DistributionQueue(nn.Module):
    """FIFO queue of the most recent `capacity` distribution representations with class ids.

    Buffers (non-persistent): feats (capacity, dim), classes (capacity,) int64 with -1 = empty
    slot, ptr () int64 = the slot the next entry is written to. Entries are stored detached.
    """

    def __init__(self, capacity: int, dim: int) -> None:
        super().__init__()
        self.capacity = int(capacity)
        self.register_buffer("feats", torch.zeros(self.capacity, dim), persistent=False)
        self.register_buffer("classes", torch.full((self.capacity,), -1, dtype=torch.long), persistent=False)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long), persistent=False)

    @torch.no_grad()
    def enqueue(self, feats: torch.Tensor, classes: torch.Tensor) -> None:
        """Append feats (n, dim) with classes (n,), overwriting the oldest entries. If n exceeds
        the capacity only the last `capacity` entries survive, exactly as n single appends."""
        if self.capacity == 0 or feats.shape[0] == 0:
            return
        n = feats.shape[0]
        ptr = int(self.ptr)
        if n > self.capacity:
            ptr = (ptr + n - self.capacity) % self.capacity  # the overwritten-anyway prefix
            feats, classes = feats[-self.capacity:], classes[-self.capacity:]
            n = self.capacity
        slots = (ptr + torch.arange(n, device=self.feats.device)) % self.capacity  # (n,) distinct
        self.feats[slots] = feats.detach().to(self.feats.dtype)
        self.classes[slots] = classes.to(torch.long)
        self.ptr.fill_((ptr + n) % self.capacity)

    def state(self) -> dict[str, torch.Tensor]:
        return {"feats": self.feats.clone(), "classes": self.classes.clone(), "ptr": self.ptr.clone()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("feats", "classes", "ptr"):
            current = getattr(self, name)
            value = state[name]
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(f"queue {name}: saved shape {tuple(value.shape)}, model has {tuple(current.shape)}")
            current.copy_(value.to(current.device, current.dtype))


def _symmetric_kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(P||Q) + KL(Q||P) for log-probability vectors of equal length."""
    p, q = log_p.exp(), log_q.exp()
    return (p * (log_p - log_q)).sum() + (q * (log_q - log_p)).sum()


def ordinality_loss(
    scores: dict[str, torch.Tensor], valid: torch.Tensor, pairs: tuple[str, ...] = ("DR", "SR")
) -> torch.Tensor:
    """Ordinality calibration L_ocl (Eq. 15): sum over pairs (X, Y) of KL(P_X||P_Y) + KL(P_Y||P_X),
    where P_X = softmax over the batch of the per-sample score vector X.

    scores: {"S": (B,), "D": (B,), "R": (B,)} (only the letters used by `pairs` are needed).
    valid:  (B,) bool, samples taking part (e.g. those with at least one present modality);
            the softmaxes run over these samples only.
    pairs:  two-letter strings over {S, D, R}; the paper uses ("DR", "SR").
    Returns a scalar >= 0; 0 when fewer than two samples are valid or `pairs` is empty.
    """
    some = next(iter(scores.values()))
    total = some.sum() * 0.0
    if int(valid.sum()) < 2:
        return total
    log_p = {k: F.log_softmax(v[valid], dim=0) for k, v in scores.items()}
    for a, b in pairs:
        total = total + _symmetric_kl(log_p[a], log_p[b])
    return total


def authors_code_ordinality_loss(y_dir: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The ordinality term of the LDDU authors' code (`CRLDis`, myModels.py:316-333), which is
    not the paper's Eq. 10-15: P_var = softmax over all B*q (sample, label) pairs of the L2 norm of
    that label's variance vectors of the three modalities; P_dir = softmax over the q labels of
    each sample of the info classifier's probabilities y_dir, flattened to B*q;
    loss = (KL(P_dir||P_var) + KL(P_var||P_dir)) / (B*q) / 2 (`kl_div(..., "batchmean")` of a
    flat vector divides by its length). Its correctness history is computed there but unused.

    y_dir: (B, q) probabilities; sigma: (B, 3, q, L) standard deviations. Returns a scalar.
    """
    batch, q = y_dir.shape
    norms = sigma.permute(0, 2, 1, 3).reshape(batch, q, -1).norm(dim=-1).reshape(-1)  # (B*q,)
    log_var = F.log_softmax(norms, dim=0)
    log_dir = F.log_softmax(y_dir, dim=1).reshape(-1)  # (B*q,)
    return _symmetric_kl(log_dir, log_var) / (batch * q) / 2.0


class CorrectnessTracker(nn.Module):
    """Running share of correct info-classifier predictions per training sample (r_i, Eq. 14).

    Buffers (non-persistent): correct (N,) summed correctness scores in [0, 1] per observation,
    seen (N,) number of observations. N is set by `resize(num_train_samples)` and grows on demand
    if an index beyond it arrives.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("correct", torch.zeros(0), persistent=False)
        self.register_buffer("seen", torch.zeros(0), persistent=False)

    def resize(self, num_samples: int) -> None:
        """Forget all history and track `num_samples` samples."""
        self.correct = torch.zeros(num_samples, device=self.correct.device)
        self.seen = torch.zeros(num_samples, device=self.seen.device)

    @torch.no_grad()
    def update(self, index: torch.Tensor, score: torch.Tensor) -> None:
        """Record one observation per sample. index: (B,) int64, score: (B,) in [0, 1]."""
        needed = int(index.max()) + 1 if index.numel() else 0
        if needed > self.correct.numel():
            grown_c = torch.zeros(needed, device=self.correct.device)
            grown_s = torch.zeros(needed, device=self.seen.device)
            grown_c[: self.correct.numel()] = self.correct
            grown_s[: self.seen.numel()] = self.seen
            self.correct, self.seen = grown_c, grown_s
        index = index.to(self.correct.device)
        self.correct.index_add_(0, index, score.detach().to(self.correct.dtype))
        self.seen.index_add_(0, index, torch.ones_like(score, dtype=self.seen.dtype))

    def share(self, index: torch.Tensor) -> torch.Tensor:
        """(B,) running share correct/seen of the given samples (0 for never-seen samples)."""
        index = index.to(self.correct.device)
        return self.correct[index] / self.seen[index].clamp(min=1.0)

    def state(self) -> dict[str, torch.Tensor]:
        return {"correct": self.correct.clone(), "seen": self.seen.clone()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        self.correct = state["correct"].to(self.correct.device, torch.float32).clone()
        self.seen = state["seen"].to(self.seen.device, torch.float32).clone()
