"""An English spoken-emotion check of the shipped defaults, end to end through `mmer analyze`.

35 clearly emotional English sentences written for this check (recipes/spoken_emotion_sentences.tsv,
5 per label, not taken from any published set) are spoken by espeak-ng (en-us voice, neutral
prosody: espeak does not act emotions) and laid over a real face clip (default: the first seconds
of ../shared/media/WolfgangLanger_Pexels.mp4, the only real face video here: a woman crying, whose
frames the FER2013 expression network reads as sad, happy or fear in turn). The face therefore shows
sadness whatever the sentence says: with the face present, "sad" next to the sentence's emotion is a
correct multi-label answer, and a neutral sentence cannot come out neutral (neutral means no channel
shows an emotion). Every clip goes through the `mmer analyze` CLI in three conditions:

- face + voice + words: the video with the spoken sentence (words from speech recognition);
- voice removed:       the video without audio, words given with --transcript;
- face removed:        the spoken sentence alone (.wav; words from speech recognition).

For each model and condition: how often the intended emotion is the top one (highest probability)
and how often it is among the predicted (present) ones, per label and overall, and what each
stream said on its own (`by_modality`: its top emotion per clip).

Needs espeak-ng and ffmpeg (`apt-get install espeak-ng ffmpeg`).
Run:  python recipes/spoken_emotion_check.py [--models lddu,lamb] [--face CLIP]
Writes recipes/results/spoken_emotion_check.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recipe_results import REPO_ROOT, provenance, write_result

SENTENCES = Path(__file__).resolve().parent / "spoken_emotion_sentences.tsv"
DEFAULT_FACE = REPO_ROOT.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4"
VOICE = "en-us"
WORDS_PER_MINUTE = 150
CONDITIONS = ("face + voice + words", "voice removed (face + words)", "face removed (voice + words)")


def run(command: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kw)


def make_clips(rows: list[dict], face: Path, out: Path) -> None:
    """<out>/av/NN.mp4 (face + speech), <out>/silent/NN.mp4 (face only), <out>/wav/NN.wav and
    <out>/text/NN.txt for every sentence."""
    for sub in ("av", "silent", "wav", "text"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for i, row in enumerate(rows):
        name = f"{i:02d}_{row['label']}"
        wav = out / "wav" / f"{name}.wav"
        run(["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(wav), row["sentence"]])
        (out / "text" / f"{name}.txt").write_text(row["sentence"] + "\n", encoding="utf-8")
        seconds = float(run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                             str(wav)]).stdout)
        video = ["-stream_loop", "-1", "-i", str(face)]
        encode = ["-t", f"{seconds:.3f}", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
        run(["ffmpeg", "-y", "-loglevel", "error", *video, "-i", str(wav), "-map", "0:v", "-map", "1:a",
             *encode, "-c:a", "aac", str(out / "av" / f"{name}.mp4")])
        run(["ffmpeg", "-y", "-loglevel", "error", *video, "-an", *encode, str(out / "silent" / f"{name}.mp4")])


def analyze(args: list[str], env: dict) -> list[dict]:
    """`mmer analyze ... -f json` in a fresh process; its JSON array."""
    proc = subprocess.run([sys.executable, "-m", "mmer", "analyze", *args, "-f", "json", "--threads", "1"],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"mmer analyze {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def score(results: list[dict], intended: list[str]) -> dict:
    per_label: dict[str, dict] = {}
    top_hits = present_hits = 0
    answers = []
    for result, label in zip(results, intended):
        probs = {e["label"]: e["probability"] for e in result["emotions"]}
        top = max(probs, key=probs.get)
        hit_top, hit_present = top == label, label in result["predicted"]
        top_hits += hit_top
        present_hits += hit_present
        entry = per_label.setdefault(label, {"n": 0, "top": 0, "present": 0})
        entry["n"] += 1
        entry["top"] += hit_top
        entry["present"] += hit_present
        alone = {m: (None if p is None else max(p, key=p.get)) for m, p in result["by_modality"].items()}
        answers.append({"file": Path(result["file"]).name, "intended": label, "top": top,
                        "predicted": result["predicted"], "top_by_stream": alone,
                        "transcript": result.get("transcript", "")})
    n = len(intended)
    by_stream = {}
    for m in ("visual", "audio", "text"):
        tops = [str(a["top_by_stream"][m]) for a in answers]  # "None": the stream was absent
        by_stream[m] = {"top1_rate": sum(t == a["intended"] for t, a in zip(tops, answers)) / n,
                        "top_labels": {label: tops.count(label) for label in sorted(set(tops))}}
    return {"top1_rate": top_hits / n, "among_predicted_rate": present_hits / n, "n": n,
            "per_label": per_label, "each_stream_alone": by_stream, "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lddu,lamb")
    parser.add_argument("--face", type=Path, default=DEFAULT_FACE)
    args = parser.parse_args()
    started = time.perf_counter()
    with SENTENCES.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    intended = [r["label"] for r in rows]
    report: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        make_clips(rows, args.face, out)
        env = {**os.environ, "MMER_CACHE_DIR": str(out / "cache")}
        names = sorted(p.stem for p in (out / "wav").glob("*.wav"))
        for model in [m for m in args.models.split(",") if m]:
            full = analyze([str(out / "av"), "--model", model], env)
            no_voice = [analyze([str(out / "silent" / f"{n}.mp4"), "--transcript", str(out / "text" / f"{n}.txt"),
                                 "--model", model], env)[0] for n in names]
            no_face = analyze([str(out / "wav"), "--model", model], env)
            report[model] = {c: score(r, intended) for c, r in zip(CONDITIONS, (full, no_voice, no_face))}
            for condition, s in report[model].items():
                print(f"{model:5s} {condition:32s} top-1 {s['top1_rate']:.0%}  among predicted "
                      f"{s['among_predicted_rate']:.0%}", flush=True)
    path = write_result("spoken_emotion_check", {
        "recipe": "recipes/spoken_emotion_check.py",
        "sentences": str(SENTENCES.relative_to(REPO_ROOT)),
        "speech": f"espeak-ng {run(['espeak-ng', '--version']).stdout.split()[3]} voice {VOICE}, "
                  f"{WORDS_PER_MINUTE} words/min (neutral prosody)",
        "face_clip": str(args.face.name),
        "conditions": list(CONDITIONS),
        "results": report,
        **provenance(1),
        "wall_time_s": round(time.perf_counter() - started, 1),
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
