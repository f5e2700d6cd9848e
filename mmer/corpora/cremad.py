"""CREMA-D: multi-label targets from the crowd's vote shares, split by actor.

Media: `<actor>_<sentence>_<emotion>_<level>.<ext>` (e.g. `1001_DFA_ANG_XX.flv`), ext one of
.flv (VideoFlash/), .mp4 (converted video) or .wav (AudioWAV/). When several files share a clip
name the first of .flv, .mp4, .wav is used and the others are skipped as duplicates.

Labels: `cremad_votes_by_modality.csv` (derived from CREMA-D's processedResults/tabulatedVotes.csv)
holds, per clip and per rating condition (av = audio-visual, face = video only, voice = audio only),
the counts of the six answers A, D, F, H, N, S and the number of responses. A label is present when
its vote share count / numResponses >= threshold (default 0.3). A -> anger, D -> disgust, F -> fear,
H -> happy, N -> neutral, S -> sad. Raters could not answer "surprise", so that column of mmer's
default label set is always 0. A clip where no answer reaches the threshold is skipped.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from mmer.corpora.group_splits import TEST_FRACTION, VALID_FRACTION, split_sorted_groups
from mmer.corpora.label_sets import DEFAULT_LABEL_NAMES
from mmer.corpora.listing import CorpusListing, LabeledClip
from mmer.corpora.media_files import find_media, no_clips_error
from mmer.corpora.registry import CorpusOption, register_corpus
from mmer.errors import UserError

DEFAULT_VOTES_CSV = (Path(__file__).resolve().parents[3] / "shared" / "data" / "cremad_labels"
                     / "cremad_votes_by_modality.csv")
"""`../shared/data/cremad_labels/cremad_votes_by_modality.csv` seen from the repository root."""

DEFAULT_THRESHOLD = 0.3
"""Minimum vote share (fraction of the responses) for a label to be present."""

VOTE_MODALITIES: tuple[str, ...] = ("av", "face", "voice")
ANSWER_CODES: tuple[str, ...] = ("A", "D", "F", "H", "N", "S")
ANSWER_LABELS: dict[str, str] = {"A": "anger", "D": "disgust", "F": "fear", "H": "happy", "N": "neutral", "S": "sad"}

MEDIA_PREFERENCE: tuple[str, ...] = (".flv", ".mp4", ".wav")
"""Accepted extensions, most preferred first (video carries face and voice; .wav voice only)."""

CLIP_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")

KNOWN_DEFECTS: dict[str, tuple[tuple[str, ...], str]] = {
    # clip name -> (extensions affected, problem), as listed in the CREMA-D README.
    "1076_MTI_SAD_XX": ((".flv", ".mp4", ".wav"), "no audio and very short (CREMA-D README)"),
    "1076_MTI_NEU_XX": ((".flv", ".mp4"), "video very short without audio (CREMA-D README; its .wav is fine)"),
    "1064_TIE_SAD_XX": ((".flv", ".mp4"), "video file has no duration (CREMA-D README)"),
    "1064_IEO_DIS_MD": ((".flv", ".mp4"), "video is 1 minute long with every emotion of the sentence (CREMA-D README)"),
}


def _read_votes(path: Path, modality: str) -> dict[str, tuple[np.ndarray, int, int]]:
    """clip name -> (answer counts (6,) in A, D, F, H, N, S order, number of responses, actor number)."""
    if not path.is_file():
        raise UserError(f"{path}: CREMA-D vote table not found (pass labels=PATH to cremad_votes_by_modality.csv)")
    count_columns = [f"{modality}_{code}" for code in ANSWER_CODES]
    needed = ["fileName", *count_columns, f"{modality}_numResponses", "actor"]
    votes: dict[str, tuple[np.ndarray, int, int]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise UserError(f"{path}: not a CREMA-D vote table, missing column(s) {', '.join(missing)}")
            for line, row in enumerate(reader, start=2):
                try:
                    counts = np.array([int(row[c]) for c in count_columns], dtype=np.int64)
                    votes[row["fileName"]] = (counts, int(row[f"{modality}_numResponses"]), int(row["actor"]))
                except (TypeError, ValueError):
                    raise UserError(f"{path}: line {line}: vote counts and actor must be whole numbers") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"{path}: cannot read the vote table ({err})") from None
    if not votes:
        raise UserError(f"{path}: the vote table has no rows")
    return votes


def _pick_files(files: list[Path], skipped: list[str]) -> dict[str, Path]:
    """One file per clip name, preferring .flv, then .mp4, then .wav; the rest are skipped."""
    by_name: dict[str, list[Path]] = {}
    for path in files:
        by_name.setdefault(path.stem, []).append(path)
    chosen: dict[str, Path] = {}
    for name, paths in by_name.items():
        paths.sort(key=lambda p: (MEDIA_PREFERENCE.index(p.suffix.lower()), str(p)))
        chosen[name] = paths[0]
        skipped.extend(f"{p}: duplicate of {paths[0]} (one file per clip)" for p in paths[1:])
    return chosen


@register_corpus(
    "cremad",
    options=(
        CorpusOption("labels", Path, DEFAULT_VOTES_CSV, "cremad_votes_by_modality.csv (default: the shared copy)"),
        CorpusOption("vote_modality", str, "av", "whose votes make the labels: av (audio-visual), face or voice"),
        CorpusOption("threshold", float, DEFAULT_THRESHOLD, "a label is present when its vote share >= this"),
    ),
    summary="CREMA-D (91 actors): multi-label targets from crowd vote shares, split by actor",
)
def list_cremad(media_dir: Path, labels: Path, vote_modality: str, threshold: float) -> CorpusListing:
    """List CREMA-D clips under media_dir with vote-share targets over DEFAULT_LABEL_NAMES.

    Split by actor: the actors of the vote table sorted by number, last 15 % test, 15 % before
    them valid, the rest train (91 actors: 1001-1063 train, 1064-1077 valid, 1078-1091 test).
    """
    if vote_modality not in VOTE_MODALITIES:
        raise UserError(f"cremad option vote_modality: expected one of {', '.join(VOTE_MODALITIES)}, got {vote_modality!r}")
    if not 0.0 < threshold <= 1.0:
        raise UserError(f"cremad option threshold: expected a vote share in (0, 1], got {threshold}")
    votes = _read_votes(Path(labels), vote_modality)
    actor_split = split_sorted_groups(actor for _, _, actor in votes.values())
    columns = [DEFAULT_LABEL_NAMES.index(ANSWER_LABELS[code]) for code in ANSWER_CODES]

    skipped: list[str] = []
    files = find_media(media_dir, MEDIA_PREFERENCE)
    named = []
    for path in files:
        if CLIP_NAME.match(path.stem):
            named.append(path)
        else:
            skipped.append(f"{path}: not a CREMA-D clip name (expected ACTOR_SENTENCE_EMOTION_LEVEL, e.g. 1001_DFA_ANG_XX)")

    clips: list[LabeledClip] = []
    for name, path in sorted(_pick_files(named, skipped).items()):
        defect = KNOWN_DEFECTS.get(name)
        if defect and path.suffix.lower() in defect[0]:
            skipped.append(f"{path}: known defective file: {defect[1]}")
            continue
        if name not in votes:
            skipped.append(f"{path}: clip {name} is not in the vote table {labels}")
            continue
        counts, responses, actor = votes[name]
        if responses <= 0:
            skipped.append(f"{path}: clip {name} has no {vote_modality} votes")
            continue
        shares = counts / responses  # (6,) in A, D, F, H, N, S order
        target = np.zeros(len(DEFAULT_LABEL_NAMES), dtype=np.float32)  # (q,)
        target[columns] = (shares >= threshold - 1e-9).astype(np.float32)
        if not target.any():
            skipped.append(f"{path}: no answer reaches {threshold:.0%} of the {vote_modality} votes (top share {shares.max():.0%})")
            continue
        clips.append(LabeledClip(path=path, clip_id=name, split=actor_split[actor], labels=target,
                                 group=str(actor)))

    if not clips:
        raise no_clips_error("CREMA-D", media_dir, "1001_DFA_ANG_XX.flv", skipped)
    notes = [
        f"labels: an answer is present when it has >= {threshold:.0%} of the {vote_modality} votes",
        "surprise is never present: CREMA-D raters chose among anger, disgust, fear, happy, neutral, sad; "
        "the column is kept so the listing uses mmer's default label set",
        f"split by actor (sorted actor numbers, {1 - VALID_FRACTION - TEST_FRACTION:.0%}/{VALID_FRACTION:.0%}/{TEST_FRACTION:.0%})",
    ]
    return CorpusListing(name="cremad", label_names=list(DEFAULT_LABEL_NAMES), clips=clips, skipped=skipped, notes=notes)
