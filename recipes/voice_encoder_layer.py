"""Which voice representation transfers: whisper tiny.en encoder layers vs eGeMAPS, speaker-
independently on EmoDB and across corpora (EmoDB <-> EmoGator), under three normalisations.

Per utterance, on the pipeline's audio path (PyAV decode to 16 kHz mono, Silero speech spans,
`mmer.extractors.pipeline.speech_features` rules; an utterance with under MIN_VOICED_S of speech has no
voice and is counted, not used): the 25 Hz frames inside speech of
- eGeMAPS low-level descriptors (25),
- the states after each whisper encoder block 1-4 (384 each, `mmer.extractors.voice_encoder`),
pooled over the utterance into mean + standard deviation per dimension.

Classifier: class-balanced multinomial logistic regression (L2, C = 1) on standardised pooled
features. Normalisation of the frames before pooling, per dimension:
- "none":    standardised with the training corpus's statistics only;
- "corpus":  every corpus z-scored with its own statistics (the test corpus's `--adapt batch`);
- "speaker": every speaker (EmoGator: contributor) z-scored with their own (`--speakers`).

Validation (chooses `VOICE_ENCODER_LAYER`): EmoDB, the 5 folds of recipes/emodb_folds.json, each fold
scored on its VALIDATION pair (its test pair is never looked at here), UA (mean per-class recall)
over the 6 EmoDB labels (boredom -> neutral). Cross-corpus (reported, not selected on): train on all
of one corpus, test on all of the other, over the six labels both have (anger, disgust, fear,
happy, neutral, sad; EmoGator's surprise left out). Whether EmoGator helps a speech model: the same
EmoDB validation pairs, trained on the fold's training speakers with and without every EmoGator
burst of the six shared labels (speaker normalisation).

Run:  python recipes/voice_encoder_layer.py [--emogator-contributors N]  -> recipes/results/voice_encoder_layer.json
Features are cached in ~/.cache/mmer/recipes/voice_encoder_layer/<corpus>.npz.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.preprocessing import StandardScaler

from recipe_results import RESULTS_DIR, SHARED_DATA, provenance, write_result

CACHE = Path.home() / ".cache" / "mmer" / "recipes" / "voice_encoder_layer"
FOLDS_FILE = Path(__file__).resolve().parent / "emodb_folds.json"
LABELS = ["anger", "disgust", "fear", "happy", "neutral", "sad"]
EMODB_TO_LABEL = {"anger": "anger", "disgust": "disgust", "fear": "fear", "happiness": "happy",
                  "neutral": "neutral", "sadness": "sad", "boredom": "neutral"}
LAYERS = (1, 2, 3, 4)
NORMALISATIONS = ("none", "corpus", "speaker")


def read_corpus(name: str, contributors: int | None = None) -> list[tuple[str, str, str]]:
    """(file, speaker, label or "" when outside LABELS) rows of ../shared/data/<name>/labels.csv;
    EmoGator: the bursts of the first `contributors` contributors by id (None: all 357)."""
    with (SHARED_DATA / name / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if name == "emodb":
        return [(r["file"], r["speaker"], EMODB_TO_LABEL[r["emotion"]]) for r in rows]
    chosen = set(sorted({r["contributor"] for r in rows})[:contributors])
    return [(r["file"], r["contributor"], r["emotion"] if r["emotion"] in LABELS else "") for r in rows
            if r["contributor"] in chosen]


def utterance_frames(path: Path, acoustic, encoder) -> list[np.ndarray] | None:
    """[(T, 25) eGeMAPS, (T, 384) after block 1, ..., after block 4] of the frames inside speech,
    or None when the pipeline hears no voice."""
    from mmer.extractors.media import MediaReader, probe_media
    from mmer.extractors.pipeline import FRAMES_PER_BATCH, MIN_VOICED_S, ExtractionSettings
    from mmer.extractors.voice_activity import inside, speech_spans, spoken_seconds
    from mmer.extractors.voice_encoder import encoder_pieces

    settings = ExtractionSettings()
    reader = MediaReader(probe_media(path), settings.fps, settings.max_side_px, FRAMES_PER_BATCH, threads=1)
    for _ in reader.frame_batches():
        pass
    samples = reader.audio.samples
    spans = speech_spans(samples)
    if spoken_seconds(spans) < MIN_VOICED_S:
        return None
    low, times = acoustic(samples)
    layers = [np.zeros((len(low), encoder.dim), np.float32) for _ in LAYERS]
    for first, end in encoder_pieces(spans, samples.shape[0] / 16000):
        mel = torch.from_numpy(encoder.mel(samples[first:end]))
        with torch.inference_mode():
            states = [x.numpy() for x in encoder.forward(mel, every_layer=True)]
        k0, rows = first // 640, -(-(end - first) // 640)
        for out, x in zip(layers, states):
            pooled = np.stack([x[2 * i:2 * i + 2].mean(0) for i in range((len(x) + 1) // 2)])[:rows]
            take = min(len(pooled), len(out) - k0)
            out[k0:k0 + take] = pooled[:take]
    keep = inside(times, spans)
    return [low[keep]] + [x[keep] for x in layers]


def corpus_frames(name: str, contributors: int | None = None) -> dict:
    """Cached per-utterance frames of every representation: {"frames": [rep][utt] (T, D),
    "speakers", "labels", "no_voice": files without voice}."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (f"{name}.npz" if contributors is None else f"{name}_{contributors}.npz")
    rows = read_corpus(name, contributors)
    if not path.exists():
        from mmer.extractors.acoustic import AcousticExtractor
        from mmer.extractors.speech import asr_model_dir
        from mmer.extractors.voice_encoder import WhisperEncoderStates

        acoustic, encoder = AcousticExtractor("egemaps"), WhisperEncoderStates(asr_model_dir(None), max(LAYERS))
        reps = [[] for _ in range(1 + len(LAYERS))]
        kept, no_voice = [], []
        for i, (file, speaker, label) in enumerate(rows):
            frames = utterance_frames(SHARED_DATA / name / file, acoustic, encoder)
            if frames is None:
                no_voice.append(file)
                continue
            kept.append(i)
            for r, x in zip(reps, frames):
                r.append(x)
        arrays = {}
        for r, seqs in enumerate(reps):
            arrays[f"rep{r}"] = np.concatenate(seqs).astype(np.float16 if r else np.float32)
        lengths = np.array([len(x) for x in reps[0]])
        np.savez(path, **arrays, offsets=np.concatenate([[0], np.cumsum(lengths)]), kept=np.array(kept),
                 no_voice=np.array(no_voice))
    with np.load(path) as z:
        offsets, kept = z["offsets"], z["kept"]
        frames = [[z[f"rep{r}"][offsets[i]:offsets[i + 1]].astype(np.float32) for i in range(len(kept))]
                  for r in range(1 + len(LAYERS))]
        no_voice = [str(f) for f in z["no_voice"]]
    return {"frames": frames, "speakers": np.array([rows[i][1] for i in kept]),
            "labels": np.array([rows[i][2] for i in kept]), "no_voice": no_voice, "utterances": len(rows)}


