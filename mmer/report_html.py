"""`mmer analyze -f html`: one self-contained, offline HTML report for all inputs.

One section per input. An analysed clip gets its video (or audio) player, referenced by a path
relative to the report (never copied into it), with the absolute path tried when that fails (a
report moved to another folder); a timeline with one lane per emotion (per-window
probability as a step line, the uncertainty as a shaded band centred on it, the windows where the
emotion is judged present filled) whose cursor follows playback and which seeks on click; a "now"
table with the current window's probabilities, uncertainties and what the face, the voice and the
words say alone (small bars); the transcript, its words highlighted as they are spoken; the whole
clip's table; the warnings. A failed input shows its error.

Everything (CSS, JavaScript, SVG, the data as JSON) is inline: no network access is needed. The
timeline, tables and transcript are drawn here, so the report reads (and prints) without JavaScript;
the script (report_assets/report.js) only adds the cursor, highlighting and seeking.
"""

from __future__ import annotations

import json
from html import escape
from importlib import resources
from pathlib import Path
from typing import Sequence

from mmer.results import AnalyzeOutcome, ClipFailure, ClipResult, EmotionScore, ModalityEvidence, Segment
from mmer.media_links import absolute_media_url, relative_media_url
from mmer.report_colours import emotion_colour
from mmer.writers import EVIDENCE_STREAMS, STREAM_HEADINGS

AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".m4a"}
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
MAX_TICKS = 8


def _asset(name: str) -> str:
    return resources.files("mmer").joinpath("report_assets", name).read_text(encoding="utf-8")


def _bar(value: float | None) -> str:
    """A small horizontal bar (in the row's colour) and the number; a dash when the value is absent."""
    width = 0.0 if value is None else 100.0 * value
    number = "\u2013" if value is None else f"{value:.2f}"
    absent = " absent" if value is None else ""
    return (f'<span class="bar{absent}"><i style="width:{width:.1f}%"></i></span> '
            f'<span class="num">{number}</span>')


