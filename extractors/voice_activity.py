"""Where someone speaks: Silero voice-activity detection (the ONNX model shipped inside
faster-whisper) on 16 kHz mono audio.

Silence, hiss, hum, steady tones and background noise are not voice: only stretches the detector
calls speech (at least `MIN_SPEECH_MS` long) count. The pipeline keeps the acoustic frames inside
these stretches and nothing else, so a clip's audio stream does not change when silence or noise
is added around it, and a clip with no speech has no audio stream at all.
"""

from __future__ import annotations

import numpy as np

from extractors.media import AUDIO_RATE_HZ

SPEECH_THRESHOLD = 0.5
"""Silero speech probability at or above which a 32 ms chunk is speech (its default)."""
MIN_SPEECH_MS = 250
"""Shorter detections (clicks, a tone's onset) are dropped, in milliseconds."""
MIN_SILENCE_MS = 300
"""Pauses shorter than this, in milliseconds, stay inside one speech stretch."""
SPEECH_PAD_MS = 100
"""Each stretch is widened by this many milliseconds on both sides (word onsets and endings)."""
VAD_VERSION = "silero-v6/1"
"""Recorded in the audio FeatureSpec: which detector chose the frames, with these settings."""


def speech_spans(samples: np.ndarray) -> list[tuple[float, float]]:
    """samples (N,) float32 at 16 kHz in [-1, 1] -> [(start_s, end_s), ...] of speech, in order."""
    if samples.shape[0] == 0:
        return []
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=SPEECH_THRESHOLD, min_speech_duration_ms=MIN_SPEECH_MS,
                         min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS)
    stamps = get_speech_timestamps(np.ascontiguousarray(samples, dtype=np.float32), options, AUDIO_RATE_HZ)
    return [(s["start"] / AUDIO_RATE_HZ, s["end"] / AUDIO_RATE_HZ) for s in stamps]


def inside(times: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    """(T,) bool: which frame start times (seconds) fall inside one of `spans`."""
    keep = np.zeros(times.shape[0], dtype=bool)
    for start, end in spans:
        keep |= (times >= start) & (times < end)
    return keep


def spoken_seconds(spans: list[tuple[float, float]]) -> float:
    """Total seconds of speech in `spans`."""
    return float(sum(end - start for start, end in spans))
