"""Media decoding with PyAV: one streamed pass yields sampled, downscaled RGB frames in small batches
and collects the audio track resampled to 16 kHz mono float32.

Only the current batch of sampled frames is held in memory, so memory stays flat however long the
video; the audio (64 kB per second at 16 kHz float32, 230 MB per hour) is kept whole for the audio
models, which process it in pieces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from mmer.extractors.errors import ExtractionError

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".flv")
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".mp3", ".flac", ".m4a")
MEDIA_SUFFIXES: tuple[str, ...] = VIDEO_SUFFIXES + AUDIO_SUFFIXES
AUDIO_RATE_HZ = 16_000
"""Sample rate (Hz) of the decoded audio handed to the audio models."""
TRUNCATION_TOLERANCE_S = 1.0
"""Decoded streams may end this many seconds (or 5 %, whichever is larger) before the declared
duration; a larger gap means the file was cut short."""
_NO_DURATION_CHECK = (".mp3",)  # mp3 durations are often estimated from the bit rate
_STILL_IMAGE_FORMATS = ("image2", "_pipe")  # FFmpeg demuxers of single pictures (png_pipe, jpeg_pipe, ...)


@dataclass(frozen=True)
class MediaInfo:
    """What a container holds, read from its header (nothing decoded yet)."""

    path: Path
    duration_s: float  # container (or longest stream) duration, seconds
    has_video: bool
    has_audio: bool
    width: int = 0  # coded video size in pixels (0 without video)
    height: int = 0


@dataclass
class FrameBatch:
    """Consecutive sampled video frames: frames (B, H, W, 3) uint8 RGB, times (B,) seconds."""

    frames: np.ndarray
    times: np.ndarray


@dataclass
class DecodedAudio:
    """samples (N,) float32 mono at `AUDIO_RATE_HZ`; start_s: media time of samples[0] (seconds)."""

    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    start_s: float = 0.0

    @property
    def seconds(self) -> float:
        return self.samples.shape[0] / AUDIO_RATE_HZ


class _SampleBuffer:
    """Float32 samples appended in place into one array sized from the declared duration, so the
    audio is never held twice (as pieces and as their concatenation); grows by 25 % if too small.
    Unused capacity is never written, so it costs address space, not memory."""

    def __init__(self, expected_samples: int):
        self._data = np.empty(max(expected_samples, AUDIO_RATE_HZ), np.float32)
        self._size = 0

    def append(self, piece: np.ndarray) -> None:
        end = self._size + piece.shape[0]
        if end > self._data.shape[0]:
            grown = np.empty(max(end, int(self._data.shape[0] * 1.25)), np.float32)
            grown[:self._size] = self._data[:self._size]
            self._data = grown
        self._data[self._size:end] = piece
        self._size = end

    def view(self) -> np.ndarray:
        return self._data[:self._size]


def _fail(path: Path, problem: str) -> ExtractionError:
    return ExtractionError(f"{path}: {problem}")


def _reason(err: Exception) -> str:
    """A short one-line reason from a PyAV/OS error (without the file name PyAV appends)."""
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


def check_readable(path: Path) -> None:
    """Raise ExtractionError unless `path` is a non-empty, readable file with a media suffix."""
    if path.suffix.lower() not in MEDIA_SUFFIXES:
        raise _fail(path, f"unsupported file type {path.suffix or '(no suffix)'!r}; expected one of "
                          + " ".join(MEDIA_SUFFIXES))
    if not path.exists():
        raise _fail(path, "no such file")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as err:
        raise _fail(path, f"cannot read file ({_reason(err)})") from None
    if path.stat().st_size == 0:
        raise _fail(path, "empty file (0 bytes)")


def probe_media(path: str | Path) -> MediaInfo:
    """Open the container header: streams and duration. Raises ExtractionError for bad input."""
    import av

    path = Path(path)
    check_readable(path)
    try:
        with av.open(str(path)) as container:
            # a stream whose codec FFmpeg does not know has no codec context: it cannot be decoded
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            video, audio = (s if s is not None and s.codec_context is not None else None for s in (video, audio))
            if video is None and audio is None:
                raise _fail(path, "no audio or video stream (that FFmpeg can decode)")
            if audio is None and any(part in container.format.name for part in _STILL_IMAGE_FORMATS):
                raise _fail(path, f"a still image ({container.format.name.split('_')[0]}), not a video or audio recording")
            durations = [float(s.duration * s.time_base) for s in (video, audio)
                         if s is not None and s.duration is not None and s.time_base is not None]
            if container.duration is not None:
                durations.append(container.duration / av.time_base)
            return MediaInfo(path=path, duration_s=max(durations, default=0.0),
                             has_video=video is not None, has_audio=audio is not None,
                             width=video.codec_context.width if video else 0,
                             height=video.codec_context.height if video else 0)
    except ExtractionError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise _fail(path, f"cannot open as media: corrupt, truncated or not a media file ({_reason(err)})") from None


def _from_media_start(samples: np.ndarray, start_s: float) -> DecodedAudio:
    """The decoded audio placed at its presentation time: samples that come before the media's
    start (time 0; e.g. an Opus or AAC stream whose first frame is timed before the video's) are
    dropped, so samples[0] is heard at time 0 whatever the container; a later start is kept in
    `start_s`. Keeping them (and calling their first one time 0) shifted the whole track by the
    codec's delay, a few milliseconds, which moves the voice descriptors (formants, voicing)."""
    if start_s >= 0.0:
        return DecodedAudio(samples=samples, start_s=start_s)
    early = min(int(round(-start_s * AUDIO_RATE_HZ)), samples.shape[0])
    return DecodedAudio(samples=samples[early:], start_s=0.0)


def sampled_size(width: int, height: int, max_side_px: int) -> tuple[int, int]:
    """(width, height) after downscaling so the longer side is at most `max_side_px` (never upscaled)."""
    scale = min(1.0, max_side_px / max(width, height, 1))
    return max(2, round(width * scale)), max(2, round(height * scale))


class MediaReader:
    """One streamed pass over a media file.

    Iterate `frame_batches()` to get the video frames sampled at `fps` (the first frame at or after
    each multiple of 1/fps seconds), downscaled to at most `max_side_px` on the longer side and
    turned upright; audio is decoded on the way and is in `audio` once the iteration has finished.
    Times are seconds from the container's start.
    """

    def __init__(self, info: MediaInfo, fps: float, max_side_px: int, batch_frames: int = 16, threads: int = 1):
        self.info = info
        self.fps = fps
        self.max_side_px = max_side_px
        self.batch_frames = batch_frames
        self.threads = threads  # decoder threads
        self.audio = DecodedAudio()
        self.frames_sampled = 0
        self._samples: _SampleBuffer | None = None  # audio decoded so far, while iterating
        self.frames_decoded = 0  # every decoded video frame, sampled or not

    def audio_so_far(self) -> np.ndarray:
        """(N,) float32 16 kHz: the audio decoded up to now (a view; all of it once iteration ends)."""
        if self._samples is None:
            return self.audio.samples
        return self._samples.view()

    def frame_batches(self) -> Iterator[FrameBatch]:
        import av

        path = self.info.path
        try:
            with av.open(str(path)) as container:
                yield from self._demux(container)
        except ExtractionError:
            raise
        except (av.FFmpegError, OSError, ValueError) as err:
            raise _fail(path, f"corrupt or truncated media, decoding failed ({_reason(err)})") from None

    def _demux(self, container) -> Iterator[FrameBatch]:
        import av

        origin = (container.start_time or 0) / av.time_base
        streams = []
        video = container.streams.video[0] if self.info.has_video else None
        audio = container.streams.audio[0] if self.info.has_audio else None
        if video is not None:
            video.thread_type = "AUTO"
            video.codec_context.thread_count = self.threads
            streams.append(video)
        if audio is not None:
            streams.append(audio)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE_HZ)
            samples = self._samples = _SampleBuffer(int((self.info.duration_s + 1.0) * AUDIO_RATE_HZ))
        audio_start: float | None = None
        frames, times = [], []
        next_sample_s = 0.0
        decoded_end = 0.0
        for packet in container.demux(streams):
            for frame in packet.decode():
                t = (frame.time if frame.time is not None else decoded_end + origin) - origin
                if packet.stream is audio:
                    audio_start = t if audio_start is None else audio_start
                    decoded_end = max(decoded_end, t + frame.samples / frame.sample_rate)
                    for out in resampler.resample(frame):
                        samples.append(out.to_ndarray().reshape(-1))
                    continue
                decoded_end = max(decoded_end, t + (1.0 / float(video.average_rate) if video.average_rate else 0.0))
                self.frames_decoded += 1
                if t + 1e-6 < next_sample_s:
                    continue
                next_sample_s = (math.floor(t * self.fps + 1e-6) + 1) / self.fps
                image = self._to_rgb(frame)
                if frames and image.shape != frames[0].shape:  # resolution changed mid-stream
                    yield self._batch(frames, times)
                    frames, times = [], []
                frames.append(image)
                times.append(t)
                if len(frames) == self.batch_frames:
                    yield self._batch(frames, times)
                    frames, times = [], []
        if frames:
            yield self._batch(frames, times)
        if audio is not None:
            for out in resampler.resample(None):
                samples.append(out.to_ndarray().reshape(-1))
            self.audio = _from_media_start(samples.view(), audio_start or 0.0)
            self._samples = None
        self._check_complete(decoded_end)

    def _to_rgb(self, frame) -> np.ndarray:
        """Decoded frame -> (H, W, 3) uint8 RGB, downscaled and rotated upright."""
        width, height = sampled_size(frame.width, frame.height, self.max_side_px)
        image = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
        quarter_turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
        # The display matrix turns the picture counter-clockwise by `rotation` degrees to show it.
        return np.rot90(image, quarter_turns) if quarter_turns else image

    def _batch(self, frames: list[np.ndarray], times: list[float]) -> FrameBatch:
        self.frames_sampled += len(frames)
        return FrameBatch(frames=np.stack(frames), times=np.asarray(times, dtype=np.float64))

    def _check_complete(self, decoded_end: float) -> None:
        """Refuse media that holds nothing to analyse (no frame and no audio sample decoded, or no
        duration: at most one picture and no audio) and media cut short of its declared duration."""
        if self.frames_sampled == 0 and self.audio.samples.shape[0] == 0:
            raise _fail(self.info.path, "no decodable video frames and no audio")
        if self.info.duration_s <= 0 and self.frames_decoded <= 1 and self.audio.samples.shape[0] == 0:
            raise _fail(self.info.path, "no duration: a single picture and no audio, not a recording")
        declared = self.info.duration_s
        if self.info.path.suffix.lower() in _NO_DURATION_CHECK or declared <= 0:
            return
        if declared - decoded_end > max(TRUNCATION_TOLERANCE_S, 0.05 * declared):
            raise _fail(self.info.path, f"truncated media: streams end at {decoded_end:.1f} s of a declared "
                                        f"{declared:.1f} s")
