"""Shouting is speech: how many loud, shouted and high-intensity clips the voice-activity detector
leaves without any voice, before and after the lowered second pass (mmer.extractors.voice_activity),
and that silence, noise, hum, tones and melodies still are not speech.

"No voice" = under MIN_VOICED_S seconds of speech, so the clip gets no audio stream and no words.
before: faster-whisper's Silero probabilities alone (`speech_probabilities`), the detector as it
was; after: `speech_spans` (the higher of the plain and the lowered pass per 32 ms chunk). Both go
through the same decision rule (`spans_of`). Material:

- EmoDB (../shared/data/emodb, real German acted speech, CC0; every file peak-normalised, 2.0 s):
  the anger, happiness and fear takes as they are; the same made louder (+20 dB, then hard-clipped
  at full scale) and raised in pitch with sox (`pitch 700` and `pitch 1000` cents, formants rise
  with it as in shouting; and +700 cents then +20 dB hard-clipped);
- EmoGator (../shared/data/emogator, Apache-2.0): every vocal burst (screams, laughs, cries ...),
  per category;
- espeak-ng English shouted by proxy: the 35 sentences of recipes/spoken_emotion_sentences.tsv at
  the highest pitch (-p 99) and amplitude (-a 200), as they are and +20 dB hard-clipped;
- non-speech that must stay silent: digital silence, dither, white/pink/brown noise from -60 to
  0 dBFS, clipped noise, noise modulated at syllable rate, noise bursts, clicks, 50/60 Hz hum,
  sines and squares from 110 to 1760 Hz, a sweep, a siren, a chord and synthetic melodies.

Needs sox and espeak-ng (`apt-get install sox espeak-ng`).
Run:  python recipes/loud_speech_vad.py [--emogator-every N]
Writes recipes/results/loud_speech_vad.json.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from recipe_results import SHARED_DATA, provenance, write_result

RATE = 16_000
SENTENCES = Path(__file__).resolve().parent / "spoken_emotion_sentences.tsv"
EMODB_EMOTIONS = ("anger", "happiness", "fear")


def decode(path: Path) -> np.ndarray:
    from mmer.extractors.media import MediaReader, probe_media

    reader = MediaReader(probe_media(path), 5.0, 320, 16, threads=1)
    for _ in reader.frame_batches():
        pass
    return reader.audio.samples


def sox(path: Path, *effects: str) -> np.ndarray:
    """`path` through sox `effects`, as 16 kHz mono float32 (sox itself clips at full scale)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "o.wav"
        subprocess.run(["sox", "-V1", str(path), "-r", str(RATE), "-c", "1", "-b", "32", "-e", "floating-point",
                        str(out), *effects], check=True)
        return decode(out)


def louder(samples: np.ndarray, db: float = 20.0) -> np.ndarray:
    """+db dB, hard-clipped at full scale (an overdriven microphone)."""
    return np.clip(samples * 10 ** (db / 20), -1.0, 1.0).astype(np.float32)