def normalised(frames: list[np.ndarray], groups: np.ndarray) -> list[np.ndarray]:
    """Frames z-scored per dimension with the statistics of all frames of their group."""
    out = list(frames)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        stacked = np.concatenate([frames[i] for i in idx])
        mean, std = stacked.mean(0), stacked.std(0) + 1e-6
        for i in idx:
            out[i] = (frames[i] - mean) / std
    return out


def pooled(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.concatenate([x.mean(0), x.std(0)]) for x in frames])


def representation(corpus: dict, rep: str, norm: str) -> np.ndarray:
    """(N, F) pooled features of representation `rep` ("egemaps", "layer<k>", "egemaps+layer<k>")."""
    parts = []
    for name in rep.split("+"):
        r = 0 if name == "egemaps" else int(name[5:])
        frames = corpus["frames"][r]
        if norm == "corpus":
            frames = normalised(frames, np.zeros(len(frames)))
        elif norm == "speaker":
            frames = normalised(frames, corpus["speakers"])
        parts.append(pooled(frames))
    return np.concatenate(parts, axis=1)


def ua(x_train, y_train, x_test, y_test) -> float:
    scaler = StandardScaler().fit(x_train)
    fit = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000).fit(scaler.transform(x_train), y_train)
    return float(balanced_accuracy_score(y_test, fit.predict(scaler.transform(x_test))))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--emogator-contributors", type=int, default=None,
                        help="only the bursts of the first N EmoGator contributors (default: all 357)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    emodb, emogator = corpus_frames("emodb"), corpus_frames("emogator", args.emogator_contributors)
    folds = json.loads(FOLDS_FILE.read_text())["folds"]
    reps = ["egemaps"] + [f"layer{k}" for k in LAYERS] + [f"egemaps+layer{k}" for k in LAYERS]
    validation = {}
    speakers = emodb["speakers"].astype(int)
    for rep in reps:
        validation[rep] = {}
        for norm in NORMALISATIONS:
            x = representation(emodb, rep, norm)
            scores = []
            for fold in folds:
                train = ~np.isin(speakers, fold["test_speakers"] + fold["valid_speakers"])
                valid = np.isin(speakers, fold["valid_speakers"])
                scores.append(ua(x[train], emodb["labels"][train], x[valid], emodb["labels"][valid]))
            validation[rep][norm] = round(float(np.mean(scores)), 4)
    chosen = max(LAYERS, key=lambda k: validation[f"layer{k}"]["speaker"])
    # Does adding EmoGator's bursts (all contributors, the six shared labels) to the training
    # speakers help on the EmoDB validation pairs? (the test for keeping EmoGator in training)
    shared = np.isin(emogator["labels"], LABELS)
    with_bursts = {}
    for rep in ("egemaps", f"layer{chosen}", f"egemaps+layer{chosen}"):
        x = representation(emodb, rep, "speaker")
        bursts, burst_labels = representation(emogator, rep, "speaker")[shared], emogator["labels"][shared]
        scores = {"emodb_only": [], "emodb_plus_emogator": []}
        for fold in folds:
            train = ~np.isin(speakers, fold["test_speakers"] + fold["valid_speakers"])
            valid = np.isin(speakers, fold["valid_speakers"])
            scores["emodb_only"].append(ua(x[train], emodb["labels"][train], x[valid], emodb["labels"][valid]))
            scores["emodb_plus_emogator"].append(ua(np.concatenate([x[train], bursts]),
                                                    np.concatenate([emodb["labels"][train], burst_labels]),
                                                    x[valid], emodb["labels"][valid]))
        with_bursts[rep] = {k: round(float(np.mean(v)), 4) for k, v in scores.items()}
    cross = {}
    for rep in reps:
        cross[rep] = {}
        for norm in NORMALISATIONS:
            a, b = representation(emodb, rep, norm), representation(emogator, rep, norm)[shared]
            ya, yb = emodb["labels"], emogator["labels"][shared]
            cross[rep][norm] = {"emodb_to_emogator": round(ua(a, ya, b, yb), 4),
                                "emogator_to_emodb": round(ua(b, yb, a, ya), 4)}
    write_result("voice_encoder_layer", {
        "recipe": "recipes/voice_encoder_layer.py",
        "data": {"emodb": f"{len(emodb['labels'])} of {emodb['utterances']} utterances with voice, 10 speakers",
                 "emogator": f"{int(shared.sum())} bursts with a shared label, of {emogator['utterances']} "
                             f"(contributors: {args.emogator_contributors or 'all 357'}); "
                             f"{len(emogator['no_voice'])} without voice by the pipeline's detector"},
        "metric": "unweighted accuracy over the 6 shared labels (chance 0.167)",
        "validation_emodb_speaker_folds": validation,
        "chosen_layer": chosen,
        "chosen_by": "highest mean validation-pair UA of the layer alone, speaker normalisation",
        "cross_corpus": cross,
        "emodb_validation_with_emogator_in_training": with_bursts,
        "no_voice_files": {"emodb": emodb["no_voice"], "emogator": emogator["no_voice"]},
        "provenance": provenance(threads=1), "wall_time_s": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
