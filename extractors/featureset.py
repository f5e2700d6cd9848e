"""The typed result of extraction: three feature sequences, their spec, and what was observed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmer.core.feature_spec import MODALITIES, FeatureSpec


@dataclass(frozen=True)
class Word:
    """One spoken or written word and when it starts/ends, in seconds from the media start."""

    text: str
    start_s: float
    end_s: float


@dataclass
class ModalityStats:
    """What the extractors saw, for reporting (`mmer analyze` JSON `modalities`)."""

    frames: int = 0  # visual: sampled video frames
    face_frames: int = 0  # visual: frames with a detected face
    seconds: float = 0.0  # audio: decoded audio duration (s)
    voiced: float = 0.0  # audio: seconds judged voiced
    tokens: int = 0  # text: number of word-piece tokens embedded
    words_trust: float = 1.0  # text: how far the recognised words can be trusted, 0..1 (speech.RecognitionConfidence)


@dataclass
class FeatureSet:
    """Features of one clip.

    features[m]: (T_m, D_m) float32; T_m == 0 when the modality is absent (no face, no audio...).
    times[m]:    (T_m,) float64 start time in seconds of each frame/token, for windowing.
    spec:        the FeatureSpec these features follow (checked against a checkpoint's spec).
    transcript:  the words recognised or given ("" when none); the text features were computed from
                 them, unless the recogniser's own scores failed them (stats.words_trust == 0).
    words:       those words with their start/end times (s), in spoken order.
    duration_s:  media duration in seconds.
    timings_s:   stage name -> seconds spent.
    warnings:    human-readable notes (e.g. "no audio track: audio and text absent").
    """

    features: dict[str, np.ndarray]
    times: dict[str, np.ndarray]
    spec: FeatureSpec
    transcript: str = ""
    duration_s: float = 0.0
    stats: ModalityStats = field(default_factory=ModalityStats)
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)

    def present(self, modality: str) -> bool:
        return self.features[modality].shape[0] > 0

    def window(self, start_s: float, end_s: float) -> "FeatureSet":
        """The frames/tokens (and words) whose start time lies in [start_s, end_s)."""
        feats, times = {}, {}
        for m in MODALITIES:
            keep = (self.times[m] >= start_s) & (self.times[m] < end_s)
            feats[m] = self.features[m][keep]
            times[m] = self.times[m][keep]
        return FeatureSet(features=feats, times=times, spec=self.spec, transcript=self.transcript,
                          duration_s=min(end_s, self.duration_s) - start_s, stats=self.stats,
                          words=[w for w in self.words if start_s <= w.start_s < end_s])
