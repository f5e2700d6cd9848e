"""The HTML report for keyboard and screen-reader users, its time axis, and a moved report
(issue 22). Text-level checks on a hand-made result (the in-browser check is
tools/check_html_report.py, run by test_analyze_exports when Chromium is installed)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from mmer.analysis import ClipResult, EmotionScore, Segment
from mmer.extractors.featureset import ModalityStats, Word
from mmer.report_html import to_html

CSS = (Path(__file__).resolve().parents[1] / "mmer" / "report_assets" / "report.css").read_text()
JS = (Path(__file__).resolve().parents[1] / "mmer" / "report_assets" / "report.js").read_text()


def _result(file: str) -> ClipResult:
    scores = [EmotionScore("happy", 0.8, True, 0.2), EmotionScore("sad", 0.1, False, 0.2)]
    return ClipResult(file=file, model="lddu", duration_s=4.0, emotions=scores, transcript="hi there",
                      modalities=ModalityStats(), timings_s={},
                      segments=[Segment(0.0, 2.0, scores), Segment(2.0, 4.0, scores)],
                      words=[Word("hi", 0.1, 0.4), Word("there", 0.5, 0.9)])


class _Elements(HTMLParser):
    """Every start tag with its attributes, and which tags lie inside an aria-live region."""

    def __init__(self):
        super().__init__()
        self.tags, self.stack, self.inside_live = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if any("aria-live" in a for _, a in self.stack):
            self.inside_live.append((tag, attrs))
        if tag not in ("meta", "br", "img", "input", "line", "path", "rect"):
            self.stack.append((tag, attrs))

    def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
            pass


def _parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def test_transcript_words_are_keyboard_buttons(tmp_path):
    words = [a for tag, a in _parse(to_html([_result(str(tmp_path / "c.mp4"))], tmp_path / "r.html")).tags
             if "w" in a.get("class", "").split()]
    assert len(words) == 2
    assert all(a.get("tabindex") == "0" and a.get("role") == "button" for a in words)
    assert re.search(r'addEventListener\("keydown"[^}]*"Enter"', JS)  # Enter/Space seek like a click


def test_only_window_changes_are_announced(tmp_path):
    page = _parse(to_html([_result(str(tmp_path / "c.mp4"))], tmp_path / "r.html"))
    live = [a for _, a in page.tags if "aria-live" in a]
    assert [a.get("class") for a in live] == ["announce"]  # one live region per clip, not the "now" panel
    assert not any("clock" in a.get("class", "") for _, a in page.inside_live)  # the clock is not announced
    assert "announce.textContent = announcement(w)" in JS.split("function showWindow")[1].split("function update")[0]


def test_time_axis_shares_the_lanes_label_column():
    """The axis used a margin in its own smaller font's em (0.75 x 6.5em), so its labels sat left of
    the lanes' times; now it is a grid row with the lanes' columns."""
    rules = re.findall(r"([^{}]+)\{([^{}]*)\}", CSS)
    for selector, body in rules:
        if "grid-template-columns" in body and ".lane" in selector.split(","):
            assert ".axis-row" in [s.strip() for s in selector.split(",")], selector
    axis = [body for selector, body in rules if selector.strip() == ".axis"]
    assert axis and "margin-left" not in axis[0]


def test_a_moved_report_falls_back_to_the_clips_absolute_path(tmp_path):
    clip = tmp_path / "media" / "talk 1.mp4"
    html = to_html([_result(str(clip))], tmp_path / "reports" / "r.html")
    [media] = [a for tag, a in _parse(html).tags if tag == "video"]
    assert media["src"] == "../media/talk%201.mp4"
    assert media["data-fallback"] == clip.resolve().as_uri()
    assert 'getAttribute("data-fallback")' in JS
