"""Speaker-independent K-fold cross-validation: whole groups (speakers, actors) per fold.

A dataset whose samples carry a group (a cache written from a labels CSV with a `group` column, or
by a corpus recipe that knows its speakers) can be re-split into K folds. The groups are sorted
(numbers numerically) and cut into K consecutive blocks of as equal size as possible; fold k tests
on block k, selects and calibrates on block (k + 1) mod K, and trains on the other K - 2 blocks.
So every group is tested exactly once, never trained or validated on in its own fold, and the
folds are the same on every machine. The samples of every split of the loaded dataset are pooled
first (its own train/valid/test assignment is ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmer.corpora.group_splits import group_sort_key
from mmer.datasets.base import SPLITS, BenchmarkData, MultimodalDataset
from mmer.errors import UserError

MIN_FOLDS = 3
"""A fold needs a test block, a validation block and at least one training block."""


@dataclass(frozen=True)
class FoldPlan:
    """Which groups fold `fold` of `folds` tests, validates and trains on."""

    fold: int
    folds: int
    test: list[str]
    valid: list[str]
    train: list[str]

    def to_json(self) -> dict:
        return {"fold": self.fold, "folds": self.folds, "test_groups": self.test, "valid_groups": self.valid,
                "train_groups": self.train}


def plan_folds(groups: list[str], folds: int) -> list[FoldPlan]:
    """The K fold plans over the distinct `groups` (see the module docstring).
    Raises UserError (parameter "folds") when K < 3 or there are fewer groups than folds."""
    if folds < MIN_FOLDS:
        raise UserError(f"folds must be >= {MIN_FOLDS} (test, validation and training groups), got {folds}",
                        parameter="folds")
    ordered = sorted(set(groups), key=group_sort_key)
    if len(ordered) < folds:
        raise UserError(f"folds: {folds} folds need at least {folds} groups (speakers), the data has "
                        f"{len(ordered)}", parameter="folds")
    blocks = [list(b) for b in np.array_split(np.array(ordered, dtype=object), folds)]
    plans = []
    for k in range(folds):
        valid_k = (k + 1) % folds
        train = [g for j, b in enumerate(blocks) if j not in (k, valid_k) for g in b]
        plans.append(FoldPlan(k, folds, [str(g) for g in blocks[k]], [str(g) for g in blocks[valid_k]],
                              sorted(train, key=group_sort_key)))
    return plans


def pooled_groups(bench: BenchmarkData) -> list[tuple[str, int, str]]:
    """(split, index, group) of every sample of every split, in split order.
    Raises UserError when a sample has no group."""
    rows = []
    for split in SPLITS:
        dataset = bench.splits.get(split)
        if dataset is None:
            continue
        groups = dataset.groups if dataset.groups is not None else [None] * len(dataset)
        for i, g in enumerate(groups):
            if g is None or g == "":
                raise UserError(f"folds: sample {dataset.ids[i]!r} of dataset {bench.name} has no group (speaker); "
                                "--folds needs one for every sample (a `group` column in the labels CSV of "
                                "`mmer extract`, or a corpus recipe that knows its speakers)", parameter="folds")
            rows.append((split, i, str(g)))
    return rows


def fold_data(bench: BenchmarkData, folds: int, fold: int) -> tuple[BenchmarkData, FoldPlan]:
    """`bench` re-split for fold `fold` (0-based) of `folds`: its samples pooled, then split by group."""
    rows = pooled_groups(bench)
    plan = plan_folds([g for _, _, g in rows], folds)[fold]
    where = {"test": set(plan.test), "valid": set(plan.valid), "train": set(plan.train)}
    out = BenchmarkData(name=bench.name, label_names=list(bench.label_names), feature_spec=bench.feature_spec)
    for split in SPLITS:
        chosen = [(s, i, g) for s, i, g in rows if g in where[split]]
        sources = [bench.splits[s] for s, _, _ in chosen]
        indices = [i for _, i, _ in chosen]
        labels = np.array([bench.splits[s].labels[i] for s, i, _ in chosen], dtype=np.float32).reshape(
            len(chosen), len(bench.label_names))
        out.splits[split] = MultimodalDataset(
            lambda j, sources=sources, indices=indices: sources[j][indices[j]].features, labels,
            [bench.splits[s].ids[i] for s, i, _ in chosen], [g for _, _, g in chosen])
    return out, plan
