"""On-disk feature cache: one .npz per (file content, feature settings), written atomically.

Key: sha256 over the media file's sha256 (read in chunks) and a digest of every setting that
changes features (see `pipeline.settings_digest`). Entry: `<dir>/<key[:2]>/<key>.npz` holding
features_<m> / times_<m> arrays and a JSON `meta` string (spec, transcript, words with
times, duration, stats, warnings, the original timings); loaded with `allow_pickle=False`.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mmer.extractors.featureset import FeatureSet, ModalityStats, Word
from mmer.core.atomic_file import replacing
from mmer.core.feature_spec import MODALITIES, FeatureSpec

CACHE_FORMAT = 2
"""2: word times (`words`) added. Bumped when the entry layout changes; older entries are then ignored."""


def default_cache_dir() -> Path:
    """$MMER_CACHE_DIR, else ~/.cache/mmer/features."""
    env = os.environ.get("MMER_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmer" / "features"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


class FeatureCache:
    """Feature sets stored under `directory`, addressed by `entry_key`."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory).expanduser() if directory else default_cache_dir()

    @staticmethod
    def entry_key(content_sha256: str, settings_digest: str) -> str:
        return hashlib.sha256(f"{CACHE_FORMAT}:{content_sha256}:{settings_digest}".encode()).hexdigest()

    def path_for(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npz"

    def load(self, key: str, spec: FeatureSpec) -> FeatureSet | None:
        """The stored FeatureSet, or None when absent, unreadable or made for another spec.
        Its `timings_s` is empty (the caller records the hit's own timings)."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as entry:
                meta = json.loads(str(entry["meta"]))
                if meta["format"] != CACHE_FORMAT or FeatureSpec.from_dict(meta["spec"]) != spec:
                    return None
                features = {m: entry[f"features_{m}"] for m in MODALITIES}
                times = {m: entry[f"times_{m}"] for m in MODALITIES}
            return FeatureSet(features=features, times=times, spec=spec, transcript=meta["transcript"],
                              duration_s=float(meta["duration_s"]), stats=ModalityStats(**meta["stats"]),
                              warnings=list(meta["warnings"]),
                              words=[Word(str(text), float(a), float(b)) for text, a, b in meta["words"]])
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):
            return None  # a damaged entry is a miss; it is overwritten by the next store

    def store(self, key: str, features: FeatureSet) -> Path:
        """Write the entry (temporary file in the same folder, then rename). Raises OSError."""
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": CACHE_FORMAT, "spec": features.spec.to_dict(), "transcript": features.transcript,
                "words": [[w.text, w.start_s, w.end_s] for w in features.words],
                "duration_s": features.duration_s, "stats": asdict(features.stats),
                "warnings": features.warnings, "extraction_timings_s": features.timings_s}
        arrays = {f"features_{m}": features.features[m] for m in MODALITIES}
        arrays.update({f"times_{m}": features.times[m] for m in MODALITIES})
        with replacing(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)
        return path
