"""Where someone speaks: Silero voice-activity detection (the ONNX model shipped inside
faster-whisper) on 16 kHz mono audio.

Silence, hiss, hum, steady tones and background noise are not voice: only stretches the detector
calls speech (at least `MIN_SPEECH_MS` long) count. The pipeline keeps the acoustic frames inside
these stretches and nothing else, so a clip's audio stream does not change when silence or noise
is added around it, and a clip with no speech has no audio stream at all.

Shouting is speech. Silero hears speech at conversational pitch: raised high enough, as in
shouted, screamed or high-intensity acted speech, the same words fall below its threshold (EmoDB's
267 angry, happy and fearful takes raised 10 semitones: 87 heard no voice at all; raised 7
semitones and driven 20 dB into clipping: 41; recipes/results/loud_speech_vad.json). Level and
clipping alone are not the cause (the same takes at +20 dB, hard-clipped, are all heard). So the
detector listens twice, to the audio and to the audio played `LOWERED_PASS` slower (every
frequency lowered by a fifth, where shouted pitch and formants come back into the range it
knows), and each 32 ms chunk's speech probability is the higher of the two (then 8 and 1 of the
267 have no voice). Silence, noise, hum, tones, sweeps and synthetic melodies stay below the
threshold in both passes (50 of 50 in the same result file; tests/test_extractors_units.py).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterable, Iterator

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
LOWERED_PASS = (3, 2)
"""(up, down): the second pass hears the audio resampled by up/down and played at 16 kHz, i.e.
every frequency times down/up = 2/3 (a fifth lower, 1.5 times as long)."""


CHUNKS_PER_PASS = 256
"""32 ms chunks the Silero network reads per pass (8 s of audio). faster-whisper passes up to 10,000
at once, whose activations cost memory in proportion (over 200 MB for 5 minutes); in passes of this
many, with the recurrent state carried from pass to pass, the probabilities are the same."""
_CHUNK, _CONTEXT = 512, 64  # samples per chunk, samples of the previous chunk each one also sees
_RESAMPLE_MARGIN = 512  # input samples on each side of a block resampled with it (filter support)


def speech_spans(samples: np.ndarray) -> list[tuple[float, float]]:
    """samples (N,) float32 at 16 kHz in [-1, 1] -> [(start_s, end_s), ...] of speech, in order:
    `spans_of` the samples by `voice_probabilities` (the plain and the lowered pass)."""
    if samples.shape[0] == 0:
        return []
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    return spans_of(samples, voice_probabilities(samples))


def spans_of(samples: np.ndarray, probabilities: np.ndarray) -> list[tuple[float, float]]:
    """faster-whisper's Silero decision rule (`get_speech_timestamps`, with SPEECH_THRESHOLD,
    MIN_SPEECH_MS, MIN_SILENCE_MS, SPEECH_PAD_MS) over given chunk probabilities (N // 512 + 1,)
    of samples (N,) float32 16 kHz -> [(start_s, end_s), ...]. Audio in which no chunk reaches
    SPEECH_THRESHOLD has no speech by that rule, so it is answered without running the rule
    (which would copy the audio)."""
    if samples.shape[0] == 0 or not (probabilities >= SPEECH_THRESHOLD).any():
        return []
    from faster_whisper import vad

    options = vad.VadOptions(threshold=SPEECH_THRESHOLD, min_speech_duration_ms=MIN_SPEECH_MS,
                             min_silence_duration_ms=MIN_SILENCE_MS, speech_pad_ms=SPEECH_PAD_MS)
    with silero_answers(probabilities):
        stamps = vad.get_speech_timestamps(samples, options, AUDIO_RATE_HZ)
    return [(s["start"] / AUDIO_RATE_HZ, s["end"] / AUDIO_RATE_HZ) for s in stamps]


@contextmanager
def silero_answers(probabilities: np.ndarray) -> Iterator[None]:
    """Inside the block, faster-whisper's voice-activity rule (`get_speech_timestamps`, also what
    its `transcribe(vad_filter=True)` calls) reads these chunk probabilities instead of running its
    own model: the rule asks faster-whisper's vad module for the model, and gets one that answers
    them. One block at a time (a lock)."""
    from faster_whisper import vad

    with _VAD_LOCK:
        stock = vad.get_vad_model
        vad.get_vad_model = lambda: (lambda padded_audio: probabilities)
        try:
            yield
        finally:
            vad.get_vad_model = stock


_VAD_LOCK = threading.Lock()


def voice_probabilities(samples: np.ndarray) -> np.ndarray:
    """(N // 512 + 1,): per 32 ms chunk of samples (N,) float32 16 kHz, the higher of its Silero
    speech probability (`speech_probabilities`) and that of the `LOWERED_PASS` audio at the same
    time (`lowered_probabilities`)."""
    return np.maximum(speech_probabilities(samples), lowered_probabilities(samples))


def speech_probabilities(samples: np.ndarray) -> np.ndarray:
    """Silero speech probability of each 32 ms chunk of samples (N,) float32 16 kHz: (N // 512 + 1,),
    exactly what faster-whisper's `SileroVADModel` gives for the audio zero-padded to whole chunks
    (always at least one padded chunk), computed CHUNKS_PER_PASS chunks at a time with the
    recurrent state carried over, without copying the audio."""
    step = CHUNKS_PER_PASS * _CHUNK
    return _silero(samples[first:first + step] for first in range(0, samples.shape[0], step))


def lowered_probabilities(samples: np.ndarray) -> np.ndarray:
    """(N // 512 + 1,): for each 32 ms chunk of samples (N,) float32 16 kHz, the highest Silero
    speech probability of the chunks of the lowered audio (`LOWERED_PASS`) that overlap it in time.
    The lowered audio is made and heard in blocks (bounded memory)."""
    up, down = LOWERED_PASS
    probabilities = _silero(_lowered_blocks(samples))  # (M,) over chunks of the lowered audio
    n = samples.shape[0] // _CHUNK + 1
    j = np.arange(probabilities.shape[0])
    first = (j * _CHUNK * down) // (up * _CHUNK)  # the original chunk where lowered chunk j starts ...
    last = ((j + 1) * _CHUNK * down - 1) // (up * _CHUNK)  # ... and where it ends
    out = np.zeros(n, np.float32)
    for chunk in (first, last):  # a lowered chunk (2/3 of an original one) overlaps at most two
        keep = chunk < n
        np.maximum.at(out, chunk[keep], probabilities[keep])
    return out


def _lowered_blocks(samples: np.ndarray) -> Iterator[np.ndarray]:
    """The audio resampled by up/down (`LOWERED_PASS`), in consecutive float32 blocks, together
    ceil(N * up / down) samples; each block is resampled with `_RESAMPLE_MARGIN` input samples on
    both sides, so the blocks join like one resampling of the whole."""
    from scipy.signal import resample_poly

    up, down = LOWERED_PASS
    total = samples.shape[0]
    step = CHUNKS_PER_PASS * _CHUNK * down  # input samples per block: a whole number of output chunks
    for start in range(0, total, step):
        end = min(start + step, total)
        lo, hi = max(start - _RESAMPLE_MARGIN * down, 0), min(end + _RESAMPLE_MARGIN * down, total)
        y = resample_poly(samples[lo:hi], up, down)
        skip = (start - lo) * up // down
        count = -(-(end - start) * up // down) if end == total else (end - start) * up // down
        yield y[skip:skip + count].astype(np.float32)


def _silero(blocks: Iterable[np.ndarray]) -> np.ndarray:
    """Silero probabilities of the audio given as consecutive blocks (float32 16 kHz), as
    faster-whisper computes them for the whole audio zero-padded to whole 512-sample chunks plus
    at least one padded sample: one per chunk, in passes of at most CHUNKS_PER_PASS chunks with the
    recurrent state and each chunk's 64-sample context carried over."""
    from faster_whisper.vad import get_vad_model

    session = get_vad_model().session
    state = np.zeros((1, 1, 128), np.float32), np.zeros((1, 1, 128), np.float32)
    previous_tail = np.zeros(_CONTEXT, np.float32)  # the first chunk sees silence before it
    leftover = np.zeros(0, np.float32)  # samples of an incomplete chunk carried to the next block
    outputs = []

    def run(chunks: np.ndarray) -> None:
        nonlocal state, previous_tail
        for first in range(0, chunks.shape[0], CHUNKS_PER_PASS):
            piece = chunks[first:first + CHUNKS_PER_PASS]
            context = np.empty((piece.shape[0], _CONTEXT), np.float32)
            context[0] = previous_tail
            context[1:] = piece[:-1, -_CONTEXT:]
            previous_tail = piece[-1, -_CONTEXT:].copy()
            output, *state = session.run(None, {"input": np.concatenate([context, piece], 1),
                                                "h": state[0], "c": state[1]})
            outputs.append(output)

    for block in blocks:
        block = np.asarray(block, dtype=np.float32)
        if leftover.shape[0]:
            block = np.concatenate([leftover, block])
        whole = block.shape[0] // _CHUNK
        if whole:
            run(block[:whole * _CHUNK].reshape(whole, _CHUNK))
        leftover = block[whole * _CHUNK:]
    tail = np.zeros((1, _CHUNK), np.float32)
    tail[0, :leftover.shape[0]] = leftover
    run(tail)
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
