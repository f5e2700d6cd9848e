"""Speed and memory of `mmer analyze` (library `mmer_cli.analysis.Analyzer`) on real clips.

    python benchmarks/analyze_speed.py                       # tiny random checkpoint unless a shipped default exists
    python benchmarks/analyze_speed.py --model path/to/checkpoint.safetensors --threads 2

Clips: every video in ../shared/media, the sample clip samples/sample_joy.mp4, and a long clip made
by remuxing WolfgangLanger_Pexels.mp4 (19.7 s, 640x360) `--long-loops` times end to end (same
content, no re-encoding) to show whether memory grows with clip length. Speech recognition is on
(no transcript is given), the feature cache is off.

Measured:
- cold: one fresh process per clip (python start, imports, checkpoint load, extractor models
  loaded on first use, the clip): wall seconds as seen by this script, and the process's peak
  resident set size (VmHWM from /proc/self/status, which, unlike getrusage's ru_maxrss, does not
  inherit the parent's peak across fork/exec);
- warm: one process, models loaded by an untimed first pass over every clip, then `--repeats`
  timed passes: per-stage seconds (the extraction stages of `FeatureSet.timings_s` plus "model"),
  wall seconds and real-time factor RTF = processing seconds / clip duration.

Writes benchmarks/results/analyze_<device>.json and .md with hardware, torch version, git commit,
date and the load average before and after (the machine may be shared: a loaded one runs slower).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mmer_cli.provenance import cpu_model, git_description, logical_cpus, memory_gb, peak_rss_mib  # noqa: E402

SHARED_MEDIA = REPO_ROOT.parent / "shared" / "media"
SAMPLE = REPO_ROOT / "samples" / "sample_joy.mp4"
LONG_SOURCE = "WolfgangLanger_Pexels.mp4"
LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]

TARGET_RTF = 0.5  # warm, on the 20 s 640x360 clip
TARGET_COLD_S = 10.0  # fresh process: imports + model load + first clip
TARGET_PEAK_RSS_MB = 1536.0  # 1.5 GB


# ----------------------------------------------------------------------------- children


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def child_cold(args) -> dict:
    """Import, build the analyzer, analyse one clip; all timed from this process's start."""
    sys.path.insert(0, str(REPO_ROOT))
    started = time.perf_counter()
    from mmer_cli.analysis import AnalyzeOptions, Analyzer

    imported = time.perf_counter()
    analyzer = Analyzer(AnalyzeOptions(model=args.model, device=args.device, threads=args.threads, use_cache=False))
    built = time.perf_counter()
    result = analyzer.analyze_file(Path(args.clip))
    done = time.perf_counter()
    return {"import_s": imported - started,
            "checkpoint_load_s": built - imported, "first_clip_s": done - built,
            "duration_s": result.duration_s, "timings_s": result.timings_s, "peak_rss_mb": peak_rss_mib(),
            "torch_threads": _torch_threads(),
            "transcript": result.transcript, "warnings": result.warnings}


def child_warm(args) -> dict:
    """One analyzer; an untimed pass over every clip, then `repeats` timed passes."""
    sys.path.insert(0, str(REPO_ROOT))
    from mmer_cli.analysis import AnalyzeOptions, Analyzer

    analyzer = Analyzer(AnalyzeOptions(model=args.model, device=args.device, threads=args.threads, use_cache=False))
    clips = [Path(c) for c in args.clips]
    for clip in clips:
        analyzer.analyze_file(clip)
    out = {}
    for clip in clips:
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = analyzer.analyze_file(clip)
            runs.append({"wall_s": time.perf_counter() - start, "timings_s": result.timings_s})
        stages = {s: sum(r["timings_s"].get(s, 0.0) for r in runs) / len(runs) for s in runs[0]["timings_s"]}
        wall = sum(r["wall_s"] for r in runs) / len(runs)
        out[clip.name] = {"duration_s": result.duration_s, "wall_s": wall, "rtf": wall / result.duration_s,
                          "stages_s": stages, "frames": result.modalities.frames,
                          "face_frames": result.modalities.face_frames, "tokens": result.modalities.tokens}
    return {"clips": out, "peak_rss_mb": peak_rss_mib(), "torch_threads": _torch_threads()}


