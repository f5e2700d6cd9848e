"""`mosei-mmsa`: MMSA `aligned_50.pkl` / `unaligned_50.pkl` plus the LDDU authors' label CSV.

Each split of the pickle holds `text` (N, 50, 768) BERT, `audio` (N, T_a, 74) COVAREP,
`vision` (N, T_v, 35) FACET (T_a = T_v = 50 aligned; 500 and 375 unaligned), the real lengths
`audio_lengths` / `vision_lengths`, `id` (`videoid$_$clip`) and `raw_text`; MMSA files also carry
`text_bert` (N, 3, 50): token ids, attention mask, segment ids.

Real frames are the first `length` frames (lengths above T are clipped to T). Text has no length
key: its length is the attention-mask sum of `text_bert` when present, otherwise leading/trailing
all-zero frames are dropped (as are audio/vision frames when their lengths key is absent).
Audio `-inf` and any other non-finite value become 0.

Labels: a CSV with columns `key_id`, `mode` (train/valid/test), `tgt` (e.g. "[2, 4, 5, 3]") and
`raw_text`. The rows of one `mode` follow that split's sample order; when the pickle has `id`,
each row's `key_id` must equal the id of the sample it labels.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mmer.datasets.base import SPLITS, BenchmarkData, DatasetError, MultimodalDataset
from mmer.datasets.labels import MOSEI_EMOTIONS, tokens_to_multi_hot
from mmer.datasets.layout import require_key, require_same_count, splits_of
from mmer.datasets.registry import register_dataset
from mmer.datasets.safe_pickle import load_pickled_file
from mmer.datasets.sequences import SequenceColumn, sample_ids, trim_zero_padding
from mmer.core.feature_spec import MODALITIES, FeatureSpec, ModalitySpec

MMSA_SPEC = FeatureSpec(
    text=ModalitySpec("bert-768", 768),
    audio=ModalitySpec("covarep-74", 74),
    visual=ModalitySpec("facet-35", 35),
)

MMSA_KEYS: dict[str, str] = {"text": "text", "audio": "audio", "visual": "vision"}
"""Modality -> key of its features in each split."""

LENGTH_KEYS: dict[str, str] = {"audio": "audio_lengths", "visual": "vision_lengths"}
"""Modality -> key of its per-sample real lengths."""

CSV_COLUMNS: tuple[str, ...] = ("key_id", "mode", "tgt")
"""Label CSV columns that are read (others, such as raw_text, are ignored)."""


@register_dataset("mosei-mmsa", labels_file=True)
def load_mosei_mmsa(data: Path, labels: Path | None) -> BenchmarkData:
    """MMSA features (`data`, aligned or unaligned) with labels from the CSV (`labels`)."""
    splits = splits_of(load_pickled_file(data), data)
    rows = _read_label_csv(labels)
    out = BenchmarkData(name="mosei-mmsa", label_names=list(MOSEI_EMOTIONS), feature_spec=MMSA_SPEC)
    for split in SPLITS:
        d = splits[split]
        columns = {m: SequenceColumn(require_key(d, MMSA_KEYS[m], split, data), MMSA_SPEC[m].dim,
                                     f"{data}: split {split!r} {MMSA_KEYS[m]!r}")
                   for m in MODALITIES}
        n = require_same_count({MMSA_KEYS[m]: len(c) for m, c in columns.items()}, split, data)
        lengths = {m: _lengths(d, m, n, split, data) for m in MODALITIES}
        ids = sample_ids(d["id"], n, f"{data}: split {split!r} 'id'") if "id" in d else None
        label_matrix = _match_labels(rows[split], ids, n, split, data, labels)
        out.splits[split] = MultimodalDataset(_cut_features(columns, lengths), label_matrix, ids)
    return out


def _lengths(d: Mapping, modality: str, n: int, split: str, path: Path) -> np.ndarray | None:
    """Per-sample real lengths (N,) int64, or None when the file does not give them."""
    where = f"{path}: split {split!r}"
    if modality == "text":
        if "text_bert" not in d:
            return None
        bert = np.asarray(d["text_bert"])
        if bert.ndim != 3 or bert.shape[:2] != (n, 3):
            raise DatasetError(f"{where} 'text_bert': expected shape ({n}, 3, T), got {bert.shape}")
        values = bert[:, 1, :].sum(axis=1)  # attention mask (N, T) -> real token count (N,)
        key = "text_bert"
    else:
        key = LENGTH_KEYS[modality]
        if key not in d:
            return None
        values = np.asarray(d[key]).reshape(-1)
    if values.shape != (n,) or values.dtype.kind not in "iuf" or not np.all(values == np.round(values)):
        raise DatasetError(f"{where} {key!r}: expected {n} integer lengths, got "
                           f"shape {values.shape} dtype {values.dtype}")
    if np.any(values < 0):
        raise DatasetError(f"{where} {key!r}: negative length")
    return values.astype(np.int64)


def _cut_features(columns: dict[str, SequenceColumn],
                  lengths: dict[str, np.ndarray | None]) -> Callable[[int], dict[str, np.ndarray]]:
    """get_features(i) -> {m: first `length` frames, or zero-trimmed when no length is known}."""

    def get_features(i: int) -> dict[str, np.ndarray]:
        out = {}
        for m, col in columns.items():
            x = col[i]  # (T, D)
            out[m] = trim_zero_padding(x) if lengths[m] is None else x[: lengths[m][i]]
        return out

    return get_features


def _read_label_csv(path: Path) -> dict[str, list[tuple[int, str, Any]]]:
    """split -> [(csv line number, key_id, tgt tokens)] in file order."""
    if not path.is_file():
        problem = "is a directory, expected a CSV file" if path.is_dir() else "file not found"
        raise DatasetError(f"{path}: {problem}")
    rows: dict[str, list[tuple[int, str, Any]]] = {s: [] for s in SPLITS}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: label CSV lacks column(s) {', '.join(missing)} "
                                   f"(expected {', '.join(CSV_COLUMNS)}, raw_text)")
            for row in reader:
                line = reader.line_num
                mode = (row["mode"] or "").strip()
                if mode not in rows:
                    raise DatasetError(f"{path}: line {line}: mode {mode!r} is not one of "
                                       f"{', '.join(SPLITS)}")
                try:
                    tokens = json.loads(row["tgt"] or "")
                except json.JSONDecodeError:
                    raise DatasetError(f"{path}: line {line}: tgt {row['tgt']!r} is not a token list "
                                       "such as [2, 4, 5, 3]") from None
                if not isinstance(tokens, list):
                    raise DatasetError(f"{path}: line {line}: tgt {row['tgt']!r} is not a token list")
                rows[mode].append((line, (row["key_id"] or "").strip(), tokens))
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a UTF-8 text CSV file") from None
    except csv.Error as err:
        raise DatasetError(f"{path}: malformed CSV ({err})") from None
    return rows


def _match_labels(rows: list[tuple[int, str, Any]], ids: list[str] | None, n: int, split: str,
                  data: Path, labels: Path) -> np.ndarray:
    """The split's (N, 6) multi-hot labels from its CSV rows, matched by order (ids checked)."""
    if len(rows) != n:
        raise DatasetError(f"{labels}: {len(rows)} rows with mode {split!r} but {data} has {n} "
                           f"{split} samples (labels are matched by order)")
    matrix = np.zeros((n, len(MOSEI_EMOTIONS)), dtype=np.float32)
    for i, (line, key_id, tokens) in enumerate(rows):
        if ids is not None and key_id != ids[i].strip():
            raise DatasetError(f"{labels}: line {line}: key_id {key_id!r} but {split} sample {i} of "
                               f"{data} has id {ids[i]!r} (rows must follow the pickle's sample order)")
        matrix[i] = tokens_to_multi_hot(tokens, len(MOSEI_EMOTIONS), f"{labels}: line {line}")
    return matrix
