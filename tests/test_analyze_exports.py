"""`mmer analyze -f html | eaf | vtt`: the interactive report, the ELAN and the WebVTT exports,
word times from extraction to the result, automatic windows, per-clip output paths, and (when
Chromium is installed) the report working in a real browser.

The checkpoint is a tiny random-weight network (see test_analyze): the tests check the structure
and the numbers carried into each format, not accuracy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from mmer.extractors.featureset import ModalityStats, Word
from mmer.analysis import (AnalyzeOptions, Analyzer, ClipFailure, ClipResult, EmotionScore, Segment,
                               auto_window_s)
from mmer.errors import UserError
from mmer.export_paths import export_paths
from mmer.export_vtt import cue_text, to_vtt
from mmer.report_html import to_html
# The sample clip, its labels and test_analyze's fixtures (tiny random-weight checkpoint, private feature cache)
from tests.test_analyze import LABELS, SAMPLE, checkpoint, cli, feature_cache, workdir  # noqa: F401 (fixtures)
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # real extractor networks, shipped models or many training runs

CHECK_SCRIPT = REPO / "tools" / "check_html_report.py"


@pytest.fixture(scope="module")
def result(checkpoint, feature_cache) -> ClipResult:
    """The sample clip with automatic windows, as the timeline formats analyse it."""
    analyzer = Analyzer(AnalyzeOptions(model=str(checkpoint), device="cpu", threads=1, auto_window=True,
                                       cache_dir=feature_cache))
    return analyzer.analyze_file(SAMPLE)


def toy_result(labels=("happy", "sad"), file="clip.mp4") -> ClipResult:
    """A hand-made two-window result (no extraction): happy present in window 1, nothing in window 2."""
    def scores(ps, present):
        return [EmotionScore(label, p, on, 0.25) for label, p, on in zip(labels, ps, present)]

    return ClipResult(file=file, model="lddu", duration_s=4.0, emotions=scores([0.7, 0.2], [True, False]),
                      transcript="hi there", modalities=ModalityStats(), timings_s={},
                      segments=[Segment(0.0, 2.0, scores([0.82, 0.41], [True, True])),
                                Segment(2.0, 4.0, scores([0.3, 0.1], [False, False]))],
                      words=[Word("hi", 0.1, 0.4), Word("there", 0.4, 0.4)])


# ----------------------------------------------------------------------------- windows and words


@pytest.mark.parametrize("duration, expected", [(0.0, 2.0), (6.0, 2.0), (75.0, 2.0), (105.0, 4.0), (600.0, 5.0)])
def test_auto_window_grows_with_the_clip_within_2_to_5_s(duration, expected):
    assert auto_window_s(duration) == expected


def test_timeline_formats_get_windows_without_window_option(result, checkpoint, feature_cache):
    assert [(s.start_s, s.end_s) for s in result.segments] == [(0.0, 2.0), (2.0, 4.0), (4.0, pytest.approx(result.duration_s))]
    given = Analyzer(AnalyzeOptions(model=str(checkpoint), device="cpu", window_s=3.0, auto_window=True,
                                    cache_dir=feature_cache)).analyze_file(SAMPLE)
    assert len(given.segments) == 2  # an explicit --window wins


def test_words_carry_their_times_into_the_result_and_the_cache(result, checkpoint, feature_cache):
    assert result.words and " ".join(w.text for w in result.words) == result.transcript
    starts = [w.start_s for w in result.words]
    assert starts == sorted(starts) and all(0 <= w.start_s <= w.end_s <= result.duration_s + 0.5 for w in result.words)
    again = Analyzer(AnalyzeOptions(model=str(checkpoint), device="cpu", cache_dir=feature_cache)).analyze_file(SAMPLE)
    assert "asr" not in again.timings_s  # a cache hit, with the same words and times
    assert again.words == result.words


# ----------------------------------------------------------------------------- HTML


class ReportParser(HTMLParser):
    """Collects every start tag (name, attributes) and the text of each <script>."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._script: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def with_class(self, tag: str, name: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag and name in a.get("class", "").split()]


