"""Networks (LDDU, LAMB), their losses, the model registry and checkpoints.

Names are resolved lazily (PEP 562): `import models.config` or `mmer.models.registry.model_names()` does
not import torch; `mmer.models.build_model` etc. import their module on first use.
"""

import importlib

_EXPORTS = {
    "EmotionModel": "mmer.models.base",
    "LossOutput": "mmer.models.batch",
    "ModelOutput": "mmer.models.batch",
    "MultimodalBatch": "mmer.models.batch",
    "Prediction": "mmer.models.batch",
    "MODALITIES": "mmer.core.feature_spec",
    "FeatureSpec": "mmer.core.feature_spec",
    "FeatureSpecMismatch": "mmer.core.feature_spec",
    "ModalitySpec": "mmer.core.feature_spec",
    "build_model": "mmer.models.registry",
    "get_entry": "mmer.models.registry",
    "model_names": "mmer.models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
