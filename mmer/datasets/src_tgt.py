"""The `{split: {src-text, src-visual, src-audio, tgt}}` `.pt` layout (HHMPN/TAILOR/CARAT).

Used by `mosei-aligned` (CMU-MOSEI word-aligned: GloVe 300 / FACET 35 / COVAREP 74, 60 steps)
and `m3ed` (one vector per utterance: RoBERTa-wwm 768 / DenseFace 1024 / audio 342, 60 steps),
and as the label source of `mosei-unaligned`. Other top-level keys (`settings`, an
`argparse.Namespace`, and `dict`) are not needed and ignored.

Padding: all-zero frames at the start and end of each sequence are padding (see
`trim_zero_padding`); GloVe padding rows are exactly zero, so are the padded utterance slots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmer.datasets.base import SPLITS, BenchmarkData, MultimodalDataset
from mmer.datasets.labels import M3ED_EMOTIONS, MOSEI_EMOTIONS, token_lists_to_multi_hot
from mmer.datasets.layout import require_key, require_same_count, splits_of
from mmer.datasets.registry import register_dataset
from mmer.datasets.safe_pickle import load_pickled_file
from mmer.datasets.sequences import SequenceColumn, trimmed_features
from mmer.core.feature_spec import MODALITIES, FeatureSpec, ModalitySpec

SOURCE_KEYS: dict[str, str] = {"text": "src-text", "audio": "src-audio", "visual": "src-visual"}
"""Modality -> key of its features in each split."""

MOSEI_SPEC = FeatureSpec(  # GloVe words, COVAREP voice, FACET face: aligned and MulT unaligned
    text=ModalitySpec("glove-300", 300),
    audio=ModalitySpec("covarep-74", 74),
    visual=ModalitySpec("facet-35", 35),
)

M3ED_SPEC = FeatureSpec(
    text=ModalitySpec("roberta-wwm-zh-768", 768),
    audio=ModalitySpec("m3ed-audio-342", 342),
    visual=ModalitySpec("densenet-1024", 1024),
)


def read_tgt_labels(path: Path, label_names: list[str]) -> dict[str, np.ndarray]:
    """Only the labels of a src/tgt `.pt` file: split -> `(N, q)` float32 multi-hot."""
    splits = splits_of(load_pickled_file(path), path)
    return {split: token_lists_to_multi_hot(require_key(d, "tgt", split, path), len(label_names),
                                            f"{path}: split {split!r} 'tgt'")
            for split, d in splits.items()}


def load_src_tgt(name: str, path: Path, label_names: list[str], spec: FeatureSpec) -> BenchmarkData:
    """Read a src/tgt `.pt` file lazily: samples are cut from the (memory-mapped) arrays on access."""
    splits = splits_of(load_pickled_file(path), path)
    data = BenchmarkData(name=name, label_names=list(label_names), feature_spec=spec)
    for split in SPLITS:
        d = splits[split]
        columns = {m: SequenceColumn(require_key(d, SOURCE_KEYS[m], split, path), spec[m].dim,
                                     f"{path}: split {split!r} {SOURCE_KEYS[m]!r}")
                   for m in MODALITIES}
        labels = token_lists_to_multi_hot(require_key(d, "tgt", split, path), len(label_names),
                                          f"{path}: split {split!r} 'tgt'")
        counts = {SOURCE_KEYS[m]: len(c) for m, c in columns.items()} | {"tgt": len(labels)}
        require_same_count(counts, split, path)
        data.splits[split] = MultimodalDataset(trimmed_features(columns), labels)
    return data


@register_dataset("mosei-aligned")
def load_mosei_aligned(data: Path, labels: Path | None = None) -> BenchmarkData:
    """CMU-MOSEI word-aligned `train_valid_test.pt` (6 emotions)."""
    return load_src_tgt("mosei-aligned", data, MOSEI_EMOTIONS, MOSEI_SPEC)


@register_dataset("m3ed")
def load_m3ed(data: Path, labels: Path | None = None) -> BenchmarkData:
    """M3ED dialogues as prepared for CARAT, `m3ed.pt` (7 emotions)."""
    return load_src_tgt("m3ed", data, M3ED_EMOTIONS, M3ED_SPEC)
