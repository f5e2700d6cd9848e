"""mmer's own feature cache: a folder `mmer extract` writes and `--dataset cache` reads.

Layout of a cache folder:

    manifest.json   {"format": "mmer-feature-cache", "format_version": 1,
                     "label_names": [...], "feature_spec": FeatureSpec.to_dict(),
                     "created_by": "mmer 0.1.0"}
    index.jsonl     one JSON object per line, appended as samples are written:
                     {"id": "...", "split": "train", "labels": [0, 1, 0, ...], "file": "samples/....npz"}
                     and, when known, "group": "..." (the speaker or actor: `--folds` splits by it),
                     "sha256": "<hex>" (of the source media file) and "streams": [...] (the
                     modalities extracted): `mmer analyze --features CACHE` reuses such a sample
    samples/*.npz   one per sample, read with allow_pickle=False:
                     "text", "audio", "visual": (T_m, D_m) float32 (T_m may be 0: modality absent)
                     "times_text", ...: (T_m,) float64 frame start times in seconds, when known

A sample file is written to a temporary name and renamed into place before its index line is
appended, so an interrupted run leaves no half-written sample in the index; re-opening the cache
with the same label names and feature spec continues where it stopped (`CacheWriter.has`).
One writer at a time per folder.

Sharded caches: `mmer extract --shard K/N` writes shard K into CACHE/shard-K-of-N/ (each a cache
as above). A folder without a manifest whose `shard-*` subfolders are caches with the same label
names and feature spec is read as one cache, the union of its shards (`load_cache`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmer.core.atomic_file import replacing
from mmer.datasets.base import SPLITS, BenchmarkData, DatasetError, MultimodalDataset
from mmer.datasets.registry import register_dataset
from mmer.core.feature_spec import MODALITIES, FeatureSpec, FeatureSpecMismatch

CACHE_FORMAT = "mmer-feature-cache"
CACHE_FORMAT_VERSION = 1
"""Bumped when the layout changes incompatibly; readers refuse newer versions."""

MANIFEST_NAME = "manifest.json"
INDEX_NAME = "index.jsonl"
SAMPLES_DIR = "samples"
TIMES_PREFIX = "times_"
_TMP_SUFFIX = ".tmp"
SHARD_DIR_PREFIX = "shard-"


@dataclass(frozen=True)
class CacheEntry:
    """One line of index.jsonl. labels: (q,) 0/1 ints; file: path relative to the cache folder;
    group: the sample's speaker/actor, or None."""

    id: str
    split: str
    labels: list[int]
    file: str
    group: str | None = None


def _manifest(label_names: list[str], spec: FeatureSpec) -> dict:
    from mmer.core import __version__

    return {"format": CACHE_FORMAT, "format_version": CACHE_FORMAT_VERSION,
            "label_names": list(label_names), "feature_spec": spec.to_dict(),
            "created_by": f"mmer {__version__}"}


