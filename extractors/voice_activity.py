"""Where someone speaks: Silero voice-activity detection (the ONNX model shipped inside
faster-whisper) on 16 kHz mono audio.

Silence, hiss, hum, steady tones and background noise are not voice: only stretches the detector
calls speech (at least `MIN_SPEECH_MS` long) count. The pipeline keeps the acoustic frames inside
these stretches and nothing else, so a clip's audio stream does not change when silence or noise
is added around it, and a clip with no speech has no audio stream at all.
"""

from __future__ import annotations

import threading

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


CHUNKS_PER_PASS = 256
"""32 ms chunks the Silero network reads per pass (8 s of audio). faster-whisper passes up to 10,000
at once, whose activations cost memory in proportion (over 200 MB for 5 minutes); in passes of this
many, with the recurrent state carried from pass to pass, the probabilities are the same."""
_CHUNK, _CONTEXT = 512, 64  # samples per chunk, samples of the previous chunk each one also sees


def speech_spans(samples: np.ndarray) -> list[tuple[float, float]]:
    """samples (N,) float32 at 16 kHz in [-1, 1] -> [(start_s, end_s), ...] of speech, in order."""
    if samples.shape[0] == 0:
        return []
    from faster_whisper import vad

    options = vad.VadOptions(threshold=SPEECH_THRESHOLD, min_speech_duration_ms=MIN_SPEECH_MS,
                             min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS)
    with _VAD_LOCK:
        stock = vad.get_vad_model
        vad.get_vad_model = lambda: _PiecewiseSilero(stock())  # faster-whisper's decision rule, bounded memory
        try:
            stamps = vad.get_speech_timestamps(np.ascontiguousarray(samples, dtype=np.float32), options, AUDIO_RATE_HZ)
        finally:
            vad.get_vad_model = stock
    return [(s["start"] / AUDIO_RATE_HZ, s["end"] / AUDIO_RATE_HZ) for s in stamps]


_VAD_LOCK = threading.Lock()


class _PiecewiseSilero:
    """faster-whisper's Silero model (`faster_whisper.vad.SileroVADModel`) with the same input and
    output, run over CHUNKS_PER_PASS chunks at a time so memory does not grow with the audio."""

    def __init__(self, model) -> None:
        self.session = model.session

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """audio (N,) float32, N a multiple of 512 -> (N / 512, 1) speech probabilities."""
        chunks = audio.reshape(-1, _CHUNK)
        state = np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)
        outputs = []
        for first in range(0, chunks.shape[0], CHUNKS_PER_PASS):
            piece = chunks[first:first + CHUNKS_PER_PASS]
            context = np.zeros((piece.shape[0], _CONTEXT), np.float32)  # the previous chunk's tail
            context[1:] = piece[:-1, -_CONTEXT:]
            if first > 0:
                context[0] = chunks[first - 1, -_CONTEXT:]
            output, *state = self.session.run(None, {"input": np.concatenate([context, piece], 1),
                                                     "h": state[0], "c": state[1]})
            outputs.append(output)
        return np.concatenate(outputs, axis=0)


def inside(times: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    """(T,) bool: which frame start times (seconds) fall inside one of `spans`."""
    keep = np.zeros(times.shape[0], dtype=bool)
    for start, end in spans:
        keep |= (times >= start) & (times < end)
    return keep


def spoken_seconds(spans: list[tuple[float, float]]) -> float:
    """Total seconds of speech in `spans`."""
    return float(sum(end - start for start, end in spans))
