"""Does `mmer analyze` give the same answer when the same clip is re-encoded?

    python benchmarks/reencoding_stability.py                  # the shipped default model (lddu)
    python benchmarks/reencoding_stability.py --model lamb --window 2

Sources: every video in ../shared/media and samples/sample_joy.mp4. Each is re-encoded with
ffmpeg (which must be on PATH) into the variants of `VARIANTS`: H.264/AAC, VP9/Opus, MJPEG/PCM, and
the same video with the audio at other rates and channel counts. The original and every variant are
analysed with the feature cache off (whole clip and windows of `--window` seconds), and each
variant is compared with its original:

- the largest change of any fused probability (whole clip; windows), and of what each stream says
  alone (face, voice, words), which shows the codec-sensitive stage;
- decisions (present / absent) that flip, in the clip and in its windows;
- what the extractors saw: face frames, seconds of speech, word-piece tokens.

- the voice stream's fusion weight (reliability x domain factor, mmer/stream_fusion.py) in the
  original and the variant, since a small change of the voice descriptors can move it steeply.

Goal (issue 22): no probability moves by more than `GOAL_MAX_DELTA` and no decision flips.
Writes benchmarks/results/reencoding_<model>.json and .md with the commit, date and hardware.

`--what-if-voice-phases K` is an experiment, not what `mmer analyze` does: the openSMILE
descriptors are computed at K sub-hop offsets of the audio (0, 10/K, ... ms) and averaged, to
measure how much of the instability comes from their sensitivity to sub-millisecond shifts. The
shipped models were trained on single-offset descriptors, so its results are written to
reencoding_<model>_voice_phases<K>.* and say so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mmer.provenance import cpu_model, git_description, logical_cpus, utc_now  # noqa: E402

SHARED_MEDIA = REPO_ROOT.parent / "shared" / "media"
SAMPLE = REPO_ROOT / "samples" / "sample_joy.mp4"
GOAL_MAX_DELTA = 0.10
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "h264_aac": (".mp4", ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                          "-c:a", "aac", "-b:a", "128k"]),
    "vp9_opus": (".webm", ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M",
                           "-c:a", "libopus", "-b:a", "96k"]),
    "mjpeg_pcm": (".avi", ["-c:v", "mjpeg", "-q:v", "3", "-c:a", "pcm_s16le"]),
    "audio_22k_mono": (".mp4", ["-c:v", "copy", "-c:a", "aac", "-ar", "22050", "-ac", "1"]),
    "audio_48k_stereo": (".mp4", ["-c:v", "copy", "-c:a", "aac", "-ar", "48000", "-ac", "2"]),
    "audio_44k_6ch_pcm": (".mkv", ["-c:v", "copy", "-c:a", "pcm_s16le", "-ar", "44100", "-ac", "6"]),
}
"""name -> (suffix, ffmpeg output options)."""


def sources() -> list[Path]:
    clips = sorted(p for p in SHARED_MEDIA.glob("*") if p.suffix.lower() in (".mp4", ".mov")) if SHARED_MEDIA.is_dir() else []
    return clips + [SAMPLE]


def encode(source: Path, variant: str, folder: Path) -> Path:
    suffix, options = VARIANTS[variant]
    target = folder / f"{source.stem}.{variant}{suffix}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *options, str(target)], check=True)
    return target


def phase_averaged_opensmile(phases: int):
    """The what-if: `AcousticExtractor._opensmile` averaging the descriptors over `phases` offsets."""
    import numpy as np

    from mmer.extractors import acoustic

    hop = int(acoustic.AUDIO_RATE_HZ / acoustic._LLD_RATE_HZ)  # samples per descriptor frame (10 ms)

    def averaged(self, samples):
        runs = [self._smile.process_signal(np.concatenate([np.zeros(k * hop // phases, np.float32), samples]),
                                           acoustic.AUDIO_RATE_HZ).to_numpy() for k in range(phases)]
        n = min(len(r) for r in runs)
        return acoustic.pool_frames(np.mean([r[:n] for r in runs], axis=0), acoustic._POOL)

    acoustic.AcousticExtractor._opensmile = averaged


def voice_weight(analyzer, features) -> float | None:
    """The voice stream's fusion weight for these features (None without a late fusion or voice)."""
    frames = features.features["audio"]
    if analyzer.fusion is None or "audio" not in analyzer.fusion.streams or not len(frames):
        return None
    return analyzer.fusion.weight("audio", frames)


