"""What `mmer analyze` returns: per-clip and per-window emotion scores, what each stream alone says,
and the failures; plain dataclasses that every writer renders (mmer.output_formats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mmer.extractors.featureset import ModalityStats, Word

NO_SIGNAL = "no usable stream (no face, no speech, no words): no emotion can be recognised"
"""The warning of a clip without any usable stream."""
NO_SIGNAL_WINDOW = "no signal in this window (no face, no speech, no words): no emotion can be recognised"
"""The warning of a window without any usable stream (`Segment.signal` False)."""


@dataclass
class EmotionScore:
    """One label of one clip or window. probability and uncertainty in [0, 1];
    present = probability >= the checkpoint's threshold for that label."""

    label: str
    probability: float
    present: bool
    uncertainty: float


ModalityEvidence = dict[str, "dict[str, float] | None"]
"""What each stream alone says: {"visual"|"audio"|"text": {label: probability} or None when that
stream is absent (or not readable by the model)}. See `Analyzer._by_modality`."""


@dataclass
class Segment:
    """Result for the window [start_s, end_s) of a clip (seconds). signal: False when no stream is
    usable in the window (no face, no speech, no words): every emotion then has probability 0,
    uncertainty 1 and is absent, and `warnings` says NO_SIGNAL_WINDOW; every format marks such a
    window as "no signal" rather than as "nothing present"."""

    start_s: float
    end_s: float
    emotions: list[EmotionScore]
    by_modality: ModalityEvidence = field(default_factory=dict)
    signal: bool = True
    warnings: list[str] = field(default_factory=list)

    @property
    def predicted(self) -> list[str]:
        return [e.label for e in self.emotions if e.present]


@dataclass
class ClipResult:
    """Result for one media file.

    duration_s: media duration (s). transcript: the words the text features came from ("" if none).
    modalities: frames/face frames, seconds/voiced seconds, tokens the extractors saw.
    timings_s: stage -> seconds (extraction stages, then "model"). warnings: one line each.
    segments: per-window results when a window length was asked for, else None.
    by_modality: what the face, the voice and the words each say on their own (`ModalityEvidence`).
    words: the transcript's words with their start/end times (s), in spoken order.
    """

    file: str
    model: str
    duration_s: float
    emotions: list[EmotionScore]
    transcript: str
    modalities: ModalityStats
    timings_s: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    segments: list[Segment] | None = None
    by_modality: ModalityEvidence = field(default_factory=dict)
    words: list[Word] = field(default_factory=list)

    @property
    def predicted(self) -> list[str]:
        return [e.label for e in self.emotions if e.present]

    @property
    def signal(self) -> bool:
        """False when no stream of the clip is usable (its warnings say NO_SIGNAL)."""
        return NO_SIGNAL not in self.warnings


@dataclass
class ClipFailure:
    """An input that could not be analysed, with a one-line reason. interrupted: not analysed
    because the run was interrupted (Ctrl-C) first (`analyze`); error then says so."""

    file: str
    error: str
    interrupted: bool = False


INTERRUPTED = "not analysed: the run was interrupted (Ctrl-C) before this file was finished"
"""The error of every file a Ctrl-C left unfinished."""


AnalyzeOutcome = ClipResult | ClipFailure
ProgressCallback = Callable[[int, int, str], None]
"""progress(done, total, file): called before each file (done = files finished so far) and once at the end."""
