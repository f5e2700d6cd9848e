"""The contract between extractors and networks: which feature sequences a model was trained on.

A checkpoint stores its `FeatureSpec`; features handed to the model at inference carry one too,
and `FeatureSpec.mismatches` lists every difference so callers can refuse to run silently wrong.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from mmer.core.errors import MmerError

MODALITIES: tuple[str, ...] = ("text", "audio", "visual")
"""Canonical modality order used everywhere (configs, batches, checkpoints)."""


class FeatureSpecMismatch(MmerError, ValueError):
    """Features do not match what a checkpoint was trained on."""


@dataclass(frozen=True)
class ModalitySpec:
    """One modality's feature sequence.

    extractor: name of the extractor or benchmark feature set (e.g. "egemaps-lld", "covarep").
    dim: feature dimension D of each frame/token vector.
    frame_rate_hz: frames per second of the sequence, or None for token sequences / unknown.
    version: extractor version string (a change of version means features may differ).
    """

    extractor: str
    dim: int
    frame_rate_hz: float | None = None
    version: str = ""


@dataclass(frozen=True)
class FeatureSpec:
    """Specs for the three modalities, keyed by name in `MODALITIES` order."""

    text: ModalitySpec
    audio: ModalitySpec
    visual: ModalitySpec

    def __getitem__(self, modality: str) -> ModalitySpec:
        if modality not in MODALITIES:
            raise KeyError(modality)
        return getattr(self, modality)

    @property
    def dims(self) -> dict[str, int]:
        """Feature dimension per modality, e.g. {"text": 768, "audio": 74, "visual": 35}."""
        return {m: self[m].dim for m in MODALITIES}

    def to_dict(self) -> dict:
        return {m: asdict(self[m]) for m in MODALITIES}

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSpec":
        try:
            return cls(**{m: ModalitySpec(**data[m]) for m in MODALITIES})
        except (KeyError, TypeError) as err:
            raise FeatureSpecMismatch(f"malformed feature spec: {err}") from None

    def mismatches(self, other: "FeatureSpec") -> list[str]:
        """Human-readable differences between `self` (expected) and `other` (given)."""
        problems = []
        for m in MODALITIES:
            want, got = self[m], other[m]
            for field in ("extractor", "dim", "frame_rate_hz", "version"):
                a, b = getattr(want, field), getattr(got, field)
                if a != b:
                    problems.append(f"{m} {field}: model expects {a!r}, features have {b!r}")
        return problems

    def require_compatible(self, other: "FeatureSpec", what: str = "feature spec mismatch") -> None:
        """The one check that features fit a model: raise `FeatureSpecMismatch` with "`what`: " and
        every difference between `self` (expected by the model) and `other` (the features)."""
        problems = self.mismatches(other)
        if problems:
            raise FeatureSpecMismatch(f"{what}: " + "; ".join(problems))