def espeak_shout(text: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-p", "99", "-a", "200", "-w", str(wav), text], check=True)
        return decode(wav)


def non_speech(seed: int = 0) -> dict[str, np.ndarray]:
    """Synthetic non-speech, name -> float32 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(4 * RATE) / RATE
    out = {"digital silence": np.zeros(6 * RATE), "dither -90 dBFS": 3e-5 * rng.standard_normal(6 * RATE)}
    white = rng.standard_normal(4 * RATE)
    pink = np.fft.irfft(np.fft.rfft(white) / np.sqrt(np.maximum(np.arange(2 * RATE + 1), 1)))
    pink /= np.abs(pink).max()
    brown = np.cumsum(white)
    brown = (brown - brown.mean()) / np.abs(brown - brown.mean()).max()
    for db in (-60, -40, -20, -6, 0):
        g = 10 ** (db / 20)
        out[f"white noise {db} dBFS"] = np.clip(g * white / 3, -1, 1)
        out[f"pink noise {db} dBFS"] = g * pink
        out[f"brown noise {db} dBFS"] = g * brown
    out["white noise +12 dB clipped"] = np.clip(4 * white, -1, 1)
    out["noise at syllable rate"] = 0.1 * white * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    out["noise bursts"] = 0.17 * white * (np.sin(2 * np.pi * 2 * t) > 0.6)
    out["clicks"] = np.where(rng.random(4 * RATE) < 0.001, 0.9, 0.0)
    out["hum 50 Hz"] = 0.3 * sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))
    out["hum 60 Hz clipped"] = np.clip(sum(np.sin(2 * np.pi * 60 * k * t) / k for k in range(1, 8)), -0.5, 0.5)
    for f in (110, 220, 440, 880, 1760):
        out[f"sine {f} Hz"] = 0.5 * np.sin(2 * np.pi * f * t)
        out[f"square {f} Hz"] = 0.5 * np.sign(np.sin(2 * np.pi * f * t))
    out["sweep 100-2000 Hz"] = 0.5 * np.sin(2 * np.pi * (100 * t + 237.5 * t ** 2))
    out["siren"] = 0.5 * np.sin(2 * np.pi * np.cumsum(700 + 300 * np.sin(2 * np.pi * 0.5 * t)) / RATE)
    out["chord"] = 0.2 * sum(np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
    n = RATE // 4
    for f0 in (98, 131, 196, 262, 392, 523, 784):
        for timbre, harmonics in (("organ", [1, 1, 1, 1]), ("pluck", [1, .5, .33, .25, .2, .16])):
            envelope = np.exp(-4 * np.arange(n) / n) if timbre == "pluck" else 1.0
            notes = [sum(a * np.sin(2 * np.pi * f0 * 2 ** (s / 12) * (k + 1) * np.arange(n) / RATE)
                         for k, a in enumerate(harmonics)) * envelope for s in (0, 4, 7, 12, 7, 4, 0, -5)]
            x = np.concatenate(notes * 2)
            out[f"melody {timbre} {f0} Hz"] = 0.5 * x / np.abs(x).max()
    return {k: v.astype(np.float32) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emogator-every", type=int, default=1,
                        help="use the bursts of every N-th EmoGator contributor (1: all)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from mmer.extractors.pipeline import MIN_VOICED_S
    from mmer.extractors.voice_activity import LOWERED_PASS, spans_of, speech_probabilities, speech_spans, spoken_seconds

    def voiced(samples: np.ndarray) -> tuple[float, float]:
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        return spoken_seconds(spans_of(samples, speech_probabilities(samples))), spoken_seconds(speech_spans(samples))

    started = time.perf_counter()
    tally: dict[str, dict] = defaultdict(lambda: {"clips": 0, "no_voice_before": 0, "no_voice_after": 0,
                                                  "voiced_s_before": 0.0, "voiced_s_after": 0.0})
    lost_before: dict[str, list[str]] = defaultdict(list)

    def count(group: str, name: str, samples: np.ndarray) -> None:
        before, after = voiced(samples)
        t = tally[group]
        t["clips"] += 1
        t["no_voice_before"] += before < MIN_VOICED_S
        t["no_voice_after"] += after < MIN_VOICED_S
        t["voiced_s_before"] += before
        t["voiced_s_after"] += after
        if before < MIN_VOICED_S and not group.startswith("non-speech"):
            lost_before[group].append(f"{name} (after: {after:.2f} s)")

    emodb = SHARED_DATA / "emodb"
    rows = [r for r in csv.DictReader(open(emodb / "labels.csv", encoding="utf-8")) if r["emotion"] in EMODB_EMOTIONS]
    for row in rows:
        path = emodb / row["file"]
        plain = decode(path)
        count("EmoDB anger/happiness/fear: as recorded", row["file"], plain)
        count("EmoDB ...: +20 dB, hard-clipped", row["file"], louder(plain))
        count("EmoDB ...: pitch +700 cents", row["file"], sox(path, "pitch", "700"))
        count("EmoDB ...: pitch +1000 cents", row["file"], sox(path, "pitch", "1000"))
        count("EmoDB ...: pitch +700 cents, +20 dB hard-clipped", row["file"], louder(sox(path, "pitch", "700")))
        print(row["file"], flush=True)
    for row in csv.DictReader(open(SENTENCES, encoding="utf-8"), delimiter="\t"):
        shout = espeak_shout(row["sentence"])
        count("espeak-ng English, -p 99 -a 200", row["sentence"], shout)
        count("espeak-ng English, -p 99 -a 200, +20 dB hard-clipped", row["sentence"], louder(shout))
    gator = SHARED_DATA / "emogator"
    bursts = list(csv.DictReader(open(gator / "labels.csv", encoding="utf-8")))
    contributors = sorted({row["contributor"] for row in bursts})[::args.emogator_every]  # all categories of each
    for row in (row for row in bursts if row["contributor"] in set(contributors)):
        count(f"EmoGator {row['category']}", row["file"], decode(gator / row["file"]))
    for name, samples in non_speech().items():
        count("non-speech (must stay without voice)", name, samples)

    groups = {}
    for group, t in tally.items():
        n = t["clips"]
        groups[group] = {"clips": n, "no_voice_before": t["no_voice_before"], "no_voice_after": t["no_voice_after"],
                         "mean_voiced_s_before": round(t["voiced_s_before"] / n, 3),
                         "mean_voiced_s_after": round(t["voiced_s_after"] / n, 3)}
    gator_groups = [g for g in groups if g.startswith("EmoGator")]
    groups["EmoGator (all categories)"] = {
        "clips": sum(groups[g]["clips"] for g in gator_groups),
        "no_voice_before": sum(groups[g]["no_voice_before"] for g in gator_groups),
        "no_voice_after": sum(groups[g]["no_voice_after"] for g in gator_groups)}
    result = {
        "what": "clips left without any voice (under MIN_VOICED_S of speech) by the voice-activity detector, "
                "before (Silero alone) and after (plus the lowered pass); non-speech must stay at 0 after",
        "min_voiced_s": MIN_VOICED_S,
        "emogator_every": args.emogator_every,
        "lowered_pass": list(LOWERED_PASS),
        "groups": groups,
        "lost_before": {g: v for g, v in lost_before.items() if not g.startswith("EmoGator")},
        "seconds": round(time.perf_counter() - started, 1),
        "provenance": provenance(threads=1),
    }
    path = write_result("loud_speech_vad", result)
    for group, g in groups.items():
        print(f"{group:55s} {g['clips']:5d} clips: no voice {g['no_voice_before']:4d} before, {g['no_voice_after']:4d} after")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