def analysed(analyzer, path: Path) -> dict:
    """Extract once, analyse from those features, and summarise."""
    features = analyzer.extractor.extract(path)
    extract = analyzer.extractor.extract
    analyzer.extractor.extract = lambda _: features
    try:
        result = analyzer.analyze_file(path)
    finally:
        analyzer.extractor.extract = extract
    return {**summary(result), "voice_weight": voice_weight(analyzer, features)}


def summary(result) -> dict:
    """The numbers compared: fused probabilities and decisions, each stream alone, per window."""
    def scores(emotions):
        return {e.label: [e.probability, e.present] for e in emotions}

    return {
        "duration_s": result.duration_s,
        "clip": scores(result.emotions),
        "streams": result.by_modality,
        "windows": [{"span": [s.start_s, s.end_s], "scores": scores(s.emotions), "streams": s.by_modality}
                    for s in result.segments or []],
        "seen": {"face_frames": result.modalities.face_frames, "voiced_s": round(result.modalities.voiced, 2),
                 "tokens": result.modalities.tokens},
        "transcript": result.transcript,
    }


def _stream_delta(a: dict, b: dict) -> dict[str, float | str]:
    """Per stream: the largest |change| of its probabilities, or 'appeared'/'vanished'."""
    out: dict[str, float | str] = {}
    for m in ("visual", "audio", "text"):
        x, y = a.get(m), b.get(m)
        if x is None and y is None:
            continue
        if x is None or y is None:
            out[m] = "appeared" if x is None else "vanished"
            continue
        out[m] = max(abs(x[k] - y[k]) for k in x)
    return out


def compare(original: dict, variant: dict) -> dict:
    """How far the variant's results are from the original's."""
    clip_delta = max(abs(original["clip"][k][0] - variant["clip"][k][0]) for k in original["clip"])
    clip_flips = [k for k in original["clip"] if original["clip"][k][1] != variant["clip"][k][1]]
    out = {"clip_max_delta": clip_delta, "clip_flips": clip_flips,
           "clip_streams": _stream_delta(original["streams"], variant["streams"]),
           "seen": variant["seen"], "transcript_same": original["transcript"] == variant["transcript"],
           "voice_weight": [original["voice_weight"], variant["voice_weight"]]}
    if len(original["windows"]) == len(variant["windows"]):
        deltas, flips, streams = [], [], {}
        for w0, w1 in zip(original["windows"], variant["windows"]):
            deltas.append(max(abs(w0["scores"][k][0] - w1["scores"][k][0]) for k in w0["scores"]))
            flips += [f"{w0['span'][0]:g}s:{k}" for k in w0["scores"] if w0["scores"][k][1] != w1["scores"][k][1]]
            for m, d in _stream_delta(w0["streams"], w1["streams"]).items():
                if isinstance(d, str) or isinstance(streams.get(m), str):
                    streams[m] = d if isinstance(d, str) else streams[m]
                else:
                    streams[m] = max(streams.get(m, 0.0), d)
        out.update(window_max_delta=max(deltas, default=0.0), window_flips=flips, window_streams=streams)
    else:
        out.update(window_max_delta=None, window_flips=[f"window count {len(original['windows'])} -> {len(variant['windows'])}"],
                   window_streams={})
    out["meets_goal"] = (out["clip_max_delta"] <= GOAL_MAX_DELTA and not out["clip_flips"]
                         and out["window_max_delta"] is not None and out["window_max_delta"] <= GOAL_MAX_DELTA
                         and not out["window_flips"])
    return out


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list):
        return ", ".join(value) or "none"
    return str(value)


