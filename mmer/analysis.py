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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from mmer.extractors.errors import ExtractionError
from mmer.extractors.featureset import FeatureSet, ModalityStats
from mmer.extractors.pipeline import MEDIA_SUFFIXES, ExtractionSettings, FeatureExtractor
from mmer.errors import UserError
from mmer.catalog import DEFAULT_MODEL
from mmer.runtime import keep_heap_flat, resolve_device, resolve_precision, set_threads
from mmer.face_reading import FaceReading, quality_factor
from mmer.stream_fusion import LateFusion
from mmer.thresholds import apply_thresholds
from mmer.results import (  # noqa: F401  (the result types are part of this module's API: docs/api.md)
    INTERRUPTED, NO_SIGNAL, NO_SIGNAL_WINDOW, AnalyzeOutcome, ClipFailure, ClipResult, EmotionScore, ModalityEvidence,
    ProgressCallback, Segment,
)
from mmer.windows import MIN_WINDOW_FRAMES, auto_window_s, consistent_with_windows, smallest_window_s, span_windows, tile
from mmer.voice_normalisation import ADAPT_MODES, FrameStatistics, VoiceNormaliser, read_speakers, speaker_of
from mmer.models.batch import MultimodalBatch
from mmer.models.checkpoint import CheckpointError, CheckpointInfo, load_checkpoint, read_checkpoint_info
from mmer.core.feature_spec import MODALITIES
from mmer.models.registry import model_names

StreamReadings = dict[str, "np.ndarray | None"]
"""What each stream alone says about one span, inside the Analyzer: stream -> probabilities (q,) in
the model's label order, None when the stream is absent (reported as `ModalityEvidence`)."""

WEIGHTS_DIR = Path(str(importlib.resources.files("mmer.models") / "weights"))
"""Where the shipped default checkpoints live: <name>_default.safetensors."""
MAX_SPAN_S = 45.0
"""Longest stretch of media (seconds) the network sees in one pass. Its attention costs memory and
time with the square of the number of frames, so a longer clip (or window) is analysed in pieces of
about CHUNK_S seconds and gets the duration-weighted mean of their results."""
CHUNK_S = 30.0
MEDIA_S_PER_BATCH = 120.0
"""Seconds of media (summed over pieces or windows) sent through the network in one batch."""


@dataclass
class AnalyzeOptions:
    """Everything `analyze` needs besides the inputs.

    model: a registered model name (uses its shipped default checkpoint) or a checkpoint path.
    device: "auto" | "cpu" | "cuda".  threads: torch CPU threads (None: torch's default).
    fps: video frames sampled per second (None: the rate the checkpoint's features were made at).
    transcript: a transcript file used instead of speech recognition (only with a single clip).
    window_s: when set, report consecutive windows of this many seconds (ClipResult.segments); at
        least `smallest_window_s(fps)`. The clip's result agrees with its windows
        (`consistent_with_windows`): these, or `auto_window_s(duration)` ones when window_s is None.
    auto_window: when window_s is None, report the `auto_window_s(duration)` windows too
        (the HTML report, ELAN and WebVTT exports need a timeline).
    use_cache: reuse/stash extracted features in the extractor cache.  cache_dir: its folder.
    precision: "fp32" | "bf16" | "fp16": autocast for the emotion network (the extractors stay fp32).
    workers: files analysed in this many processes, each with its own models and `threads`.
    features: a `mmer extract` cache folder; an input whose content (SHA-256) it holds, extracted
        with this checkpoint's feature settings and streams, is read from there instead of extracted.
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
    features: Path | None = None
    adapt: str = "clip"
    speakers: Path | None = None




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


def result_label_names(outcomes: Sequence[AnalyzeOutcome], options: AnalyzeOptions) -> list[str]:
    """The emotion labels of a run, in the model's order: from the first analysed clip, or (every
    input failed) from the checkpoint's header, so tabular outputs keep their columns."""
    for outcome in outcomes:
        if isinstance(outcome, ClipResult):
            return [e.label for e in outcome.emotions]
    return read_checkpoint_info(resolve_checkpoint(options.model))[0].label_names


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