def test_html_report_is_self_contained_and_carries_the_results(result, checkpoint, tmp_path):
    report = tmp_path / "out" / "report.html"
    report.parent.mkdir()  # mmer creates no folders (docs/analyze.md, --output)
    missing = tmp_path / "missing.mp4"
    run = cli(str(SAMPLE), str(missing), "--model", str(checkpoint), "-f", "html", "-o", str(report), "--threads", "1")
    assert run.exit_code == 1, run.output  # the failed input: one line on stderr, the report still written
    assert f"mmer: error: {missing}: no such file or folder" in run.stderr.splitlines()
    text = report.read_text(encoding="utf-8")
    page = ReportParser()
    page.feed(text)

    # offline: no URL to anywhere, no external stylesheet/script, the video referenced, not embedded
    assert not re.search(r"(https?:)?//[\w.-]+\.[a-z]{2,}", text)
    assert not [a for t, a in page.tags if t == "link"] and all("src" not in a for a, _ in page.scripts)
    assert "@media print" in text and "@media (max-width" in text
    [video] = [a for t, a in page.tags if t == "video"]
    assert video["src"] == os.path.relpath(SAMPLE, report.parent) and (report.parent / video["src"]).resolve() == SAMPLE
    assert len(text.encode()) < 200_000  # the 160 kB clip is not inside

    # one section per input, in order; the failed one shows its error
    sections = page.with_class("section", "clip")
    assert [s["id"] for s in sections] == ["clip-1", "clip-2"]
    assert "failed" in sections[1]["class"] and "no such file or folder" in text.split('id="clip-2"')[1]

    # the embedded data: windows, probabilities, uncertainties, evidence and word times of the result
    [(_, raw)] = [(a, t) for a, t in page.scripts if a.get("type") == "application/json"]
    data = json.loads(raw)
    assert data["labels"] == LABELS and data["file"] == str(SAMPLE)
    assert [(w["start"], w["end"]) for w in data["windows"]] == [(s.start_s, s.end_s) for s in result.segments]
    for window, segment in zip(data["windows"], result.segments):
        assert window["p"] == pytest.approx([e.probability for e in segment.emotions], abs=1e-4)
        assert window["u"] == pytest.approx([e.uncertainty for e in segment.emotions], abs=1e-4)
        assert window["present"] == [e.present for e in segment.emotions]
        assert set(window["evidence"]) == {"visual", "audio", "text"}
    assert data["words"] == [[w.text, pytest.approx(w.start_s, abs=1e-3), pytest.approx(w.end_s, abs=1e-3)]
                             for w in result.words]

    # drawn parts: a lane per emotion, a word span per word (timed), the now / whole-clip tables, the script
    assert len(page.with_class("div", "lane")) == len(LABELS)
    assert len(page.with_class("line", "cursor")) == len(LABELS)
    spans = page.with_class("span", "w")
    assert [float(s["data-start"]) for s in spans] == pytest.approx([w.start_s for w in result.words], abs=1e-3)
    assert len(page.with_class("table", "evidence")) == 2
    assert any("setupClip" in t for a, t in page.scripts if not a)


def test_html_text_cannot_break_out_of_its_elements():
    hostile = toy_result(labels=("</script><b>x", "a&b"), file="we<em>rd</script>.mp4")
    text = to_html([hostile, ClipFailure("<img src=x>.mp4", "bad <b>input</b>")], None)
    page = ReportParser()
    page.feed(text)
    assert not [t for t, _ in page.tags if t in ("b", "em", "img")]
    [(_, raw)] = [(a, t) for a, t in page.scripts if a.get("type") == "application/json"]
    assert json.loads(raw)["labels"] == ["</script><b>x", "a&b"]


# ----------------------------------------------------------------------------- ELAN


EAF_CHILD_ORDER = ["HEADER", "TIME_ORDER", "TIER", "LINGUISTIC_TYPE", "LOCALE", "LANGUAGE", "CONSTRAINT",
                   "CONTROLLED_VOCABULARY", "LEXICON_REF", "EXTERNAL_REF"]
"""The element order of EAF 3.0's ANNOTATION_DOCUMENT (xsd:sequence)."""


