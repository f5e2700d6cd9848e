"""The neutral core both sides share: the version, the common base error and the feature-spec types.

`mmer.extractors`, `mmer.models` and the library may all import this package; it imports none of them (and no
torch), so a pure feature type never drags in the networks. See docs/architecture.md.
"""

from mmer.core.errors import MmerError
from mmer.core.feature_spec import MODALITIES, FeatureSpec, FeatureSpecMismatch, ModalitySpec

__version__ = "0.1.0"

__all__ = ["MODALITIES", "FeatureSpec", "FeatureSpecMismatch", "MmerError", "ModalitySpec", "__version__"]