def _scores(label_names: list[str], thresholds: list[float], probs: np.ndarray, uncertainty: np.ndarray) -> list[EmotionScore]:
    """probs, uncertainty: (q,) -> one EmotionScore per label (decided by `apply_thresholds`)."""
    present = apply_thresholds(np.asarray(probs)[None, :], thresholds)[0]  # (1, q) -> (q,)
    return [
        EmotionScore(label=name, probability=float(p), present=bool(d), uncertainty=float(u))
        for name, d, p, u in zip(label_names, present, probs, uncertainty)
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
        # A checkpoint trained without some modality must not see that stream: untrained encoder
        # weights would only add noise. Such a stream is not even extracted (no face search, no
        # speech recognition for a voice-only checkpoint).
        trained = self.info.extra.get("trained_modalities", list(MODALITIES))
        self.ignored_modalities = [m for m in MODALITIES if m not in trained]
        self.settings = self._settings_for(self.info)
        smallest = smallest_window_s(self.settings.fps)
        if options.window_s is not None and options.window_s < smallest:
            raise UserError(f"window_s must be at least {smallest:g} seconds, got {options.window_s:g}: shorter windows "
                            f"hold under {MIN_WINDOW_FRAMES} video frames (at {self.settings.fps:g} fps), a few voice "
                            "frames and rarely a word, so most have no signal", parameter="window_s")
        self.extractor = FeatureExtractor(self.settings)  # loads no network yet: each is built when first needed
        expected = self.info.feature_spec
        what = f"{self.checkpoint}: checkpoint was trained on other features than these extraction settings produce"
        if expected.visual.version != self.extractor.spec.visual.version:
            what += (" (the face is now read from an upright crop placed by its landmarks, and unusable faces "
                     "are left out: retrain the checkpoint, or re-fit its face reading on the new crops with "
                     "recipes/fit_face_reading.py)")
        expected.require_compatible(self.extractor.spec, what)
        self.source = None  # an extract cache's samples by source SHA-256 (`--features`)
        if options.features is not None:
            from mmer.datasets.extract_cache import source_index

            self.source = source_index(Path(options.features))
            problems = expected.mismatches(self.source.spec)
            if problems:
                raise UserError(f"features {options.features}: extracted with other feature settings than "
                                f"{self.checkpoint} was trained on: " + "; ".join(problems), parameter="features")
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
        # The face's own reading: the expression network's probabilities pooled over the face track
        # and calibrated on real faces (mmer/face_reading.py), mixed into the visual stream's reading.
        self.face_reading: FaceReading | None = None
        if "face_reading" in self.info.extra:
            try:
                self.face_reading = FaceReading.from_dict(self.info.extra["face_reading"], len(self.info.label_names),
                                                          self.info.feature_spec.visual.dim)
            except ValueError as err:
                raise CheckpointError(f"{self.checkpoint}: {err}") from None
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
                      transcript=None if self.options.transcript is None else str(self.options.transcript),
                      modalities=tuple(m for m in MODALITIES if m not in self.ignored_modalities))
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
        return self._extracted_before(path) or self.extractor.extract(path)

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
        # The whole clip on its own (padding, MC-dropout masks as for any clip) ...
        clip_span = [(0.0, duration)]
        clip_windows = span_windows(features, clip_span)
        clip_evidence = self._by_modality(features, clip_span, clip_windows)
        clip_scores = self._scores(features, clip_span, clip_evidence, clip_windows)[0]
        # ... and its windows: those asked for, else automatic ones; the clip agrees with them
        # (`consistent_with_windows`), and they are reported when asked for.
        window_s = self.options.window_s or auto_window_s(duration)
        spans = tile(0.0, duration, window_s) if duration > 0 else [(0.0, window_s)]
        windows = span_windows(features, spans)
        w_evidence = self._by_modality(features, spans, windows)
        w_scores = self._scores(features, spans, w_evidence, windows)
        segments = []
        for (a, b), scores, evidence in zip(spans, w_scores, w_evidence):
            signal = any(v is not None for v in evidence.values())
            segments.append(Segment(start_s=a, end_s=b, emotions=scores, by_modality=self._evidence(evidence), signal=signal,
                                    warnings=[] if signal else [NO_SIGNAL_WINDOW]))
        clip_scores = consistent_with_windows(clip_scores, segments, duration)
        if self.options.window_s is None and not self.options.auto_window:
            segments = None
        warnings = list(features.warnings) + [
            f"{m} stream not used: this model was not trained on {m} features" for m in self.ignored_modalities]
        if self.fusion is None and 0.0 < features.stats.words_trust < 1.0 and features.present("text"):
            warnings.append("this model reads all streams in one pass and cannot weigh the words by trust: "
                            "they are used in full")
        if (self.normaliser is not None and self.options.adapt == "speaker" and features.present("audio")
                and speaker_of(path, self.speakers) is None):
            warnings.append("not in the speakers file: the voice is normalised over this clip alone")
        if all(v is None for v in clip_evidence[0].values()):
            warnings.append(NO_SIGNAL)
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
            by_modality=self._evidence(clip_evidence[0]),
            words=list(features.words),
        )

    def _extracted_before(self, path: Path) -> FeatureSet | None:
        """The features of `path` from the `--features` extract cache, when it holds a sample of
        this file's content with every stream the checkpoint reads (and their frame times)."""
        if self.source is None:
            return None
        from mmer.datasets.extract_cache import read_cached_sample, read_cached_times
        from mmer.extractors.feature_cache import file_sha256
        from mmer.extractors.media import probe_media

        started = time.perf_counter()
        found = self.source.samples.get(file_sha256(path))
        wanted = [m for m in MODALITIES if m not in self.ignored_modalities]
        if found is None or not set(wanted) <= set(found[1]):
            return None
        try:
            arrays = read_cached_sample(found[0], self.source.spec)
            times = read_cached_times(found[0])
        except (OSError, ValueError):
            return None
        if any(m not in times or len(times[m]) != len(arrays[m]) for m in MODALITIES):
            return None
        ends = [float(t[-1]) for t in times.values() if len(t)]
        duration = probe_media(path).duration_s or (max(ends) if ends else 0.0)
        rate = self.source.spec.audio.frame_rate_hz or 1.0
        stats = ModalityStats(face_frames=len(arrays["visual"]), seconds=float(duration),
                              voiced=len(arrays["audio"]) / rate, tokens=len(arrays["text"]))
        return FeatureSet(features=arrays, times=times, spec=self.source.spec, duration_s=float(duration), stats=stats,
                          timings_s={"features_cache": time.perf_counter() - started},
                          warnings=[f"features read from the extract cache {self.options.features} "
                                    "(it stores no transcript)"])

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

    def _scores(self, features: FeatureSet, spans: list[tuple[float, float]], evidence: list[StreamReadings],
                windows: list[FeatureSet]) -> list[list[EmotionScore]]:
        """Per span, one EmotionScore per label: from the late fusion (`LateFusion.fuse_input`) of the
        single-stream readings `evidence` (`_by_modality`) when the checkpoint has one, else from one joint pass of the network over every
        present stream. A span without any usable stream has nothing present, probability 0 and
        uncertainty 1 (no signal is not an answer). windows: `span_windows(features, spans)`."""
        names, q = self.info.label_names, len(self.info.label_names)
        usable = [any(v is not None for v in e.values()) for e in evidence]
        if self.fusion is not None:
            fused = []
            for window, readings in zip(windows, evidence):
                # a small, blurred or turned face counts less; the words only as far as they were heard
                fused.append(self.fusion.fuse_input(readings, window.features,
                                                    weight_factors={"visual": quality_factor(window.face_quality)},
                                                    trust={"text": features.stats.words_trust}))
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
                     windows: list[FeatureSet]) -> list[StreamReadings]:
        """For each span, what each stream alone says: the network run with only that stream
        present (both registered networks accept any subset of streams), with a late-fusion
        checkpoint's summary head of that stream mixed in (`LateFusion.stream_probs`), and for the
        face the checkpoint's `FaceReading` (pooled, calibrated expression probabilities). A stream
        absent from the span (`windows`: `span_windows(features, spans)`), or one the checkpoint
        was not trained on, gets None."""
        evidence: list[StreamReadings] = [{} for _ in spans]
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
                if m == "visual" and self.face_reading is not None:
                    p = self.face_reading.mix(p, windows[i].features[m], windows[i].face_quality)
                e[m] = np.asarray(p, dtype=np.float64)
        return evidence

    def _evidence(self, readings: StreamReadings) -> ModalityEvidence:
        """A span's stream readings (q,) as the results report them: {stream: {label: probability}}."""
        return {m: None if p is None else dict(zip(self.info.label_names, map(float, p))) for m, p in readings.items()}

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


