"""The batch every model consumes and the outputs every model returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mmer_core.feature_spec import MODALITIES


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
