"""Tiny benchmark files in the exact on-disk formats mmer reads, for tests.

Import as `from tests.synthetic_benchmarks import write_mosei_aligned, ...` (run pytest from the
repository root). Every writer puts its files in `directory` (created if needed) and returns a
`SyntheticBenchmark`:

    bench.dataset           the --dataset name ("mosei-aligned", ...)
    bench.data / .labels    the --data path and the --labels path (None when not needed)
    bench.label_names       label order
    bench.expected_labels   split -> (N, q) float32 multi-hot the loader must return
    bench.expected_lengths  split -> modality -> [real frames per sample] after padding removal
    bench.load()            load_dataset(bench.dataset, bench.data, bench.labels)

Writers (names are stable; other test modules rely on them):

    write_mosei_aligned(directory, n_per_split=(8, 4, 4), seed=0, *, seq_len=60,
                        layout="stacked"|"list", storage="numpy"|"torch", legacy_torch=False,
                        numpy1_paths=True)                          -> train_valid_test.pt
    write_mosei_unaligned(directory, n_per_split, seed)             -> mosei_senti_data_noalign.pkl
                                                                       + train_valid_test.pt (labels)
    write_mosei_mmsa(directory, aligned=True, n_per_split, seed)    -> aligned_50.pkl or
                                                                       unaligned_50.pkl + label.csv
    write_m3ed(directory, n_per_split, seed, *, seq_len=60)         -> m3ed.pt
    write_cache(directory, n_per_split, seed, *, label_names=MOSEI_EMOTIONS,
                feature_spec=SYNTHETIC_CACHE_SPEC)                  -> a CacheWriter folder

What the files contain, as the real ones do: the real keys (`settings` holds an
`argparse.Namespace`, `dict['tgt']` a token map), `tgt` token lists `[2, 4+k, ..., 3]` with some
empty sets `[2, 3]` (every 5th sample), zero-padded fixed-length sequences (at the front in the
aligned MOSEI file and for MulT text, at the back otherwise), `-inf` values in the MulT and MMSA
audio, MMSA lengths keys and `text_bert`, a label CSV whose rows follow sample order, and pickles
that name numpy globals under their numpy 1.x paths (`numpy.core.multiarray`) like files made
before numpy 2. A few samples have
an interior all-zero frame (kept by the loaders) or an all-zero modality (loaded as absent, T=0).

Labels are learnable from every modality: each real frame is N(0, NOISE) noise plus SIGNAL on
feature dim k for every emotion k the sample has, so a model that learns anything separates them.
"""

from __future__ import annotations

import argparse
import csv
import pickle
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmer.datasets import BenchmarkData, CacheWriter, load_dataset
from mmer.datasets.labels import FIRST_LABEL_TOKEN, M3ED_EMOTIONS, MOSEI_EMOTIONS
from mmer.core.feature_spec import MODALITIES, FeatureSpec, ModalitySpec

SPLIT_NAMES = ("train", "valid", "test")
SIGNAL = 2.0
"""Added to feature dim k of every real frame of a sample that has emotion k."""
NOISE = 1.0
"""Standard deviation of the Gaussian noise of every real frame."""
EMPTY_EVERY = 5
"""Samples whose index within the split is a multiple of this have no emotion (tgt [2, 3])."""

MOSEI_DIMS = {"text": 300, "audio": 74, "visual": 35}
MMSA_DIMS = {"text": 768, "audio": 74, "visual": 35}
M3ED_DIMS = {"text": 768, "audio": 342, "visual": 1024}

SYNTHETIC_CACHE_SPEC = FeatureSpec(
    text=ModalitySpec("synthetic-text", 16),
    audio=ModalitySpec("synthetic-audio", 12, frame_rate_hz=50.0),
    visual=ModalitySpec("synthetic-visual", 8, frame_rate_hz=5.0),
)
"""Small dims for cache fixtures (every dim >= 7, so any benchmark's label count fits)."""


@dataclass
class SyntheticBenchmark:
    """What a writer produced and what the loader must return for it."""

    dataset: str
    data: Path
    labels: Path | None
    label_names: list[str]
    expected_labels: dict[str, np.ndarray] = field(default_factory=dict)
    expected_lengths: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def load(self) -> BenchmarkData:
        return load_dataset(self.dataset, self.data, self.labels)


# ---------------------------------------------------------------------------------------------
# shared generators


def make_labels(n: int, num_labels: int, rng: np.random.Generator) -> np.ndarray:
    """(n, q) multi-hot: empty every EMPTY_EVERY-th sample, otherwise label i % q plus random others."""
    y = np.zeros((n, num_labels), dtype=np.float32)
    for i in range(n):
        if i % EMPTY_EVERY == 0:
            continue
        y[i, i % num_labels] = 1.0
        y[i, rng.random(num_labels) < 0.3] = 1.0
    return y


