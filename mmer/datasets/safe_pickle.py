"""Reading benchmark `.pt` / `.pkl` files without ever running code from them.

The benchmark files of this field are pickles: a PyTorch zip archive (`torch.save`), an old
PyTorch "legacy" file, or a plain `pickle.dump`. Unpickling can call any importable function, so
every global a file names is checked against one allow-list (`ALLOWED_GLOBALS`): numpy arrays,
dtypes and scalars (under both the numpy 1.x `numpy.core` and numpy 2.x `numpy._core` paths),
torch tensors and storages, `argparse.Namespace`, `collections.OrderedDict`/`defaultdict` and the
builtin containers. Anything else (e.g. `os.system`) is refused with a `DatasetError`.

- PyTorch zip archives that hold tensors go through `torch.load(weights_only=True, mmap=True)`
  with the allow-list added as safe globals: tensors stay memory-mapped until a sample is read.
  Archives without tensor storages (numpy arrays inside the pickle) have their `data.pkl`
  streamed from the archive through `RestrictedUnpickler`, which needs less memory.
- Legacy PyTorch files go through `torch.load(weights_only=True)` (torch cannot mmap them).
- Plain pickles go through `RestrictedUnpickler`, reading straight from the file.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import builtins
import codecs
import collections
import copyreg
import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmer.datasets.base import DatasetError

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _np_numeric  # type: ignore[no-redef]


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global that is not on the allow-list."""

    def __init__(self, qualified_name: str) -> None:
        super().__init__(f"refused to unpickle {qualified_name}")
        self.qualified_name = qualified_name


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """`_codecs.encode` as protocol-2 pickles use it for raw bytes (latin-1 only)."""
    if encoding.replace("-", "").lower() != "latin1":
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1", errors)


def _load_storage_from_bytes(data: bytes) -> Any:
    """Stand-in for `torch.storage._load_from_bytes` (which would unpickle without restriction)."""
    with torch.serialization.safe_globals(_torch_safe_globals()):
        return torch.load(io.BytesIO(data), weights_only=True)


_RECONSTRUCTABLE = (argparse.Namespace, collections.OrderedDict)


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """`copyreg._reconstructor` (protocol 0/1 objects), limited to allow-listed classes."""
    if cls not in _RECONSTRUCTABLE or base is not object or state is not None:
        raise UnsafePickleError(f"copyreg._reconstructor for {getattr(cls, '__name__', cls)!r}")
    return copyreg._reconstructor(cls, base, state)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {}
    for prefix in ("numpy.core", "numpy._core"):
        allowed[(f"{prefix}.multiarray", "_reconstruct")] = _np_multiarray._reconstruct
        allowed[(f"{prefix}.multiarray", "scalar")] = _np_multiarray.scalar
        allowed[(f"{prefix}.numeric", "_frombuffer")] = _np_numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("argparse", "Namespace")] = argparse.Namespace
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("collections", "defaultdict")] = collections.defaultdict
    for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool",
                 "str", "bytes", "bytearray", "slice", "object"):
        allowed[("builtins", name)] = getattr(builtins, name)
    allowed[("copyreg", "_reconstructor")] = _reconstructor
    allowed[("_codecs", "encode")] = _latin1_encode
    allowed[("torch._utils", "_rebuild_tensor")] = torch._utils._rebuild_tensor
    allowed[("torch._utils", "_rebuild_tensor_v2")] = torch._utils._rebuild_tensor_v2
    allowed[("torch._utils", "_rebuild_parameter")] = torch._utils._rebuild_parameter
    allowed[("torch._tensor", "_rebuild_from_type_v2")] = torch._tensor._rebuild_from_type_v2
    allowed[("torch.storage", "_load_from_bytes")] = _load_storage_from_bytes
    allowed[("torch", "Tensor")] = torch.Tensor
    allowed[("torch", "Size")] = torch.Size
    allowed[("torch.nn.parameter", "Parameter")] = torch.nn.Parameter
    for name in ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64",
                 "uint8", "bool"):
        allowed[("torch", name)] = getattr(torch, name)
    for name in ("FloatStorage", "DoubleStorage", "HalfStorage", "BFloat16Storage", "LongStorage",
                 "IntStorage", "ShortStorage", "CharStorage", "ByteStorage", "BoolStorage",
                 "UntypedStorage"):
        allowed[("torch", name)] = getattr(torch, name)
    return allowed


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = _allowed_globals()
"""(module, name) -> object: every global a benchmark pickle may name."""


