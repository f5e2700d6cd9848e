"""The typed result of extraction: three feature sequences, their spec, and what was observed."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mmer.core.feature_spec import MODALITIES, FeatureSpec


MIN_WORD_S = 0.1
"""Shortest plausible duration of a spoken word, in seconds (the shortest words, "a" or "I", last
about a tenth of a second). The recogniser sometimes gives a word 1 ms."""


@dataclass(frozen=True)
class Word:
    """One spoken or written word and when it starts/ends, in seconds from the media start."""

    text: str
    start_s: float
    end_s: float


def plausible_word_times(words: list[Word]) -> list[Word]:
    """`words` (in spoken order) with every word lasting at least MIN_WORD_S where the next word
    leaves room: a shorter word's end moves to min(start + MIN_WORD_S, the next word's start), or
    to start + MIN_WORD_S for the last word. Starts never move (the features are timed by them)."""
    out = []
    for n, w in enumerate(words):
        end = w.end_s
        if end - w.start_s < MIN_WORD_S:
            following = words[n + 1].start_s if n + 1 < len(words) else float("inf")
            end = max(end, min(w.start_s + MIN_WORD_S, following))
        out.append(w if end == w.end_s else Word(w.text, w.start_s, end))
    return out


@dataclass
class ModalityStats:
    """What the extractors saw, for reporting (`mmer analyze` JSON `modalities`)."""

    frames: int = 0  # visual: sampled video frames
    face_frames: int = 0  # visual: frames with a detected face
    usable_face_frames: int = 0  # visual: frames whose face was good enough to read (the visual stream's frames)
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
    face_quality: (T_visual,) float32 in [0, 1], how readable each visual frame's face is
                 (extractors.face_quality); empty when the features carry none (every frame counts fully).
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
    face_quality: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def present(self, modality: str) -> bool:
        return self.features[modality].shape[0] > 0

    def window(self, start_s: float, end_s: float) -> "FeatureSet":
        """The frames/tokens (and words) whose start time lies in [start_s, end_s)."""
        feats, times = {}, {}
        quality = self.face_quality
        for m in MODALITIES:
            keep = (self.times[m] >= start_s) & (self.times[m] < end_s)
            feats[m] = self.features[m][keep]
            times[m] = self.times[m][keep]
            if m == "visual" and len(quality) == len(keep):
                quality = quality[keep]
        return FeatureSet(features=feats, times=times, spec=self.spec, transcript=self.transcript,
                          duration_s=min(end_s, self.duration_s) - start_s, stats=self.stats,
                          words=[w for w in self.words if start_s <= w.start_s < end_s], face_quality=quality)
