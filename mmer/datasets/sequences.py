"""Per-sample access to one modality of one split, without copying the split.

Benchmark files store a modality either stacked, `(N, T, D)` (numpy array or torch tensor,
possibly memory-mapped), or as a list of per-sample `(T_i, D)` arrays/tensors. `SequenceColumn`
checks shapes once at load time and then hands out one sample at a time as a `(T, D)` float32
array: a view into the file's array when it already is float32 and finite, otherwise a copy of
that one sample only.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from mmer.datasets.base import DatasetError


def _as_numpy(x: Any) -> np.ndarray:
    """A numpy view of a tensor/array-like (torch dtypes numpy lacks are converted to float32)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def finite_float32(x: np.ndarray) -> np.ndarray:
    """`x` as float32 with NaN and +/-inf replaced by 0 (copies only when something changes)."""
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return x


def trim_zero_padding(x: np.ndarray) -> np.ndarray:
    """Drop the all-zero frames at the start and at the end of a `(T, D)` sequence.

    Benchmark files zero-pad every sequence to a fixed length, some at the front and some at the
    back. An all-zero frame between two real frames is kept (it is data, and keeps the frames of
    aligned modalities in step). A sequence with no non-zero frame becomes `(0, D)` (absent).
    Returns a view (slice) of `x`.
    """
    real = np.flatnonzero(np.any(x != 0, axis=1))  # indices of frames with a non-zero value
    if real.size == 0:
        return x[:0]
    return x[real[0]: real[-1] + 1]


class SequenceColumn:
    """One modality of one split: N sequences of `dim`-dimensional frames.

    values: stacked `(N, T, D)` array/tensor, or a list/tuple/object array of `(T_i, D)` items.
    where:  text naming file, split and key, used in error messages.
    col[i]: `(T, D)` float32, non-finite values replaced by 0, padding NOT yet removed.
    """

    def __init__(self, values: Any, dim: int, where: str) -> None:
        self.dim = dim
        self.where = where
        if isinstance(values, (torch.Tensor, np.ndarray)) and values.dtype != object:
            if values.ndim != 3 or values.shape[2] != dim:
                raise DatasetError(f"{where}: expected stacked features of shape (N, T, {dim}), "
                                   f"got {tuple(values.shape)}")
            if isinstance(values, np.ndarray) and values.dtype.kind not in "fiub":
                raise DatasetError(f"{where}: features have non-numeric dtype {values.dtype}")
            self._values = values
            self._n = int(values.shape[0])
        elif isinstance(values, (list, tuple, np.ndarray)):
            for i, item in enumerate(values):
                shape = tuple(getattr(item, "shape", None) or np.shape(item))
                if not (len(shape) == 2 and shape[1] == dim) and shape not in ((0,), (0, 0)):
                    raise DatasetError(f"{where}: sample {i} has shape {shape}, expected (T, {dim})")
            self._values = values
            self._n = len(values)
        else:
            raise DatasetError(f"{where}: expected an array, tensor or list of per-sample arrays, "
                               f"found a {type(values).__name__}")

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> np.ndarray:
        x = _as_numpy(self._values[i])  # (T, D), a view when stored stacked
        if x.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if x.dtype.kind not in "fiub":
            raise DatasetError(f"{self.where}: sample {i} has non-numeric dtype {x.dtype}")
        return finite_float32(x)


def sample_ids(values: Any, n: int, where: str) -> list[str]:
    """Sample ids as strings (an id stored as an array, e.g. [video, start, end], is joined by '_')."""
    if len(values) != n:
        raise DatasetError(f"{where}: {len(values)} ids for {n} samples")

    def one(v: Any) -> str:
        if isinstance(v, bytes):
            return v.decode("utf-8", "replace")
        if isinstance(v, (list, tuple, np.ndarray)) and np.ndim(v) > 0:
            return "_".join(one(x) for x in np.asarray(v, dtype=object).ravel())
        return str(v)

    return [one(v) for v in values]


def trimmed_features(columns: dict[str, SequenceColumn]) -> Callable[[int], dict[str, np.ndarray]]:
    """get_features(i) -> {m: (T_m, D_m) float32} with leading/trailing zero frames removed."""

    def get_features(i: int) -> dict[str, np.ndarray]:
        return {m: trim_zero_padding(col[i]) for m, col in columns.items()}

    return get_features
