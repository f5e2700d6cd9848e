"""The whole clip agrees with its windows, and windows too short to read are refused (issue 22).

Rule (`mmer.windows.consistent_with_windows`, docs/analyze.md "Windows"): an emotion judged
present, with a signal, in consecutive windows lasting together at least SUSTAINED_S seconds (or
the whole clip, when shorter) is present in the clip. Before, a clip could be "sad 0.00" as a whole
while its first 5 s window said "sad 0.996".
"""

from __future__ import annotations

import pytest

from mmer.analysis import AnalyzeOptions, Analyzer
from mmer.results import EmotionScore, Segment
from mmer.windows import MIN_WINDOW_S, SUSTAINED_S, consistent_with_windows, smallest_window_s
from mmer.errors import UserError
from tests.conftest import tiny_checkpoint

LABELS = ("happy", "sad")


def _scores(happy, sad, present=None, u=0.2):
    present = present or (happy >= 0.5, sad >= 0.5)
    return [EmotionScore("happy", happy, present[0], u), EmotionScore("sad", sad, present[1], u)]


def _windows(length, sad_probs, signal=None):
    signal = signal or [True] * len(sad_probs)
    return [Segment(k * length, (k + 1) * length, _scores(0.8, p, u=0.1 + 0.1 * k), signal=ok)
            for k, (p, ok) in enumerate(zip(sad_probs, signal))]


def test_the_issue_case_a_sustained_window_makes_the_clip_agree():
    clip = _scores(0.89, 0.0)  # happy 0.89, sad 0.00 as a whole
    windows = _windows(5.0, [0.996, 0.1, 0.2, 0.1])  # sad 0.996 for 0-5 s
    happy, sad = consistent_with_windows(clip, windows, 20.0)
    assert sad.present and sad.probability == pytest.approx(0.996) and sad.uncertainty == pytest.approx(0.1)
    assert happy == clip[0]  # already present, higher than its windows' lowest: unchanged


def test_consecutive_short_windows_count_together_and_a_short_run_does_not():
    clip = _scores(0.9, 0.1)
    run = _windows(2.0, [0.7, 0.6, 0.2, 0.2, 0.2])  # sad in 0-4 s: 4 s >= SUSTAINED_S
    assert SUSTAINED_S <= 4.0
    _, sad = consistent_with_windows(clip, run, 10.0)
    assert sad.present and sad.probability == pytest.approx(0.6)  # the lowest within the run
    assert sad.uncertainty == pytest.approx(0.2)  # the run's highest
    single = _windows(2.0, [0.2, 0.9, 0.2, 0.9, 0.2])  # 2 s runs only
    assert consistent_with_windows(clip, single, 10.0) == clip


def test_a_window_without_signal_breaks_a_run():
    clip = _scores(0.9, 0.1)
    windows = _windows(2.0, [0.7, 0.7, 0.7], signal=[True, False, True])
    assert consistent_with_windows(clip, windows, 6.0) == clip


def test_a_clip_shorter_than_the_stretch_needs_the_whole_clip():
    clip = _scores(0.9, 0.1)
    assert consistent_with_windows(clip, _windows(1.0, [0.8, 0.8]), 2.0)[1].present
    assert not consistent_with_windows(clip, _windows(1.0, [0.8, 0.2]), 2.0)[1].present


def test_the_clip_never_loses_an_emotion_and_only_rises():
    clip = _scores(0.9, 0.8)  # sad present as a whole, in no window
    assert consistent_with_windows(clip, _windows(5.0, [0.1, 0.1]), 10.0) == clip


@pytest.mark.parametrize("window", [0.01, 0.5, MIN_WINDOW_S - 0.01])
def test_windows_below_the_smallest_sensible_one_are_refused(tmp_path, window):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    with pytest.raises(UserError, match=r"window_s must be at least 1 seconds, got") as refused:
        Analyzer(AnalyzeOptions(model=str(checkpoint), device="cpu", threads=1, window_s=window))
    assert refused.value.parameter == "window_s"
    Analyzer(AnalyzeOptions(model=str(checkpoint), device="cpu", threads=1, window_s=MIN_WINDOW_S))


def test_smallest_window_holds_enough_video_frames():
    assert smallest_window_s(5.0) == MIN_WINDOW_S
    assert smallest_window_s(2.0) == pytest.approx(2.5)  # 5 frames at 2 fps


def test_cli_refuses_a_tiny_window_with_one_line(tmp_path):
    from tests.conftest import SAMPLE, mmer

    result = mmer("analyze", SAMPLE, "--window", "0.01", "--model", tiny_checkpoint(tmp_path / "tiny.safetensors"))
    assert result.exit_code == 2
    assert result.stderr.startswith("mmer: error: --window must be at least 1 seconds, got 0.01")
    assert len(result.stderr.strip().splitlines()) == 1
