"""The colour of each emotion in every picture `mmer analyze` draws (HTML report, --plot)."""

from __future__ import annotations

PALETTE = ("#d55e00", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f7f7f", "#8c564b", "#3b3b98")
"""Emotion colours (colour-blind-safe first), in label order, repeating."""


def emotion_colour(k: int) -> str:
    """The colour of the k-th label (checkpoint order)."""
    return PALETTE[k % len(PALETTE)]
