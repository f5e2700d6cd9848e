"""Media file -> `FeatureSet`: decode, face geometry, acoustic descriptors, speech to text, word-piece
embeddings, with an on-disk cache. The public entry points of the `extractors` package.

    extractor = FeatureExtractor(ExtractionSettings(device="cpu"))
    for path in paths:
        features = extractor.extract(path)   # ExtractionError (one line) for a bad file

Each model is loaded once and reused for every later file, and only when a file needs it: models
load in a background thread while the video is decoded and searched for faces. The speech models
(speech recognition, text encoder) are fetched only once the voice-activity detector has heard
speech in the audio decoded so far, so a silent clip never loads them; the acoustic model only for
a clip with speech.
"""

from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

from mmer.extractors.acoustic import ACOUSTIC_RATE_HZ, AcousticExtractor, acoustic_set, acoustic_version
from mmer.extractors.feature_cache import FeatureCache, SourceIdentity, file_sha256
from mmer.extractors.errors import ExtractionError
from mmer.extractors.featureset import FeatureSet, ModalityStats, plausible_word_times
from mmer.extractors.media import (AUDIO_RATE_HZ, AUDIO_SUFFIXES, MEDIA_SUFFIXES, VIDEO_SUFFIXES, DecodedAudio,
                              MediaInfo, MediaReader, check_readable, probe_media)
from mmer.extractors.speech import (TRANSCRIPT_SUFFIXES, SpeechRecognizer, Word, asr_identity, asr_model_dir,
                               read_transcript)
from mmer.extractors.text import EncoderInfo, TextEncoder, encoder_info
from mmer.extractors.voice_activity import LOWERED_PASS, VAD_VERSION, inside, speech_spans, spoken_seconds
from mmer.core.feature_spec import MODALITIES, FeatureSpec, ModalitySpec

__all__ = ["ExtractionSettings", "FeatureExtractor", "extract_features", "feature_spec_for",
           "MEDIA_SUFFIXES", "VIDEO_SUFFIXES", "AUDIO_SUFFIXES", "ExtractionError"]

FRAMES_PER_BATCH = 16
"""Sampled video frames sent through the face detector together."""
MIN_VOICED_S = 0.25
"""Below this many seconds of speech (extractors.voice_activity) the audio has no voice: the audio
stream is absent and speech recognition is skipped."""
SPEECH_HINT_S = 30.0
"""While the video is decoded, the first this many seconds of audio are checked (in the pieces decoded
so far) for speech, to start loading the speech models early; later speech is found by the full pass."""
VISUAL_EXTRACTOR = "mtcnn-face-geometry+fer2013-expression"
TEXT_EXTRACTOR = "bert-wordpiece"


@dataclass
class ExtractionSettings:
    """Everything that decides which features a file gives (and how fast)."""

    fps: float = 5.0  # visual frames sampled per second
    max_side_px: int = 320  # frames are downscaled so their longer side is at most this, before detection
    acoustic: str = "egemaps+whisper"  # "egemaps+whisper" (voice features v2) | "egemaps" | "compare" | "librosa"
    text_encoder: str | None = None  # local HF BERT directory; None = packaged all-MiniLM-L6-v2
    asr_model: str | None = None  # faster-whisper model directory; None = packaged tiny.en
    transcript: str | None = None  # .txt/.srt/.vtt file used instead of speech recognition
    language: str | None = None  # spoken language code for whisper (None = detect / English model)
    device: str = "cpu"  # "cpu" | "cuda", already resolved by the caller
    use_cache: bool = True
    cache_dir: str | None = None  # default: $MMER_CACHE_DIR or ~/.cache/mmer/features
    modalities: tuple[str, ...] = MODALITIES  # streams to extract; the others are never read (T = 0)


def _check_settings(settings: ExtractionSettings) -> None:
    unknown = [m for m in settings.modalities if m not in MODALITIES]
    if unknown or not settings.modalities:
        raise ExtractionError(f"modalities must be a non-empty subset of {', '.join(MODALITIES)}, "
                              f"got {', '.join(settings.modalities) or 'none'}")
    if not settings.fps > 0:
        raise ExtractionError(f"frame rate must be > 0 frames per second, got {settings.fps}")
    if settings.max_side_px < 48:
        raise ExtractionError(f"max_side_px must be at least 48 pixels, got {settings.max_side_px}")
    if settings.device not in ("cpu", "cuda"):
        raise ExtractionError(f"device must be 'cpu' or 'cuda', got {settings.device!r}")
    acoustic_set(settings.acoustic)
    if settings.transcript is not None:
        path = Path(settings.transcript)
        if path.suffix.lower() not in TRANSCRIPT_SUFFIXES:
            raise ExtractionError(f"{path}: transcript must be one of {', '.join(TRANSCRIPT_SUFFIXES)}")
        if not path.is_file():
            raise ExtractionError(f"{path}: transcript file not found")
        read_transcript(path, 0.0)  # a binary or malformed file is refused before any media work