def child_rss_path(args) -> dict:
    """Peak RSS of one half of the extraction on one clip: "video" = decode + face detection,
    "audio" = decode + openSMILE + speech recognition (both decode the whole file in one pass)."""
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    from extractors.media import MediaReader, probe_media

    if args.threads:
        torch.set_num_threads(args.threads)
    info = probe_media(args.clip)
    video = args.child == "rss-video"
    reader = MediaReader(info, 5.0, 320, 16)
    if video:
        from extractors.face import FaceDetector

        detector = FaceDetector(args.device)
        for batch in reader.frame_batches():
            detector.detect(batch.frames)
    else:
        from extractors.acoustic import AcousticExtractor
        from extractors.speech import SpeechRecognizer, asr_model_dir

        for _ in reader.frame_batches():
            pass
        AcousticExtractor("egemaps")(reader.audio.samples)
        SpeechRecognizer(asr_model_dir(None), args.device, torch.get_num_threads()).transcribe(reader.audio.samples)
    return {"duration_s": info.duration_s, "peak_rss_mb": peak_rss_mib()}


def child_network(args) -> dict:
    """The network alone on random features of a `--seconds` clip (text 3 tokens/s, audio 25 Hz,
    visual 5 Hz), through `Analyzer._predict_spans` (long clips in pieces): seconds and peak RSS."""
    sys.path.insert(0, str(REPO_ROOT))
    import numpy as np

    from extractors.featureset import FeatureSet
    from mmer_cli.analysis import AnalyzeOptions, Analyzer

    analyzer = Analyzer(AnalyzeOptions(model=args.model, device=args.device, threads=args.threads, use_cache=False))
    spec = analyzer.info.feature_spec
    rates = {"text": 3.0, "audio": 25.0, "visual": 5.0}
    rng = np.random.default_rng(0)
    count = {m: int(args.seconds * r) for m, r in rates.items()}
    features = FeatureSet(features={m: rng.standard_normal((n, spec.dims[m])).astype(np.float32) for m, n in count.items()},
                          times={m: np.arange(n) / rates[m] for m, n in count.items()}, spec=spec,
                          duration_s=args.seconds)
    before = peak_rss_mib()
    start = time.perf_counter()
    analyzer._predict_spans(features, [(0.0, args.seconds)])
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mib(), "rss_before_mb": before}


def registry_checkpoints(workdir: Path) -> dict[str, Path]:
    """A random-weight checkpoint of every registered model at its DEFAULT (paper) config."""
    sys.path.insert(0, str(REPO_ROOT))
    from extractors.pipeline import ExtractionSettings, feature_spec_for
    from models.checkpoint import save_checkpoint
    from models.registry import build_model, get_entry, model_names

    spec = feature_spec_for(ExtractionSettings())
    out = {}
    for name in model_names():
        config = get_entry(name).config_class(num_labels=len(LABELS), input_dims=spec.dims)
        out[name] = save_checkpoint(workdir / f"paper_{name}.safetensors", build_model(name, config), LABELS, spec)
    return out


# ----------------------------------------------------------------------------- parent


def make_long_clip(source: Path, loops: int, out: Path) -> Path:
    """`source` repeated `loops` times by remuxing its packets with shifted timestamps (no re-encode)."""
    import av

    with av.open(str(source)) as probe:
        span = {s.index: s.duration for s in probe.streams}  # in each stream's time base
    with av.open(str(out), "w") as dst:
        with av.open(str(source)) as src:
            mapping = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for k in range(loops):
            with av.open(str(source)) as src:
                for packet in src.demux():
                    if packet.dts is None:
                        continue
                    offset = k * span[packet.stream.index]
                    packet.pts = None if packet.pts is None else packet.pts + offset
                    packet.dts += offset
                    packet.stream = mapping[packet.stream.index]
                    dst.mux(packet)
    return out


