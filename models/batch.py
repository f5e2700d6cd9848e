"""The batch every model consumes and the outputs every model returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from mmer.core.feature_spec import MODALITIES


@dataclass
class MultimodalBatch:
    """A padded batch of the three modality sequences.

    features[m]: (B, T_m, D_m) float32, zero where padded.
    masks[m]:    (B, T_m) bool, True for a real frame/token. A sample whose modality is absent has
                 an all-False row (T_m may be 1 for a batch where the modality is absent everywhere).
    labels:      (B, q) float32 multi-hot targets, or None at inference.
    index:       (B,) int64 position of each sample in its training split (LDDU's r_i needs it).
    """

    features: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    labels: torch.Tensor | None = None
    index: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return next(iter(self.features.values())).shape[0]

    def to(self, device: torch.device | str) -> "MultimodalBatch":
        return MultimodalBatch(
            features={m: x.to(device) for m, x in self.features.items()},
            masks={m: x.to(device) for m, x in self.masks.items()},
            labels=None if self.labels is None else self.labels.to(device),
            index=None if self.index is None else self.index.to(device),
        )

    @staticmethod
    def from_tensors(
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor] | None = None,
        labels: torch.Tensor | None = None,
        index: torch.Tensor | None = None,
    ) -> "MultimodalBatch":
        """Build a batch; missing masks mean every frame is valid."""
        masks = dict(masks or {})
        for m in MODALITIES:
            if m not in masks:
                x = features[m]
                masks[m] = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        return MultimodalBatch(features=dict(features), masks=masks, labels=labels, index=index)

    @staticmethod
    def pad(sequences: Sequence[Mapping[str, np.ndarray]], labels: np.ndarray | None = None,
            index: Sequence[int] | None = None, max_len: Mapping[str, int] | None = None) -> "MultimodalBatch":
        """Pad per-sample sequences {m: (T_m, D_m)} (T_m may be 0: modality absent) into a batch.

        Each modality is padded to the longest sequence in the batch (at least 1 frame, so an absent
        modality becomes one masked zero frame), optionally truncated to `max_len[m]` frames.
        labels: (B, q) multi-hot, or None at inference. index: each sample's position in its split
        (default 0..B-1). Returns features (B, T_m, D_m), masks (B, T_m) True = real frame.
        """
        feats, masks = {}, {}
        for m in MODALITIES:
            seqs = [np.asarray(s[m], dtype=np.float32) for s in sequences]
            if max_len and m in max_len:
                seqs = [x[: max_len[m]] for x in seqs]
            dim = seqs[0].shape[1]
            t = max(1, max(x.shape[0] for x in seqs))
            out = np.zeros((len(seqs), t, dim), dtype=np.float32)  # (B, T_m, D_m)
            mask = np.zeros((len(seqs), t), dtype=bool)  # (B, T_m)
            for i, x in enumerate(seqs):
                out[i, : len(x)] = x
                mask[i, : len(x)] = True
            feats[m] = torch.from_numpy(out)
            masks[m] = torch.from_numpy(mask)
        return MultimodalBatch(
            features=feats, masks=masks,
            labels=None if labels is None else torch.from_numpy(np.asarray(labels).astype(np.float32)),
            index=torch.tensor(list(range(len(sequences))) if index is None else list(index), dtype=torch.long),
        )


@dataclass
class ModelOutput:
    """Forward result.

    probs: (B, q) final per-label probabilities in [0, 1].
    aux:   model-specific tensors the loss needs (e.g. LDDU's mu, sigma, info-classifier probs).
    """

    probs: torch.Tensor
    aux: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class LossOutput:
    """total: scalar to back-propagate; parts: detached named components (for logging)."""

    total: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


@dataclass
class Prediction:
    """Inference result.

    probs:       (B, q) per-label probabilities in [0, 1].
    uncertainty: (B, q) per-label uncertainty in [0, 1]; 0 = certain, 1 = maximally uncertain.
                 Each model documents how it derives this score. None only when the caller asked
                 for no uncertainty (`predict(batch, with_uncertainty=False)`) and the model
                 would have had to spend extra passes on it.
    """

    probs: torch.Tensor
    uncertainty: torch.Tensor | None
