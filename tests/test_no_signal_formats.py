"""A window with no face, no speech and no words says "no signal" in every format (issue 22), and
the CSV has one row per window. The results are hand-made (no extraction): window 1 has happy
present, window 2 has a signal but nothing present, window 3 has no usable stream."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import pytest

from mmer.analysis import NO_SIGNAL, NO_SIGNAL_WINDOW, ClipResult, EmotionScore, Segment
from mmer.export_elan import to_eaf
from mmer.export_vtt import NO_SIGNAL_CUE, to_vtt
from mmer.extractors.featureset import ModalityStats
from mmer.writers import NO_PREDICTION, NO_SIGNAL_CELL, to_csv, to_json

LABELS = ("happy", "sad")


def _scores(ps, present, u=0.25):
    return [EmotionScore(label, p, on, u) for label, p, on in zip(LABELS, ps, present)]


def _result(segments=True, clip_signal=True) -> ClipResult:
    evidence = {"visual": {"happy": 0.8, "sad": 0.1}, "audio": None, "text": None}
    windows = [Segment(0.0, 2.0, _scores([0.82, 0.1], [True, False]), evidence),
               Segment(2.0, 4.0, _scores([0.3, 0.1], [False, False]), evidence),
               Segment(4.0, 6.0, _scores([0.0, 0.0], [False, False], 1.0),
                       {"visual": None, "audio": None, "text": None}, signal=False, warnings=[NO_SIGNAL_WINDOW])]
    return ClipResult(file="clip.mp4", model="lddu", duration_s=6.0,
                      emotions=_scores([0.7, 0.1], [True, False]) if clip_signal else _scores([0, 0], [False, False], 1.0),
                      transcript="hi", modalities=ModalityStats(), timings_s={},
                      warnings=[] if clip_signal else [NO_SIGNAL], segments=windows if segments else None,
                      by_modality=evidence)


def test_json_windows_carry_signal_and_warnings():
    [data] = json.loads(to_json([_result()]))
    assert data["signal"] is True
    assert [s["signal"] for s in data["segments"]] == [True, True, False]
    assert [s["warnings"] for s in data["segments"]] == [[], [], [NO_SIGNAL_WINDOW]]
    [silent] = json.loads(to_json([_result(clip_signal=False)]))
    assert silent["signal"] is False and NO_SIGNAL in silent["warnings"]


def test_vtt_cue_says_no_signal():
    cues = to_vtt(_result()).strip().split("\n\n")[2:]
    assert cues[0].endswith("happy 0.82")
    assert cues[1].endswith("no emotion present (top: happy 0.30)")
    assert cues[2].endswith(NO_SIGNAL_CUE)
    assert "no emotion present" not in cues[2]


def test_eaf_has_a_signal_tier_on_windows_without_signal():
    root = ET.fromstring(to_eaf(_result(), None).split("\n", 1)[1])
    slots = {s.get("TIME_SLOT_ID"): int(s.get("TIME_VALUE")) for s in root.iter("TIME_SLOT")}
    [tier] = [t for t in root.iter("TIER") if t.get("TIER_ID") == "signal"]
    assert tier.get("LINGUISTIC_TYPE_REF") == "signal"
    spans = [(slots[a.get("TIME_SLOT_REF1")], slots[a.get("TIME_SLOT_REF2")], a.findtext("ANNOTATION_VALUE"))
             for a in tier.iter("ALIGNABLE_ANNOTATION")]
    assert spans == [(4000, 6000, "no signal")]
    assert {t.get("LINGUISTIC_TYPE_ID") for t in root.iter("LINGUISTIC_TYPE")} >= {"emotion", "signal", "words"}


def test_csv_has_clip_and_window_rows_and_explicit_predictions():
    rows = list(csv.DictReader(io.StringIO(to_csv([_result()], LABELS))))
    assert [(r["scope"], r["start_s"], r["end_s"]) for r in rows] == [
        ("clip", "0.000", "6.000"), ("window", "0.000", "2.000"), ("window", "2.000", "4.000"),
        ("window", "4.000", "6.000")]
    assert [r["predicted"] for r in rows] == ["happy", "happy", NO_PREDICTION, NO_SIGNAL_CELL]
    assert rows[1]["happy"] == "0.8200" and rows[1]["visual_happy"] == "0.8000" and rows[3]["visual_happy"] == ""
    assert rows[0]["transcript"] == "hi" and rows[1]["transcript"] == ""
    [clip_only] = list(csv.DictReader(io.StringIO(to_csv([_result(segments=False)], LABELS))))
    assert clip_only["scope"] == "clip"
    [silent, *_] = list(csv.DictReader(io.StringIO(to_csv([_result(clip_signal=False)], LABELS))))
    assert silent["predicted"] == NO_SIGNAL_CELL


def test_table_shows_no_signal_windows():
    from rich.console import Console

    from mmer.writers import clip_table

    buffer = io.StringIO()
    Console(file=buffer, width=120).print(clip_table(_result()))
    last_window_row = [line for line in buffer.getvalue().splitlines() if "4.0" in line and "6.0" in line]
    assert last_window_row and "no signal" in last_window_row[0]


@pytest.fixture
def plotted(tmp_path, monkeypatch):
    """The plot's axes as drawn (savefig stubbed to keep the figure open for inspection)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mmer.timeline_plot import plot_timeline

    kept = {}
    monkeypatch.setattr(plt, "close", lambda fig: kept.setdefault("fig", fig))
    plot_timeline(_result(), tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0
    return kept["fig"].axes[0]


def test_plot_shades_no_signal_shows_uncertainty_colours_ticks_and_whole_dots(plotted):
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_hex
    from matplotlib.patches import Rectangle

    from mmer.report_colours import emotion_colour

    ax = plotted
    shaded = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_label() == "no signal"]
    assert shaded and shaded[0].get_x() == pytest.approx(4.0)  # the no-signal window is shaded
    assert any(t.get_text() == "no signal" for t in ax.texts)
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(LABELS)  # one uncertainty band per emotion
    lines = {line.get_label(): to_hex(line.get_color()) for line in ax.lines if line.get_label() in LABELS}
    assert lines == {label: emotion_colour(k) for k, label in enumerate(LABELS)}  # the report's colours
    assert list(ax.get_xticks()) == [0.0, 2.0, 4.0, 6.0]  # window boundaries
    dots = [line for line in ax.lines if line.get_marker() == "o"]
    assert dots and all(not line.get_clip_on() for line in dots)  # a dot at probability 1 is not cut