def tiny_checkpoint(path: Path) -> Path:
    sys.path.insert(0, str(REPO_ROOT))
    import torch

    from extractors.pipeline import ExtractionSettings, feature_spec_for
    from models.checkpoint import save_checkpoint
    from models.registry import build_model, get_entry

    spec = feature_spec_for(ExtractionSettings())
    torch.manual_seed(0)
    network = build_model("lddu", get_entry("lddu").config_class.tiny(len(LABELS), spec.dims))
    return save_checkpoint(path, network, LABELS, spec, [0.5] * len(LABELS), {"note": "random weights, benchmark only"})


def resolve_model(requested: str | None, workdir: Path) -> tuple[str, str]:
    """(checkpoint path, description)."""
    sys.path.insert(0, str(REPO_ROOT))
    from mmer_cli.analysis import DEFAULT_MODEL, WEIGHTS_DIR

    if requested:
        return requested, f"user-supplied checkpoint {requested}"
    from models.checkpoint import CheckpointError, load_checkpoint

    shipped = WEIGHTS_DIR / f"{DEFAULT_MODEL}_default.safetensors"
    why = "no shipped default installed"
    if shipped.is_file():
        try:
            load_checkpoint(shipped)
            return str(shipped), f"shipped default {shipped.relative_to(REPO_ROOT)}"
        except CheckpointError as err:
            why = f"the shipped default does not load with this code: {err}"
    path = tiny_checkpoint(workdir / "tiny_lddu.safetensors")
    return str(path), f"tiny random-weight LDDU checkpoint (LDDUConfig.tiny, 7 labels; {why})"


