"""What voice features v2 cost `mmer analyze`: CPU seconds of the whole extraction of each shared
clip (decode, faces, expression, voice activity, acoustic, speech recognition, text: everything
`mmer analyze` does before the small emotion network) with the old acoustic set ("egemaps") and the
new default ("egemaps+whisper": + the whisper tiny.en encoder's layer-2 states), in one process.

Clips: every video in ../shared/media and samples/sample_joy.mp4 (the clips of
benchmarks/analyze_speed.py). Models are loaded by an untimed first pass; then `--repeats` passes
alternate the two sets clip by clip; CPU time = time.process_time() of this process (all its
threads), which a shared machine inflates far less than wall time. Feature cache off, 1 thread.

Run:  python benchmarks/voice_features_cost.py [--repeats 2]
Writes benchmarks/results/voice_features_cost.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mmer.provenance import cpu_model, git_description, logical_cpus  # noqa: E402

SETS = ("egemaps", "egemaps+whisper")
LIMIT = 0.15
"""The issue's budget: at most 15 % more analyze CPU time than before."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch

    from mmer.extractors.media import VIDEO_SUFFIXES
    from mmer.extractors.pipeline import ExtractionSettings, FeatureExtractor

    torch.set_num_threads(1)
    media = REPO_ROOT.parent / "shared" / "media"
    clips = sorted(p for p in media.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) + [REPO_ROOT / "samples" / "sample_joy.mp4"]
    extractors = {s: FeatureExtractor(ExtractionSettings(acoustic=s, use_cache=False, device="cpu")) for s in SETS}
    for clip in clips:  # untimed: loads every model
        for s in SETS:
            extractors[s].extract(clip)
    load_before = os.getloadavg()[0]
    cpu = {s: {c.name: 0.0 for c in clips} for s in SETS}
    acoustic = {s: {c.name: 0.0 for c in clips} for s in SETS}
    for r in range(args.repeats):
        for clip in clips:
            for s in (SETS if r % 2 == 0 else SETS[::-1]):
                start = time.process_time()
                features = extractors[s].extract(clip)
                cpu[s][clip.name] += (time.process_time() - start) / args.repeats
                acoustic[s][clip.name] += features.timings_s.get("acoustic", 0.0) / args.repeats
    total = {s: sum(cpu[s].values()) for s in SETS}
    increase = total["egemaps+whisper"] / total["egemaps"] - 1
    result = {
        "benchmark": "benchmarks/voice_features_cost.py", "repeats": args.repeats,
        "clips": [c.name for c in clips],
        "cpu_s_per_clip": {s: {k: round(v, 3) for k, v in cpu[s].items()} for s in SETS},
        "acoustic_stage_wall_s_per_clip": {s: {k: round(v, 3) for k, v in acoustic[s].items()} for s in SETS},
        "cpu_s_total": {s: round(v, 3) for s, v in total.items()},
        "increase": round(increase, 4), "limit": LIMIT, "met": bool(increase <= LIMIT),
        "hardware": {"cpu_model": cpu_model(), "logical_cpus": logical_cpus(), "threads": 1},
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "git": git_description(), "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__,
    }
    out = REPO_ROOT / "benchmarks" / "results" / "voice_features_cost.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("cpu_s_total", "increase", "met")}))


if __name__ == "__main__":
    main()
