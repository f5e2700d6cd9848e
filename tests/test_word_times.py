"""Words last at least a plausible time (issue 22): the recogniser gave "I" 400-401 ms, which went
as is into the ELAN tier and the HTML transcript."""

from __future__ import annotations

import pytest

from mmer.extractors.featureset import MIN_WORD_S, Word, plausible_word_times


def test_a_one_millisecond_word_gets_a_plausible_duration():
    words = [Word("I", 0.400, 0.401), Word("am", 0.62, 0.80), Word("so", 0.80, 0.801), Word("glad", 0.85, 1.2),
             Word("now", 1.5, 1.5005)]
    fixed = plausible_word_times(words)
    assert [w.start_s for w in fixed] == [w.start_s for w in words]  # starts never move
    assert fixed[0].end_s == pytest.approx(0.400 + MIN_WORD_S)  # room before "am"
    assert fixed[1] == words[1]  # long enough already
    assert fixed[2].end_s == pytest.approx(0.85)  # only up to where "glad" starts
    assert fixed[4].end_s == pytest.approx(1.5 + MIN_WORD_S)  # the last word
    assert all(a.end_s <= b.start_s for a, b in zip(fixed, fixed[1:]))  # never overlapping


def test_extraction_gives_words_a_plausible_duration(tmp_path):
    """Through the pipeline (a transcript cue of 1 ms over a silent WAV: no speech models needed)."""
    import wave

    from mmer.extractors.pipeline import ExtractionSettings, FeatureExtractor

    clip = tmp_path / "silence.wav"
    with wave.open(str(clip), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(b"\0\0" * 16000)
    srt = tmp_path / "words.srt"
    srt.write_text("1\n00:00:00,400 --> 00:00:00,401\nI\n", encoding="utf-8")
    features = FeatureExtractor(ExtractionSettings(transcript=str(srt), use_cache=False)).extract(clip)
    assert [(w.text, w.start_s) for w in features.words] == [("I", pytest.approx(0.4))]
    assert features.words[0].end_s == pytest.approx(0.4 + MIN_WORD_S)
