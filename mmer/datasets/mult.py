"""`mosei-unaligned`: the MulT `mosei_senti_data_noalign.pkl` plus emotion labels from the aligned `.pt`.

The pickle holds, per split, `text` (N, 50, 300) GloVe, `audio` (N, 500, 74) COVAREP,
`vision` (N, 500, 35) FACET, `labels` (sentiment, unused) and `id`. It has no emotion labels:
they are the `tgt` lists of the aligned `train_valid_test.pt`, matched by sample order within
each split (the counts must agree). The audio contains `-inf`: non-finite values become 0.
Padding: leading/trailing all-zero frames are dropped (see `trim_zero_padding`).
"""

from __future__ import annotations

from pathlib import Path

from mmer.datasets.base import SPLITS, BenchmarkData, DatasetError, MultimodalDataset
from mmer.datasets.labels import MOSEI_EMOTIONS
from mmer.datasets.layout import require_key, require_same_count, splits_of
from mmer.datasets.registry import register_dataset
from mmer.datasets.safe_pickle import load_pickled_file
from mmer.datasets.sequences import SequenceColumn, sample_ids, trimmed_features
from mmer.datasets.src_tgt import MOSEI_SPEC, read_tgt_labels
from mmer.core.feature_spec import MODALITIES

MULT_KEYS: dict[str, str] = {"text": "text", "audio": "audio", "visual": "vision"}
"""Modality -> key of its features in each split of the MulT pickle."""


@register_dataset("mosei-unaligned", labels_file=True)
def load_mosei_unaligned(data: Path, labels: Path | None) -> BenchmarkData:
    """MulT unaligned features (`data`) with emotion labels from the aligned `.pt` (`labels`)."""
    splits = splits_of(load_pickled_file(data), data)
    columns = {split: {m: SequenceColumn(require_key(d, MULT_KEYS[m], split, data), MOSEI_SPEC[m].dim,
                                         f"{data}: split {split!r} {MULT_KEYS[m]!r}")
                       for m in MODALITIES}
               for split, d in splits.items()}
    label_rows = read_tgt_labels(labels, MOSEI_EMOTIONS)
    out = BenchmarkData(name="mosei-unaligned", label_names=list(MOSEI_EMOTIONS), feature_spec=MOSEI_SPEC)
    for split in SPLITS:
        n = require_same_count({MULT_KEYS[m]: len(c) for m, c in columns[split].items()}, split, data)
        if len(label_rows[split]) != n:
            raise DatasetError(f"{labels}: split {split!r} has {len(label_rows[split])} label rows but "
                               f"{data} has {n} samples (emotion labels are matched by order)")
        ids = None
        if "id" in splits[split]:
            ids = sample_ids(splits[split]["id"], n, f"{data}: split {split!r} 'id'")
        out.splits[split] = MultimodalDataset(trimmed_features(columns[split]), label_rows[split], ids)
    return out

