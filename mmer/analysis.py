"""`mmer analyze` as a library: media files in, per-clip emotion results out.

    outcomes = analyze([Path("clip.mp4"), Path("clips/")], AnalyzeOptions(model="lddu"))
    # one per media file: ClipResult (.predicted, .emotions, .segments, ...) or ClipFailure (.error)

The checkpoint is loaded once, its feature spec is checked against the extractor's before any
media is touched, and one `FeatureExtractor` serves every file. A file that cannot be analysed
becomes a `ClipFailure`; the other files still run.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from mmer.extractors.errors import ExtractionError
from mmer.extractors.featureset import FeatureSet, ModalityStats, Word
from mmer.extractors.pipeline import MEDIA_SUFFIXES, ExtractionSettings, FeatureExtractor, feature_spec_for
from mmer.errors import UserError
from mmer.catalog import DEFAULT_MODEL
from mmer.runtime import keep_heap_flat, resolve_device, resolve_precision, set_threads
from mmer.stream_fusion import LateFusion
from mmer.voice_normalisation import ADAPT_MODES, FrameStatistics, VoiceNormaliser, read_speakers, speaker_of
from mmer.models.batch import MultimodalBatch
from mmer.models.checkpoint import CheckpointError, CheckpointInfo, load_checkpoint
from mmer.core.feature_spec import MODALITIES
from mmer.models.registry import model_names

WEIGHTS_DIR = Path(str(importlib.resources.files("mmer.models") / "weights"))
"""Where the shipped default checkpoints live: <name>_default.safetensors."""
MAX_SPAN_S = 45.0
"""Longest stretch of media (seconds) the network sees in one pass. Its attention costs memory and
time with the square of the number of frames, so a longer clip (or window) is analysed in pieces of
about CHUNK_S seconds and gets the duration-weighted mean of their results."""
CHUNK_S = 30.0
MEDIA_S_PER_BATCH = 120.0
"""Seconds of media (summed over pieces or windows) sent through the network in one batch."""
AUTO_WINDOW_RANGE_S = (2.0, 5.0)
AUTO_WINDOWS_PER_CLIP = 30
"""`auto_window`: about this many windows per clip, each between AUTO_WINDOW_RANGE_S seconds long."""


@dataclass
class AnalyzeOptions:
    """Everything `analyze` needs besides the inputs.

    model: a registered model name (uses its shipped default checkpoint) or a checkpoint path.
    device: "auto" | "cpu" | "cuda".  threads: torch CPU threads (None: torch's default).
    fps: video frames sampled per second (None: the rate the checkpoint's features were made at).
    transcript: a transcript file used instead of speech recognition (only with a single clip).
    window_s: when set, also analyse consecutive windows of this many seconds (ClipResult.segments).
    auto_window: when window_s is None, analyse windows anyway, of `auto_window_s(duration)` seconds
        (the HTML report, ELAN and WebVTT exports need a timeline).
    use_cache: reuse/stash extracted features in the extractor cache.  cache_dir: its folder.
    precision: "fp32" | "bf16" | "fp16": autocast for the emotion network (the extractors stay fp32).
    workers: files analysed in this many processes, each with its own models and `threads`.
    adapt: how the voice is normalised in the target domain (mmer/voice_normalisation.py):
        "clip" over each clip's own speech (default), "batch" over all clips of the run, "speaker"
        over each speaker's clips (needs `speakers`), "none" the training voices' statistics only.
        Applies to checkpoints that record a voice normalisation (the shipped defaults).
    speakers: a file,speaker CSV naming the speaker of each clip (for adapt="speaker").
    """

    model: str = DEFAULT_MODEL
    device: str = "auto"
    threads: int | None = None
    fps: float | None = None
    transcript: Path | None = None
    window_s: float | None = None
    auto_window: bool = False
    use_cache: bool = True
    cache_dir: Path | None = None
    precision: str = "fp32"
    workers: int = 1
    adapt: str = "clip"
    speakers: Path | None = None


@dataclass
class EmotionScore:
    """One label of one clip or window. probability and uncertainty in [0, 1];
    present = probability >= the checkpoint's threshold for that label."""

    label: str
    probability: float
    present: bool
    uncertainty: float


ModalityEvidence = dict[str, "dict[str, float] | None"]
"""What each stream alone says: {"visual"|"audio"|"text": {label: probability} or None when that
stream is absent (or not readable by the model)}. See `Analyzer._by_modality`."""


@dataclass
class Segment:
    """Result for the window [start_s, end_s) of a clip (seconds)."""

    start_s: float
    end_s: float
    emotions: list[EmotionScore]
    by_modality: ModalityEvidence = field(default_factory=dict)

    @property
    def predicted(self) -> list[str]:
        return [e.label for e in self.emotions if e.present]


@dataclass
class ClipResult:
    """Result for one media file.

    duration_s: media duration (s). transcript: the words the text features came from ("" if none).
    modalities: frames/face frames, seconds/voiced seconds, tokens the extractors saw.
    timings_s: stage -> seconds (extraction stages, then "model"). warnings: one line each.
    segments: per-window results when a window length was asked for, else None.
    by_modality: what the face, the voice and the words each say on their own (`ModalityEvidence`).
    words: the transcript's words with their start/end times (s), in spoken order.
    """

    file: str
    model: str
    duration_s: float
    emotions: list[EmotionScore]
    transcript: str
    modalities: ModalityStats
    timings_s: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    segments: list[Segment] | None = None
    by_modality: ModalityEvidence = field(default_factory=dict)
    words: list[Word] = field(default_factory=list)

    @property
    def predicted(self) -> list[str]:
        return [e.label for e in self.emotions if e.present]


@dataclass
class ClipFailure:
    """An input that could not be analysed, with a one-line reason."""

    file: str
    error: str


AnalyzeOutcome = ClipResult | ClipFailure
ProgressCallback = Callable[[int, int, str], None]
"""progress(done, total, file): called before each file (done = files finished so far) and once at the end."""


def resolve_checkpoint(model: str) -> Path:
    """A registered model name -> its shipped default checkpoint; anything else is a path.

    Raises UserError when a name's default checkpoint is not installed, or when `model` is neither
    a model name nor an existing file.
    """
    names = model_names()
    if model in names:
        path = WEIGHTS_DIR / f"{model}_default.safetensors"
        if not path.is_file():
            raise UserError(f"the shipped default {model!r} model is not installed ({path} is missing); "
                            "pass --model PATH with a checkpoint trained by `mmer train`")
        return path
    path = Path(model).expanduser()
    if not path.exists():
        raise UserError(f"model {model}: neither a model name ({', '.join(names)}) nor an existing checkpoint file", parameter="model")
    if path.is_dir():
        raise UserError(f"model {model}: is a folder, not a checkpoint file", parameter="model")
    return path


def expand_inputs(paths: Sequence[Path]) -> list[Path | ClipFailure]:
    """Files stay as given; folders become the media files inside them (recursively, sorted,
    hidden entries skipped). A missing path or a folder without media is a `ClipFailure`."""
    out: list[Path | ClipFailure] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                out.append(ClipFailure(str(path), f"folder contains no media files ({', '.join(sorted(MEDIA_SUFFIXES))})"))
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            out.append(ClipFailure(str(path), "no such file or folder"))
    return out


def auto_window_s(duration_s: float) -> float:
    """A window length (s) for a timeline of a clip of `duration_s` seconds: about
    AUTO_WINDOWS_PER_CLIP windows, rounded to whole seconds, kept within AUTO_WINDOW_RANGE_S
    (a 6 s clip gets 2 s windows, a 10-minute one 5 s windows)."""
    low, high = AUTO_WINDOW_RANGE_S
    return float(min(high, max(low, round(duration_s / AUTO_WINDOWS_PER_CLIP))))


def _scores(label_names: list[str], thresholds: list[float], probs: np.ndarray, uncertainty: np.ndarray) -> list[EmotionScore]:
    """probs, uncertainty: (q,) -> one EmotionScore per label."""
    return [
        EmotionScore(label=name, probability=float(p), present=bool(p >= t), uncertainty=float(u))
        for name, t, p, u in zip(label_names, thresholds, probs, uncertainty)
    ]


def _no_signal_scores(label_names: list[str]) -> list[EmotionScore]:
    """Nothing to read: every label absent, probability 0, uncertainty 1."""
    return [EmotionScore(label=name, probability=0.0, present=False, uncertainty=1.0) for name in label_names]


class Analyzer:
    """A loaded checkpoint plus one feature extractor; `analyze_file` handles one media file.

    Construction loads the checkpoint and refuses (UserError/CheckpointError, exit 2) when the
    checkpoint's feature spec differs from what the extractor settings produce.
    """

    def __init__(self, options: AnalyzeOptions) -> None:
        if options.window_s is not None and not (math.isfinite(options.window_s) and options.window_s > 0):
            raise UserError(f"window_s must be > 0 seconds (a finite number), got {options.window_s:g}", parameter="window_s")
        if options.fps is not None and not (math.isfinite(options.fps) and options.fps > 0):
            raise UserError(f"fps must be > 0 (a finite number), got {options.fps:g}", parameter="fps")
        if options.transcript is not None and not Path(options.transcript).is_file():
            raise UserError(f"transcript {options.transcript}: file not found", parameter="transcript")
        if options.adapt not in ADAPT_MODES:
            raise UserError(f"adapt must be one of {', '.join(ADAPT_MODES)}, got {options.adapt!r}", parameter="adapt")
        if options.adapt == "speaker" and options.speakers is None:
            raise UserError("speakers: adapt='speaker' needs a file,speaker CSV", parameter="speakers")
        if options.speakers is not None and options.adapt != "speaker":
            raise UserError(f"adapt must be 'speaker' when a speakers file is given, got {options.adapt!r}",
                            parameter="adapt")
        self.speakers: dict[str, str] = {}
        if options.speakers is not None:
            try:
                self.speakers = read_speakers(options.speakers)
            except ValueError as err:
                raise UserError(str(err), parameter="speakers") from None
        set_threads(options.threads)
        keep_heap_flat()  # peak memory independent of clip length (mmer.runtime)
        self.options = options
        self.device = resolve_device(options.device)
        self.precision = resolve_precision(options.precision, self.device)
        self.checkpoint = resolve_checkpoint(options.model)
        self.model, self.info = load_checkpoint(self.checkpoint, self.device)
        self.settings = self._settings_for(self.info)
        expected = self.info.feature_spec
        problems = expected.mismatches(feature_spec_for(self.settings))
        if problems:
            raise UserError(f"{self.checkpoint}: checkpoint was trained on other features than these extraction "
                            "settings produce: " + "; ".join(problems))
        self.extractor = FeatureExtractor(self.settings)
        # A checkpoint trained without some modality must not see that stream: untrained encoder
        # weights would only add noise.
        trained = self.info.extra.get("trained_modalities", list(MODALITIES))
        self.ignored_modalities = [m for m in MODALITIES if m not in trained]
        # A checkpoint trained on separate single-modality corpora (the shipped defaults) combines
        # its single-stream readings by reliability-weighted late fusion (mmer/stream_fusion.py).
        self.fusion: LateFusion | None = None
        if "fusion" in self.info.extra:
            try:
                self.fusion = LateFusion.from_dict(self.info.extra["fusion"])
            except ValueError as err:
                raise CheckpointError(f"{self.checkpoint}: {err}") from None
            if len(self.fusion.thresholds) != len(self.info.label_names):
                raise CheckpointError(f"{self.checkpoint}: fusion has {len(self.fusion.thresholds)} thresholds "
                                      f"for {len(self.info.label_names)} labels")
        # Voice features are normalised in the target domain when the checkpoint was trained so.
        self.normaliser: VoiceNormaliser | None = None
        if "voice_normalisation" in self.info.extra:
            try:
                self.normaliser = VoiceNormaliser.from_dict(self.info.extra["voice_normalisation"])
            except ValueError as err:
                raise CheckpointError(f"{self.checkpoint}: {err}") from None
            if self.normaliser.dim != expected.audio.dim:
                raise CheckpointError(f"{self.checkpoint}: voice normalisation has {self.normaliser.dim} dimensions, "
                                      f"the audio features {expected.audio.dim}")

    def _settings_for(self, info: CheckpointInfo) -> ExtractionSettings:
        """Extraction settings: the user's options, frame rate defaulting to the checkpoint's."""
        fps = self.options.fps if self.options.fps is not None else info.feature_spec.visual.frame_rate_hz
        values = dict(device=self.device.type, use_cache=self.options.use_cache, cache_dir=self.options.cache_dir,
                      transcript=None if self.options.transcript is None else str(self.options.transcript))
        if fps is not None:
            values["fps"] = float(fps)
        return ExtractionSettings(**values)

    @property
    def label_names(self) -> list[str]:
        return list(self.info.label_names)

    def extract(self, path: Path) -> FeatureSet:
        """The features of one file; ExtractionError (one line) when the file cannot be read."""
        if not os.access(path, os.R_OK):
            raise ExtractionError(f"{path}: permission denied (file is not readable)")
        return self.extractor.extract(path)

    def group_of(self, path: Path) -> str | None:
        """The normalisation group of a file under `options.adapt`: "batch" one group for all,
        "speaker" the file's speaker (None when the speakers file does not list it), else None."""
        if self.options.adapt == "batch":
            return ""
        if self.options.adapt == "speaker":
            return speaker_of(path, self.speakers)
        return None

    def analyze_file(self, path: Path, features: FeatureSet | None = None,
                     group: FrameStatistics | None = None) -> ClipResult:
        """Extract (unless `features` are given) and predict one file; ExtractionError (one line)
        when the file cannot be read. group: the voice statistics of the file's normalisation
        group ("batch"/"speaker" modes, `analyze`); "clip" mode uses the clip's own."""
        features = self.extract(path) if features is None else features
        started = time.perf_counter()
        features = self._normalised(path, features, group)
        duration = max(float(features.duration_s), 0.0)
        # The whole clip on its own, so its result does not depend on windowing (padding, MC-dropout masks).
        clip_span = [(0.0, duration)]
        clip_windows = span_windows(features, clip_span)
        clip_evidence = self._by_modality(features, clip_span, clip_windows)
        clip_scores = self._scores(features, clip_span, clip_evidence, clip_windows)[0]
        segments = None
        window_s = self.options.window_s
        if window_s is None and self.options.auto_window:
            window_s = auto_window_s(duration)
        if window_s is not None:
            spans = tile(0.0, duration, window_s) if duration > 0 else [(0.0, window_s)]
            windows = span_windows(features, spans)
            w_evidence = self._by_modality(features, spans, windows)
            w_scores = self._scores(features, spans, w_evidence, windows)
            segments = [Segment(start_s=a, end_s=b, emotions=scores, by_modality=evidence)
                        for (a, b), scores, evidence in zip(spans, w_scores, w_evidence)]
        warnings = list(features.warnings) + [
            f"{m} stream not used: this model was not trained on {m} features" for m in self.ignored_modalities]
        if (self.normaliser is not None and self.options.adapt == "speaker" and features.present("audio")
                and speaker_of(path, self.speakers) is None):
            warnings.append("not in the speakers file: the voice is normalised over this clip alone")
        if all(v is None for v in clip_evidence[0].values()):
            warnings.append("no usable stream (no face, no speech, no words): no emotion can be recognised")
        model_s = time.perf_counter() - started
        return ClipResult(
            file=str(path),
            model=self.info.model_name,
            duration_s=float(features.duration_s),
            emotions=clip_scores,
            transcript=features.transcript,
            modalities=features.stats,
            timings_s={**features.timings_s, "model": model_s},
            warnings=warnings,
            segments=segments,
            by_modality=clip_evidence[0],
            words=list(features.words),
        )

    def _normalised(self, path: Path, features: FeatureSet, group: FrameStatistics | None) -> FeatureSet:
        """`features` with the audio frames normalised (`VoiceNormaliser`) by `options.adapt`:
        with the group's statistics when given, the clip's own in "clip" mode (and for a clip
        without a group), the prior alone in "none" mode."""
        audio = features.features["audio"]
        if self.normaliser is None or not len(audio):
            return features
        if self.options.adapt == "none":
            stats = None
        elif group is not None:
            stats = group
        else:
            stats = FrameStatistics.empty(audio.shape[1])
            stats.add(audio)
        return replace(features, features={**features.features, "audio": self.normaliser.normalise(audio, stats)})

    def _scores(self, features: FeatureSet, spans: list[tuple[float, float]], evidence: list[ModalityEvidence],
                windows: list[FeatureSet]) -> list[list[EmotionScore]]:
        """Per span, one EmotionScore per label: from the late fusion of the single-stream readings
        `evidence` when the checkpoint has one, else from one joint pass of the network over every
        present stream. A span without any usable stream has nothing present, probability 0 and
        uncertainty 1 (no signal is not an answer). windows: `span_windows(features, spans)`."""
        names, q = self.info.label_names, len(self.info.label_names)
        usable = [any(v is not None for v in e.values()) for e in evidence]
        if self.fusion is not None:
            fused = []
            for window, e in zip(windows, evidence):
                frames = window.features
                fused.append(self.fusion.fuse({m: None if v is None else np.array([v[n] for n in names])
                                               for m, v in e.items()},
                                              {m: self.fusion.weight(m, frames[m]) for m in e if m in self.fusion.streams}))
            probs = np.stack([p for p, _ in fused])
            uncertainty = np.stack([u for _, u in fused])
            thresholds = self.fusion.thresholds
        else:
            probs, uncertainty = np.zeros((len(spans), q)), np.ones((len(spans), q))
            joint = [span for span, ok in zip(spans, usable) if ok]
            if joint:
                p, u = self._predict_spans(features, joint)  # (S', q) each
                probs[np.flatnonzero(usable)], uncertainty[np.flatnonzero(usable)] = p, u
            thresholds = self.info.thresholds
        return [_scores(names, thresholds, probs[i], uncertainty[i]) if usable[i] else _no_signal_scores(names)
                for i in range(len(spans))]

    def _by_modality(self, features: FeatureSet, spans: list[tuple[float, float]],
                     windows: list[FeatureSet]) -> list[ModalityEvidence]:
        """For each span, what each stream alone says: the network run with only that stream
        present (both registered networks accept any subset of streams), with a late-fusion
        checkpoint's summary head of that stream mixed in (`LateFusion.stream_probs`). A stream
        absent from the span (`windows`: `span_windows(features, spans)`), or one the checkpoint
        was not trained on, gets None."""
        evidence: list[ModalityEvidence] = [{} for _ in spans]
        for m in MODALITIES:
            present = [w.present(m) for w in windows]
            if m in self.ignored_modalities or not any(present):
                for e in evidence:
                    e[m] = None
                continue
            probs, _ = self._predict_spans(features, spans, only=m)  # (S, q)
            for i, e in enumerate(evidence):
                if not present[i]:
                    e[m] = None
                    continue
                p = probs[i] if self.fusion is None else self.fusion.stream_probs(m, probs[i], windows[i].features[m])
                e[m] = dict(zip(self.info.label_names, map(float, p)))
        return evidence

    def _predict_spans(self, features: FeatureSet, spans: list[tuple[float, float]],
                       only: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """probs (S, q) and uncertainty (S, q) of each span [a, b) seconds of the clip
        (with `only` set, every other stream is masked).

        A span longer than MAX_SPAN_S is cut into pieces of about CHUNK_S (`tile`) and gets the
        duration-weighted mean of its pieces' probabilities and uncertainties. The span that ends
        at the clip's end also takes every frame/token starting after it. Pieces are batched up to
        MEDIA_S_PER_BATCH seconds of media per forward pass.
        """
        clip_end = spans[-1][1]
        pieces: list[tuple[int, float, float]] = []  # (span index, start s, end s)
        for i, (a, b) in enumerate(spans):
            parts = [(a, b)] if b - a <= MAX_SPAN_S else tile(a, b, CHUNK_S)
            pieces += [(i, pa, pb) for pa, pb in parts]

        def piece_features(a: float, b: float) -> FeatureSet:
            if a <= 0.0 and b >= clip_end and len(spans) == 1:
                return features  # the whole clip, as extracted
            return span_windows(features, [(a, b)], clip_end)[0]

        results: list[tuple[np.ndarray, np.ndarray]] = []  # per piece: (q,), (q,)
        batch: list[FeatureSet] = []
        batch_s = 0.0
        for n, (_, a, b) in enumerate(pieces):
            batch.append(piece_features(a, b))
            batch_s += b - a
            if batch_s >= MEDIA_S_PER_BATCH or n == len(pieces) - 1:
                p, u = self._predict(batch, only)
                results += list(zip(p, u))
                batch, batch_s = [], 0.0

        q = len(self.info.label_names)
        probs, uncertainty, weight = np.zeros((len(spans), q)), np.zeros((len(spans), q)), np.zeros(len(spans))
        for (i, a, b), (p, u) in zip(pieces, results):
            w = max(b - a, 1e-6)
            probs[i] += w * p
            uncertainty[i] += w * u
            weight[i] += w
        return probs / weight[:, None], uncertainty / weight[:, None]

    @torch.no_grad()
    def _predict(self, feature_sets: list[FeatureSet], only: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batch the feature sets (absent modalities masked; with `only`, every other one too)
        -> probs (N, q), uncertainty (N, q). A single-stream pass (`only`) needs no uncertainty
        (zeros; LAMB then skips its Monte-Carlo passes)."""
        masked = set(self.ignored_modalities) | ({m for m in MODALITIES if m != only} if only else set())
        batch = MultimodalBatch.pad([{m: x[:0] if m in masked else x for m, x in fs.features.items()}
                                     for fs in feature_sets])
        with self.precision.autocast():
            prediction = self.model.predict(batch.to(self.device), with_uncertainty=only is None)
        probs = prediction.probs.float().cpu().numpy()
        if prediction.uncertainty is None:
            return probs, np.zeros_like(probs)
        return probs, prediction.uncertainty.float().cpu().numpy()


def span_windows(features: FeatureSet, spans: list[tuple[float, float]],
                 clip_end: float | None = None) -> list[FeatureSet]:
    """The frames/tokens of each span [a, b) seconds; a span reaching the clip's end (`clip_end`,
    default the last span's end) also takes every frame/token starting after it."""
    end = spans[-1][1] if clip_end is None else clip_end
    return [features.window(a, math.inf if b >= end else b) for a, b in spans]


def tile(start: float, end: float, length: float) -> list[tuple[float, float]]:
    """[start, end) seconds cut into round((end - start) / length) consecutive pieces (at least one)
    of `length` seconds; the last piece runs to `end`, so a short tail joins the piece before it."""
    count = max(1, math.floor((end - start) / length + 0.5))
    return [(start + k * length, end if k == count - 1 else start + (k + 1) * length) for k in range(count)]


def analyze(paths: Sequence[Path], options: AnalyzeOptions, progress: ProgressCallback | None = None) -> list[AnalyzeOutcome]:
    """Analyse media files and folders; one outcome per file, in input order.

    With options.workers > 1 the files are shared among that many processes (`_worker_pool`), each
    with its own models; outcomes and their order are the same as with one.
    Raises UserError/CheckpointError (exit 2) for problems that concern every input: bad options,
    missing or corrupt checkpoint, feature-spec mismatch. Per-file problems become ClipFailure.
    """
    if not paths:
        raise UserError("no input given: pass one or more media files or folders")
    if options.workers < 1:
        raise UserError(f"workers must be >= 1, got {options.workers}", parameter="workers")
    inputs = expand_inputs(paths)
    files = [p for p in inputs if isinstance(p, Path)]
    if options.transcript is not None and len(files) > 1:
        raise UserError(f"transcript applies to a single clip, but {len(files)} media files were given", parameter="transcript")
    analyzer = Analyzer(options)  # checks options, checkpoint and features once, before any file
    workers = min(options.workers, len(files))
    if options.adapt in ("batch", "speaker") and analyzer.normaliser is not None:
        if workers > 1:
            raise UserError(f"workers must be 1 with adapt={options.adapt!r} (every clip is read before any is "
                            "analysed)", parameter="workers")
        return _analyze_grouped(analyzer, inputs, len(files), progress)
    if workers > 1:
        del analyzer  # each worker builds its own
        return _analyze_in_workers(inputs, options, workers, progress)
    outcomes: list[AnalyzeOutcome] = []
    done = 0
    for item in inputs:
        if isinstance(item, ClipFailure):
            outcomes.append(item)
            continue
        if progress is not None:
            progress(done, len(files), str(item))
        outcomes.append(_analyze_one(analyzer, item))
        done += 1
    if progress is not None:
        progress(done, len(files), "")
    return outcomes


def _analyze_grouped(analyzer: Analyzer, inputs: list[Path | ClipFailure], total: int,
                     progress: ProgressCallback | None) -> list[AnalyzeOutcome]:
    """"batch"/"speaker" normalisation: every file's features first (kept in memory), the voice
    statistics of each group over them, then every file analysed with its group's statistics."""
    features: dict[int, FeatureSet | ClipFailure] = {}
    groups: dict[str, FrameStatistics] = {}
    for i, item in enumerate(inputs):
        if isinstance(item, ClipFailure):
            continue
        if progress is not None:
            progress(0, total, f"reading {item}")
        try:
            features[i] = analyzer.extract(item)
        except Exception as err:  # noqa: BLE001 - reported per file by `_analyze_one` below
            features[i] = _failure(item, err)
            continue
        audio = features[i].features["audio"]
        name = analyzer.group_of(item)
        if name is not None and len(audio):
            groups.setdefault(name, FrameStatistics.empty(audio.shape[1])).add(audio)
    outcomes: list[AnalyzeOutcome] = []
    done = 0
    for i, item in enumerate(inputs):
        if isinstance(item, ClipFailure):
            outcomes.append(item)
            continue
        if progress is not None:
            progress(done, total, str(item))
        found = features[i]
        if isinstance(found, ClipFailure):
            outcomes.append(found)
        else:
            name = analyzer.group_of(item)
            outcomes.append(_analyze_one(analyzer, item, found, None if name is None else groups.get(name)))
        done += 1
    if progress is not None:
        progress(done, total, "")
    return outcomes


def _failure(item: Path, err: Exception) -> ClipFailure:
    """The one-line ClipFailure of an exception raised while analysing `item`."""
    if isinstance(err, ExtractionError):
        message = str(err)
        prefix = f"{item}: "
        return ClipFailure(str(item), message[len(prefix):] if message.startswith(prefix) else message)
    first_line = (str(err).splitlines() or [""])[0]
    return ClipFailure(str(item), f"unexpected {type(err).__name__} while analysing: {first_line}")


def _analyze_one(analyzer: Analyzer, item: Path, features: FeatureSet | None = None,
                 group: FrameStatistics | None = None) -> AnalyzeOutcome:
    """One file -> ClipResult, or ClipFailure with a one-line reason (never raises for the file)."""
    try:
        return analyzer.analyze_file(item, features, group)
    except Exception as err:  # noqa: BLE001 - one broken file must not stop the others
        return _failure(item, err)


_worker_analyzer: Analyzer | None = None  # the Analyzer of a worker process (`_start_worker`)


def _start_worker(options: AnalyzeOptions) -> None:
    global _worker_analyzer
    _worker_analyzer = Analyzer(options)


def _worker_analyze(item: Path) -> AnalyzeOutcome:
    return _analyze_one(_worker_analyzer, item)


def _analyze_in_workers(inputs: list[Path | ClipFailure], options: AnalyzeOptions, workers: int,
                        progress: ProgressCallback | None) -> list[AnalyzeOutcome]:
    """The files of `inputs` analysed by `workers` spawned processes (fresh interpreters: no state
    forked from this one), results put back in input order. Without --threads each worker gets an
    equal share of the CPUs. A worker that dies fails only the file it was analysing (ClipFailure):
    the unfinished files are rerun, one worker at a time until the culprit is found."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    threads = options.threads or max(1, (os.cpu_count() or 1) // workers)
    worker_options = replace(options, workers=1, threads=threads)
    files = [i for i, item in enumerate(inputs) if isinstance(item, Path)]
    outcomes: dict[int, AnalyzeOutcome] = {i: item for i, item in enumerate(inputs) if isinstance(item, ClipFailure)}
    done, size = 0, workers
    while len(outcomes) < len(inputs):
        pending = [i for i in files if i not in outcomes]
        broken = False
        with ProcessPoolExecutor(max_workers=min(size, len(pending)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(worker_options,)) as pool:
            futures = {pool.submit(_worker_analyze, inputs[i]): i for i in pending}
            for future in as_completed(futures):
                i = futures[future]
                try:
                    outcomes[i] = future.result()
                except BrokenProcessPool:
                    broken = True
                    continue
                done += 1
                if progress is not None:
                    progress(done, len(files), str(inputs[i]))
        if broken and size == 1:
            # One worker runs its files in order: the first unfinished one killed it.
            first = next(i for i in pending if i not in outcomes)
            outcomes[first] = ClipFailure(str(inputs[first]), "the worker process analysing it died "
                                                              "(out of memory or a crash in a native library)")
            done += 1
            size = workers
        elif broken:
            size = 1  # several files were in flight: rerun the unfinished ones one by one to find the culprit
    if progress is not None:
        progress(done, len(files), "")
    return [outcomes[i] for i in range(len(inputs))]
