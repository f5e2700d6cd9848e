"""Raw CMU-MOSEI: segment media files labelled from the SDK's "All Labels" computational sequence.

Media: the segmented files of the raw release, `<videoid>_<segmentindex>.mp4` (Raw/Videos/
Segmented/Combined; `.wav` audio segments are accepted too). Video ids may themselves contain
"_" and "-"; the segment index is the number after the LAST underscore.

Labels: CMU_MOSEI_Labels.csd, an HDF5 file with one root group ("All Labels") holding
`data/<videoid>/features` (n_segments, 7) = [sentiment, happy, sad, anger, surprise, disgust, fear]
intensities (0..3) and `data/<videoid>/intervals` (n_segments, 2) = start, end in seconds within
the full video. An emotion is present when its intensity is > 0; sentiment is not used. Segments
with no emotion keep an empty label set (about 15 % of the test split).

Segment -> interval: the segment index in a file name is the second field of the raw transcript
lines `<videoid>___<segmentindex>___<start>___<end>___<text>` (Raw/Transcript/Segmented/Combined/
<videoid>.txt); the segment gets the label row whose interval matches that start and end (within
MATCH_TOLERANCE_S). The transcripts folder is found next to the media when the raw layout is kept,
or given with transcripts=DIR.

Splits: the standard video-level folds when folds=FILE is given (see mosei_folds.py; the SDK
provides them as cmu_mosei_std_folds.py); otherwise a deterministic video-level split by SHA-1 of
the video id (about 70/15/15), which is NOT the standard split and is reported in the notes.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np

from mmer.corpora.group_splits import split_by_hash
from mmer.corpora.label_sets import MOSEI_LABEL_NAMES
from mmer.corpora.listing import CorpusListing, LabeledClip
from mmer.corpora.media_files import find_media, no_clips_error
from mmer.corpora.mosei_folds import read_folds
from mmer.corpora.registry import CorpusOption, register_corpus
from mmer.errors import UserError

LABELS_ROOT = "All Labels"
NUM_LABEL_COLUMNS = 7
"""Columns of "All Labels" features: sentiment, then the six emotions in MOSEI_LABEL_NAMES order."""
MATCH_TOLERANCE_S = 0.01
"""Largest difference (seconds) between a transcript's segment start/end and a label interval."""
EXTENSIONS: tuple[str, ...] = (".mp4", ".wav")
SEGMENT_NAME = re.compile(r"^(.+)_(\d+)$")
TRANSCRIPT_SEPARATOR = "___"


class _BadTranscript(Exception):
    """A transcript file that cannot be read; the message names it and the problem."""


def _open_label_data(path: Path) -> tuple[h5py.File, h5py.Group]:
    """Open the .csd and return (file, its `data` group). Raises UserError when it is not one."""
    if not path.is_file():
        raise UserError(f"{path}: MOSEI label file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{path}: not an HDF5 computational sequence (.csd) file") from None
    roots = list(handle.keys())
    root = LABELS_ROOT if LABELS_ROOT in roots else (roots[0] if len(roots) == 1 else None)
    if root is None or not isinstance(handle[root], h5py.Group) or "data" not in handle[root]:
        handle.close()
        raise UserError(f"{path}: no '{LABELS_ROOT}/data' group (is this CMU_MOSEI_Labels.csd?)")
    return handle, handle[root]["data"]


def _read_video_labels(data: h5py.Group, video: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, 7) float64, intervals (n, 2) float64) of one video; UserError if malformed."""
    group = data[video]
    try:
        features = np.asarray(group["features"][()], dtype=np.float64)
        intervals = np.asarray(group["intervals"][()], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: video {video} lacks numeric 'features' and 'intervals'") from None
    if features.ndim != 2 or features.shape[1] != NUM_LABEL_COLUMNS:
        raise UserError(f"{path}: video {video}: features have shape {features.shape}, expected (n, {NUM_LABEL_COLUMNS})")
    if intervals.shape != (features.shape[0], 2):
        raise UserError(f"{path}: video {video}: intervals have shape {intervals.shape}, expected ({features.shape[0]}, 2)")
    return features, intervals


def _read_transcript_times(path: Path) -> dict[int, tuple[float, float]]:
    """segment index -> (start_s, end_s) from one raw segmented transcript file."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise _BadTranscript(f"cannot read transcript {path} ({err})") from None
    times: dict[int, tuple[float, float]] = {}
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(TRANSCRIPT_SEPARATOR, 4)
        try:
            times[int(fields[1])] = (float(fields[2]), float(fields[3]))
        except (IndexError, ValueError):
            raise _BadTranscript(f"transcript {path} line {line_number} is not "
                                 "'<videoid>___<segment>___<start>___<end>___<text>'") from None
    return times


