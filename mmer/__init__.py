"""mmer: multimodal multi-label emotion recognition from raw video (face, voice, words).

The public API (docs/api.md) is re-exported here and loaded on first use, so `import mmer` (and
`mmer --help`) costs no torch:

    import mmer
    [result] = mmer.analyze(["clip.mp4"], mmer.AnalyzeOptions(model="lddu"))

Sub-packages: `mmer.core` (feature-spec types, errors, version; no torch), `mmer.extractors`
(media -> features), `mmer.models` (LDDU, LAMB, checkpoints), the library modules beside this file
(analysis, fusion, training, scoring, writers ...), and `mmer.cli` (the Typer app).
"""

from __future__ import annotations

import importlib

from mmer.core import __version__

_PUBLIC = {
    "analyze": "mmer.analysis",
    "Analyzer": "mmer.analysis",
    "AnalyzeOptions": "mmer.analysis",
    "ClipResult": "mmer.analysis",
    "ClipFailure": "mmer.analysis",
    "train": "mmer.training",
    "train_seeds": "mmer.repeated_runs",
    "train_folds": "mmer.repeated_runs",
    "TrainOptions": "mmer.training",
    "score_files": "mmer.scoring",
    "MmerError": "mmer.core",
}
"""name -> module that defines it (imported when the name is first asked for)."""

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
