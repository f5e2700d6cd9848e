"""Decoded audio is placed at its presentation time (issue 22, re-encoding stability): samples a
codec times before the media's start are dropped, not counted from time 0 (a VP9/Opus re-encode of
the sample clip shifted its whole voice track by 5 ms, which moved the voice descriptors)."""

from __future__ import annotations

import numpy as np

from mmer.extractors.media import AUDIO_RATE_HZ, _from_media_start


def test_audio_timed_before_the_start_is_dropped():
    samples = np.arange(1000, dtype=np.float32)
    audio = _from_media_start(samples, -0.005)  # first sample 5 ms before time 0: 80 samples at 16 kHz
    assert audio.start_s == 0.0
    assert audio.samples[0] == 0.005 * AUDIO_RATE_HZ and audio.samples.shape[0] == 920


def test_audio_starting_at_or_after_zero_is_kept_whole():
    samples = np.ones(100, np.float32)
    assert _from_media_start(samples, 0.0).samples.shape[0] == 100
    later = _from_media_start(samples, 0.25)
    assert later.start_s == 0.25 and later.samples.shape[0] == 100
    assert _from_media_start(samples, -1.0).samples.shape[0] == 0  # all of it before the start