def test_eaf_export_follows_the_eaf_3_structure(result, checkpoint, tmp_path):
    out = tmp_path / "elan"
    out.mkdir()
    run = cli(str(SAMPLE), "--model", str(checkpoint), "-f", "eaf", "-o", str(out))
    assert run.exit_code == 0, run.output
    path = out / "sample_joy.eaf"
    root = ET.parse(path).getroot()
    assert root.tag == "ANNOTATION_DOCUMENT" and root.get("FORMAT") == root.get("VERSION") == "3.0"
    assert root.get("AUTHOR") and re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", root.get("DATE"))
    order = [EAF_CHILD_ORDER.index(child.tag) for child in root]
    assert order == sorted(order) and order[:2] == [0, 1]

    header = root.find("HEADER")
    assert header.get("TIME_UNITS") == "milliseconds"
    media = header.find("MEDIA_DESCRIPTOR")
    assert media.get("MEDIA_URL") == SAMPLE.as_uri() and media.get("MIME_TYPE") == "video/mp4"
    assert (path.parent / media.get("RELATIVE_MEDIA_URL")).resolve() == SAMPLE

    slots = {s.get("TIME_SLOT_ID"): int(s.get("TIME_VALUE")) for s in root.iter("TIME_SLOT")}
    assert list(slots.values()) == sorted(slots.values()) and len(set(slots.values())) == len(slots)
    types = {t.get("LINGUISTIC_TYPE_ID"): t for t in root.findall("LINGUISTIC_TYPE")}
    ids = [a.get("ANNOTATION_ID") for a in root.iter("ALIGNABLE_ANNOTATION")]
    assert len(ids) == len(set(ids)) and header.find("PROPERTY").text == str(len(ids))

    tiers = {t.get("TIER_ID"): t for t in root.findall("TIER")}
    assert list(tiers) == [*LABELS, "signal", "transcript"]
    for tier_id, tier in tiers.items():
        assert types[tier.get("LINGUISTIC_TYPE_REF")].get("TIME_ALIGNABLE") == "true"
        spans = [(slots[a.get("TIME_SLOT_REF1")], slots[a.get("TIME_SLOT_REF2")], a.findtext("ANNOTATION_VALUE"))
                 for a in tier.iter("ALIGNABLE_ANNOTATION")]
        assert all(a < b for a, b, _ in spans) and all(b1 <= a2 for (_, b1, _), (a2, _, _) in zip(spans, spans[1:]))
        if tier_id == "transcript":
            assert [v for _, _, v in spans] == [w.text for w in result.words]
            assert spans[0][0] == round(result.words[0].start_s * 1000)
            continue
        if tier_id == "signal":  # the windows without any usable stream
            assert spans == [(round(s.start_s * 1000), round(s.end_s * 1000), "no signal")
                             for s in result.segments if not s.signal]
            continue
        k = LABELS.index(tier_id)
        expected = [(round(s.start_s * 1000), round(s.end_s * 1000),
                     f"{s.emotions[k].probability:.2f} (uncertainty {s.emotions[k].uncertainty:.2f})")
                    for s in result.segments if s.emotions[k].present]
        assert spans == expected

    # an independent EAF reader (pympi-ling) opens it the same way
    from pympi.Elan import Eaf

    eaf = Eaf(str(path))
    assert [v for _, _, v in eaf.get_annotation_data_for_tier("transcript")] == [w.text for w in result.words]
    assert sorted(eaf.get_tier_names()) == sorted([*LABELS, "signal", "transcript"])
    assert eaf.media_descriptors[0]["MEDIA_URL"] == SAMPLE.as_uri()


# ----------------------------------------------------------------------------- WebVTT

TIMESTAMP = r"(?:\d{2,}:)?[0-5]\d:[0-5]\d\.\d{3}"
TIMING_LINE = re.compile(rf"^({TIMESTAMP})[ \t]+-->[ \t]+({TIMESTAMP})(?:[ \t]+\S.*)?$")


