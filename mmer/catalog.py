"""Names the CLI offers in its options and help, known without importing any implementation.

`mmer --help` and every command's `--help` read these static tables, so they import no torch, h5py or
network. The registries check against them: a dataset format or corpus recipe registered under a
name missing here is refused at import (and tests/test_boundaries.py checks the tables are complete).
Model names come from models.registry's own static table.
"""

from __future__ import annotations

DEFAULT_MODEL = "lddu"
"""The model `mmer analyze` uses when --model is not given (its shipped default checkpoint)."""

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")
PRECISION_CHOICES: tuple[str, ...] = ("fp32", "bf16", "fp16")

DATASET_NAMES: tuple[str, ...] = ("cache", "m3ed", "mosei-aligned", "mosei-mmsa", "mosei-unaligned")
"""`--dataset` formats of `mmer train` / `mmer eval` (mmer.datasets registers their loaders)."""

CORPUS_NAMES: tuple[str, ...] = ("cremad", "mosei-raw", "ravdess")
"""`mmer extract --dataset` corpus recipes (mmer.corpora registers them)."""

SELECT_METRICS: dict[str, bool] = {
    "micro_f1": True,
    "macro_f1": True,
    "acc": True,
    "acc_empty_as_one": True,
    "hamming_loss": False,
    "top1_accuracy": True,
    "unweighted_accuracy": True,
}
"""Validation metrics a run can be selected on, and whether higher is better (the last two are the
single-label ones of mmer.single_label, for corpora with one emotion per clip)."""
