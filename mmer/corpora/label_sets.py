"""Label sets, in the column order each is used in."""

from __future__ import annotations

DEFAULT_LABEL_NAMES: tuple[str, ...] = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
"""The label set of mmer's default LDDU and LAMB checkpoints, in output-column order."""

MOSEI_LABEL_NAMES: tuple[str, ...] = ("happy", "sad", "anger", "surprise", "disgust", "fear")
"""CMU-MOSEI emotions in the order of the SDK's "All Labels" columns 1..6 (column 0 is sentiment)."""
