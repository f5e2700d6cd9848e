"""Benchmark and cache loaders: `load_dataset(name, data, labels)` -> `BenchmarkData`.

Every loader is registered once (`registry.register_dataset`); `dataset_names()` lists them and
is what the CLI's `--dataset` choices are built from. File formats: docs/datasets.md.
"""

from __future__ import annotations

from pathlib import Path

from mmer.datasets import extract_cache, mmsa, mult, src_tgt  # noqa: F401  (modules register their loaders)
from mmer.datasets.base import SPLITS, BenchmarkData, DatasetError, MultimodalDataset, Sample, collate
from mmer.datasets.extract_cache import CacheWriter
from mmer.datasets.registry import get_dataset_entry, registered_names

__all__ = ["SPLITS", "BenchmarkData", "CacheWriter", "DatasetError", "MultimodalDataset", "Sample",
           "collate", "dataset_names", "load_dataset"]


def dataset_names() -> list[str]:
    """Registered `--dataset` names, sorted."""
    return registered_names()


def load_dataset(name: str, data: str | Path, labels: str | Path | None = None) -> BenchmarkData:
    """Load dataset `name` from `data` (file or cache folder) and, for datasets whose labels are in
    a second file (mosei-unaligned, mosei-mmsa), `labels`.

    Splits are read lazily: features are cut from the loaded (memory-mapped where possible) arrays
    when a sample is requested. Raises DatasetError with a one-line message naming the file.
    """
    entry = get_dataset_entry(name)
    if entry is None:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(dataset_names())}")
    data = Path(data)
    if not data.exists():
        raise DatasetError(f"{data}: not found")
    if entry.labels_file and labels is None:
        raise DatasetError(f"{data}: --dataset {name} needs a labels file (--labels); see docs/datasets.md")
    if not entry.labels_file and labels is not None:
        raise DatasetError(f"{labels}: --dataset {name} takes no labels file (its labels are in {data})")
    return entry.loader(data, None if labels is None else Path(labels))