def read_manifest(cache_dir: Path) -> tuple[list[str], FeatureSpec]:
    """(label_names, feature_spec) of a cache folder; DatasetError when it is not a valid cache."""
    path = Path(cache_dir) / MANIFEST_NAME
    if not Path(cache_dir).is_dir():
        problem = "not a folder" if Path(cache_dir).exists() else "folder not found"
        raise DatasetError(f"{cache_dir}: {problem} (--dataset cache takes the folder written by `mmer extract`)")
    if not path.is_file():
        raise DatasetError(f"{cache_dir}: not an mmer feature cache (no {MANIFEST_NAME})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: unreadable manifest ({type(err).__name__}: {err})") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise DatasetError(f"{path}: not an mmer feature cache manifest (format is not {CACHE_FORMAT!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > CACHE_FORMAT_VERSION:
        raise DatasetError(f"{path}: cache format version {version!r} is not supported "
                           f"(this mmer reads up to {CACHE_FORMAT_VERSION})")
    names = meta.get("label_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{path}: 'label_names' must be a non-empty list of strings")
    try:
        spec = FeatureSpec.from_dict(meta.get("feature_spec") or {})
    except FeatureSpecMismatch as err:
        raise DatasetError(f"{path}: {err}") from None
    return names, spec


def _parse_entry(text: str, num_labels: int, where: str) -> CacheEntry:
    try:
        obj = json.loads(text)
        entry = CacheEntry(id=obj["id"], split=obj["split"], labels=obj["labels"], file=obj["file"],
                           group=obj.get("group"))
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise DatasetError(f"{where}: malformed index line ({type(err).__name__}: {err})") from None
    if not isinstance(entry.id, str) or not entry.id:
        raise DatasetError(f"{where}: sample id must be a non-empty string")
    if entry.split not in SPLITS:
        raise DatasetError(f"{where}: split {entry.split!r} is not one of {', '.join(SPLITS)}")
    if entry.group is not None and (not isinstance(entry.group, str) or not entry.group):
        raise DatasetError(f"{where}: group must be a non-empty string")
    if (not isinstance(entry.labels, list) or len(entry.labels) != num_labels
            or any(v not in (0, 1) or isinstance(v, bool) for v in entry.labels)):
        raise DatasetError(f"{where}: labels must be a list of {num_labels} zeros and ones")
    file = Path(entry.file) if isinstance(entry.file, str) else None
    if file is None or file.is_absolute() or ".." in file.parts:
        raise DatasetError(f"{where}: sample file must be a path inside the cache folder")
    return entry


def read_index(cache_dir: Path, num_labels: int) -> list[CacheEntry]:
    """Entries of index.jsonl in write order.

    A last line without its newline is an append cut short by a crash and is ignored; any other
    malformed line, or an id listed twice, is a DatasetError.
    """
    path = Path(cache_dir) / INDEX_NAME
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: unreadable index ({type(err).__name__}: {err})") from None
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is empty, or an interrupted append
    entries, seen = [], set()
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        entry = _parse_entry(line, num_labels, f"{path}: line {number}")
        if entry.id in seen:
            raise DatasetError(f"{path}: line {number}: sample id {entry.id!r} appears twice")
        seen.add(entry.id)
        entries.append(entry)
    return entries


def _sample_file_name(sample_id: str) -> str:
    """A readable, collision-free file name for any id (ids may contain '/' or spaces)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._")[:48] or "sample"
    digest = hashlib.sha1(sample_id.encode("utf-8")).hexdigest()[:12]
    return f"{slug}-{digest}.npz"


class CacheWriter:
    """Appends samples to a cache folder (created if needed; re-opened and continued if it exists).

    Re-opening a cache whose manifest has other label names or another feature spec raises
    DatasetError naming every difference; so does a non-empty folder that is not a cache.
    """

    def __init__(self, out_dir: str | Path, label_names: list[str], feature_spec: FeatureSpec) -> None:
        self.dir = Path(out_dir)
        self.label_names = list(label_names)
        self.feature_spec = feature_spec
        if self.dir.exists() and not self.dir.is_dir():
            raise DatasetError(f"{self.dir}: exists and is not a folder")
        if (self.dir / MANIFEST_NAME).exists():
            self._check_compatible()
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise DatasetError(f"{self.dir}: folder is not empty and is not an mmer feature cache "
                               f"(no {MANIFEST_NAME}); choose an empty or new folder")
        else:
            (self.dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
            self._write_atomic(self.dir / MANIFEST_NAME,
                               json.dumps(_manifest(self.label_names, feature_spec), indent=2).encode())
        (self.dir / SAMPLES_DIR).mkdir(exist_ok=True)
        self._drop_interrupted_writes()
        self._ids = {e.id for e in read_index(self.dir, len(self.label_names))}

    def _check_compatible(self) -> None:
        names, spec = read_manifest(self.dir)
        problems = [] if names == self.label_names else [f"label names {names} != {self.label_names}"]
        problems += [p.replace("model expects", "cache has").replace("features have", "writer has")
                     for p in spec.mismatches(self.feature_spec)]
        if problems:
            raise DatasetError(f"{self.dir}: existing cache was written with other settings: "
                               + "; ".join(problems) + " (use a new folder)")

    def _drop_interrupted_writes(self) -> None:
        """Remove temporary sample files and a cut-off last index line left by a crash."""
        for tmp in (self.dir / SAMPLES_DIR).glob(f"*{_TMP_SUFFIX}"):
            tmp.unlink()
        index = self.dir / INDEX_NAME
        if index.exists():
            data = index.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(index, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def __len__(self) -> int:
        return len(self._ids)

    def has(self, sample_id: str) -> bool:
        """True when `sample_id` is already in the cache (skip it when resuming)."""
        return sample_id in self._ids

    def add(self, sample_id: str, split: str, features: Mapping[str, np.ndarray], labels: np.ndarray,
            times: Mapping[str, np.ndarray] | None = None, group: str | None = None,
            source_sha256: str | None = None, streams: list[str] | None = None) -> Path:
        """Write one sample; returns its `.npz` path.

        features[m]: (T_m, D_m) with D_m = feature_spec[m].dim and T_m >= 0, finite values.
        labels: (q,) multi-hot of 0/1 in `label_names` order.
        times[m]: optional (T_m,) frame start times in seconds.
        group: the sample's speaker/actor (non-empty), or None.
        source_sha256 / streams: the SHA-256 of the media file the features came from and the
        modalities that were extracted (so `mmer analyze --features` can find and trust them).
        Raises DatasetError for a duplicate id, unknown split or wrong shapes.
        """
        if not isinstance(sample_id, str) or not sample_id:
            raise DatasetError(f"{self.dir}: sample id must be a non-empty string, got {sample_id!r}")
        if sample_id in self._ids:
            raise DatasetError(f"{self.dir}: sample {sample_id!r} is already in the cache")
        if split not in SPLITS:
            raise DatasetError(f"{self.dir}: split {split!r} is not one of {', '.join(SPLITS)}")
        arrays = self._checked_features(sample_id, features, times or {})
        row = np.asarray(labels)
        if row.shape != (len(self.label_names),) or not np.isin(row, (0, 1)).all():
            raise DatasetError(f"{self.dir}: sample {sample_id!r}: labels must be {len(self.label_names)} "
                               f"zeros/ones, got shape {row.shape}")
        rel = f"{SAMPLES_DIR}/{_sample_file_name(sample_id)}"
        self._write_atomic(self.dir / rel, _npz_bytes(arrays))
        record = {"id": sample_id, "split": split, "labels": [int(v) for v in row], "file": rel}
        if group is not None:
            if not str(group):
                raise DatasetError(f"{self.dir}: sample {sample_id!r}: group must be non-empty")
            record["group"] = str(group)
        if source_sha256 is not None:
            record["sha256"] = str(source_sha256)
            record["streams"] = list(streams if streams is not None else MODALITIES)
        line = json.dumps(record)
        with open(self.dir / INDEX_NAME, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._ids.add(sample_id)
        return self.dir / rel

    def _checked_features(self, sample_id: str, features: Mapping[str, np.ndarray],
                          times: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if set(features) != set(MODALITIES):
            raise DatasetError(f"{self.dir}: sample {sample_id!r}: features must have exactly the keys "
                               f"{', '.join(MODALITIES)}, got {', '.join(sorted(features))}")
        arrays = {}
        for m in MODALITIES:
            x = np.asarray(features[m], dtype=np.float32)
            dim = self.feature_spec[m].dim
            if x.ndim != 2 or x.shape[1] != dim:
                raise DatasetError(f"{self.dir}: sample {sample_id!r}: {m} features have shape "
                                   f"{x.shape}, expected (T, {dim})")
            if not np.isfinite(x).all():
                raise DatasetError(f"{self.dir}: sample {sample_id!r}: {m} features are not all finite")
            arrays[m] = x
            if m in times:
                t = np.asarray(times[m], dtype=np.float64)
                if t.shape != (x.shape[0],):
                    raise DatasetError(f"{self.dir}: sample {sample_id!r}: {m} times have shape "
                                       f"{t.shape}, expected ({x.shape[0]},)")
                arrays[TIMES_PREFIX + m] = t
        return arrays

    def _write_atomic(self, path: Path, data: bytes) -> None:
        with replacing(path, suffix=_TMP_SUFFIX) as tmp, open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_cached_sample(path: Path, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """{m: (T_m, D_m) float32} from one sample file (never unpickles); DatasetError if malformed."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            features = {m: np.asarray(npz[m], dtype=np.float32) for m in MODALITIES}
    except FileNotFoundError:
        raise DatasetError(f"{path}: cached sample file is missing") from None
    except KeyError as err:
        raise DatasetError(f"{path}: cached sample lacks array {err}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DatasetError(f"{path}: unreadable cached sample ({type(err).__name__}: {err})") from None
    for m, x in features.items():
        if x.ndim != 2 or x.shape[1] != spec[m].dim:
            raise DatasetError(f"{path}: {m} features have shape {x.shape}, expected (T, {spec[m].dim})")
    return features


def shard_folders(data: Path) -> list[Path]:
    """The folders that make up the cache at `data`: itself, or when it has no manifest, its
    `shard-*` subfolders that have one (sorted)."""
    data = Path(data)
    if (data / MANIFEST_NAME).is_file() or not data.is_dir():
        return [data]
    shards = sorted(p for p in data.glob(f"{SHARD_DIR_PREFIX}*") if (p / MANIFEST_NAME).is_file())
    return shards or [data]


@register_dataset("cache")
def load_cache(data: Path, labels: Path | None = None) -> BenchmarkData:
    """A cache folder written by `CacheWriter`, or a folder of shards (`shard_folders`) read as one;
    samples are read from disk one at a time."""
    folders = shard_folders(Path(data))
    label_names, spec = read_manifest(folders[0])
    entries: list[tuple[Path, CacheEntry]] = []
    seen: dict[str, Path] = {}
    for folder in folders:
        names, other = read_manifest(folder)
        problems = ([] if names == label_names else [f"label names {names} != {label_names}"]) + spec.mismatches(other)
        if problems:
            raise DatasetError(f"{folder}: shard written with other settings than {folders[0]}: " + "; ".join(problems))
        for entry in read_index(folder, len(label_names)):
            if entry.id in seen:
                raise DatasetError(f"{folder}: sample id {entry.id!r} is also in {seen[entry.id]}")
            seen[entry.id] = folder
            if not (folder / entry.file).is_file():
                raise DatasetError(f"{folder / entry.file}: cached sample file listed in {INDEX_NAME} is missing")
            entries.append((folder, entry))
    out = BenchmarkData(name="cache", label_names=label_names, feature_spec=spec)
    for split in SPLITS:
        chosen = [e for _, e in entries if e.split == split]
        files = [folder / e.file for folder, e in entries if e.split == split]
        matrix = np.array([e.labels for e in chosen], dtype=np.float32).reshape(len(chosen), len(label_names))
        out.splits[split] = MultimodalDataset(lambda i, files=files: read_cached_sample(files[i], spec),
                                              matrix, [e.id for e in chosen], [e.group for e in chosen])
    return out


@dataclass(frozen=True)
class SourceIndex:
    """The samples of a cache that record their source media file: feature spec, and per SHA-256
    of a source file the sample file and the modalities extracted for it."""

    spec: FeatureSpec
    samples: dict[str, tuple[Path, tuple[str, ...]]]


def source_index(data: Path) -> SourceIndex:
    """`SourceIndex` of the cache (or sharded cache) at `data`; DatasetError when it is not one."""
    folders = shard_folders(Path(data))
    label_names, spec = read_manifest(folders[0])
    samples: dict[str, tuple[Path, tuple[str, ...]]] = {}
    for folder in folders:
        path = folder / INDEX_NAME
        lines = path.read_text(encoding="utf-8").split("\n")[:-1] if path.is_file() else []
        for line in lines:
            if not line.strip():
                continue
            obj = json.loads(line)
            if isinstance(obj, dict) and isinstance(obj.get("sha256"), str) and isinstance(obj.get("file"), str):
                streams = tuple(m for m in obj.get("streams", MODALITIES) if m in MODALITIES)
                samples[obj["sha256"]] = (folder / obj["file"], streams)
    return SourceIndex(spec, samples)


def read_cached_times(path: Path) -> dict[str, np.ndarray]:
    """{m: (T_m,) float64 frame start times} of one sample file, for the modalities that have them."""
    with np.load(path, allow_pickle=False) as npz:
        return {m: np.asarray(npz[TIMES_PREFIX + m], dtype=np.float64) for m in MODALITIES
                if TIMES_PREFIX + m in npz.files}
