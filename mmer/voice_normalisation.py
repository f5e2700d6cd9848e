"""Normalisation of the voice in the target domain: the audio frames of the people being analysed
are z-scored with statistics of those same people, so a model trained on a few German actors reads
other voices, microphones and rooms relative to their own baseline rather than the actors'.

Statistics of a group of frames (`FrameStatistics`) are shrunk towards the training voices' own
(`VoiceNormaliser.prior`) by how much speech the group holds: with s seconds of speech the group's
weight is w = s / (s + prior_seconds), so a 2 s utterance leans mostly on the prior while a speaker
heard for a minute is read against their own baseline. The frames are then z-scored,
x' = (x - mean) / std per dimension, and only then enter the model (whose own input
standardisation was fitted on frames normalised the same way).

Modes (`ADAPT_MODES`; `AnalyzeOptions.adapt`, `mmer analyze --adapt`):
- "clip" (default): every clip over its own speech. Assumes one voice per clip (or voices alike);
  a long clip is read against its speaker's own baseline, a short one mostly against the prior.
- "batch": all clips of the run together. Assumes the clips share a recording setup and a set of
  speakers (a session, a corpus); the run's mix of emotions then sets the baseline.
- "speaker": the clips of each speaker together (`--speakers FILE.csv`: file,speaker). Assumes the
  listed speaker is the voice heard in the clip; the most faithful when each speaker has several
  clips with varied emotions.
- "none": the prior only (the training voices' statistics), as before voice features v2.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ADAPT_MODES = ("clip", "batch", "speaker", "none")
DEFAULT_PRIOR_SECONDS = 10.0
"""Seconds of speech at which a group's own statistics weigh as much as the prior (w = 1/2)."""
FRAME_RATE_HZ = 25.0  # audio frames per second (extractors.acoustic.ACOUSTIC_RATE_HZ)
MIN_STD = 1e-3


@dataclass
class FrameStatistics:
    """Running per-dimension sums of audio frames (T, D): count, sum (D,), sum of squares (D,)."""

    count: int
    total: np.ndarray
    total_sq: np.ndarray

    @classmethod
    def empty(cls, dim: int) -> "FrameStatistics":
        return cls(0, np.zeros(dim), np.zeros(dim))

    def add(self, frames: np.ndarray) -> None:
        x = np.asarray(frames, dtype=np.float64)
        self.count += x.shape[0]
        self.total += x.sum(axis=0)
        self.total_sq += np.square(x).sum(axis=0)

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / max(self.count, 1)
        return mean, np.maximum(self.total_sq / max(self.count, 1) - np.square(mean), 0.0)


@dataclass
class VoiceNormaliser:
    """The training voices' frame statistics (the prior): mean, std (D,) per audio dimension;
    prior_seconds: see the module docstring; basis: what the prior was measured on."""

    mean: list[float]
    std: list[float]
    prior_seconds: float = DEFAULT_PRIOR_SECONDS
    basis: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VoiceNormaliser":
        """Raises ValueError when `data` (checkpoint extra["voice_normalisation"]) is malformed."""
        try:
            out = cls([float(v) for v in data["mean"]], [float(v) for v in data["std"]],
                      float(data.get("prior_seconds", DEFAULT_PRIOR_SECONDS)), str(data.get("basis", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"voice normalisation: malformed ({err})") from None
        if (len(out.mean) != len(out.std) or not np.isfinite(out.mean).all() or not (np.asarray(out.std) > 0).all()
                or not (np.isfinite(out.prior_seconds) and out.prior_seconds > 0)):
            raise ValueError("voice normalisation: mean/std/prior_seconds malformed")
        return out

    @classmethod
    def fit(cls, frames: list[np.ndarray], prior_seconds: float = DEFAULT_PRIOR_SECONDS,
            basis: str = "") -> "VoiceNormaliser":
        """The prior from training utterances' frames (each (T_i, D))."""
        stats = FrameStatistics.empty(frames[0].shape[1])
        for x in frames:
            stats.add(x)
        mean, var = stats.mean_var()
        return cls(mean.tolist(), np.maximum(np.sqrt(var), MIN_STD).tolist(), prior_seconds, basis)

    @property
    def dim(self) -> int:
        return len(self.mean)

    def shrunk(self, stats: FrameStatistics | None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) (D,) of a group: its own statistics and the prior mixed with weight
        w = s / (s + prior_seconds) for s seconds of speech (the prior alone for None or no frames)."""
        prior_mean, prior_var = np.asarray(self.mean), np.square(np.asarray(self.std))
        if stats is None or stats.count == 0:
            return prior_mean, np.sqrt(prior_var)
        seconds = stats.count / FRAME_RATE_HZ
        w = seconds / (seconds + self.prior_seconds)
        own_mean, own_var = stats.mean_var()
        mean = w * own_mean + (1 - w) * prior_mean
        var = w * (own_var + np.square(own_mean - mean)) + (1 - w) * (prior_var + np.square(prior_mean - mean))
        return mean, np.maximum(np.sqrt(var), MIN_STD)

    def normalise(self, frames: np.ndarray, stats: FrameStatistics | None) -> np.ndarray:
        """frames (T, D) z-scored with the group statistics `shrunk(stats)` -> (T, D) float32."""
        mean, std = self.shrunk(stats)
        return ((np.asarray(frames, dtype=np.float64) - mean) / std).astype(np.float32)

    def normalise_groups(self, frames: list[np.ndarray], groups: list) -> list[np.ndarray]:
        """Every utterance's frames (T_i, D) normalised with the statistics of all utterances of its
        group (`groups[i]`: any hashable; one group per speaker, per clip, or one for all)."""
        stats: dict = {}
        for x, g in zip(frames, groups):
            stats.setdefault(g, FrameStatistics.empty(self.dim)).add(x)
        return [self.normalise(x, stats[g]) for x, g in zip(frames, groups)]


def read_speakers(path: Path) -> dict[str, str]:
    """A file,speaker CSV (a header row "file,speaker" is optional) -> {file: speaker}. A file is
    matched by its path as given, its absolute path, or its name. Raises ValueError with a one-line
    reason for an unreadable or malformed file."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            rows = [r for r in csv.reader(handle) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read speakers file ({err})") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "speaker"]:
        rows = rows[1:]
    out: dict[str, str] = {}
    for n, row in enumerate(rows, start=1):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise ValueError(f"{path}: row {n} needs two columns, file and speaker")
        out[row[0].strip()] = row[1].strip()
    if not out:
        raise ValueError(f"{path}: no file,speaker rows")
    return out