def _weights(pair: list) -> str:
    return "–" if None in pair else f"{pair[0]:.2f} → {pair[1]:.2f}"


def markdown(report: dict) -> str:
    what_if = report.get("what_if_voice_phases")
    lines = [f"# Re-encoding stability, model `{report['model']}`" + (f" (what-if: voice descriptors averaged over "
                                                                     f"{what_if} offsets)" if what_if else ""), "",
             f"Command: `{report['command']}`  ", f"Date: {report['date']}, commit {report['commit']}, "
             f"{report['cpu']} ({report['cpus']} logical CPUs), {report['ffmpeg']}  ",
             f"Windows of {report['window_s']:g} s; feature cache off. Goal: no probability moves by more than "
             f"{GOAL_MAX_DELTA:.2f}, no decision flips.", "",
             f"**{report['met']} of {report['total']} re-encodings meet the goal.**", "",
             "| clip | variant | clip max Δp | window max Δp | flips (clip; windows) | Δ per stream (clip; windows) | voice weight (original → variant) | face frames / speech s / tokens | same transcript |",
             "|---|---|---|---|---|---|---|---|---|"]
    for clip, entry in report["clips"].items():
        seen = entry["original"]["seen"]
        lines.append(f"| {clip} | original | | | | | | {seen['face_frames']} / {seen['voiced_s']} / {seen['tokens']} | |")
        for variant, c in entry["variants"].items():
            s = c["seen"]
            lines.append(f"| {clip} | {variant} | {_fmt(c['clip_max_delta'])} | {_fmt(c['window_max_delta'])} | "
                         f"{_fmt(c['clip_flips'])}; {_fmt(c['window_flips'])} | {_fmt(c['clip_streams'])}; "
                         f"{_fmt(c['window_streams'])} | {_weights(c['voice_weight'])} | "
                         f"{s['face_frames']} / {s['voiced_s']} / {s['tokens']} | "
                         f"{'yes' if c['transcript_same'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="lddu")
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--only", nargs="*", metavar="NAME", help="only the source clips with these file names")
    parser.add_argument("--what-if-voice-phases", type=int, metavar="K", default=None,
                        help="experiment: average the voice descriptors over K sub-hop offsets (see the docstring)")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed on PATH to re-encode the clips")
    from mmer.analysis import AnalyzeOptions, Analyzer

    if args.what_if_voice_phases:
        phase_averaged_opensmile(args.what_if_voice_phases)

    analyzer = Analyzer(AnalyzeOptions(model=args.model, device="cpu", threads=args.threads, window_s=args.window,
                                       use_cache=False))
    report = {"model": args.model, "window_s": args.window, "date": utc_now(), "commit": git_description(),
              "cpu": cpu_model(), "cpus": logical_cpus(),
              "ffmpeg": subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0],
              "command": "python benchmarks/reencoding_stability.py " + " ".join(sys.argv[1:]),
              "what_if_voice_phases": args.what_if_voice_phases, "clips": {}}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mmer-reencode-") as tmp:
        for source in sources():
            if args.only and source.name not in args.only:
                continue
            original = analysed(analyzer, source)
            entry = {"original": original, "variants": {}}
            for variant in VARIANTS:
                result = analysed(analyzer, encode(source, variant, Path(tmp)))
                entry["variants"][variant] = compare(original, result)
                print(f"{source.name} {variant}: {json.dumps(entry['variants'][variant], default=str)}", flush=True)
            report["clips"][source.name] = entry
    results = [c for e in report["clips"].values() for c in e["variants"].values()]
    report.update(total=len(results), met=sum(c["meets_goal"] for c in results),
                  seconds=round(time.perf_counter() - started, 1))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / (f"reencoding_{Path(args.model).stem}"
                       + (f"_voice_phases{args.what_if_voice_phases}" if args.what_if_voice_phases else ""))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(f"{report['met']} of {report['total']} meet the goal; written {stem}.md/.json")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