def _find_transcripts(media_dir: Path, transcripts: Path | None) -> Path:
    """The folder of `<videoid>.txt` transcripts: the option, or the raw layout beside the media."""
    if transcripts is not None:
        if not transcripts.is_dir():
            raise UserError(f"{transcripts}: transcripts folder not found")
        return transcripts
    candidates = [media_dir]
    if len(media_dir.resolve().parents) >= 3:  # Raw/Videos/Segmented/Combined -> Raw/Transcript/Segmented/Combined
        candidates.insert(0, media_dir.resolve().parents[2] / "Transcript" / "Segmented" / "Combined")
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.txt")):
            return folder
    raise UserError(f"{media_dir}: no MOSEI segment transcripts found beside the media; pass "
                    "transcripts=DIR (Raw/Transcript/Segmented/Combined), which maps segment numbers to label intervals")


def _match_interval(intervals: np.ndarray, start: float, end: float) -> int | None:
    """Row of `intervals` (n, 2) closest to (start, end), or None if none is within tolerance."""
    if len(intervals) == 0:
        return None
    error = np.abs(intervals - np.array([start, end])).max(axis=1)  # (n,)
    row = int(error.argmin())
    return row if error[row] <= MATCH_TOLERANCE_S else None


@register_corpus(
    "mosei-raw",
    options=(
        CorpusOption("labels", Path, None, "CMU_MOSEI_Labels.csd from the SDK (required)"),
        CorpusOption("transcripts", Path, None, "Raw/Transcript/Segmented/Combined (default: found beside the media)"),
        CorpusOption("folds", Path, None, "standard folds: the SDK's cmu_mosei_std_folds.py, JSON or text"),
    ),
    summary="raw CMU-MOSEI segments: 6 emotions (intensity > 0) from the SDK's All Labels .csd",
)
def list_mosei_raw(media_dir: Path, labels: Path | None, transcripts: Path | None, folds: Path | None) -> CorpusListing:
    """List MOSEI segment files under media_dir with targets over MOSEI_LABEL_NAMES."""
    if labels is None:
        raise UserError("mosei-raw needs labels=PATH to CMU_MOSEI_Labels.csd (the SDK's 'All Labels' sequence)")
    files = find_media(media_dir, EXTENSIONS)
    fold_of = read_folds(folds) if folds is not None else None
    transcript_dir = _find_transcripts(media_dir, transcripts)

    skipped: list[str] = []
    by_video: dict[str, list[tuple[int, Path]]] = {}
    for path in files:
        match = SEGMENT_NAME.match(path.stem)
        if match:
            by_video.setdefault(match.group(1), []).append((int(match.group(2)), path))
        else:
            skipped.append(f"{path}: not a MOSEI segment name (expected <videoid>_<segmentindex>, e.g. -3g5yACwYnA_2)")

    clips: list[LabeledClip] = []
    seen: dict[str, Path] = {}
    handle, data = _open_label_data(Path(labels))
    with handle:
        for video in sorted(by_video):
            segments = sorted(by_video[video], key=lambda s: (s[0], str(s[1])))
            if video not in data:
                skipped.extend(f"{p}: video {video} is not in the label file {labels}" for _, p in segments)
                continue
            split = fold_of.get(video) if fold_of is not None else split_by_hash(video)
            if split is None:
                skipped.extend(f"{p}: video {video} is in none of the folds in {folds}" for _, p in segments)
                continue
            try:
                times = _read_transcript_times(transcript_dir / f"{video}.txt")
            except _BadTranscript as err:
                skipped.extend(f"{p}: {err}" for _, p in segments)
                continue
            features, intervals = _read_video_labels(data, video, Path(labels))
            for index, path in segments:
                clip_id = f"{video}_{index}"
                if clip_id in seen:
                    skipped.append(f"{path}: duplicate of {seen[clip_id]} (one file per segment)")
                    continue
                if index not in times:
                    skipped.append(f"{path}: segment {index} is not in transcript {transcript_dir / (video + '.txt')}")
                    continue
                start, end = times[index]
                row = _match_interval(intervals, start, end)
                if row is None:
                    skipped.append(f"{path}: no labelled interval of {video} matches {start:.3f}-{end:.3f} s")
                    continue
                seen[clip_id] = path
                target = (features[row, 1:] > 0).astype(np.float32)  # (6,) happy, sad, anger, surprise, disgust, fear
                clips.append(LabeledClip(path=path, clip_id=clip_id, split=split, labels=target, group=video))

    if not clips:
        raise no_clips_error("CMU-MOSEI", media_dir, "-3g5yACwYnA_2.mp4", skipped)
    clips.sort(key=lambda c: c.clip_id)
    notes = [
        "labels: an emotion is present when its All Labels intensity is > 0; segments without any emotion are kept",
        f"segment numbers mapped to label intervals through the transcripts in {transcript_dir}",
        f"split: standard folds from {folds}" if folds is not None else
        "split: no folds file given, so a deterministic video-level split (SHA-1 of the video id, ~70/15/15) "
        "was used; it is NOT the standard split (pass folds=cmu_mosei_std_folds.py from the SDK)",
    ]
    return CorpusListing(name="mosei-raw", label_names=list(MOSEI_LABEL_NAMES), clips=clips, skipped=skipped, notes=notes)
