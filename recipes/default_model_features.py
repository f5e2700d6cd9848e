"""Features of the default-model training data, computed with mmer's own extractors and the SAME
settings `mmer analyze` uses (`ExtractionSettings()`), cached as compact arrays outside the repo.

- GoEmotions-Ekman comments are the transcripts: each comment is split into words exactly as a
  transcript file is (`mmer.extractors.speech.spread_words`) and embedded with the pipeline's text
  encoder (`mmer.extractors.text.TextEncoder`, packaged all-MiniLM-L6-v2): one 384-d vector per
  word-piece. Comments are batched (padding is masked by the encoder's attention mask), which gives
  the same vectors as `TextEncoder.encode` on one comment (checked: max difference 0.0 on the
  comments tried; `check_text_equivalence` re-checks a few on every run).
- EmoDB utterances go through the pipeline's decoding (`mmer.extractors.media`: PyAV, resampled to
  16 kHz mono float32) and acoustic path (`mmer.extractors.acoustic.AcousticExtractor("egemaps+whisper")`):
  (T, 409) frames at 25 Hz inside speech: 25 eGeMAPS low-level descriptors + 384 whisper tiny.en
  encoder layer-2 states.

- Face geometry pool: the real faces of the shared media clips (`../shared/media`, unlabelled)
  through the pipeline's visual path: (T, 22) geometry rows per clip, the raw material of the
  synthetic expression sequences (recipes/default_model_training.py, `SyntheticFaces`).

On disk (`<work>/features/`), one .npz per part, read with allow_pickle=False:
    goemotions_<split>.npz  tokens (N_tok, 384) float16, offsets (N+1,) int64, labels (N, 7) uint8, ids (N,) str
    emodb.npz               frames (N_frames, 409) float32, offsets (N+1,) int64, files, speakers, emotions
    faces.npz               frames (N_frames, 29) float32, offsets (N_clips+1,) int64, clips (N_clips,) str
Text vectors are stored as float16 (halves the disk size; the models see float32 again).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmer.extractors.pipeline import ExtractionSettings, feature_spec_for
from mmer.core.atomic_file import replacing

LABEL_NAMES: list[str] = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
"""mmer's default label order; GoEmotions-Ekman's label ids are already in this order."""
GOEMOTIONS_SPLITS = {"train": "train.tsv", "valid": "dev.tsv", "test": "test.tsv"}
EMODB_TO_LABEL = {"anger": "anger", "disgust": "disgust", "fear": "fear", "happiness": "happy",
                  "neutral": "neutral", "sadness": "sad", "boredom": "neutral"}
"""EmoDB class -> default label (boredom -> neutral, docs/corpora.md "Label mapping")."""
TEXT_BATCH = 64  # comments per encoder forward pass


@dataclass
class TokenSequences:
    """Variable-length sequences stored back to back: rows[offsets[i]:offsets[i+1]] is sample i."""

    rows: np.ndarray  # (N_rows, D)
    offsets: np.ndarray  # (N + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, i: int) -> np.ndarray:
        """(T_i, D) float32 sequence of sample i."""
        return np.asarray(self.rows[self.offsets[i]:self.offsets[i + 1]], dtype=np.float32)


def _pack(seqs: list[np.ndarray], dim: int, dtype) -> TokenSequences:
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rows = np.concatenate(seqs).astype(dtype) if seqs else np.zeros((0, dim), dtype)
    return TokenSequences(rows, offsets)


def read_goemotions(data: Path, split: str) -> tuple[list[str], np.ndarray, list[str]]:
    """(texts, labels (N, 7) uint8 multi-hot, comment ids) of one official split."""
    texts, labels, ids = [], [], []
    with (data / GOEMOTIONS_SPLITS[split]).open(encoding="utf-8") as handle:
        for line in handle:
            text, label_ids, comment_id = line.rstrip("\n").split("\t")
            row = np.zeros(len(LABEL_NAMES), np.uint8)
            row[[int(k) for k in label_ids.split(",")]] = 1
            texts.append(text)
            labels.append(row)
            ids.append(comment_id)
    return texts, np.stack(labels), ids


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of about `size` rows keeping the share of every label SET (exact label
    combination), by proportional seeded sampling within each combination (at least one each)."""
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keys = np.array(["".join(map(str, row)) for row in labels])
    chosen = []
    for key in sorted(set(keys)):
        members = np.flatnonzero(keys == key)
        take = max(1, int(round(len(members) * size / len(labels))))
        chosen.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(chosen))