def _evidence_table(emotions: list[EmotionScore], evidence: ModalityEvidence, colours: list[str]) -> str:
    """Rows: emotions. Columns: probability, uncertainty, then each stream alone (bars)."""
    head = "".join(f'<th class="small">{STREAM_HEADINGS[m]}</th>' for m in EVIDENCE_STREAMS)
    rows = []
    for e, colour in zip(emotions, colours):
        alone = "".join(
            f'<td class="small ev-{m}">{_bar(None if evidence.get(m) is None else evidence[m][e.label])}</td>'
            for m in EVIDENCE_STREAMS)
        rows.append(f'<tr class="{"present" if e.present else ""}" style="--c:{colour}">'
                    f'<td class="label">{escape(e.label)}</td><td class="p">{_bar(e.probability)}</td>'
                    f'<td class="u num">{e.uncertainty:.2f}</td>{alone}</tr>')
    return ('<div class="table-scroll"><table class="evidence"><thead><tr><th>emotion</th><th>probability</th>'
            f'<th>uncert.</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def _windows(result: ClipResult) -> list[Segment]:
    """The clip's windows; a result analysed without windows is shown as one window."""
    if result.segments:
        return result.segments
    return [Segment(0.0, result.duration_s, result.emotions, result.by_modality)]


def _lane(k: int, label: str, colour: str, windows: list[Segment], duration: float) -> str:
    """One emotion's SVG lane: x in seconds (0..duration), y = 1 - probability."""
    shapes = []
    path = []
    for s in windows:
        e = s.emotions[k]
        x, w = s.start_s, max(s.end_s - s.start_s, 1e-6)
        low, high = max(0.0, e.probability - e.uncertainty / 2), min(1.0, e.probability + e.uncertainty / 2)
        shapes.append(f'<rect class="band" x="{x:.3f}" y="{1 - high:.4f}" width="{w:.3f}" height="{high - low:.4f}">'
                      f'<title>{escape(label)} {s.start_s:.1f}\u2013{s.end_s:.1f} s: {e.probability:.2f} '
                      f'(uncertainty {e.uncertainty:.2f}){", present" if e.present else ""}</title></rect>')
        if e.present:
            shapes.append(f'<rect class="on" x="{x:.3f}" y="{1 - e.probability:.4f}" width="{w:.3f}" '
                          f'height="{e.probability:.4f}"/>')
        path.append(f"M{x:.3f} {1 - e.probability:.4f}" if not path else f"V{1 - e.probability:.4f}")
        path.append(f"H{x + w:.3f}")
    ns = 'vector-effect="non-scaling-stroke"'
    return (f'<div class="lane" style="--c:{colour}"><span class="lane-label">{escape(label)}</span>'
            f'<svg viewBox="0 0 {duration:.3f} 1" preserveAspectRatio="none" role="img" '
            f'aria-label="{escape(label)}: probability per window">'
            f'{"".join(shapes)}<line class="half" x1="0" x2="{duration:.3f}" y1="0.5" y2="0.5" {ns}/>'
            f'<path class="prob" d="{" ".join(path)}" {ns}/>'
            f'<line class="cursor" x1="0" x2="0" y1="0" y2="1" {ns}/></svg></div>')


def _axis(duration: float) -> str:
    step = next((s for s in TICK_STEPS_S if duration / s <= MAX_TICKS), TICK_STEPS_S[-1])
    ticks, t = [], 0.0
    while t <= duration + 1e-9:
        label = f"{int(t // 60)}:{int(t % 60):02d}" if duration >= 60 else f"{t:g} s"
        ticks.append(f'<span style="left:{100 * t / duration:.2f}%">{label}</span>')
        t += step
    # the axis sits in a row with the lanes' columns, so its 0 is the lanes' 0 whatever the fonts
    return f'<div class="axis-row" aria-hidden="true"><span></span><div class="axis">{"".join(ticks)}</div></div>'


def _json_for_script(data: dict) -> str:
    """JSON safe inside <script>: '<' escaped, so '</script>' or '<!--' in a value cannot end it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def _clip_data(result: ClipResult, windows: list[Segment], duration: float) -> dict:
    """What report.js reads: windows (probabilities, uncertainties, decisions, evidence in label
    order) and word times."""
    labels = [e.label for e in result.emotions]
    return {
        "file": result.file, "duration": duration, "labels": labels, "streams": list(EVIDENCE_STREAMS),
        "windows": [{"start": s.start_s, "end": s.end_s, "signal": s.signal,
                     "p": [round(e.probability, 4) for e in s.emotions],
                     "u": [round(e.uncertainty, 4) for e in s.emotions], "present": [e.present for e in s.emotions],
                     "evidence": {m: None if s.by_modality.get(m) is None
                                  else [round(s.by_modality[m][name], 4) for name in labels]
                                  for m in EVIDENCE_STREAMS}}
                    for s in windows],
        "words": [[w.text, round(w.start_s, 3), round(w.end_s, 3)] for w in result.words],
    }


def _clip_section(n: int, result: ClipResult, report: Path | None) -> str:
    colours = [emotion_colour(k) for k in range(len(result.emotions))]
    windows = _windows(result)
    duration = max(result.duration_s, windows[-1].end_s, 1e-3)
    source = relative_media_url(result.file, report)
    fallback = absolute_media_url(result.file)  # tried when the relative path fails (the report was moved)
    tag = "audio" if Path(result.file).suffix.lower() in AUDIO_SUFFIXES else "video"
    window_note = (f"windows of {windows[0].end_s - windows[0].start_s:g} s" if result.segments
                   else "one window (the whole clip)")
    chips = "".join(f'<span class="chip" style="--c:{c}">{escape(e.label)} {e.probability:.2f}</span>'
                    for e, c in zip(result.emotions, colours) if e.present) or '<span class="muted">none</span>'
    lanes = "".join(_lane(k, e.label, c, windows, duration) for k, (e, c) in enumerate(zip(result.emotions, colours)))
    # each word is a button: reachable with Tab, Enter or Space seeks to it (as a click does)
    words = " ".join(f'<span class="w" role="button" tabindex="0" data-start="{w.start_s:.3f}" data-end="{w.end_s:.3f}" '
                     f'title="play from {w.start_s:.1f} s">{escape(w.text)}</span>'
                     for w in result.words)
    transcript = words or escape(result.transcript) or '<span class="muted">(no words)</span>'
    warnings = "".join(f"<li>{escape(w)}</li>" for w in result.warnings)
    first = windows[0]
    return f"""<section class="clip" id="clip-{n}" data-clip="{n}">
<h2>{escape(Path(result.file).name)}</h2>
<p class="meta">{escape(result.file)} · {result.duration_s:.1f} s · model {escape(result.model)} · {window_note}</p>
<p>Present in the whole clip: {chips}</p>
<div class="player-row">
<div><{tag} class="media" controls preload="metadata" src="{escape(source)}" data-fallback="{escape(fallback)}"></{tag}>
<p class="media-missing" hidden>The media could not be played: it is expected at {escape(source)} (relative to this report) or at {escape(fallback)}, in a format this browser plays.</p></div>
<div class="now"><h3>At <span class="clock">0:00.0</span> · window <span class="now-span">{first.start_s:.1f}\u2013{first.end_s:.1f} s</span></h3>
<p class="announce" aria-live="polite" aria-atomic="true"></p>
{_evidence_table(first.emotions, first.by_modality, colours)}</div>
</div>
<h3>Timeline</h3>
<div class="timeline" tabindex="0" aria-label="Timeline: click to seek; left and right arrow keys step by one window">
{lanes}
{_axis(duration)}
</div>
<h3>Transcript</h3>
<p class="transcript">{transcript}</p>
<h3>Whole clip</h3>
{_evidence_table(result.emotions, result.by_modality, colours)}
{f'<h3>Warnings</h3><ul class="warnings">{warnings}</ul>' if warnings else ""}
<script type="application/json" class="clip-data">{_json_for_script(_clip_data(result, windows, duration))}</script>
</section>"""


def _failure_section(n: int, failure: ClipFailure) -> str:
    return (f'<section class="clip failed" id="clip-{n}"><h2>{escape(Path(failure.file).name)}</h2>'
            f'<p class="meta">{escape(failure.file)}</p>'
            f'<p class="error">Could not be analysed: {escape(failure.error)}</p></section>')


def to_html(outcomes: Sequence[AnalyzeOutcome], report: Path | None) -> str:
    """The report for all outcomes, in input order, to be written at `report` (media paths are
    made relative to its folder; None: relative to the current folder)."""
    sections, entries = [], []
    for n, o in enumerate(outcomes, start=1):
        if isinstance(o, ClipFailure):
            sections.append(_failure_section(n, o))
            entries.append(f'<li><a href="#clip-{n}">{escape(o.file)}</a> \u2013 failed</li>')
        else:
            sections.append(_clip_section(n, o, report))
            entries.append(f'<li><a href="#clip-{n}">{escape(o.file)}</a> \u2013 '
                           f'{escape(", ".join(o.predicted) or "no emotion present")}</li>')
    analysed = sum(isinstance(o, ClipResult) for o in outcomes)
    failed = len(outcomes) - analysed
    summary = f"{analysed} clip{'s' if analysed != 1 else ''} analysed" + (f", {failed} failed" if failed else "")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="mmer analyze">
<title>Emotion report ({escape(summary)})</title>
<style>
{_asset("report.css")}</style>
</head>
<body>
<header>
<h1>Emotion report</h1>
<p class="muted">{escape(summary)} by <code>mmer analyze</code>.</p>
<nav><ol>{"".join(entries)}</ol></nav>
<p class="legend">Timeline: one lane per emotion; the line is the probability in each window, the shaded
band is centred on it and as tall as the model's uncertainty (0 = certain, 1 = no idea), filled windows
are those where the emotion is judged present. Click the timeline or a word to seek. face / voice / words:
what each stream says on its own (\u2013 where that stream is absent).</p>
</header>
<main>
{chr(10).join(sections)}
</main>
<script>
{_asset("report.js")}</script>
</body>
</html>
"""