def speaker_of(file: Path, speakers: dict[str, str]) -> str | None:
    """The speaker `speakers` gives `file` (by path as given, absolute path, or file name)."""
    for key in (str(file), str(Path(file).resolve()), Path(file).name):
        if key in speakers:
            return speakers[key]
    return None


def adapt_splits(bench, mode: str, speakers: dict[str, str] | None = None, prior: VoiceNormaliser | None = None):
    """A training dataset (`mmer.datasets.base.BenchmarkData`) with its audio frames normalised in
    their own domain, as `mmer train --adapt` does: the prior is fitted on the raw audio frames of
    the train split; each sample is then normalised with the statistics of its group, shrunk towards
    the prior - "clip": the sample's own frames; "batch": all samples of its split; "speaker": all
    samples of the same speaker (`speakers`: sample id -> speaker; an unlisted sample is its own
    group). `prior`: use this one instead of fitting it (`mmer eval` of an adapted checkpoint).
    Returns (the dataset with wrapped splits, the prior) or (bench, None) for mode "none" or a
    dataset without audio."""
    from mmer.datasets.base import BenchmarkData, MultimodalDataset

    if mode == "none":
        return bench, None
    if mode not in ADAPT_MODES:
        raise ValueError(f"adapt must be one of {', '.join(ADAPT_MODES)}, got {mode!r}")
    if prior is None:
        train = bench.splits["train"]
        frames = [train[i].features["audio"] for i in range(len(train))]
        frames = [x for x in frames if len(x)]
        if not frames:
            return bench, None
        prior = VoiceNormaliser.fit(frames, basis=f"raw audio frames of the {len(frames)} training samples with "
                                                  f"audio of dataset {bench.name}")
    splits = {}
    for name, split in bench.splits.items():
        keys = [_group_key(mode, name, i, split.ids[i], speakers) for i in range(len(split))]
        stats: dict = {}
        for i, key in enumerate(keys):
            audio = split[i].features["audio"]
            if len(audio):
                stats.setdefault(key, FrameStatistics.empty(audio.shape[1])).add(audio)
        splits[name] = MultimodalDataset(_normalising_getter(split, prior, keys, stats), split.labels, split.ids)
    return BenchmarkData(bench.name, bench.label_names, bench.feature_spec, splits), prior


def _group_key(mode: str, split: str, index: int, sample_id: str, speakers: dict[str, str] | None):
    if mode == "batch":
        return ("split", split)
    if mode == "speaker" and speakers and sample_id in speakers:
        return ("speaker", speakers[sample_id])
    return ("clip", split, index)


def _normalising_getter(split, prior: VoiceNormaliser, keys: list, stats: dict):
    def get(i: int) -> dict[str, np.ndarray]:
        features = dict(split[i].features)
        if len(features["audio"]):
            features["audio"] = prior.normalise(features["audio"], stats.get(keys[i]))
        return features
    return get
