"""Windows of a clip: their automatic and smallest lengths, how a span is cut into pieces and which
frames each window holds, and the rule that makes the whole clip agree with its windows."""

from __future__ import annotations

import math
from dataclasses import replace

from mmer.extractors.featureset import FeatureSet
from mmer.results import EmotionScore, Segment

AUTO_WINDOW_RANGE_S = (2.0, 5.0)
AUTO_WINDOWS_PER_CLIP = 30
"""`auto_window`: about this many windows per clip, each between AUTO_WINDOW_RANGE_S seconds long."""
MIN_WINDOW_S = 1.0
MIN_WINDOW_FRAMES = 5
"""The shortest window analysed (`smallest_window_s`): MIN_WINDOW_S seconds, and at least
MIN_WINDOW_FRAMES sampled video frames. Shorter windows hold one video frame or none, a few voice
frames (25 per second) and rarely a whole word: most would have no signal, and the rest would be
read from a single frame (0.01 s windows gave 468 empty windows of 601 and "sad" from one voice frame)."""
SUSTAINED_S = 3.0
"""The whole clip and its windows agree by this rule (`consistent_with_windows`): an emotion judged
present, with a signal, in consecutive windows lasting together at least SUSTAINED_S seconds (or
the whole clip, when it is shorter) is present in the clip."""


def auto_window_s(duration_s: float) -> float:
    """A window length (s) for a timeline of a clip of `duration_s` seconds: about
    AUTO_WINDOWS_PER_CLIP windows, rounded to whole seconds, kept within AUTO_WINDOW_RANGE_S
    (a 6 s clip gets 2 s windows, a 10-minute one 5 s windows)."""
    low, high = AUTO_WINDOW_RANGE_S
    return float(min(high, max(low, round(duration_s / AUTO_WINDOWS_PER_CLIP))))


def smallest_window_s(fps: float) -> float:
    """The shortest window (s) worth analysing at `fps` sampled video frames per second:
    MIN_WINDOW_S, or MIN_WINDOW_FRAMES frames when they last longer."""
    return max(MIN_WINDOW_S, MIN_WINDOW_FRAMES / fps)


def consistent_with_windows(clip: list[EmotionScore], segments: list[Segment], duration_s: float) -> list[EmotionScore]:
    """The whole clip's scores made to agree with its windows by the SUSTAINED_S rule.

    A run is a stretch of consecutive windows, each with a signal, in which the emotion is judged
    present, lasting at least min(SUSTAINED_S, duration_s) seconds. When an emotion has such a run,
    it is present in the clip, with probability max(the clip's own, the lowest probability within
    the best run) and that run's highest uncertainty when the run's probability is the higher.
    Otherwise the clip's own score stands. The clip can only gain emotions: a window alone, or a
    clip-level reading absent from every window, changes nothing.
    """
    need = min(SUSTAINED_S, duration_s) - 1e-6
    out = []
    for k, score in enumerate(clip):
        best: tuple[float, float] | None = None  # (probability, uncertainty) of the best run
        run: list[Segment] = []
        for segment in [*segments, None]:
            if segment is not None and segment.signal and segment.emotions[k].present:
                run.append(segment)
                continue
            if run and run[-1].end_s - run[0].start_s >= need:
                p = min(s.emotions[k].probability for s in run)
                if best is None or p > best[0]:
                    best = (p, max(s.emotions[k].uncertainty for s in run))
            run = []
        if best is not None and (not score.present or best[0] > score.probability):
            higher = best[0] > score.probability
            score = replace(score, probability=best[0] if higher else score.probability, present=True,
                            uncertainty=best[1] if higher else score.uncertainty)
        out.append(score)
    return out


def span_windows(features: FeatureSet, spans: list[tuple[float, float]],
                 clip_end: float | None = None) -> list[FeatureSet]:
    """The frames/tokens of each span [a, b) seconds; a span reaching the clip's end (`clip_end`,
    default the last span's end) also takes every frame/token starting after it."""
    end = spans[-1][1] if clip_end is None else clip_end
    return [features.window(a, math.inf if b >= end else b) for a, b in spans]


def tile(start: float, end: float, length: float) -> list[tuple[float, float]]:
    """[start, end) seconds cut into round((end - start) / length) consecutive pieces (at least one)
    of `length` seconds; the last piece runs to `end`, so a short tail joins the piece before it."""
    count = max(1, math.floor((end - start) / length + 0.5))
    return [(start + k * length, end if k == count - 1 else start + (k + 1) * length) for k in range(count)]
