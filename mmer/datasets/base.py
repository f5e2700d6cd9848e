"""In-memory view of a benchmark or cache split, and the collate function that pads it.

Every dataset loader returns a `BenchmarkData`: label names, a `FeatureSpec` and one
`MultimodalDataset` per split. Items are `Sample`s; `collate` pads them into a `MultimodalBatch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from mmer.models.batch import MultimodalBatch
from mmer.core.errors import MmerError
from mmer.core.feature_spec import FeatureSpec

SPLITS: tuple[str, ...] = ("train", "valid", "test")


class DatasetError(MmerError, ValueError):
    """A benchmark/cache file that cannot be read as the named dataset; message names file and problem."""


@dataclass
class Sample:
    """One example.

    features[m]: (T_m, D_m) float32 array; T_m may be 0 (modality absent for this sample).
    labels: (q,) float32 multi-hot.
    index: position of the sample within its split.
    """

    features: dict[str, np.ndarray]
    labels: np.ndarray
    index: int


class MultimodalDataset(Dataset):
    """A split whose items are produced lazily by `get_features(i)` (so files can be memory-mapped).

    get_features(i) -> {modality: (T_m, D_m) float32 array}; labels: (N, q) float32.
    groups: per sample the group it belongs to (speaker, actor; for speaker-independent folds,
    mmer.datasets.folds), or None when the dataset does not know them.
    """

    def __init__(self, get_features: Callable[[int], dict[str, np.ndarray]], labels: np.ndarray,
                 ids: Sequence[str] | None = None, groups: Sequence[str | None] | None = None) -> None:
        self._get = get_features
        self.labels = np.asarray(labels, dtype=np.float32)
        self.ids = list(ids) if ids is not None else [str(i) for i in range(len(self.labels))]
        self.groups = None if groups is None else list(groups)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Sample:
        return Sample(features=self._get(i), labels=self.labels[i], index=i)


def keep_modalities(dataset: MultimodalDataset, keep: Sequence[str]) -> MultimodalDataset:
    """The same samples with every modality not in `keep` absent (T = 0 frames): what a model
    trained on `keep` alone, or a single-stream reading, sees."""
    kept = set(keep)

    def features(i: int) -> dict[str, np.ndarray]:
        return {m: x if m in kept else x[:0] for m, x in dataset[i].features.items()}

    return MultimodalDataset(features, dataset.labels, dataset.ids, dataset.groups)


@dataclass
class BenchmarkData:
    """A dataset as loaded: label names (in the dataset's official order), feature spec, splits."""

    name: str
    label_names: list[str]
    feature_spec: FeatureSpec
    splits: dict[str, MultimodalDataset] = field(default_factory=dict)


def collate(samples: list[Sample], max_len: dict[str, int] | None = None) -> MultimodalBatch:
    """Pad training/evaluation samples into a batch (`MultimodalBatch.pad`, with their labels and index).

    Each modality is padded to the longest sequence in the batch (at least 1 frame, so an absent
    modality becomes one masked zero frame), optionally truncated to `max_len[m]` frames.
    Returns features (B, T_m, D_m), masks (B, T_m) True = real frame, labels (B, q), index (B,).
    """
    return MultimodalBatch.pad([s.features for s in samples], np.stack([s.labels for s in samples]),
                               [s.index for s in samples], max_len)
