"""Attention building blocks that accept padding masks and stay finite when a sequence is fully
masked (an absent modality), shared by LDDU and LAMB."""

from __future__ import annotations

import math

import torch
from torch import nn


def key_padding_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, T) bool valid-mask -> (B, T) bool key_padding_mask for nn.MultiheadAttention (True = ignore).

    A row with no valid position would make softmax produce NaN; for such rows position 0 is left
    unmasked (it holds zero padding) and callers zero the attention output with `has_any(valid)`.
    """
    ignore = ~valid
    empty = ~valid.any(dim=1)
    if empty.any():
        ignore = ignore.clone()
        ignore[empty, 0] = False
    return ignore


def has_any(valid: torch.Tensor) -> torch.Tensor:
    """(B, T) bool -> (B, 1, 1) float: 1 where the sample has at least one valid position."""
    return valid.any(dim=1).to(torch.float32)[:, None, None]


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed sinusoidal position encodings (Vaswani et al.), shape (length, dim)."""
    pos = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)  # (T, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    enc = torch.zeros(length, dim, device=device)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return enc


class AttentionBlock(nn.Module):
    """Post-LN transformer block (the form of LAMB Eq. 3-4 and of a standard encoder layer):

        H = LN(MHA(Q, KV, KV) + Q)
        out = LN(MLP(H) + H)

    Self-attention when `kv` is None. Shapes: query (B, T_q, d), kv (B, T_k, d),
    kv_valid (B, T_k) bool True = real frame; returns (B, T_q, d). If a sample's kv is fully
    masked its attention term is zero, so the block reduces to the MLP path on the query.
    `dropout` acts on the residual branches and inside the MLP (between its layers; not with
    `mlp_inner_dropout=False`, as in BERT's layers); `attention_dropout` on the attention
    weights (off by default: on CPU it forces PyTorch's slow attention path and draws a
    (B, heads, T_q, T_k) mask per layer).
    """

    def __init__(self, d_model: int, num_heads: int, mlp_hidden: int, dropout: float = 0.1,
                 attention_dropout: float = 0.0, mlp_inner_dropout: bool = True) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, num_heads, dropout=attention_dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d_model)
        inner = nn.Dropout(dropout) if mlp_inner_dropout else nn.Identity()  # same state-dict keys either way
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_hidden), nn.GELU(), inner, nn.Linear(mlp_hidden, d_model))
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        query: torch.Tensor,
        kv: torch.Tensor | None = None,
        kv_valid: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        kv = query if kv is None else kv
        if kv_valid is None:
            kv_valid = torch.ones(kv.shape[:2], dtype=torch.bool, device=kv.device)
        attended, _ = self.attn(query, kv, kv, key_padding_mask=key_padding_mask(kv_valid),
                                attn_mask=attn_mask, need_weights=False)
        attended = attended * has_any(kv_valid)  # absent key modality contributes nothing
        h = self.norm1(query + self.dropout(attended))
        return self.norm2(h + self.dropout(self.mlp(h)))