def feature_spec_for(settings: ExtractionSettings) -> FeatureSpec:
    """The FeatureSpec files extracted with `settings` will carry; reads only the text encoder's
    config.json. Raises ExtractionError for invalid settings."""
    return _spec_and_encoder(settings)[0]


def _spec_and_encoder(settings: ExtractionSettings) -> tuple[FeatureSpec, EncoderInfo]:
    """`feature_spec_for(settings)` and the text encoder's `encoder_info` it was built from."""
    _check_settings(settings)
    encoder = encoder_info(settings.text_encoder)
    audio = acoustic_set(settings.acoustic)
    from mmer.extractors.expression import weights_metadata
    from mmer.extractors.face import VISUAL_DIM, VISUAL_LAYOUT_VERSION

    expression = weights_metadata()["source"]["sha256"][:12]  # which expression weights read the faces
    spec = FeatureSpec(
        text=ModalitySpec(f"{TEXT_EXTRACTOR}:{encoder.name}", encoder.dim, None, encoder.version),
        audio=ModalitySpec(audio.extractor, audio.dim, ACOUSTIC_RATE_HZ,
                           f"{acoustic_version(settings.acoustic)}/speech-only-{VAD_VERSION}"),
        visual=ModalitySpec(VISUAL_EXTRACTOR, VISUAL_DIM, float(settings.fps),
                            f"facenet-pytorch-{metadata.version('facenet-pytorch')}/fer2013-{expression}/{VISUAL_LAYOUT_VERSION}"),
    )
    return spec, encoder


STAGES = ("decode", "face", "expression", "acoustic", "asr", "text")
"""Stages always present in `FeatureSet.timings_s` of an extraction (0.0 when skipped)."""


