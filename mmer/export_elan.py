"""`mmer analyze -f eaf`: a clip's results as an ELAN annotation document (EAF 3.0 XML).

Tiers: one per emotion, with an annotation on every window where the emotion is judged present
(value "0.82 (uncertainty 0.41)"); a `signal` tier with a "no signal" annotation on every window
without any usable stream (no face, no speech, no words: an empty emotion tier there means "not
known", not "absent"); and a `transcript` tier with one annotation per word (from the word times of
speech recognition or of the subtitle cues). The media descriptor points at the clip
(absolute file:// URL, plus the path relative to the .eaf file, which ELAN tries first when the
folder has moved). Times are integer milliseconds.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from pathlib import Path

from mmer.results import ClipResult
from mmer.errors import UserError
from mmer.media_links import absolute_media_url, relative_media_url

EAF_VERSION = "3.0"
EAF_SCHEMA_URL = "http://www.mpi.nl/tools/elan/EAFv3.0.xsd"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
EMOTION_TYPE, WORDS_TYPE = "emotion", "words"
"""Linguistic types of the emotion tiers and of the transcript tier (both time-alignable)."""
TRANSCRIPT_TIER = "transcript"
SIGNAL_TIER, SIGNAL_TYPE, NO_SIGNAL_VALUE = "signal", "signal", "no signal"
"""The tier (and its linguistic type) marking the windows without any usable stream, and its value."""
MIME_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska", ".avi": "video/x-msvideo",
              ".webm": "video/webm", ".flv": "video/x-flv", ".wav": "audio/x-wav", ".mp3": "audio/mpeg",
              ".flac": "audio/flac", ".m4a": "audio/mp4"}
"""MEDIA_DESCRIPTOR MIME_TYPE by suffix (the media suffixes `mmer analyze` reads)."""
# ELAN's four standard tier constraints, declared in every document it writes.
CONSTRAINTS = {
    "Time_Subdivision": "Time subdivision of parent annotation's time interval, no time gaps allowed within this interval",
    "Symbolic_Subdivision": "Symbolic subdivision of a parent annotation. Annotations refering to the same parent are ordered",
    "Symbolic_Association": "1-1 association with a parent annotation",
    "Included_In": "Time alignable annotations within the parent annotation's time interval, gaps are allowed",
}


def _millis(seconds: float) -> int:
    return max(0, int(round(seconds * 1000)))


def _intervals(result: ClipResult) -> dict[str, list[tuple[int, int, str]]]:
    """Tier id -> [(start ms, end ms, value)], each tier's annotations in time order, never
    overlapping and never empty (ELAN refuses both)."""
    tiers: dict[str, list[tuple[int, int, str]]] = {e.label: [] for e in result.emotions}
    for segment in result.segments or []:
        for e in segment.emotions:
            if e.present:
                tiers[e.label].append((_millis(segment.start_s), _millis(segment.end_s),
                                       f"{e.probability:.2f} (uncertainty {e.uncertainty:.2f})"))
    signal_id = SIGNAL_TIER if SIGNAL_TIER not in tiers else f"{SIGNAL_TIER} (windows)"
    tiers[signal_id] = [(_millis(s.start_s), _millis(s.end_s), NO_SIGNAL_VALUE)
                        for s in result.segments or [] if not s.signal]
    words, previous_end = [], 0
    for w in result.words:
        start = max(_millis(w.start_s), previous_end)
        end = max(_millis(w.end_s), start + 1)
        words.append((start, end, w.text))
        previous_end = end
    transcript_id = TRANSCRIPT_TIER if TRANSCRIPT_TIER not in tiers else f"{TRANSCRIPT_TIER} (words)"
    tiers[transcript_id] = words
    return tiers


def to_eaf(result: ClipResult, document: Path | None, created: dt.datetime | None = None) -> str:
    """The EAF 3.0 document of one analysed clip, to be written at `document` (None: the current
    folder; the relative media URL is computed from there). Needs per-window results."""
    if result.segments is None:
        raise UserError(f"{result.file}: ELAN export needs per-window results (analyse with a window)")
    created = created or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    root = ET.Element("ANNOTATION_DOCUMENT", {
        "AUTHOR": "mmer analyze", "DATE": created.isoformat(), "FORMAT": EAF_VERSION, "VERSION": EAF_VERSION,
        "xmlns:xsi": XSI, "xsi:noNamespaceSchemaLocation": EAF_SCHEMA_URL})
    header = ET.SubElement(root, "HEADER", {"MEDIA_FILE": "", "TIME_UNITS": "milliseconds"})
    relative = relative_media_url(result.file, document)
    ET.SubElement(header, "MEDIA_DESCRIPTOR", {
        "MEDIA_URL": absolute_media_url(result.file),
        "MIME_TYPE": MIME_TYPES.get(Path(result.file).suffix.lower(), "unknown"),
        "RELATIVE_MEDIA_URL": relative if relative.startswith(("../", "file:")) else f"./{relative}"})

    tiers = _intervals(result)
    times = sorted({t for annotations in tiers.values() for a, b, _ in annotations for t in (a, b)})
    slot_ids = {t: f"ts{n}" for n, t in enumerate(times, start=1)}
    annotation_count = sum(len(a) for a in tiers.values())
    ET.SubElement(header, "PROPERTY", {"NAME": "lastUsedAnnotationId"}).text = str(annotation_count)
    time_order = ET.SubElement(root, "TIME_ORDER")
    for t in times:
        ET.SubElement(time_order, "TIME_SLOT", {"TIME_SLOT_ID": slot_ids[t], "TIME_VALUE": str(t)})

    n = 0
    emotion_ids = {e.label for e in result.emotions}
    for n_tier, (tier_id, annotations) in enumerate(tiers.items()):
        # order of `_intervals`: the emotion tiers, then the signal tier, then the transcript tier
        kind = EMOTION_TYPE if tier_id in emotion_ids else SIGNAL_TYPE if n_tier == len(emotion_ids) else WORDS_TYPE
        tier = ET.SubElement(root, "TIER", {"LINGUISTIC_TYPE_REF": kind, "TIER_ID": tier_id})
        for start, end, value in annotations:
            n += 1
            annotation = ET.SubElement(ET.SubElement(tier, "ANNOTATION"), "ALIGNABLE_ANNOTATION", {
                "ANNOTATION_ID": f"a{n}", "TIME_SLOT_REF1": slot_ids[start], "TIME_SLOT_REF2": slot_ids[end]})
            ET.SubElement(annotation, "ANNOTATION_VALUE").text = value
    for kind in (EMOTION_TYPE, SIGNAL_TYPE, WORDS_TYPE):
        ET.SubElement(root, "LINGUISTIC_TYPE", {"GRAPHIC_REFERENCES": "false", "LINGUISTIC_TYPE_ID": kind,
                                                "TIME_ALIGNABLE": "true"})
    for stereotype, description in CONSTRAINTS.items():
        ET.SubElement(root, "CONSTRAINT", {"DESCRIPTION": description, "STEREOTYPE": stereotype})
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
