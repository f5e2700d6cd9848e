"""What a corpus recipe returns: the labelled media clips it found, and what it left out and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class LabeledClip:
    """One media file with its multi-hot target.

    path: the media file (video or audio) as found under the media folder.
    clip_id: the corpus's own identifier of the clip (file name without extension; MOSEI:
        `<videoid>_<segmentindex>`), unique within a listing.
    split: one of "train", "valid", "test" (mmer.datasets.base.SPLITS).
    labels: (q,) float32 array of 0/1, columns in `CorpusListing.label_names` order.
    group: the speaker/actor (or source video) the clip belongs to, when the corpus says; whole
        groups stay together in speaker-independent folds (`mmer train --folds`).
    """

    path: Path
    clip_id: str
    split: str
    labels: np.ndarray
    group: str | None = None


@dataclass
class CorpusListing:
    """Every labelled clip of one corpus found under a media folder.

    name: the corpus name as registered (e.g. "cremad").
    label_names: q label names, in column order of every clip's `labels`.
    clips: the usable clips, sorted by clip_id.
    skipped: one human-readable line per media file (or clip) left out, naming it and the reason.
    notes: facts about the listing a user should know (e.g. a label that can never be present,
        or a fallback split); one line each.
    """

    name: str
    label_names: list[str]
    clips: list[LabeledClip]
    skipped: list[str]
    notes: list[str] = field(default_factory=list)

    def split_counts(self) -> dict[str, int]:
        """Number of clips per split, e.g. {"train": 5000, "valid": 1000, "test": 1000}."""
        counts: dict[str, int] = {}
        for clip in self.clips:
            counts[clip.split] = counts.get(clip.split, 0) + 1
        return counts

    def label_counts(self) -> dict[str, int]:
        """Number of clips in which each label is present."""
        if not self.clips:
            return {name: 0 for name in self.label_names}
        totals = np.stack([c.labels for c in self.clips]).sum(axis=0)  # (q,)
        return {name: int(n) for name, n in zip(self.label_names, totals)}