class _Clock:
    """Accumulates seconds per stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


class _Models:
    """The extraction models, each built once, all in one background thread: ahead of need
    (`prefetch`, so loading overlaps decoding and face detection) or when first needed (`get`).

    Building them one after the other in a single thread also means facenet_pytorch's import, with
    its temporary torchvision stand-ins (see extractors/face.py), never overlaps another import.
    """

    def __init__(self, builders: dict[str, Callable[[], object]]):
        self._builders = builders
        self._built: dict[str, object] = {}
        self._pending: dict[str, Future] = {}
        self._executor: ThreadPoolExecutor | None = None

    def prefetch(self, names: list[str]) -> None:
        for name in names:
            if name not in self._built and name not in self._pending:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmer-model-load")
                self._pending[name] = self._executor.submit(self._builders[name])

    def requested(self) -> list[str]:
        """Names of the models built or being built, sorted."""
        return sorted({*self._built, *self._pending})

    def ready(self, name: str) -> bool:
        """Whether `name` is built (or its build has finished), without waiting."""
        return name in self._built or (name in self._pending and self._pending[name].done())

    def get(self, name: str, clock: _Clock):
        """The model; seconds spent waiting for it to be built are added to the "load" stage."""
        if name not in self._built:
            start = time.perf_counter()
            self.prefetch([name])
            self._built[name] = self._pending.pop(name).result()
            clock.add("load", time.perf_counter() - start)
        return self._built[name]


class FeatureExtractor:
    """Turns media files into FeatureSets; models are loaded once and reused across files."""

    def __init__(self, settings: ExtractionSettings):
        self.settings = settings
        self.spec, self._encoder_info = _spec_and_encoder(settings)
        self._asr_dir = asr_model_dir(settings.asr_model) if settings.transcript is None else None
        self._cache = FeatureCache(settings.cache_dir) if settings.use_cache else None
        self._settings_digest = self._digest() if settings.use_cache else ""
        device = settings.device
        self._models = _Models({
            "vad": _voice_activity_detector,
            "faces": lambda: _face_detector(device),
            "expression": lambda: _expression_reader(device),
            "acoustic": lambda: AcousticExtractor(settings.acoustic, device),
            "asr": lambda: SpeechRecognizer(self._asr_dir, device, _torch_threads()),
            "text": lambda: TextEncoder(self._encoder_info, device),
        })

    @property
    def loaded_models(self) -> list[str]:
        """Models loaded (or loading) so far, sorted: "acoustic", "asr", "expression", "faces",
        "text", "vad". Only what the files extracted so far needed."""
        return self._models.requested()

    def _digest(self) -> str:
        """Hash of every setting that changes the features (device and caching excluded)."""
        s = self.settings
        parts = {"spec": self.spec.to_dict(), "max_side_px": s.max_side_px,
                 "transcript": file_sha256(s.transcript) if s.transcript else None,
                 "asr": asr_identity(self._asr_dir) if self._asr_dir else None, "language": s.language,
                 "vad_lowered_pass": list(LOWERED_PASS)}
        if set(s.modalities) != set(MODALITIES):  # (all three: the digest of earlier versions)
            parts["modalities"] = sorted(s.modalities)
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def extract(self, path: str | Path) -> FeatureSet:
        """One media file -> FeatureSet following `self.spec`. Raises ExtractionError for bad input.

        timings_s: seconds per stage: decode, face, acoustic, asr (or transcript), text, plus load
        (models loaded during this call), hash and cache (when the cache is on; a hit has only these).
        """
        clock = _Clock()
        path = Path(path)
        check_readable(path)
        key = source = None
        if self._cache is not None:
            start = time.perf_counter()
            source = SourceIdentity.of(path, self._settings_digest)
            key = self._cache.key_for(source)
            clock.add("hash", time.perf_counter() - start)
            start = time.perf_counter()
            hit = self._cache.load(key, self.spec, source)
            clock.add("cache", time.perf_counter() - start)
            if hit is not None:
                hit.timings_s = clock.seconds
                return hit
        for stage in STAGES:
            clock.add(stage, 0.0)
        start = time.perf_counter()
        info = probe_media(path)
        clock.add("decode", time.perf_counter() - start)
        transcript_file = self.settings.transcript is not None
        # Speech recognition and the text encoder come later, once speech is heard (`_SpeechHint`).
        wanted = set(self.settings.modalities)
        self._models.prefetch((["faces", "expression"] if info.has_video and "visual" in wanted else [])
                              + (["vad"] if info.has_audio and wanted & {"audio", "text"} else [])
                              + (["text"] if transcript_file and "text" in wanted else []))

        warnings: list[str] = []
        reader, visual, face_quality, visual_times, face_frames = self._read_visual(info, clock)
        audio = reader.audio
        acoustic, acoustic_times, voiced = self._audio_features(audio, clock)
        words, trust = self._words(info, audio, voiced, clock, warnings) if "text" in wanted else ([], 1.0)
        words = plausible_word_times(words)
        text, text_times = np.zeros((0, self.spec.text.dim), np.float32), np.zeros(0)
        if words and trust > 0:
            encoder = self._models.get("text", clock)
            start = time.perf_counter()
            text, text_times = encoder.encode(words)
            clock.add("text", time.perf_counter() - start)

        if "visual" not in wanted:
            pass  # not asked for: the frames were decoded (for the audio) but never searched for a face
        elif not info.has_video:
            warnings.insert(0, "no video stream: visual features absent")
        elif face_frames == 0:
            warnings.insert(0, f"no face found in {reader.frames_sampled} sampled frames: visual features absent")
        elif len(visual) == 0:
            warnings.insert(0, f"a face in {face_frames} of {reader.frames_sampled} sampled frames, but none usable "
                               "(too small, blurred or turned away): visual features absent")
        result = FeatureSet(
            features={"text": text, "audio": acoustic, "visual": visual},
            times={"text": text_times, "audio": acoustic_times, "visual": visual_times},
            spec=self.spec, transcript=" ".join(w.text for w in words), words=words,
            duration_s=info.duration_s or max(audio.seconds, float(visual_times[-1]) if len(visual_times) else 0.0),
            face_quality=face_quality,
            stats=ModalityStats(frames=reader.frames_sampled, face_frames=face_frames,
                                usable_face_frames=int(len(visual)), seconds=audio.seconds,
                                voiced=voiced, tokens=int(text.shape[0]), words_trust=trust),
            timings_s=clock.seconds, warnings=warnings)
        if self._cache is not None:
            try:
                self._cache.store(key, result, source)
            except OSError as err:
                result.warnings.append(f"feature cache not written ({' '.join(str(err).split())})")
        return result

    def _read_visual(self, info: MediaInfo, clock: _Clock):
        """Decode the file once; detect and track faces batch by batch as frames arrive, cut the
        tracked face upright (`expression.face_crop`), rate it (`face_quality`) and read the
        expression of the usable ones (quality >= USABLE_QUALITY; one network pass per batch).
        Returns the reader (with audio), visual (T, VISUAL_DIM) float32 and quality (T,) float32
        of the usable faces, their times (T,), and the number of frames with a detected face."""
        from mmer.extractors.expression import face_crop, face_scale, grey_frame
        from mmer.extractors.face import GEOMETRY_FEATURE_NAMES, VISUAL_DIM, FaceTrack, face_vector
        from mmer.extractors.face_quality import USABLE_QUALITY, crop_sharpness, face_quality

        yaw, pitch = GEOMETRY_FEATURE_NAMES.index("nose_along_eyes"), GEOMETRY_FEATURE_NAMES.index("nose_down_fraction")
        reader = MediaReader(info, self.settings.fps, self.settings.max_side_px, FRAMES_PER_BATCH,
                             threads=_torch_threads())
        wanted = set(self.settings.modalities)
        speech_models = ((["acoustic"] if "audio" in wanted else [])
                         + (["asr", "text"] if self.settings.transcript is None and "text" in wanted else []))
        hint = _SpeechHint(self._models, speech_models if info.has_audio else [])
        rows, times, qualities = [], [], []
        face_frames = 0
        track = FaceTrack()
        face_s = expression_s = 0.0
        start = time.perf_counter()
        load_before = clock.seconds.get("load", 0.0)
        for batch in reader.frame_batches():
            hint.listen(reader.audio_so_far())
            if "visual" not in wanted:
                continue
            face_start = time.perf_counter()
            detector = self._models.get("faces", clock)
            height, width = batch.frames.shape[1:3]
            geometry, crops = [], []
            for frame, faces, t in zip(batch.frames, detector.detect(batch.frames), batch.times):
                pick = track.choose(faces)
                if pick is None:
                    continue
                face_frames += 1
                points = faces.landmarks[pick]
                vector = face_vector(faces.boxes[pick], float(faces.probs[pick]), points, width, height)
                crop = face_crop(grey_frame(frame), points)
                quality = face_quality(float(faces.probs[pick]), face_scale(points), float(vector[yaw]),
                                       float(vector[pitch]), crop_sharpness(crop))
                if quality >= USABLE_QUALITY:
                    geometry.append(vector)
                    crops.append(crop)
                    qualities.append(quality)
                    times.append(t)
            if geometry:
                reader_net = self._models.get("expression", clock)
                expression_start = time.perf_counter()
                expression = reader_net(np.stack(crops))  # (N, 7)
                expression_s += time.perf_counter() - expression_start
                rows.extend(np.concatenate([np.stack(geometry), expression], axis=1).astype(np.float32))
            face_s += time.perf_counter() - face_start
        loading = clock.seconds.get("load", 0.0) - load_before
        clock.add("decode", time.perf_counter() - start - face_s)
        clock.add("face", face_s - loading - expression_s)
        clock.add("expression", expression_s)
        visual = np.stack(rows) if rows else np.zeros((0, VISUAL_DIM), np.float32)
        return (reader, visual, np.asarray(qualities, dtype=np.float32), np.asarray(times, dtype=np.float64),
                face_frames)

    def _audio_features(self, audio: DecodedAudio, clock: _Clock):
        """Acoustic features (T, D) float32 of the frames inside speech, their media times (T,) and
        the seconds of speech (`speech_features`)."""
        nothing = np.zeros((0, self.spec.audio.dim), np.float32), np.zeros(0)
        wanted = set(self.settings.modalities)
        if audio.samples.shape[0] == 0 or not wanted & {"audio", "text"}:
            return *nothing, 0.0
        self._models.get("vad", clock)
        start = time.perf_counter()
        spans = speech_spans(audio.samples)
        clock.add("acoustic", time.perf_counter() - start)
        if spoken_seconds(spans) < MIN_VOICED_S or "audio" not in wanted:
            return *nothing, spoken_seconds(spans)  # no voice (or not asked for): no acoustic model
        if self.settings.transcript is None and "text" in wanted:
            self._models.prefetch(["asr", "text"])  # they load while the acoustic features are computed
        extractor = self._models.get("acoustic", clock)
        start = time.perf_counter()
        features, times, voiced = speech_features(extractor, audio.samples, spans)
        clock.add("acoustic", time.perf_counter() - start)
        return features, times + audio.start_s, voiced

    def _words(self, info: MediaInfo, audio: DecodedAudio, voiced: float, clock: _Clock,
               warnings: list[str]) -> tuple[list[Word], float]:
        """Words with media times: from the transcript file, else recognised from the audio; and how
        far they can be trusted in [0, 1] (`RecognitionConfidence.trust`; 1 for a transcript file,
        0: the recogniser's own scores say its decoding failed, so the words give no text features)."""
        if self.settings.transcript is not None:
            start = time.perf_counter()
            words = read_transcript(self.settings.transcript, info.duration_s)
            clock.add("transcript", time.perf_counter() - start)
            if not info.has_audio:
                warnings.append("no audio track: audio features absent")
            elif voiced < MIN_VOICED_S:
                warnings.append("no speech in the audio (silence or noise): audio features absent")
            if not words:
                warnings.append("the transcript file has no words: text features absent")
            return words, 1.0
        if not info.has_audio:
            warnings.append("no audio track: audio and text features absent")
            return [], 1.0
        if voiced < MIN_VOICED_S:
            warnings.append("no speech in the audio (silence or noise): audio and text features absent")
            return [], 1.0
        asr = self._models.get("asr", clock)
        start = time.perf_counter()
        heard = asr.transcribe(audio.samples, self.settings.language)
        clock.add("asr", time.perf_counter() - start)
        warnings.extend(heard.warnings)
        trust = 1.0
        if not heard.words:
            warnings.append("no words recognised in the audio: text features absent")
        elif heard.confidence is not None and heard.confidence.trust() < 1.0:
            trust = heard.confidence.trust()
            outcome = "text features absent" if trust == 0.0 else f"words trusted {trust:.0%}"
            warnings.append(f"the speech recogniser is unsure of the words: {heard.confidence.reason()}; "
                            f"it knows only English and writes invented English for other languages: {outcome}")
        return [Word(w.text, w.start_s + audio.start_s, w.end_s + audio.start_s) for w in heard.words], trust


def speech_features(acoustic: AcousticExtractor, samples: np.ndarray,
                    spans: list[tuple[float, float]] | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """The audio stream of 16 kHz mono `samples` (N,): acoustic features (T, D) float32 of the
    frames inside speech (extractors.voice_activity), their times (T,) in seconds from samples[0],
    and the seconds of speech. Below MIN_VOICED_S of speech there are no frames: silence and noise
    are not a voice. `spans`: the speech spans of `samples` when already found (`speech_spans`)."""
    spans = speech_spans(samples) if spans is None else spans
    voiced = spoken_seconds(spans)
    if voiced < MIN_VOICED_S:
        return np.zeros((0, acoustic.spec.dim), np.float32), np.zeros(0), voiced
    features, times = acoustic(samples, spans)
    keep = inside(times, spans)
    return features[keep], times[keep], voiced


class _SpeechHint:
    """Starts loading the speech models (`names`) as soon as the voice-activity detector hears
    MIN_VOICED_S of speech in the first SPEECH_HINT_S seconds of audio decoded so far. Checks only
    new audio, and only once the detector is loaded (never waits for it); a hint only, the features
    come from the full pass over the whole audio."""

    def __init__(self, models: _Models, names: list[str]):
        self._models, self._names = models, names
        self._checked = 0  # samples already listened to
        self._voiced = 0.0

    def listen(self, samples: np.ndarray) -> None:
        """samples: (N,) float32 16 kHz audio decoded so far (grows between calls)."""
        limit = int(SPEECH_HINT_S * AUDIO_RATE_HZ)
        if not self._names or self._checked >= limit or not self._models.ready("vad"):
            return
        piece = samples[self._checked:limit]
        if piece.shape[0] < AUDIO_RATE_HZ:  # under a second new: wait for more
            return
        self._checked += piece.shape[0]
        self._voiced += spoken_seconds(speech_spans(piece))
        if self._voiced >= MIN_VOICED_S:
            self._models.prefetch(self._names)
            self._names = []


def _voice_activity_detector():
    """Loads (and caches inside faster-whisper) the Silero voice-activity model."""
    from faster_whisper.vad import get_vad_model

    return get_vad_model()


def _face_detector(device: str):
    from mmer.extractors.face import FaceDetector

    return FaceDetector(device)


def _expression_reader(device: str):
    from mmer.extractors.expression import ExpressionReader

    return ExpressionReader(device)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def extract_features(path: str | Path, settings: ExtractionSettings | None = None) -> FeatureSet:
    """Convenience: build a FeatureExtractor for one file (models load every call; reuse an extractor
    for many files)."""
    return FeatureExtractor(settings or ExtractionSettings()).extract(path)