def analyze(paths: Sequence[Path], options: AnalyzeOptions, progress: ProgressCallback | None = None) -> list[AnalyzeOutcome]:
    """Analyse media files and folders; one outcome per file, in input order.

    With options.workers > 1 the files are shared among that many processes (`mmer.analysis_workers`),
    each with its own models; outcomes and their order are the same as with one.
    Raises UserError/CheckpointError (exit 2) for problems that concern every input: bad options,
    missing or corrupt checkpoint, feature-spec mismatch. Per-file problems become ClipFailure.
    A Ctrl-C (KeyboardInterrupt) once files are being analysed stops the run at once: the files
    finished keep their outcomes, every other one becomes `ClipFailure(file, INTERRUPTED,
    interrupted=True)`, and nothing is raised.
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
        from mmer.analysis_workers import analyze_in_workers

        return analyze_in_workers(inputs, options, workers, progress)
    outcomes: list[AnalyzeOutcome] = []
    done = 0
    try:
        for item in inputs:
            if isinstance(item, ClipFailure):
                outcomes.append(item)
                continue
            if progress is not None:
                progress(done, len(files), str(item))
            outcomes.append(analyze_one(analyzer, item))
            done += 1
    except KeyboardInterrupt:
        outcomes += [item if isinstance(item, ClipFailure) else ClipFailure(str(item), INTERRUPTED, interrupted=True)
                     for item in inputs[len(outcomes):]]
        return outcomes
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
        except Exception as err:  # noqa: BLE001 - reported per file by `analyze_one` below
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
            outcomes.append(analyze_one(analyzer, item, found, None if name is None else groups.get(name)))
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


def analyze_one(analyzer: Analyzer, item: Path, features: FeatureSet | None = None,
                group: FrameStatistics | None = None) -> AnalyzeOutcome:
    """One file -> ClipResult, or ClipFailure with a one-line reason (never raises for the file)."""
    try:
        return analyzer.analyze_file(item, features, group)
    except Exception as err:  # noqa: BLE001 - one broken file must not stop the others
        return _failure(item, err)


