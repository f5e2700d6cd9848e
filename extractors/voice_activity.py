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

from mmer.extractors.media import AUDIO_RATE_HZ

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
    """samples (N,) float32 at 16 kHz in [-1, 1] -> [(start_s, end_s), ...] of speech, in order.

    faster-whisper's Silero detector and decision rule (`get_speech_timestamps`), with the network
    run by `speech_probabilities` (bounded memory, the same numbers). Audio in which no chunk reaches
    SPEECH_THRESHOLD has no speech by that rule, so it is answered without running the rule (which
    would copy the whole audio)."""
    if samples.shape[0] == 0:
        return []
    from faster_whisper import vad

    samples = np.ascontiguousarray(samples, dtype=np.float32)
    probabilities = speech_probabilities(samples)
    if not (probabilities >= SPEECH_THRESHOLD).any():
        return []
    options = vad.VadOptions(threshold=SPEECH_THRESHOLD, min_speech_duration_ms=MIN_SPEECH_MS,
                             min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS)
    with _VAD_LOCK:  # the rule asks faster-whisper's module for its model: hand it the probabilities
        stock = vad.get_vad_model
        vad.get_vad_model = lambda: (lambda padded_audio: probabilities)
        try:
            stamps = vad.get_speech_timestamps(samples, options, AUDIO_RATE_HZ)
        finally:
            vad.get_vad_model = stock
    return [(s["start"] / AUDIO_RATE_HZ, s["end"] / AUDIO_RATE_HZ) for s in stamps]


_VAD_LOCK = threading.Lock()


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Silero speech probability of each 32 ms chunk of samples (N,) float32 16 kHz: (N // 512 + 1,),
    exactly what faster-whisper's `SileroVADModel` gives for the audio zero-padded to whole chunks
    (always at least one padded chunk), computed CHUNKS_PER_PASS chunks at a time with the
    recurrent state carried over, without copying the audio."""
    from faster_whisper.vad import get_vad_model

    session = get_vad_model().session
    whole = samples.shape[0] // _CHUNK
    body = samples[:whole * _CHUNK].reshape(whole, _CHUNK)  # a view
    tail = np.zeros((1, _CHUNK), np.float32)
    tail[0, :samples.shape[0] - whole * _CHUNK] = samples[whole * _CHUNK:]
    state = np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)
    previous_tail = np.zeros(_CONTEXT, np.float32)  # the first chunk sees silence before it
    outputs = []
    for first in range(0, whole + 1, CHUNKS_PER_PASS):
        last = min(first + CHUNKS_PER_PASS, whole + 1)
        piece = body[first:min(last, whole)]
        if last == whole + 1:
            piece = np.concatenate([piece, tail])
        context = np.empty((piece.shape[0], _CONTEXT), np.float32)
        context[0] = previous_tail
        context[1:] = piece[:-1, -_CONTEXT:]
        previous_tail = piece[-1, -_CONTEXT:].copy()
        output, *state = session.run(None, {"input": np.concatenate([context, piece], 1),
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