def _seconds(stamp: str) -> float:
    parts = [float(p) for p in stamp.split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def strict_vtt_cues(text: str) -> list[tuple[float, float, str]]:
    """Parse WebVTT following the spec's file and cue grammar strictly (signature, blank-line
    separated blocks, NOTE blocks, optional identifier, timing line, payload without '-->' or
    blank lines, start < end, starts not decreasing); AssertionError on any deviation."""
    assert "\r" not in text and text.endswith("\n")
    header, *blocks = text.rstrip("\n").split("\n\n")
    assert re.fullmatch(r"WEBVTT(?:[ \t][^\n]*)?", header.split("\n")[0]) and "-->" not in header
    cues, last_start = [], 0.0
    for block in blocks:
        lines = block.split("\n")
        assert all(lines), "blank line inside a block"
        if lines[0] == "NOTE" or lines[0].startswith(("NOTE ", "NOTE\t")):
            assert "-->" not in block
            continue
        if "-->" not in lines[0]:
            lines = lines[1:]  # cue identifier
        match = TIMING_LINE.match(lines[0])
        assert match, f"bad timing line {lines[0]!r}"
        start, end = map(_seconds, match.groups())
        assert start < end and start >= last_start
        payload = lines[1:]
        assert payload and not any("-->" in line for line in payload)
        assert not re.search(r"&(?!(amp|lt|gt|nbsp|lrm|rlm);)|<", "\n".join(payload)), "unescaped markup"
        cues.append((start, end, "\n".join(payload)))
        last_start = start
    return cues


def test_vtt_export_is_valid_webvtt_with_one_cue_per_window(result, checkpoint):
    run = cli(str(SAMPLE), "--model", str(checkpoint), "-f", "vtt")
    assert run.exit_code == 0, run.output
    cues = strict_vtt_cues(run.stdout)
    assert [(a, b) for a, b, _ in cues] == [(s.start_s, pytest.approx(s.end_s, abs=1e-3)) for s in result.segments]
    assert [t for _, _, t in cues] == [cue_text(s) for s in result.segments]
    import webvtt  # webvtt-py: an independent reader

    parsed = webvtt.from_string(run.stdout)
    assert [c.text for c in parsed] == [t for _, _, t in cues]


def test_vtt_cue_lists_present_emotions_most_probable_first():
    first, second = toy_result().segments
    assert cue_text(first) == "happy 0.82 · sad 0.41"
    assert cue_text(second) == "no emotion present (top: happy 0.30)"
    odd = toy_result(labels=("a<b", "x-->y"), file="we-->ird.mp4")
    strict_vtt_cues(to_vtt(odd))  # markup and '-->' escaped in the note and the cues


# ----------------------------------------------------------------------------- several inputs, paths


def test_several_inputs_write_one_file_per_clip_into_the_output_folder(checkpoint, feature_cache, tmp_path):
    twin = tmp_path / "other" / SAMPLE.name
    twin.parent.mkdir()
    shutil.copy(SAMPLE, twin)
    out = tmp_path / "subtitles"
    out.mkdir()  # mmer creates no folders (docs/analyze.md, --output)
    run = cli(str(SAMPLE), str(twin), str(tmp_path / "missing.mp4"), "--model", str(checkpoint), "-f", "vtt", "-o", str(out))
    assert run.exit_code == 1, run.output
    assert sorted(p.name for p in out.iterdir()) == ["sample_joy.vtt", "sample_joy_2.vtt"]
    assert "missing.mp4: no such file or folder" in run.stderr
    for path in out.iterdir():
        strict_vtt_cues(path.read_text(encoding="utf-8"))


def test_several_inputs_need_an_output_folder_before_any_media_is_read(checkpoint, tmp_path):
    run = cli(str(SAMPLE), str(SAMPLE), "--model", str(checkpoint), "-f", "eaf")
    assert run.exit_code == 2 and "pass --output FOLDER" in run.stderr
    existing = tmp_path / "file.eaf"
    existing.write_text("x")
    run = cli(str(SAMPLE), str(SAMPLE), "--model", str(checkpoint), "-f", "eaf", "-o", str(existing))
    assert run.exit_code == 2 and "must name a folder" in run.stderr


def test_export_paths_for_one_input(tmp_path):
    r = toy_result(file="clips/talk.mp4")
    assert export_paths(None, [r], 1, ".vtt") == [(r, None)]
    assert export_paths(tmp_path / "x.vtt", [r], 1, ".vtt") == [(r, tmp_path / "x.vtt")]
    assert export_paths(tmp_path, [r], 1, ".vtt") == [(r, tmp_path / "talk.vtt")]
    with pytest.raises(UserError):
        export_paths(None, [r], 2, ".vtt")


# ----------------------------------------------------------------------------- a real browser


def test_report_plays_seeks_and_logs_no_error_in_headless_chromium(checkpoint, tmp_path):
    """tools/check_html_report.py on a fresh report: skipped, with the reason, without Chromium."""
    sys.path.insert(0, str(CHECK_SCRIPT.parent))
    try:
        from check_html_report import find_browser
    finally:
        sys.path.remove(str(CHECK_SCRIPT.parent))
    if find_browser() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the in-browser report check did not run")
    pytest.importorskip("websocket", reason="websocket-client (test extra) is needed to drive Chromium")
    report = tmp_path / "report.html"
    run = cli(str(SAMPLE), "--model", str(checkpoint), "-f", "html", "-o", str(report))
    assert run.exit_code == 0, run.output
    check = subprocess.run([sys.executable, str(CHECK_SCRIPT), str(report), "--screenshot", str(tmp_path / "shot.png")],
                           capture_output=True, text=True, timeout=180)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (tmp_path / "shot.png").stat().st_size > 10_000
