"""Renderers of `mmer analyze` results: Rich tables, the JSON contract, CSV rows.

Each takes the typed outcomes of `mmer.analysis.analyze` (ClipResult | ClipFailure) and only
formats them; nothing here computes.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Sequence

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from mmer.analysis import AnalyzeOutcome, ClipFailure, ClipResult, EmotionScore, ModalityEvidence, Segment

EVIDENCE_STREAMS = ("visual", "audio", "text")
"""Order of the per-modality evidence in JSON objects and CSV columns."""
STREAM_HEADINGS = {"visual": "face", "audio": "voice", "text": "words"}
"""Table column headings of the per-modality evidence."""
BAR_WIDTH = 10  # characters of a full probability bar (the table fits 80 columns with the per-stream columns)
PROB_DECIMALS = 4  # rounding of probabilities/uncertainties in JSON
TIME_DECIMALS = 3  # rounding of seconds in JSON


def _emotion_dict(e: EmotionScore) -> dict:
    return {"label": e.label, "probability": round(e.probability, PROB_DECIMALS), "present": e.present,
            "uncertainty": round(e.uncertainty, PROB_DECIMALS)}


def _evidence_dict(evidence: ModalityEvidence) -> dict:
    """{"visual"|"audio"|"text": {label: probability} | None}, every stream named."""
    return {m: None if evidence.get(m) is None else {label: round(p, PROB_DECIMALS) for label, p in evidence[m].items()}
            for m in EVIDENCE_STREAMS}


def _segment_dict(s: Segment) -> dict:
    return {"start_s": round(s.start_s, TIME_DECIMALS), "end_s": round(s.end_s, TIME_DECIMALS),
            "emotions": [_emotion_dict(e) for e in s.emotions], "predicted": s.predicted,
            "by_modality": _evidence_dict(s.by_modality)}


def outcome_to_dict(outcome: AnalyzeOutcome) -> dict:
    """One element of the JSON array (see docs/analyze.md for the contract)."""
    if isinstance(outcome, ClipFailure):
        return {"file": outcome.file, "error": outcome.error}
    stats = outcome.modalities
    data = {
        "file": outcome.file,
        "model": outcome.model,
        "duration_s": round(outcome.duration_s, TIME_DECIMALS),
        "predicted": outcome.predicted,
        "emotions": [_emotion_dict(e) for e in outcome.emotions],
        "by_modality": _evidence_dict(outcome.by_modality),
        "transcript": outcome.transcript,
        "modalities": {
            "visual": {"frames": stats.frames, "face_frames": stats.face_frames},
            "audio": {"seconds": round(stats.seconds, TIME_DECIMALS), "voiced": round(stats.voiced, TIME_DECIMALS)},
            "text": {"tokens": stats.tokens, "words_trust": round(stats.words_trust, 3)},
        },
        "timings_s": {stage: round(s, TIME_DECIMALS) for stage, s in outcome.timings_s.items()},
        "warnings": list(outcome.warnings),
    }
    if outcome.segments is not None:
        data["segments"] = [_segment_dict(s) for s in outcome.segments]
    return data


def to_json(outcomes: Sequence[AnalyzeOutcome]) -> str:
    """A JSON array with one object per input."""
    return json.dumps([outcome_to_dict(o) for o in outcomes], indent=2, ensure_ascii=False) + "\n"


def to_csv(outcomes: Sequence[AnalyzeOutcome], label_names: Sequence[str]) -> str:
    """One row per analysed clip: file, one probability column per emotion, `uncertainty_<label>`
    columns, predicted (';'-joined), transcript, then `<stream>_<label>` columns with what each stream
    alone says (empty when that stream is absent). The columns come from `label_names` (the
    checkpoint's), so the header is the same when every input failed. Failures have no row (the
    caller lists them on stderr)."""
    results = [o for o in outcomes if isinstance(o, ClipResult)]
    labels = list(label_names)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    evidence_columns = [(m, name) for m in EVIDENCE_STREAMS for name in labels]
    writer.writerow(["file", *labels, *(f"uncertainty_{name}" for name in labels), "predicted", "transcript",
                     *(f"{m}_{name}" for m, name in evidence_columns)])
    for r in results:
        probs = {e.label: f"{e.probability:.{PROB_DECIMALS}f}" for e in r.emotions}
        uncertainty = {e.label: f"{e.uncertainty:.{PROB_DECIMALS}f}" for e in r.emotions}
        evidence = [("" if r.by_modality.get(m) is None else f"{r.by_modality[m][name]:.{PROB_DECIMALS}f}")
                    for m, name in evidence_columns]
        writer.writerow([r.file, *(probs.get(name, "") for name in labels),
                         *(uncertainty.get(name, "") for name in labels), ";".join(r.predicted), r.transcript,
                         *evidence])
    return buffer.getvalue()


def _bar(probability: float) -> Text:
    filled = int(round(probability * BAR_WIDTH))
    return Text("█" * filled, style="cyan") + Text("░" * (BAR_WIDTH - filled), style="dim") + Text(f" {probability:5.1%}")


def clip_table(result: ClipResult) -> Group:
    """The renderable for one clip: emotion table, windows (if any), transcript and warnings."""
    table = Table(title=f"{result.file}  ({result.duration_s:.1f} s, model {result.model})", title_justify="left")
    table.add_column("emotion")
    table.add_column("probability")
    table.add_column("present", justify="center")
    table.add_column("uncertainty", justify="right")
    for m in EVIDENCE_STREAMS:
        table.add_column(STREAM_HEADINGS[m], justify="right")
    for e in result.emotions:
        alone = [("-" if result.by_modality.get(m) is None else f"{result.by_modality[m][e.label]:.0%}")
                 for m in EVIDENCE_STREAMS]
        table.add_row(e.label, _bar(e.probability), "yes" if e.present else "", f"{e.uncertainty:.2f}", *alone)
    parts: list = [table]
    if result.segments:
        windows = Table(title="windows", title_justify="left")
        windows.add_column("start s", justify="right")
        windows.add_column("end s", justify="right")
        windows.add_column("predicted")
        windows.add_column("top emotion")
        for s in result.segments:
            top = max(s.emotions, key=lambda e: e.probability)
            windows.add_row(f"{s.start_s:.1f}", f"{s.end_s:.1f}", ", ".join(s.predicted) or "-",
                            f"{top.label} {top.probability:.0%}")
        parts.append(windows)
    parts.append(Text("predicted: ", style="bold") + Text(", ".join(result.predicted) or "(none)"))
    parts.append(Text("transcript: ", style="bold") + Text(result.transcript or "(none)"))
    for warning in result.warnings:
        parts.append(Text("warning: ", style="yellow") + Text(warning))
    return Group(*parts)


def render_tables(outcomes: Sequence[AnalyzeOutcome], console: Console) -> None:
    """One table per analysed clip, in input order; failures are left to `failure_lines`."""
    for outcome in outcomes:
        if isinstance(outcome, ClipResult):
            console.print(clip_table(outcome))
            console.print()


def failure_lines(outcomes: Sequence[AnalyzeOutcome]) -> list[str]:
    """One line per failed input: 'FILE: reason'."""
    return [f"{o.file}: {o.error}" for o in outcomes if isinstance(o, ClipFailure)]
