"""The one registry of dataset loaders: `--dataset` choices, docs and tests are built from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmer.catalog import DATASET_NAMES
from mmer.datasets.base import BenchmarkData

Loader = Callable[[Path, "Path | None"], BenchmarkData]
"""loader(data, labels) -> BenchmarkData; `labels` is None unless the entry takes a labels file."""


@dataclass(frozen=True)
class DatasetEntry:
    """A registered dataset.

    name: the `--dataset` value.
    loader: reads the files (paths already checked to exist).
    labels_file: True when the emotion labels live in a second file (`--labels` is then required;
        otherwise it is refused).
    """

    name: str
    loader: Loader
    labels_file: bool = False


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, *, labels_file: bool = False) -> Callable[[Loader], Loader]:
    """Decorator: register `loader` under `name` (unique)."""

    def wrap(loader: Loader) -> Loader:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} registered twice")
        if name not in DATASET_NAMES:
            raise ValueError(f"dataset {name!r} is missing from mmer.catalog.DATASET_NAMES")
        _REGISTRY[name] = DatasetEntry(name=name, loader=loader, labels_file=labels_file)
        return loader

    return wrap


def registered_names() -> list[str]:
    """Sorted names of every registered dataset."""
    return sorted(_REGISTRY)


def get_dataset_entry(name: str) -> DatasetEntry | None:
    """The entry registered as `name`, or None."""
    return _REGISTRY.get(name)
