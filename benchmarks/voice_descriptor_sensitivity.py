"""How much the voice descriptors of the same speech change when the clip is re-encoded.

    python benchmarks/voice_descriptor_sensitivity.py

Re-encodes samples/sample_joy.mp4 with ffmpeg (MJPEG/PCM: the same decoded samples stored as
16-bit PCM; VP9/Opus; the audio at 22.05 kHz), decodes each as `mmer analyze` does (PyAV, 16 kHz
mono, `mmer.extractors.media.MediaReader`) and compares with the original: the RMS difference of the
samples and their offset (cross-correlation, in samples), then the openSMILE eGeMAPS descriptors
at 100 Hz (before mmer pools them): voicing decisions that differ, and the median / largest change
of the formant frequencies and bandwidths over frames voiced in both. Writes
benchmarks/results/voice_descriptor_sensitivity.md and .json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mmer.provenance import cpu_model, git_description, utc_now  # noqa: E402

SAMPLE = REPO_ROOT / "samples" / "sample_joy.mp4"
VARIANTS = {"mjpeg_pcm": (".avi", ["-c:v", "mjpeg", "-q:v", "3", "-c:a", "pcm_s16le"]),
            "vp9_opus": (".webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M",
                                   "-c:a", "libopus", "-b:a", "96k"]),
            "audio_22k_mono": (".mp4", ["-c:v", "copy", "-c:a", "aac", "-ar", "22050", "-ac", "1"])}
FORMANTS = {16: "F1 frequency", 17: "F1 bandwidth", 19: "F2 frequency", 20: "F2 bandwidth", 22: "F3 frequency",
            23: "F3 bandwidth"}
F0 = 10  # F0semitoneFrom27.5Hz: 0 where openSMILE calls the frame unvoiced


def decoded(path: Path) -> np.ndarray:
    from mmer.extractors.media import MediaReader, probe_media

    reader = MediaReader(probe_media(path), 5.0, 320)
    for _ in reader.frame_batches():
        pass
    return reader.audio.samples


def main() -> None:
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    original = decoded(SAMPLE)
    reference = smile.process_signal(original, 16000).to_numpy()
    report = {"date": utc_now(), "commit": git_description(), "cpu": cpu_model(), "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (suffix, options) in VARIANTS.items():
            target = Path(tmp) / f"v{suffix}"
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(SAMPLE), *options, str(target)], check=True)
            audio = decoded(target)
            n = min(len(original), len(audio))
            core = slice(2000, n - 2000)
            offset = max(range(-200, 201), key=lambda k: float(np.dot(original[core], audio[2000 + k:n - 2000 + k])))
            rms = float(np.sqrt(np.mean((original[core] - audio[2000 + offset:n - 2000 + offset]) ** 2)))
            lld = smile.process_signal(audio[:len(original)], 16000).to_numpy()
            m = min(len(lld), len(reference))
            a, b = reference[:m], lld[:m]
            both = (a[:, F0] > 0) & (b[:, F0] > 0)
            report["variants"][name] = {
                "offset_samples": offset, "rms_difference": rms, "signal_rms": float(np.sqrt(np.mean(original ** 2))),
                "voicing_flips": int(((a[:, F0] > 0) != (b[:, F0] > 0)).sum()), "frames": m,
                "formants_hz": {label: {"median": float(np.median(np.abs(a[both, i] - b[both, i]))),
                                        "max": float(np.abs(a[both, i] - b[both, i]).max())}
                                for i, label in FORMANTS.items()}}
    out = REPO_ROOT / "benchmarks" / "results" / "voice_descriptor_sensitivity"
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Voice descriptors of the same speech, re-encoded", "",
             f"`python benchmarks/voice_descriptor_sensitivity.py`; {report['date']}, commit {report['commit']}, "
             f"{report['cpu']}; samples/sample_joy.mp4 against each re-encoding.", "",
             "| variant | offset (samples at 16 kHz) | RMS difference (signal RMS) | voicing flips (of frames) | "
             + " | ".join(f"{label} median / max Hz" for label in FORMANTS.values()) + " |",
             "|---|---|---|---|" + "---|" * len(FORMANTS)]
    for name, v in report["variants"].items():
        lines.append(f"| {name} | {v['offset_samples']} | {v['rms_difference']:.2g} ({v['signal_rms']:.2g}) | "
                     f"{v['voicing_flips']} ({v['frames']}) | "
                     + " | ".join(f"{f['median']:.1f} / {f['max']:.0f}" for f in v["formants_hz"].values()) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