def _torch_safe_globals() -> list[Any]:
    """The allow-list in the form `torch.serialization.safe_globals` takes (torch's own loader
    already allows tensors, storages, builtin containers and `_codecs.encode`), plus the numpy
    dtype classes (numpy >= 1.25) that torch checks before setting a dtype's state."""
    extra: list[Any] = []
    for (module, name), obj in ALLOWED_GLOBALS.items():
        if module.startswith("numpy") or module in ("argparse", "collections"):
            extra.append((obj, f"{module}.{name}"))
    extra += sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDGSUO"} - {np.dtype},
                    key=lambda cls: cls.__name__)
    return extra


class RestrictedUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` that resolves only globals in `ALLOWED_GLOBALS`.

    Python 2 era pickles are read with latin-1 strings (as numpy arrays pickled there need).
    """

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (`copy_reg`, `__builtin__`, ...) as protocol 0-2 pickles write them
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{module}.{name}") from None


_TORCH_REFUSED = re.compile(r"GLOBAL ([\w.]+)")
_TORCH_DETAIL = re.compile(r"WeightsUnpickler error:\s*(.+)")


def _refused(path: Path, what: str) -> DatasetError:
    what = what.encode("unicode_escape").decode("ascii")  # a crafted name may hold newlines
    return DatasetError(f"{path}: refused to unpickle `{what}`: only arrays, tensors and plain "
                        "containers are allowed (the file is not a dataset file, or is malicious)")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _torch_load(path: Path, mmap: bool) -> Any:
    with torch.serialization.safe_globals(_torch_safe_globals()):
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)


_TENSOR_RECORD = re.compile(r"[^/]+/data/[^/]+")  # "<archive>/data/<key>": one tensor storage


def _load_torch_zip(path: Path) -> Any:
    """A `torch.save` zip archive. With tensor storages: torch.load, storages memory-mapped. Without
    (numpy arrays pickled inside data.pkl): data.pkl streamed from the archive through
    RestrictedUnpickler, which avoids torch.load's extra in-memory copy of the whole pickle."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl")]
        if len(pickles) == 1 and not any(_TENSOR_RECORD.fullmatch(n) for n in names):
            with archive.open(pickles[0]) as f:
                return RestrictedUnpickler(f).load()
    return _torch_load(path, mmap=True)


def load_pickled_file(path: Path) -> Any:
    """Load a `.pt` (zip or legacy) or `.pkl` file through the allow-list.

    Raises DatasetError (one line naming `path`) for a missing/unreadable file, a file that is not
    a pickle or PyTorch file, a truncated one, or one that names a global off the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        problem = "is a directory, expected a file" if path.is_dir() else "file not found"
        raise DatasetError(f"{path}: {problem}")
    try:
        if path.stat().st_size == 0:
            raise DatasetError(f"{path}: file is empty")
        if zipfile.is_zipfile(path):
            return _load_torch_zip(path)
        with open(path, "rb") as f:
            first = RestrictedUnpickler(f).load()
            legacy_torch = isinstance(first, int) and first == torch.serialization.MAGIC_NUMBER
        return _torch_load(path, mmap=False) if legacy_torch else first
    except DatasetError:
        raise
    except UnsafePickleError as err:
        raise _refused(path, err.qualified_name) from None
    except pickle.UnpicklingError as err:
        # torch's weights-only loader reports a refused global as "... GLOBAL os.system ..."
        match = _TORCH_REFUSED.search(str(err))
        if match:
            raise _refused(path, match.group(1)) from None
        detail = _TORCH_DETAIL.search(str(err))
        reason = detail.group(1).strip() if detail else _first_line(err)
        raise DatasetError(f"{path}: not a readable pickle or PyTorch file ({reason})") from None
    except EOFError:
        raise DatasetError(f"{path}: file is truncated (pickle data ended early)") from None
    except MemoryError:
        raise DatasetError(f"{path}: ran out of memory while reading the file") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read file ({_first_line(err)})") from None
    except Exception as err:  # noqa: BLE001 - any other failure inside unpickling means a bad file
        raise DatasetError(f"{path}: not a readable pickle or PyTorch file ({_first_line(err)})") from None
