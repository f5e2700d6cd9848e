"""Per-feature standardisation of the input sequences with training-set statistics.

Raw low-level descriptors span wildly different scales (eGeMAPS loudness ~1, F0 in semitones
~30, formant bandwidths ~1000 Hz); a per-frame LayerNorm cannot undo that, so networks fed raw
eGeMAPS learned nothing from the voice. Every model therefore standardises each input dimension
with the mean and standard deviation of the valid training frames. The statistics are buffers,
so checkpoints carry them; until fitted the transform is the identity.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from mmer.models.batch import MultimodalBatch
from mmer.core.feature_spec import MODALITIES

MIN_STD = 1e-6
"""Dimensions whose standard deviation is below this (constant features) are only centred."""


class InputStandardizer(nn.Module):
    """x' = (x - mean_m) / std_m per modality m and feature dimension; padding stays zero.

    Buffers: `mean_<m>` and `std_<m>` of shape (D_m,), float32.
    """

    def __init__(self, input_dims: Mapping[str, int]) -> None:
        super().__init__()
        for m in MODALITIES:
            self.register_buffer(f"mean_{m}", torch.zeros(input_dims[m]))
            self.register_buffer(f"std_{m}", torch.ones(input_dims[m]))

    @torch.no_grad()
    def fit(self, samples: Iterable[Mapping[str, np.ndarray]]) -> None:
        """Set the statistics from an iterable of per-sample features {m: (T_m, D_m)} (valid frames
        only, as `Sample.features`); accumulated in float64 in one streaming pass."""
        total = {m: np.zeros(getattr(self, f"mean_{m}").shape[0]) for m in MODALITIES}
        total_sq = {m: np.zeros_like(total[m]) for m in MODALITIES}
        count = dict.fromkeys(MODALITIES, 0)
        for features in samples:
            for m in MODALITIES:
                x = np.asarray(features[m], dtype=np.float64)
                if x.shape[0] == 0:
                    continue
                total[m] += x.sum(axis=0)
                total_sq[m] += np.square(x).sum(axis=0)
                count[m] += x.shape[0]
        for m in MODALITIES:
            if count[m] == 0:
                continue  # modality never present in training: keep the identity
            mean = total[m] / count[m]
            std = np.sqrt(np.maximum(total_sq[m] / count[m] - np.square(mean), 0.0))
            std[std < MIN_STD] = 1.0
            getattr(self, f"mean_{m}").copy_(torch.from_numpy(mean))
            getattr(self, f"std_{m}").copy_(torch.from_numpy(std))

    def forward(self, batch: MultimodalBatch) -> MultimodalBatch:
        features = {}
        for m in MODALITIES:
            x = batch.features[m]  # (B, T_m, D_m)
            mean = getattr(self, f"mean_{m}")
            if x.shape[-1] != mean.shape[0]:
                raise ValueError(f"{m} features have dimension {x.shape[-1]}, the model expects {mean.shape[0]}")
            z = (x - mean) / getattr(self, f"std_{m}")
            features[m] = z * batch.masks[m].unsqueeze(-1).to(z.dtype)  # padding stays zero
        return MultimodalBatch(features=features, masks=batch.masks, labels=batch.labels, index=batch.index)
