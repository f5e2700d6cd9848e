"""Networks (LDDU, LAMB), their losses, the model registry and checkpoints."""

from models.base import EmotionModel
from models.batch import LossOutput, ModelOutput, MultimodalBatch, Prediction
from models.feature_spec import MODALITIES, FeatureSpec, FeatureSpecMismatch, ModalitySpec
from models.registry import build_model, get_entry, model_names, register_model

__all__ = [
    "EmotionModel",
    "FeatureSpec",
    "FeatureSpecMismatch",
    "LossOutput",
    "MODALITIES",
    "ModalitySpec",
    "ModelOutput",
    "MultimodalBatch",
    "Prediction",
    "build_model",
    "get_entry",
    "model_names",
    "register_model",
]