def run_child(mode: str, extra: list[str], args) -> tuple[dict, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--model", args.model,
           "--device", args.device, *extra]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"benchmark child failed ({mode} {extra}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def hardware() -> dict:
    import torch

    return {"cpu": cpu_model(), "logical_cpus": logical_cpus(), "memory_gb": round(memory_gb(), 1),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def dominant(stages: dict[str, float]) -> str:
    name = max(stages, key=stages.get)
    return f"{name} ({stages[name]:.2f} s of {sum(stages.values()):.2f} s)"


def render_md(data: dict) -> str:
    lines = [
        f"# `mmer analyze` speed and memory ({data['device']})", "",
        f"Measured by `benchmarks/analyze_speed.py` on {data['date']}, commit {data['commit']}.",
        f"Hardware: {data['hardware']['cpu']}, {data['hardware']['logical_cpus']} logical CPUs, "
        f"{data['hardware']['memory_gb']} GB RAM, GPU: {data['hardware']['gpu'] or 'none'}; "
        f"python {data['hardware']['python']}, torch {data['hardware']['torch']}; torch threads: {data['warm']['torch_threads']}.",
        f"Load average (1 min) before / after: {data['load_before'][0]:.2f} / {data['load_after'][0]:.2f} "
        "(a shared machine: other processes compete for the same cores).",
        f"Model: {data['model']}. The network's share is the `model` stage.",
        "Speech recognition on (packaged faster-whisper tiny.en, int8), feature cache off, frames sampled at 5 fps, "
        "downscaled to <= 320 px.", "",
        "## Targets", "",
        "| target | measured | met |", "|---|---|---|",
    ]
    for t in data["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |")
    lines += ["", "## Warm (models loaded; mean of %d runs per clip)" % data["repeats"], "",
              "| clip | duration s | wall s | RTF | " + " | ".join(data["stage_order"]) + " | frames (face) | tokens |",
              "|---|---|---|---|" + "---|" * len(data["stage_order"]) + "---|---|"]
    for name, c in data["warm"]["clips"].items():
        stages = " | ".join(f"{c['stages_s'].get(s, 0.0):.2f}" for s in data["stage_order"])
        lines.append(f"| {name} | {c['duration_s']:.1f} | {c['wall_s']:.2f} | {c['rtf']:.2f} | {stages} | "
                     f"{c['frames']} ({c['face_frames']}) | {c['tokens']} |")
    lines += ["", f"Peak RSS of the warm process (all clips, models loaded once): {data['warm']['peak_rss_mb']:.0f} MB.", "",
              "## Cold (fresh process per clip)", "",
              "| clip | duration s | process wall s | imports s | checkpoint s | first clip s | of which model loading s | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|"]
    for name, c in data["cold"].items():
        lines.append(f"| {name} | {c['duration_s']:.1f} | {c['process_wall_s']:.2f} | {c['import_s']:.2f} | "
                     f"{c['checkpoint_load_s']:.2f} | {c['first_clip_s']:.2f} | {c['timings_s'].get('load', 0.0):.2f} | "
                     f"{c['peak_rss_mb']:.0f} |")
    lines += ["", "## Peak RSS by half of the extraction (fresh process each)", "",
              "video = decode + MTCNN face detection; audio = decode + openSMILE + speech recognition. Both decode "
              "the whole file in one streamed pass (sampled frames in batches of 16, the audio track kept whole).", "",
              "| half | clip | duration s | peak RSS MB |", "|---|---|---|---|"]
    for key, r in data["rss_by_path"].items():
        half, clip = key.split(" ", 1)
        lines.append(f"| {half} | {clip} | {r['duration_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "## The network alone (random features, long clips in pieces of ~30 s)", "",
              "| network | clip s | seconds | RTF | peak RSS MB |", "|---|---|---|---|---|"]
    for key, r in data["network"].items():
        label, seconds = key.rsplit(" | ", 1)
        lines.append(f"| {label} | {float(seconds):g} | {r['seconds']:.2f} | {r['seconds'] / float(seconds):.3f} | "
                     f"{r['peak_rss_mb']:.0f} |")
    lines += ["", "## Notes", ""] + [f"- {n}" for n in data["notes"]] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="checkpoint path (default: shipped default if installed, else a tiny random one)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=2, help="timed warm runs per clip")
    parser.add_argument("--long-loops", type=int, nargs="+", default=[3, 6],
                        help="copies of the 19.7 s clip in each long clip (one long clip per value)")
    parser.add_argument("--out-dir", type=Path, default=REPO_ROOT / "benchmarks" / "results")
    parser.add_argument("--network-seconds", type=float, nargs="+", default=[20.0, 600.0],
                        help="clip lengths for the network-only measurement")
    parser.add_argument("--child", choices=["cold", "warm", "rss-video", "rss-audio", "network"], help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    parser.add_argument("--clips", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "cold":
        print(json.dumps(child_cold(args)))
        return
    if args.child == "warm":
        print(json.dumps(child_warm(args)))
        return
    if args.child in ("rss-video", "rss-audio"):
        print(json.dumps(child_rss_path(args)))
        return
    if args.child == "network":
        print(json.dumps(child_network(args)))
        return

    if not SHARED_MEDIA.is_dir():
        raise SystemExit(f"{SHARED_MEDIA}: shared media not found")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        args.model, model_note = resolve_model(args.model, workdir)
        clips = sorted(p for p in SHARED_MEDIA.iterdir() if p.suffix.lower() in (".mp4", ".mov")) + [SAMPLE]
        long_clips = [make_long_clip(SHARED_MEDIA / LONG_SOURCE, n, workdir / f"long_{n}x_{LONG_SOURCE}")
                      for n in args.long_loops]
        print(f"model: {model_note}", file=sys.stderr)

        cold = {}
        for clip in clips + long_clips:
            result, wall = run_child("cold", ["--clip", str(clip)], args)
            result["process_wall_s"] = wall
            cold[clip.name] = result
            print(f"cold {clip.name}: {wall:.1f} s, peak RSS {result['peak_rss_mb']:.0f} MB", file=sys.stderr)
        by_path = {}
        for clip in [SHARED_MEDIA / LONG_SOURCE, long_clips[-1]]:
            for half in ("video", "audio"):
                result, _ = run_child(f"rss-{half}", ["--clip", str(clip)], args)
                by_path[f"{half} {clip.name}"] = result
                print(f"rss {half} {clip.name}: {result['peak_rss_mb']:.0f} MB", file=sys.stderr)
        network = {}
        used_model = args.model
        for label, checkpoint in [("checkpoint used above", used_model)] + [
                (f"{name}, default (paper) config, random weights", str(path))
                for name, path in registry_checkpoints(workdir).items()]:
            args.model = checkpoint
            for seconds in args.network_seconds:
                result, _ = run_child("network", ["--seconds", str(seconds)], args)
                network[f"{label} | {seconds:g}"] = result
                print(f"network {label} {seconds:g} s: {result['seconds']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB",
                      file=sys.stderr)
        args.model = used_model
        warm, _ = run_child("warm", ["--repeats", str(args.repeats), "--clips", *map(str, clips)], args)
        for name, c in warm["clips"].items():
            print(f"warm {name}: RTF {c['rtf']:.2f} ({c['wall_s']:.1f} s for {c['duration_s']:.1f} s)", file=sys.stderr)
    load_after = os.getloadavg()

    stage_order = ["decode", "face", "acoustic", "asr", "text", "model"]
    ref = warm["clips"][LONG_SOURCE]
    sample_cold = cold[SAMPLE.name]
    long_name = f"long_{max(args.long_loops)}x_{LONG_SOURCE}"
    rss_ref, rss_long = cold[LONG_SOURCE]["peak_rss_mb"], cold[long_name]["peak_rss_mb"]
    extra_min = (cold[long_name]["duration_s"] - cold[LONG_SOURCE]["duration_s"]) / 60
    rss_slope = (rss_long - rss_ref) / extra_min  # MB per extra minute of clip
    worst_rss = max(c["peak_rss_mb"] for c in cold.values())
    worst_cold = max(cold.values(), key=lambda c: c["process_wall_s"])
    targets = [
        {"target": f"warm RTF <= {TARGET_RTF} on {LONG_SOURCE} (19.7 s, 640x360)",
         "measured": f"{ref['rtf']:.2f} (dominant stage: {dominant({s: ref['stages_s'].get(s, 0.0) for s in stage_order})})",
         "met": ref["rtf"] <= TARGET_RTF},
        {"target": f"cold start <= {TARGET_COLD_S:g} s (fresh process, sample clip {SAMPLE.name})",
         "measured": f"{sample_cold['process_wall_s']:.1f} s (imports {sample_cold['import_s']:.1f}, model loading "
                     f"{sample_cold['timings_s'].get('load', 0.0):.1f}); slowest clip {worst_cold['process_wall_s']:.1f} s",
         "met": sample_cold["process_wall_s"] <= TARGET_COLD_S},
        {"target": f"peak RSS <= {TARGET_PEAK_RSS_MB / 1024:.1f} GB", "measured": f"{worst_rss:.0f} MB (worst fresh process)",
         "met": worst_rss <= TARGET_PEAK_RSS_MB},
        {"target": "peak RSS not growing with clip length",
         "measured": f"{rss_ref:.0f} MB for 19.7 s, "
                     + ", ".join(f"{cold[f'long_{n}x_{LONG_SOURCE}']['peak_rss_mb']:.0f} MB for "
                                 f"{cold[f'long_{n}x_{LONG_SOURCE}']['duration_s']:.0f} s" for n in args.long_loops)
                     + f" ({rss_slope:+.0f} MB per extra minute)",
         "met": rss_long - rss_ref <= 0.1 * rss_ref},
    ]
    notes = [
        f"Model used: {model_note}.",
        "RTF = wall seconds of `Analyzer.analyze_file` / clip duration; stage seconds come from the result's `timings_s` "
        "(decode includes demuxing, audio resampling and frame scaling; face = MTCNN on sampled frames).",
        "Cold wall time counts python start-up, imports, checkpoint load, extractor model loading (background "
        "prefetch overlaps part of it with decoding) and the clip; it also includes waiting at exit for models "
        "still loading in the background.",
        f"The long clips are {LONG_SOURCE} remuxed {', '.join(map(str, args.long_loops))} times end to end "
        "(same pictures and sound, no re-encoding). The criterion for 'not growing' is a peak at most 10 % above "
        "the 19.7 s clip's.",
    ]
    data = {"device": args.device, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "commit": git_description(), "hardware": hardware(), "threads": args.threads, "repeats": args.repeats,
            "load_before": load_before, "load_after": load_after, "model": model_note, "stage_order": stage_order,
            "targets": targets, "warm": warm, "cold": cold, "rss_by_path": by_path, "network": network, "notes": notes}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"analyze_{args.device}"
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    stem.with_suffix(".md").write_text(render_md(data))
    print(f"wrote {stem}.json and {stem}.md", file=sys.stderr)


if __name__ == "__main__":
    main()
