"""RAVDESS: single-label targets from the file-name codes, split by actor.

File names are seven two-digit codes `MM-VV-EE-II-SS-RR-AA.ext` (e.g. `01-01-06-01-02-01-12.mp4`):
MM modality (01 audio-video, 02 video only, 03 audio only), VV vocal channel (01 speech, 02 song),
EE emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised),
II intensity (01 normal, 02 strong), SS statement (01, 02), RR repetition (01, 02), AA actor (01..24,
odd = male, even = female). Accepted extensions: .mp4 and .wav.

Mapping to mmer's default label set: calm -> neutral (RAVDESS calm is a low-arousal neutral-like
state and the label set has no "calm"), angry -> anger, fearful -> fear, surprised -> surprise,
the others by name. Video-only files (MM = 02) are silent copies of an audio-video take and are
skipped unless include_video_only=true; songs (VV = 02) are kept unless include_song=false.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from mmer.corpora.group_splits import split_sorted_groups
from mmer.corpora.label_sets import DEFAULT_LABEL_NAMES
from mmer.corpora.listing import CorpusListing, LabeledClip
from mmer.corpora.media_files import find_media, no_clips_error
from mmer.corpora.registry import CorpusOption, register_corpus
from mmer.errors import UserError

EXTENSIONS: tuple[str, ...] = (".mp4", ".wav")
NUM_ACTORS = 24
EMOTION_CODES: dict[int, str] = {
    1: "neutral", 2: "neutral",  # 02 = calm, mapped to neutral
    3: "happy", 4: "sad", 5: "anger", 6: "fear", 7: "disgust", 8: "surprise",
}
EMOTION_CALM = 2
CALM_CHOICES = ("neutral", "calm", "exclude")
MODALITY_VIDEO_ONLY = 2
VOCAL_SONG = 2
CODE_RANGES: dict[str, tuple[int, int]] = {
    "modality": (1, 3), "vocal channel": (1, 2), "emotion": (1, 8), "intensity": (1, 2),
    "statement": (1, 2), "repetition": (1, 2), "actor": (1, NUM_ACTORS),
}
FILE_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")

ACTOR_SPLIT = split_sorted_groups(range(1, NUM_ACTORS + 1))
"""Actors 1-16 train, 17-20 valid, 21-24 test (each held-out split has two male and two female actors)."""


@register_corpus(
    "ravdess",
    options=(
        CorpusOption("include_song", bool, True, "keep sung clips (vocal channel 02)"),
        CorpusOption("include_video_only", bool, False, "keep silent video-only clips (modality 02)"),
        CorpusOption("calm", str, "neutral", "calm clips (emotion 02): 'neutral' (labelled neutral), 'calm' (a "
                                             "label of their own) or 'exclude' (left out)"),
    ),
    summary="RAVDESS (24 actors): labels from file-name codes (calm -> neutral), split by actor",
)
def list_ravdess(media_dir: Path, include_song: bool, include_video_only: bool, calm: str = "neutral") -> CorpusListing:
    """List RAVDESS clips under media_dir with one-hot targets over DEFAULT_LABEL_NAMES (plus "calm"
    with calm="calm")."""
    if calm not in CALM_CHOICES:
        raise UserError(f"ravdess option calm must be one of {', '.join(CALM_CHOICES)}, got {calm!r}", parameter="calm")
    label_names = list(DEFAULT_LABEL_NAMES) + (["calm"] if calm == "calm" else [])
    skipped: list[str] = []
    clips: list[LabeledClip] = []
    seen: dict[str, Path] = {}
    for path in find_media(media_dir, EXTENSIONS):
        match = FILE_NAME.match(path.stem)
        if not match:
            skipped.append(f"{path}: not a RAVDESS file name (expected MM-VV-EE-II-SS-RR-AA, e.g. 01-01-06-01-02-01-12)")
            continue
        codes = dict(zip(CODE_RANGES, (int(g) for g in match.groups())))
        bad = [f"{field} {codes[field]:02d}" for field, (low, high) in CODE_RANGES.items()
               if not low <= codes[field] <= high]
        if bad:
            skipped.append(f"{path}: code(s) out of range: {', '.join(bad)}")
            continue
        if codes["modality"] == MODALITY_VIDEO_ONLY and not include_video_only:
            skipped.append(f"{path}: video-only copy without audio (include_video_only=true keeps it)")
            continue
        if codes["vocal channel"] == VOCAL_SONG and not include_song:
            skipped.append(f"{path}: song (include_song=false)")
            continue
        if codes["emotion"] == EMOTION_CALM and calm == "exclude":
            skipped.append(f"{path}: calm (calm=exclude)")
            continue
        if path.stem in seen:
            skipped.append(f"{path}: duplicate of {seen[path.stem]} (one file per clip)")
            continue
        seen[path.stem] = path
        target = np.zeros(len(label_names), dtype=np.float32)  # (q,)
        name = "calm" if codes["emotion"] == EMOTION_CALM and calm == "calm" else EMOTION_CODES[codes["emotion"]]
        target[label_names.index(name)] = 1.0
        clips.append(LabeledClip(path=path, clip_id=path.stem, split=ACTOR_SPLIT[codes["actor"]], labels=target,
                                 group=f"{codes['actor']:02d}"))

    if not clips:
        raise no_clips_error("RAVDESS", media_dir, "01-01-06-01-02-01-12.mp4", skipped)
    clips.sort(key=lambda c: c.clip_id)
    notes = [
        {"neutral": "one label per clip, from the emotion code; calm (02) is mapped to neutral (option calm)",
         "calm": "one label per clip, from the emotion code; calm (02) is a label of its own",
         "exclude": "one label per clip, from the emotion code; calm (02) clips are left out"}[calm],
        "split by actor: 01-16 train, 17-20 valid, 21-24 test",
    ]
    return CorpusListing(name="ravdess", label_names=label_names, clips=clips, skipped=skipped, notes=notes)
