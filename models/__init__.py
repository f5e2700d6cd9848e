"""Networks (LDDU, LAMB), their losses, the model registry and checkpoints.

Names are resolved lazily (PEP 562): `import models.config` or `models.registry.model_names()` does
not import torch; `models.build_model` etc. import their module on first use.
"""

import importlib

_EXPORTS = {
    "EmotionModel": "models.base",
    "LossOutput": "models.batch",
    "ModelOutput": "models.batch",
    "MultimodalBatch": "models.batch",
    "Prediction": "models.batch",
    "MODALITIES": "mmer_core.feature_spec",
    "FeatureSpec": "mmer_core.feature_spec",
    "FeatureSpecMismatch": "mmer_core.feature_spec",
    "ModalitySpec": "mmer_core.feature_spec",
    "build_model": "models.registry",
    "get_entry": "models.registry",
    "model_names": "models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