def tokens_of(row: np.ndarray) -> list[int]:
    """Multi-hot row -> tgt token list [2, 4 + k..., 3]."""
    return [2] + [FIRST_LABEL_TOKEN + int(k) for k in np.flatnonzero(row)] + [3]


def signal_frames(rng: np.random.Generator, length: int, dim: int, label_row: np.ndarray) -> np.ndarray:
    """(length, dim) float32 real frames carrying the label signal on dims 0..q-1."""
    x = rng.normal(0.0, NOISE, size=(length, dim)).astype(np.float32)
    x[:, : len(label_row)] += SIGNAL * label_row
    return x


def padded(frames: np.ndarray, total: int, front: bool) -> np.ndarray:
    """Zero-pad (T, D) frames to (total, D), at the front or at the back."""
    out = np.zeros((total, frames.shape[1]), dtype=frames.dtype)
    if front:
        out[total - len(frames):] = frames
    else:
        out[: len(frames)] = frames
    return out


def _split_sizes(n_per_split: tuple[int, int, int]) -> dict[str, int]:
    return dict(zip(SPLIT_NAMES, n_per_split))


class _Numpy1Pickler(pickle._Pickler):
    """Pickler that names numpy globals by their numpy 1.x module path (`numpy.core...`), like
    benchmark files written before numpy 2 (pure-Python pickler so `save_global` can be changed)."""

    def save_global(self, obj, name=None):
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            name = name or obj.__qualname__
            self.write(pickle.GLOBAL + f"{module.replace('numpy._core', 'numpy.core')}\n{name}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _pickle_module(numpy1_paths: bool):
    """A `pickle_module` for torch.save / a dump function, with or without numpy 1.x paths."""
    if not numpy1_paths:
        return pickle
    module = types.ModuleType("numpy1_pickle")
    module.Pickler = _Numpy1Pickler
    module.dump = lambda obj, f, protocol=2: _Numpy1Pickler(f, protocol).dump(obj)
    return module


def _dump_pickle(obj, path: Path, protocol: int, numpy1_paths: bool = True) -> None:
    with open(path, "wb") as f:
        _pickle_module(numpy1_paths).dump(obj, f, protocol=protocol)


def _torch_save(obj, path: Path, legacy: bool, numpy1_paths: bool) -> None:
    torch.save(obj, path, pickle_module=_pickle_module(numpy1_paths), pickle_protocol=2,
               _use_new_zipfile_serialization=not legacy)


# ---------------------------------------------------------------------------------------------
# src/tgt .pt (mosei-aligned, m3ed)


def _src_tgt_split(rng, n, label_names, dims, seq_len, pad_front):
    """One split: ({src-*: per-sample (seq_len, D) arrays}, tgt lists, labels, lengths); the three
    modalities of a sample share one length (word-aligned steps / utterances)."""
    y = make_labels(n, len(label_names), rng)
    feats = {m: [] for m in MODALITIES}
    lengths = {m: [] for m in MODALITIES}
    for i in range(n):
        shared = int(rng.integers(max(1, seq_len // 3), seq_len + 1))
        for m in MODALITIES:
            length = shared
            frames = signal_frames(rng, length, dims[m], y[i])
            if m == "visual" and i == 1 and length >= 3:
                frames[length // 2] = 0.0  # a frame without a face: interior zeros are kept
            if m == "visual" and i == 2:
                frames[:] = 0.0  # no face at all: the modality is absent for this sample
                length = 0
            feats[m].append(padded(frames, seq_len, front=pad_front))
            lengths[m].append(length)
    return feats, [tokens_of(row) for row in y], y, lengths


def _write_src_tgt(path, dataset, label_names, dims, n_per_split, seed, seq_len, layout, storage,
                   legacy_torch, numpy1_paths, pad_front) -> SyntheticBenchmark:
    rng = np.random.default_rng(seed)
    bench = SyntheticBenchmark(dataset=dataset, data=path, labels=None, label_names=list(label_names))
    keys = {"text": "src-text", "audio": "src-audio", "visual": "src-visual"}
    content = {
        "settings": argparse.Namespace(max_text_seq_len=seq_len, max_visual_seq_len=seq_len,
                                       max_audio_seq_len=seq_len, data=str(path.name)),
        "dict": {"tgt": {"<blank>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
                 | {name: FIRST_LABEL_TOKEN + k for k, name in enumerate(label_names)}},
    }
    for split, n in _split_sizes(n_per_split).items():
        feats, tgt, y, lengths = _src_tgt_split(rng, n, label_names, dims, seq_len, pad_front)
        block = {}
        for m in MODALITIES:
            items = [torch.from_numpy(x) for x in feats[m]] if storage == "torch" else feats[m]
            if layout == "stacked":
                items = torch.stack(items) if storage == "torch" else np.stack(items)
            block[keys[m]] = items
        block["tgt"] = tgt
        content[split] = block
        bench.expected_labels[split] = y
        bench.expected_lengths[split] = lengths
    path.parent.mkdir(parents=True, exist_ok=True)
    _torch_save(content, path, legacy_torch, numpy1_paths)
    return bench


def write_mosei_aligned(directory: str | Path, n_per_split: tuple[int, int, int] = (8, 4, 4),
                        seed: int = 0, *, seq_len: int = 60, layout: str = "stacked",
                        storage: str = "numpy", legacy_torch: bool = False,
                        numpy1_paths: bool = True) -> SyntheticBenchmark:
    """`train_valid_test.pt` (HHMPN/TAILOR): text (T,300), visual (T,35), audio (T,74) sharing one
    word-aligned length per sample, zero-padded at the front; layout "stacked" (N,T,D) or "list" of (T,D);
    storage numpy arrays or torch tensors; zip (default) or legacy torch format."""
    return _write_src_tgt(Path(directory) / "train_valid_test.pt", "mosei-aligned", MOSEI_EMOTIONS,
                          MOSEI_DIMS, n_per_split, seed, seq_len, layout, storage, legacy_torch,
                          numpy1_paths, pad_front=True)


def write_m3ed(directory: str | Path, n_per_split: tuple[int, int, int] = (8, 4, 4), seed: int = 0,
               *, seq_len: int = 60) -> SyntheticBenchmark:
    """`m3ed.pt` (CARAT): one vector per utterance, text 768 / visual 1024 / audio 342, dialogues
    zero-padded at the back to `seq_len` utterances, 7 labels (tokens 4..10), stacked numpy."""
    return _write_src_tgt(Path(directory) / "m3ed.pt", "m3ed", M3ED_EMOTIONS, M3ED_DIMS, n_per_split,
                          seed, seq_len, "stacked", "numpy", False, True, pad_front=False)


# ---------------------------------------------------------------------------------------------
# MulT unaligned .pkl


def write_mosei_unaligned(directory: str | Path, n_per_split: tuple[int, int, int] = (8, 4, 4),
                          seed: int = 0) -> SyntheticBenchmark:
    """`mosei_senti_data_noalign.pkl` (MulT: text (N,50,300), audio (N,500,74) with -inf values,
    vision (N,500,35), labels, id) plus the aligned `train_valid_test.pt` that holds its emotion
    labels in the same sample order (written by `write_mosei_aligned` with the same seed)."""
    directory = Path(directory)
    aligned = write_mosei_aligned(directory, n_per_split, seed, seq_len=8)
    rng = np.random.default_rng(seed + 1000)
    seq = {"text": 50, "audio": 500, "visual": 500}
    keys = {"text": "text", "audio": "audio", "visual": "vision"}
    bench = SyntheticBenchmark(dataset="mosei-unaligned", data=directory / "mosei_senti_data_noalign.pkl",
                               labels=aligned.data, label_names=list(MOSEI_EMOTIONS),
                               expected_labels=aligned.expected_labels)
    content = {}
    for split, y in aligned.expected_labels.items():
        n = len(y)
        block = {keys[m]: np.zeros((n, seq[m], MOSEI_DIMS[m]), dtype=np.float32) for m in MODALITIES}
        lengths = {m: [] for m in MODALITIES}
        for i in range(n):
            for m in MODALITIES:
                length = int(rng.integers(seq[m] // 4, seq[m] + 1))
                frames = signal_frames(rng, length, MOSEI_DIMS[m], y[i])
                if m == "audio":
                    frames[::7, -1] = -np.inf  # COVAREP log-energy underflow, as in the real file
                block[keys[m]][i] = padded(frames, seq[m], front=(m == "text"))
                lengths[m].append(length)
        block["labels"] = rng.uniform(-3, 3, size=(n, 1, 1)).astype(np.float32)  # sentiment
        block["id"] = np.array([[f"{split}vid{i}", f"{i}.0", f"{i + 1}.0"] for i in range(n)])
        content[split] = block
        bench.expected_lengths[split] = lengths
    _dump_pickle(content, bench.data, protocol=2)
    return bench


# ---------------------------------------------------------------------------------------------
# MMSA .pkl + label CSV


def write_mosei_mmsa(directory: str | Path, aligned: bool = True,
                     n_per_split: tuple[int, int, int] = (8, 4, 4), seed: int = 0) -> SyntheticBenchmark:
    """`aligned_50.pkl` (50/50/50 steps) or `unaligned_50.pkl` (text 50, audio 500, vision 375)
    with BERT text 768, audio_lengths / vision_lengths, text_bert (ids, mask, segments), id,
    raw_text; and `label.csv` (key_id, mode, tgt, raw_text) whose rows follow sample order.
    Text frames past the attention-mask length are non-zero (like BERT outputs): only the mask
    tells where the text ends."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 2000)
    seq = {"text": 50, "audio": 50, "visual": 50} if aligned else {"text": 50, "audio": 500, "visual": 375}
    name = "aligned_50.pkl" if aligned else "unaligned_50.pkl"
    bench = SyntheticBenchmark(dataset="mosei-mmsa", data=directory / name, labels=directory / "label.csv",
                               label_names=list(MOSEI_EMOTIONS))
    content, csv_rows = {}, []
    for split, n in _split_sizes(n_per_split).items():
        y = make_labels(n, len(MOSEI_EMOTIONS), rng)
        text = np.zeros((n, seq["text"], 768), dtype=np.float32)
        audio = np.zeros((n, seq["audio"], 74), dtype=np.float64)
        vision = np.zeros((n, seq["visual"], 35), dtype=np.float32)
        text_bert = np.zeros((n, 3, seq["text"]), dtype=np.int64)
        lengths = {m: [] for m in MODALITIES}
        for i in range(n):
            lt = int(rng.integers(3, seq["text"] + 1))
            text[i] = rng.normal(0.0, 0.1, size=(seq["text"], 768))  # BERT-like: padding not zero
            text[i, :lt] = signal_frames(rng, lt, 768, y[i])
            text_bert[i, 0, :lt] = rng.integers(1000, 2000, size=lt)
            text_bert[i, 1, :lt] = 1
            la = lt if aligned else int(rng.integers(10, seq["audio"] + 1))
            lv = lt if aligned else int(rng.integers(10, seq["visual"] + 1))
            audio[i, :la] = signal_frames(rng, la, 74, y[i])
            audio[i, :la:5, -1] = -np.inf
            vision[i, :lv] = signal_frames(rng, lv, 35, y[i])
            for m, length in (("text", lt), ("audio", la), ("visual", lv)):
                lengths[m].append(length)
        ids = [f"{split}Vid{i:03d}$_${i}" for i in range(n)]
        raw = [f"synthetic sentence {split} {i}" for i in range(n)]
        content[split] = {
            "raw_text": np.array(raw), "id": np.array(ids),
            "text": text, "text_bert": text_bert, "audio": audio, "vision": vision,
            "audio_lengths": list(lengths["audio"]), "vision_lengths": list(lengths["visual"]),
            "regression_labels": rng.uniform(-3, 3, size=n).astype(np.float32),
        }
        csv_rows += [{"key_id": ids[i], "mode": split, "tgt": str(tokens_of(y[i])), "raw_text": raw[i]}
                     for i in range(n)]
        bench.expected_labels[split] = y
        bench.expected_lengths[split] = lengths
    _dump_pickle(content, bench.data, protocol=4)
    with open(bench.labels, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["key_id", "mode", "tgt", "raw_text"])
        writer.writeheader()
        writer.writerows(csv_rows)
    return bench


# ---------------------------------------------------------------------------------------------
# mmer feature cache


def write_cache(directory: str | Path, n_per_split: tuple[int, int, int] = (8, 4, 4), seed: int = 0,
                *, label_names: list[str] | None = None,
                feature_spec: FeatureSpec = SYNTHETIC_CACHE_SPEC, groups: int = 0) -> SyntheticBenchmark:
    """A cache folder written through `CacheWriter`: variable lengths per modality, frame times,
    and sample 2 of each split without visual frames (T=0, as when no face is found). With
    `groups` > 0 sample i of each split belongs to speaker group "<split>-<i % groups>"."""
    label_names = list(label_names or MOSEI_EMOTIONS)
    directory = Path(directory)
    rng = np.random.default_rng(seed + 3000)
    writer = CacheWriter(directory, label_names, feature_spec)
    bench = SyntheticBenchmark(dataset="cache", data=directory, labels=None, label_names=label_names)
    for split, n in _split_sizes(n_per_split).items():
        y = make_labels(n, len(label_names), rng)
        lengths = {m: [] for m in MODALITIES}
        for i in range(n):
            feats, times = {}, {}
            for m in MODALITIES:
                length = 0 if (m == "visual" and i == 2) else int(rng.integers(1, 20))
                feats[m] = signal_frames(rng, length, feature_spec[m].dim, y[i])
                rate = feature_spec[m].frame_rate_hz or 2.0
                times[m] = np.arange(length) / rate
                lengths[m].append(length)
            writer.add(f"{split}/clip{i:03d}.mp4", split, feats, y[i], times=times,
                       group=f"{split}-{i % groups}" if groups else None)
        bench.expected_labels[split] = y
        bench.expected_lengths[split] = lengths
    return bench