def comment_piece_ids(tokenizer, text: str, window: int) -> list[int]:
    """A comment's word-piece ids as the pipeline tokenises a transcript of it (words from
    `spread_words`, no [CLS]/[SEP]), cut to one encoder window of `window` pieces."""
    from mmer.extractors.speech import spread_words

    words = spread_words(text, 0.0, 1.0)  # times are irrelevant for the features
    if not words:
        return []
    pieces = tokenizer([w.text for w in words], add_special_tokens=False)["input_ids"]
    return [i for word in pieces for i in word][:window]


def wordpiece_batch(tokenizer, rows: list[list[int]]):
    """`[CLS] ids [SEP]` of each row, padded: token ids (B, L) and attention mask (B, L), int64."""
    import torch

    longest = max(len(r) for r in rows) + 2
    input_ids = torch.full((len(rows), longest), tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for k, row in enumerate(rows):
        input_ids[k, :len(row) + 2] = torch.tensor([tokenizer.cls_token_id, *row, tokenizer.sep_token_id])
        mask[k, :len(row) + 2] = 1
    return input_ids, mask


class CommentEmbedder:
    """The pipeline's text encoder applied to whole comments, many per forward pass."""

    def __init__(self, settings: ExtractionSettings):
        from mmer.extractors.text import TextEncoder, encoder_info

        self.encoder = TextEncoder(encoder_info(settings.text_encoder), settings.device)

    def embed(self, texts: list[str]) -> list[np.ndarray]:
        """Texts -> one (T_i, D) float32 array each (one vector per word-piece, [CLS]/[SEP] dropped)."""
        import torch

        tok = self.encoder.tokenizer
        ids = [comment_piece_ids(tok, t, self.encoder.window) for t in texts]
        out: list[np.ndarray | None] = [None] * len(texts)
        order = np.argsort([len(i) for i in ids], kind="stable")
        with torch.inference_mode():
            for b in range(0, len(order), TEXT_BATCH):
                rows = order[b:b + TEXT_BATCH]
                input_ids, mask = wordpiece_batch(tok, [ids[i] for i in rows])
                hidden = self.encoder.model(input_ids=input_ids, attention_mask=mask).last_hidden_state  # (B, L, D)
                for r, i in enumerate(rows):
                    out[i] = hidden[r, 1:len(ids[i]) + 1].float().numpy()
        return out  # type: ignore[return-value]

    def check_text_equivalence(self, texts: list[str], atol: float = 1e-4) -> float:
        """Max |difference| between `embed` and the pipeline's own `TextEncoder.encode` on `texts`;
        raises AssertionError above `atol`."""
        from mmer.extractors.speech import spread_words

        batched = self.embed(texts)
        worst = 0.0
        for text, mine in zip(texts, batched):
            ref, _ = self.encoder.encode(spread_words(text, 0.0, 1.0))
            if ref.shape != mine.shape:
                raise AssertionError(f"token count differs for {text!r}: {ref.shape} vs {mine.shape}")
            worst = max(worst, float(np.abs(ref - mine).max()) if len(ref) else 0.0)
        if worst > atol:
            raise AssertionError(f"batched text features differ from TextEncoder.encode by {worst}")
        return worst


def extract_goemotions(data: Path, split: str, out: Path, subset: np.ndarray | None,
                       settings: ExtractionSettings, name: str | None = None) -> Path:
    """Embed one split (or the rows `subset` of it) and write <name or goemotions_<split>>.npz."""
    texts, labels, ids = read_goemotions(data, split)
    rows = np.arange(len(texts)) if subset is None else subset
    embedder = CommentEmbedder(settings)
    embedder.check_text_equivalence([texts[i] for i in rows[:8]])
    dim = embedder.encoder.info.dim
    seqs = []
    for b in range(0, len(rows), 2048):
        seqs += embedder.embed([texts[i] for i in rows[b:b + 2048]])
    packed = _pack(seqs, dim, np.float16)
    path = out / f"{name or 'goemotions_' + split}.npz"
    with replacing(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, tokens=packed.rows, offsets=packed.offsets, labels=labels[rows],
                 ids=np.array([ids[i] for i in rows]))
    return path


def merge_goemotions_chunks(out: Path, split: str, chunks: list[str]) -> Path:
    """Concatenate the chunk files <out>/<chunk>.npz (in order) into goemotions_<split>.npz and
    delete the chunks."""
    parts = [load_goemotions(out, c) for c in chunks]
    lengths = np.concatenate([np.diff(p.text.offsets) for p in parts])
    path = out / f"goemotions_{split}.npz"
    with replacing(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, tokens=np.concatenate([p.text.rows for p in parts]),
                 offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                 labels=np.concatenate([p.labels for p in parts]).astype(np.uint8),
                 ids=np.array([i for p in parts for i in p.ids]))
    for c in chunks:
        (out / f"{c}.npz").unlink()
    return path


def emodb_audio(path: Path, acoustic) -> np.ndarray:
    """(T, 25) acoustic features of the speech in one file, decoded, resampled and cut to speech
    exactly as the pipeline does (`speech_features`)."""
    from mmer.extractors.media import MediaReader, probe_media
    from mmer.extractors.pipeline import FRAMES_PER_BATCH, speech_features

    settings = ExtractionSettings()
    info = probe_media(path)
    reader = MediaReader(info, settings.fps, settings.max_side_px, FRAMES_PER_BATCH, threads=1)
    for _ in reader.frame_batches():  # an audio file has no frames; this decodes the audio
        pass
    features, _, _ = speech_features(acoustic, reader.audio.samples)
    return features


def extract_emodb(data: Path, out: Path, settings: ExtractionSettings) -> Path:
    """Acoustic features of every EmoDB utterance -> emodb.npz."""
    from mmer.extractors.acoustic import AcousticExtractor

    with (data / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    acoustic = AcousticExtractor(settings.acoustic)
    packed = _pack([emodb_audio(data / r["file"], acoustic) for r in rows], acoustic.spec.dim, np.float32)
    path = out / "emodb.npz"
    with replacing(path, suffix=".tmp.npz") as tmp:
        np.savez(tmp, frames=packed.rows, offsets=packed.offsets, files=np.array([r["file"] for r in rows]),
                 speakers=np.array([int(r["speaker"]) for r in rows]), emotions=np.array([r["emotion"] for r in rows]))
    return path


def extract_faces(media: Path, out: Path) -> Path:
    """Visual features of every video in `media` with a face -> faces.npz (one sequence per clip)."""
    from mmer.extractors.media import VIDEO_SUFFIXES
    from mmer.extractors.pipeline import FeatureExtractor

    extractor = FeatureExtractor(ExtractionSettings(use_cache=False, transcript=None))
    seqs, clips = [], []
    for path in sorted(p for p in media.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
        visual = extractor.extract(path).features["visual"]
        if len(visual):
            seqs.append(visual)
            clips.append(path.name)
    packed = _pack(seqs, default_feature_spec().visual.dim, np.float32)
    path = out / "faces.npz"
    np.savez(path, frames=packed.rows, offsets=packed.offsets, clips=np.array(clips))
    return path


def load_faces(features: Path) -> TokenSequences:
    with np.load(features / "faces.npz", allow_pickle=False) as z:
        return TokenSequences(z["frames"], z["offsets"])


def _run_job(job: tuple) -> tuple[str, float]:
    """One extraction job in a worker process with one compute thread; returns (name, seconds)."""
    import time

    import torch

    torch.set_num_threads(1)
    kind, data, out, split, subset, name = job
    started = time.perf_counter()
    settings = ExtractionSettings()
    if kind == "text":
        extract_goemotions(data, split, out, subset, settings, name)
    elif kind == "faces":
        extract_faces(data, out)
    else:
        extract_emodb(data, out, settings)
    return f"{kind}:{name or split}", time.perf_counter() - started


FEATURE_FILES = {"text": ["goemotions_train.npz", "goemotions_valid.npz", "goemotions_test.npz"],
                 "audio": ["emodb.npz"], "visual": ["faces.npz"]}
"""The cached feature files of each modality."""


def drop_stale_features(out: Path) -> None:
    """Delete the cached files of every modality whose feature spec (extractor, dim, version) differs
    from the one they were extracted with (recorded in <out>/feature_spec.json; files from before
    that record count as stale), so a changed extractor (e.g. new tuned text layers) is re-run."""
    record = out / "feature_spec.json"
    spec = default_feature_spec()
    now = {m: [getattr(spec, m).extractor, getattr(spec, m).dim, getattr(spec, m).version] for m in FEATURE_FILES}
    earlier = json.loads(record.read_text()) if record.exists() else {}
    for m, files in FEATURE_FILES.items():
        if earlier.get(m) != now[m]:
            for name in files:
                (out / name).unlink(missing_ok=True)
    record.write_text(json.dumps(now, indent=1))


def prepare_features(shared_data: Path, work: Path, train_size: int, seed: int, workers: int = 2) -> dict:
    """Extract every missing feature file into <work>/features with `workers` single-thread
    processes; returns {"seconds": {job: s} extracted now, "recorded_seconds": {job: s} of the run
    that extracted the cached files (<work>/features/extraction_seconds.json), "train_rows":
    indices of the GoEmotions train subset}."""
    from multiprocessing import get_context

    out = work / "features"
    out.mkdir(parents=True, exist_ok=True)
    drop_stale_features(out)
    go = shared_data / "goemotions" / "ekman"
    _, train_labels, _ = read_goemotions(go, "train")
    subset = stratified_subset(train_labels, train_size, seed)
    jobs = []
    train_chunks: list[str] = []
    if not (out / "goemotions_train.npz").exists() or len(load_goemotions(out, "train")) != len(subset):
        # The train comments are split into `workers` chunks (one job each), merged afterwards.
        for k, rows in enumerate(np.array_split(subset, workers)):
            train_chunks.append(f"goemotions_train_chunk{k}")
            jobs.append(("text", go, out, "train", rows, train_chunks[-1]))
    for split in ("valid", "test"):
        if not (out / f"goemotions_{split}.npz").exists():
            jobs.append(("text", go, out, split, None, None))
    if not (out / "emodb.npz").exists():
        jobs.append(("audio", shared_data / "emodb", out, "all", None, None))
    if not (out / "faces.npz").exists():
        jobs.append(("faces", shared_data.parent / "media", out, "all", None, None))
    seconds: dict[str, float] = {}
    record = out / "extraction_seconds.json"
    if jobs:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for name, s in pool.imap_unordered(_run_job, jobs):
                seconds[name] = round(s, 1)
        if train_chunks:
            merge_goemotions_chunks(out, "train", train_chunks)
        earlier = json.loads(record.read_text()) if record.exists() else {}
        if train_chunks:  # the train timings of an earlier (smaller) extraction no longer apply
            earlier = {k: v for k, v in earlier.items() if not k.startswith("text:") or "train" not in k}
        record.write_text(json.dumps({**earlier, **seconds, "workers": min(workers, len(jobs))}, indent=1))
    recorded = json.loads(record.read_text()) if record.exists() else {}
    return {"seconds": seconds, "recorded_seconds": recorded, "train_rows": subset}


def load_goemotions(features: Path, split: str) -> "GoEmotionsPart":
    """goemotions_<split>.npz, or <split>.npz when `split` is a chunk name (goemotions_...)."""
    name = split if split.startswith("goemotions_") else f"goemotions_{split}"
    with np.load(features / f"{name}.npz", allow_pickle=False) as z:
        return GoEmotionsPart(TokenSequences(z["tokens"], z["offsets"]), z["labels"].astype(np.float32),
                              [str(i) for i in z["ids"]])


def load_emodb(features: Path) -> "EmoDBPart":
    with np.load(features / "emodb.npz", allow_pickle=False) as z:
        emotions = [str(e) for e in z["emotions"]]
        labels = np.zeros((len(emotions), len(LABEL_NAMES)), np.float32)
        for i, e in enumerate(emotions):
            labels[i, LABEL_NAMES.index(EMODB_TO_LABEL[e])] = 1.0
        return EmoDBPart(TokenSequences(z["frames"], z["offsets"]), labels, [str(f) for f in z["files"]],
                         z["speakers"].astype(np.int64), emotions)


@dataclass
class GoEmotionsPart:
    """One GoEmotions split: text sequences, labels (N, 7) float32, comment ids."""

    text: TokenSequences
    labels: np.ndarray
    ids: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class EmoDBPart:
    """All EmoDB utterances: audio sequences, labels (N, 7) float32 (boredom -> neutral), files,
    speakers (N,), EmoDB emotion names."""

    audio: TokenSequences
    labels: np.ndarray
    files: list[str]
    speakers: np.ndarray
    emotions: list[str]


def default_feature_spec():
    """The FeatureSpec `mmer analyze` extracts with by default (all three modalities)."""
    return feature_spec_for(ExtractionSettings())
