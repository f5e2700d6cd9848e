"""`mmer analyze -f vtt`: a clip's per-window emotions as WebVTT subtitles (one cue per window).

Any video player that reads subtitles then shows, while the clip plays, the emotions judged present
in the current window: "happy 0.82 · surprise 0.41" (probabilities, most probable first).
"""

from __future__ import annotations

from mmer.results import ClipResult, Segment
from mmer.errors import UserError

CUE_SEPARATOR = " · "


def vtt_timestamp(seconds: float) -> str:
    """Seconds -> the WebVTT cue timestamp HH:MM:SS.mmm (hours always written)."""
    millis = max(0, int(round(seconds * 1000)))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def _escape(text: str) -> str:
    """Cue payload / note text: escape the characters WebVTT's cue text syntax reserves, and never
    let '-->' appear (it would end a note or start a timing line)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("-->", "--&gt;")


NO_SIGNAL_CUE = "no signal (no face, no speech, no words)"
"""The cue of a window without any usable stream: nothing can be said about it."""


def cue_text(segment: Segment) -> str:
    """'happy 0.82 · surprise 0.41': the emotions present in the window, most probable first; a
    window without any reads 'no emotion present (top: neutral 0.31)'; a window without any usable
    stream reads NO_SIGNAL_CUE."""
    if not segment.signal:
        return NO_SIGNAL_CUE
    present = sorted((e for e in segment.emotions if e.present), key=lambda e: -e.probability)
    if present:
        return CUE_SEPARATOR.join(f"{e.label} {e.probability:.2f}" for e in present)
    top = max(segment.emotions, key=lambda e: e.probability)
    return f"no emotion present (top: {top.label} {top.probability:.2f})"


def to_vtt(result: ClipResult) -> str:
    """The WebVTT file of one analysed clip; needs its per-window results (`segments`)."""
    if not result.segments:
        raise UserError(f"{result.file}: WebVTT export needs per-window results (analyse with a window)")
    note = (f"NOTE mmer analyze: {result.file}, model {result.model}; one cue per window, "
            "the emotions judged present with their probabilities")
    blocks = ["WEBVTT", " ".join(_escape(note).split())]
    for n, segment in enumerate(result.segments, start=1):
        blocks.append(f"{n}\n{vtt_timestamp(segment.start_s)} --> {vtt_timestamp(segment.end_s)}\n"
                      f"{_escape(cue_text(segment))}")
    return "\n\n".join(blocks) + "\n"
