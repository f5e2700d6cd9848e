"""Training samples and the training loop of the default checkpoints (docs/corpora.md, "Default
model training data").

Why a loop here rather than `mmer.training.train`: the library trains on a fixed train split
read from a registered dataset (one .npz per sample for `--dataset cache`); the agreed design draws
a fresh mixture every epoch (text-only / audio-only / label-paired text+audio with modality
dropout), which a static split cannot express. The loop below reuses the library's pieces
(`collate`, `build_optimizer`, `LRSchedule`, `EarlyStopping`, `predict_probs`, threshold tuning,
`save_checkpoint`) and the models' own `loss` / `predict`.

Every epoch (`EpochMixture`) draws `epoch_samples` samples:
- text-only  (share `mix_text`):  GoEmotions comments, without replacement across epochs;
- audio-only (share `mix_audio`): EmoDB utterances of the training speakers, repeated as needed;
- visual-only (share `mix_visual`): a synthetic face sequence of a uniformly drawn label
  (`SyntheticFaces`: real face geometry, expression probabilities concentrated on that label);
- paired     (the rest): an EmoDB utterance with label e + a random comment whose label set is
  exactly {e} or {neutral} (a neutral utterance: any comment); target = union of the two targets,
  "neutral" removed when the other side carries a non-neutral label. Two different non-neutral
  emotions are never paired. Modality dropout: each stream of a paired sample is dropped with
  probability `modality_dropout`, never both; the target is then that of the remaining stream
  (a neutral voice is never taught to say "anger" because the dropped words were angry).
The visual stream is absent (length 0, fully masked) in every sample but the visual-only ones.

After training, `fit_fusion` measures each stream alone on held-out data and stores the
calibration of the late fusion the application uses (mmer/stream_fusion.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from default_model_features import LABEL_NAMES, EmoDBPart, GoEmotionsPart, TokenSequences
from mmer.extractors.expression import EXPRESSION_LABELS
from mmer.extractors.face import GEOMETRY_FEATURE_NAMES
from mmer.datasets.base import MultimodalDataset, Sample, collate
from mmer.evaluation import predict_probs
from mmer.optimization import EarlyStopping, LRSchedule, build_optimizer
from mmer.stream_calibration import calibrate_stream, fit_summary_head
from mmer.stream_fusion import LateFusion, StreamCalibration, StreamDomain, SummaryHead
from mmer.thresholds import tune_label_thresholds
from mmer.voice_normalisation import VoiceNormaliser
from mmer.trainer import EpochOutcome, Trainer, TrainerHooks
from mmer.models.registry import build_model

NEUTRAL = LABEL_NAMES.index("neutral")
SURPRISE = LABEL_NAMES.index("surprise")
EMODB_LABELS = [i for i in range(len(LABEL_NAMES)) if i != SURPRISE]
"""The six labels that occur in EmoDB (arg-max for speech scoring is taken over these)."""


@dataclass
class MixtureSettings:
    """How each epoch's training samples are drawn (recorded in the checkpoint's `extra`)."""

    epoch_samples: int = 12000  # samples per epoch
    mix_text: float = 0.45  # share of text-only samples
    mix_audio: float = 0.2  # share of audio-only samples
    mix_visual: float = 0.15  # share of synthetic visual-only samples (the rest: label-paired text + audio)
    modality_dropout: float = 0.3  # per-stream drop probability in paired samples (never both)
    paired_neutral_text: float = 0.5  # chance that a non-neutral utterance gets a neutral comment


LABEL_TO_EXPRESSION = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy",
                       "neutral": "neutral", "sad": "sad", "surprise": "surprise"}
"""mmer label -> FER2013 class of the expression network (the same seven emotions)."""
FACE_FRAMES = (3, 30)
"""Frames per synthetic face sequence (0.6-6 s at 5 fps)."""
FACE_STRENGTH = (0.4, 0.95)
"""Share of the expression distribution on the labelled class, drawn per sequence."""
FACE_CONCENTRATION = (5.0, 50.0)
"""Dirichlet concentration of the per-frame expression readings around the sequence's distribution
(low = readings that jump from frame to frame)."""
FACE_IDS_PER_LABEL = 100
"""LDDU's per-sample correctness tracker gets this many ids per label for synthetic faces."""


class SyntheticFaces:
    """Visual-only training sequences with a known label. No labelled face video exists for us,
    so the visual stream learns to read the expression network's output: each sequence takes a run
    of real face geometry (the shared clips, `load_faces`) and per-frame expression probabilities
    drawn around a distribution whose mass `FACE_STRENGTH` sits on the label's FER2013 class, the
    rest on a random Dirichlet(0.5) background."""

    def __init__(self, geometry: TokenSequences):
        self.geometry = geometry
        self.geometry_dim = len(GEOMETRY_FEATURE_NAMES)

    def draw(self, label: int, rng: np.random.Generator) -> np.ndarray:
        """(T, 29) float32 visual sequence for `label` (index into LABEL_NAMES)."""
        clip = self.geometry.get(int(rng.integers(len(self.geometry))))[:, :self.geometry_dim]
        frames = min(int(rng.integers(FACE_FRAMES[0], FACE_FRAMES[1] + 1)), len(clip))
        first = int(rng.integers(len(clip) - frames + 1))
        strength = rng.uniform(*FACE_STRENGTH)
        centre = (1 - strength) * rng.dirichlet(np.full(len(EXPRESSION_LABELS), 0.5))
        centre[EXPRESSION_LABELS.index(LABEL_TO_EXPRESSION[LABEL_NAMES[label]])] += strength
        readings = rng.dirichlet(rng.uniform(*FACE_CONCENTRATION) * centre + 1e-3, size=frames)  # (T, 7)
        return np.concatenate([clip[first:first + frames], readings], axis=1).astype(np.float32)


def normalised_emodb(emodb: EmoDBPart, train_rows: np.ndarray, groups: str = "speaker",
                     normaliser: VoiceNormaliser | None = None) -> tuple[EmoDBPart, VoiceNormaliser]:
    """EmoDB with every utterance's audio frames normalised in its own domain
    (mmer/voice_normalisation.py): `groups` "speaker" = with the statistics of all utterances of
    its speaker (what `mmer analyze --speakers` does), "clip" = of the utterance alone (the default
    `--adapt clip`), both shrunk towards the prior. The prior is `normaliser`, or fitted on the raw
    frames of the training utterances `train_rows` only. Returns the normalised copy and the prior."""
    if normaliser is None:
        normaliser = VoiceNormaliser.fit([emodb.audio.get(int(i)) for i in train_rows],
                                         basis=f"{len(train_rows)} training-speaker EmoDB utterances (raw frames)")
    frames = [emodb.audio.get(i) for i in range(len(emodb.files))]
    keys = list(emodb.speakers) if groups == "speaker" else list(range(len(frames)))
    out = normaliser.normalise_groups(frames, keys)
    lengths = np.array([len(x) for x in out], dtype=np.int64)
    audio = TokenSequences(np.concatenate(out).astype(np.float32), np.concatenate([[0], np.cumsum(lengths)]))
    return EmoDBPart(audio, emodb.labels, emodb.files, emodb.speakers, emodb.emotions), normaliser


def pair_target(text_target: np.ndarray, audio_target: np.ndarray) -> np.ndarray:
    """(7,) union of two targets; neutral dropped when the union has a non-neutral label."""
    union = np.maximum(text_target, audio_target)
    if union[[i for i in range(len(union)) if i != NEUTRAL]].any():
        union[NEUTRAL] = 0.0
    return union


class Pools:
    """Text pool (GoEmotions part) and audio pool (EmoDB utterances `audio_rows`) of one split."""

    def __init__(self, text: GoEmotionsPart, emodb: EmoDBPart, audio_rows: np.ndarray, visual_dim: int,
                 faces: SyntheticFaces):
        self.text, self.emodb, self.audio_rows = text, emodb, np.asarray(audio_rows)
        self.visual_dim = visual_dim
        self.faces = faces
        keys = ["".join(str(int(v)) for v in row) for row in text.labels]
        single = {}
        for label in range(len(LABEL_NAMES)):
            key = "".join("1" if j == label else "0" for j in range(len(LABEL_NAMES)))
            single[label] = np.flatnonzero(np.array(keys) == key)
        self.single_label = single  # label -> comments whose label set is exactly {label}

    def features(self, text_i: int | None, audio_i: int | None,
                 visual: np.ndarray | None = None) -> dict[str, np.ndarray]:
        text_dim = self.text.text.rows.shape[1]
        return {
            "text": self.text.text.get(text_i) if text_i is not None else np.zeros((0, text_dim), np.float32),
            "audio": (self.emodb.audio.get(audio_i) if audio_i is not None
                      else np.zeros((0, self.emodb.audio.rows.shape[1]), np.float32)),
            "visual": visual if visual is not None else np.zeros((0, self.visual_dim), np.float32),
        }

    def input_samples(self):
        """Per-sample feature dicts of the pool's own data: every comment text-only, every
        utterance of `audio_rows` audio-only, then 2,000 synthetic faces (what
        `EmotionModel.fit_input_statistics` takes)."""
        for i in range(len(self.text)):
            yield self.features(i, None)
        for j in self.audio_rows:
            yield self.features(None, int(j))
        rng = np.random.default_rng(12345)
        for k in range(2000):
            yield self.features(None, None, self.faces.draw(k % len(LABEL_NAMES), rng))

    def partner(self, audio_i: int, rng: np.random.Generator, neutral_share: float) -> int:
        """A comment to pair with utterance `audio_i` (see the module docstring)."""
        label = int(np.argmax(self.emodb.labels[audio_i]))
        if label == NEUTRAL:
            return int(rng.integers(len(self.text)))
        pool = self.single_label[NEUTRAL] if rng.random() < neutral_share else self.single_label[label]
        return int(rng.choice(pool))


def draw_paired(pools: Pools, audio_i: int, rng: np.random.Generator, settings: MixtureSettings,
                dropout: bool) -> tuple[int | None, int | None, np.ndarray]:
    """(text index or None, audio index or None, target (7,)) of one paired sample."""
    text_i = pools.partner(audio_i, rng, settings.paired_neutral_text)
    keep_text = keep_audio = True
    if dropout:
        keep_text = rng.random() >= settings.modality_dropout
        keep_audio = rng.random() >= settings.modality_dropout
        if not keep_text and not keep_audio:
            keep_text, keep_audio = (True, False) if rng.random() < 0.5 else (False, True)
    t_target, a_target = pools.text.labels[text_i], pools.emodb.labels[audio_i]
    if keep_text and keep_audio:
        return text_i, audio_i, pair_target(t_target, a_target)
    return (text_i, None, t_target.copy()) if keep_text else (None, audio_i, a_target.copy())


class EpochMixture:
    """Draws each epoch's list of samples; `index` ids are stable per source sample (LDDU's
    correctness tracker): comment i -> i, utterance j -> N_text + j, pair with utterance j ->
    N_text + N_audio + j."""

    def __init__(self, pools: Pools, settings: MixtureSettings, seed: int):
        self.pools, self.settings, self.seed = pools, settings, seed
        self._text_order = np.random.default_rng(seed).permutation(len(pools.text))
        self._text_pos = 0
        self.num_ids = len(pools.text) + 2 * len(pools.emodb.labels) + FACE_IDS_PER_LABEL * len(LABEL_NAMES)

    def _next_texts(self, n: int) -> np.ndarray:
        out = []
        while n > 0:
            take = self._text_order[self._text_pos:self._text_pos + n]
            out.append(take)
            n -= len(take)
            self._text_pos += len(take)
            if self._text_pos >= len(self._text_order):
                self._text_pos = 0
        return np.concatenate(out)

    def epoch(self, epoch: int) -> list[Sample]:
        rng = np.random.default_rng(self.seed * 1009 + epoch)
        s, p = self.settings, self.pools
        n_text = int(round(s.epoch_samples * s.mix_text))
        n_audio = int(round(s.epoch_samples * s.mix_audio))
        n_visual = int(round(s.epoch_samples * s.mix_visual))
        n_pair = s.epoch_samples - n_text - n_audio - n_visual
        n_t, n_a = len(p.text), len(p.emodb.labels)
        samples = [Sample(p.features(int(i), None), p.text.labels[i], int(i)) for i in self._next_texts(n_text)]
        for j in rng.choice(p.audio_rows, n_audio):
            samples.append(Sample(p.features(None, int(j)), p.emodb.labels[j], n_t + int(j)))
        for j in rng.choice(p.audio_rows, n_pair):
            t, a, target = draw_paired(p, int(j), rng, s, dropout=True)
            samples.append(Sample(p.features(t, a), target, n_t + n_a + int(j)))
        for k, label in enumerate(rng.integers(len(LABEL_NAMES), size=n_visual)):
            target = np.eye(len(LABEL_NAMES), dtype=np.float32)[label]
            index = n_t + 2 * n_a + int(label) * FACE_IDS_PER_LABEL + k % FACE_IDS_PER_LABEL
            samples.append(Sample(p.features(None, None, p.faces.draw(int(label), rng)), target, index))
        order = rng.permutation(len(samples))
        return [samples[k] for k in order]


@dataclass
class EvalSet:
    """A fixed evaluation set: (text index | None, audio index | None[, visual sequence]) per sample
    and targets (N, 7)."""

    name: str
    pools: Pools
    items: list[tuple]
    labels: np.ndarray

    def dataset(self) -> MultimodalDataset:
        return MultimodalDataset(lambda i: self.pools.features(*self.items[i]), self.labels)


def text_only_set(pools: Pools, name: str, rows: np.ndarray | None = None) -> EvalSet:
    """Text-only samples of the comments `rows` (default: all) of the pool's GoEmotions split."""
    rows = np.arange(len(pools.text)) if rows is None else np.asarray(rows)
    return EvalSet(name, pools, [(int(i), None) for i in rows], pools.text.labels[rows].copy())


def audio_only_set(pools: Pools, name: str) -> EvalSet:
    rows = [int(j) for j in pools.audio_rows]
    return EvalSet(name, pools, [(None, j) for j in rows], pools.emodb.labels[rows].copy())


def visual_only_set(pools: Pools, name: str, per_label: int, seed: int) -> EvalSet:
    """`per_label` fixed synthetic face sequences of every label."""
    rng = np.random.default_rng(seed)
    labels = [label for label in range(len(LABEL_NAMES)) for _ in range(per_label)]
    items = [(None, None, pools.faces.draw(label, rng)) for label in labels]
    return EvalSet(name, pools, items, np.eye(len(LABEL_NAMES), dtype=np.float32)[labels])


def paired_set(pools: Pools, name: str, per_utterance: int, seed: int) -> EvalSet:
    """Fixed synthetic pairs (no modality dropout): `per_utterance` comments per utterance."""
    rng = np.random.default_rng(seed)
    items, labels = [], []
    settings = MixtureSettings()
    for j in pools.audio_rows:
        for _ in range(per_utterance):
            t, a, target = draw_paired(pools, int(j), rng, settings, dropout=False)
            items.append((t, a))
            labels.append(target)
    return EvalSet(name, pools, items, np.stack(labels))


def speech_scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Single-label speech scores: arg-max over the six EmoDB labels; UA (mean per-class recall),
    WA (accuracy), macro-F1 over those six classes."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    pred = np.asarray(EMODB_LABELS)[np.argmax(probs[:, EMODB_LABELS], axis=1)]
    truth = np.argmax(labels, axis=1)
    classes = sorted(set(truth.tolist()))
    return {"unweighted_accuracy": float(balanced_accuracy_score(truth, pred)),
            "weighted_accuracy": float(accuracy_score(truth, pred)),
            "macro_f1": float(f1_score(truth, pred, labels=classes, average="macro", zero_division=0)),
            "num_samples": int(len(truth))}


FACE_PRIOR_BASIS = ("prior: no labelled face video is available; the face gets the reliability of the "
                    "least reliable stream measured on held-out data (the expression network's published "
                    "FER2013 test accuracy is 66 % on stills, its accuracy on video frames is unknown)")


VOICE_DOMAIN_DIMS = 25
"""The voice's domain model describes the eGeMAPS descriptors only (the first 25 of the 409 values):
a 409 x 409 precision matrix would make a checkpoint several MB of JSON."""
VOICE_HEAD_C_GRID = (0.01, 0.1, 1.0, 10.0)
"""Inverse L2 strengths tried for the voice summary head (chosen by validation UA)."""
VOICE_HEAD_SHARES = (0.5, 0.6, 0.7, 0.8, 0.9)
"""The voice summary head's shares of the voice reading tried (chosen by validation UA); below 1,
so the network's own reading of the voice always counts."""


def fit_voice_head(train: list[np.ndarray], train_labels: np.ndarray, valid: list[np.ndarray],
                   valid_labels: np.ndarray) -> tuple[SummaryHead, dict]:
    """The voice's summary head (`mmer.stream_calibration.fit_summary_head`): multinomial logistic
    regression (class-balanced, L2) on the utterance statistics (`frame_statistics`) of the training
    speakers' utterances (frames (T, D) each; labels (N, 7) one-hot over the six EmoDB labels), C
    chosen from VOICE_HEAD_C_GRID by unweighted accuracy on the validation speakers. Returns the
    head and its validation UAs."""
    head, ua = fit_summary_head(train, train_labels, valid, valid_labels, VOICE_HEAD_C_GRID,
                                "training-speaker EmoDB utterances")
    best = max(VOICE_HEAD_C_GRID, key=lambda c: (ua[c], -c))
    head.basis += f"; C by UA on {len(valid)} validation-speaker utterances"
    return head, {"c_grid_valid_ua": {str(c): v for c, v in ua.items()}, "selected_c": best}


def fit_fusion(model: torch.nn.Module, valid_text: EvalSet, valid_audio: EvalSet, train_audio: Pools) -> LateFusion:
    """Calibrate each stream alone on held-out data (mmer/stream_fusion.py): the voice's
    summary head (`fit_voice_head`) first, then temperature and
    reliability (2 * AUC - 1) of the words on `valid_text`, of the voice on `valid_audio` (over
    the six labels EmoDB has), the face by `FACE_PRIOR_BASIS`; the voice's domain from the
    training speakers' utterances (`train_audio.audio_rows`) with its reference distance from the
    validation speakers'; per-label thresholds tuned on the calibrated single-stream readings of
    both validation sets."""
    device = torch.device("cpu")
    text_probs = predict_probs(model, valid_text.dataset(), 256, device, with_uncertainty=False)[0]
    audio_probs = predict_probs(model, valid_audio.dataset(), 256, device, with_uncertainty=False)[0]
    emodb = train_audio.emodb
    train_frames = [emodb.audio.get(int(j)) for j in train_audio.audio_rows]
    valid_frames = [emodb.audio.get(int(j)) for _, j in valid_audio.items]
    head, head_selection = fit_voice_head(train_frames, emodb.labels[train_audio.audio_rows], valid_frames,
                                          valid_audio.labels)
    mixed, share_ua = {}, {}  # share -> the mixed validation readings (N, q) and their UA
    for share in VOICE_HEAD_SHARES:
        head.share = share
        mixed[share] = np.stack([head.mix(p, x) for p, x in zip(audio_probs, valid_frames)])
        share_ua[share] = speech_scores(mixed[share], valid_audio.labels)["unweighted_accuracy"]
    head.share = max(VOICE_HEAD_SHARES, key=lambda h: (share_ua[h], -h))  # ties -> more of the network
    head.basis += f"; share {head.share} by UA of the mixed reading on the same validation utterances"
    audio_probs = mixed[head.share]
    text = calibrate_stream(text_probs, valid_text.labels,
                            basis=f"{valid_text.name}: {len(valid_text.labels)} GoEmotions dev comments, text only")
    audio = calibrate_stream(audio_probs, valid_audio.labels, EMODB_LABELS,
                             f"{valid_audio.name}: {len(valid_audio.labels)} EmoDB utterances of the validation "
                             "speakers, audio only, the six EmoDB labels")
    visual = StreamCalibration(1.0, min(text.reliability, audio.reliability), FACE_PRIOR_BASIS)
    voice = StreamDomain.fit(train_frames, valid_frames, dims=VOICE_DOMAIN_DIMS,
                             basis=f"{len(train_audio.audio_rows)} training-speaker utterances (mean normalised "
                                   f"frame of the first {VOICE_DOMAIN_DIMS} voice values, eGeMAPS); "
                                   f"reference = 95th percentile over the {len(valid_audio.items)} "
                                   "validation-speaker utterances")
    fusion = LateFusion({"text": text, "audio": audio, "visual": visual}, [0.5] * len(LABEL_NAMES),
                        domains={"audio": voice}, exclusive_label=NEUTRAL, heads={"audio": head},
                        any_stream_shows=True)
    calibrated = np.concatenate([1 / (1 + np.exp(-fusion.calibrated_logits("text", text_probs))),
                                 1 / (1 + np.exp(-fusion.calibrated_logits("audio", audio_probs)))])
    labels = np.concatenate([valid_text.labels, valid_audio.labels]).astype(np.int64)
    fusion.thresholds = [float(t) for t in tune_label_thresholds(calibrated, labels)]
    fusion.notes = {"thresholds": "tuned per label for F1 on the calibrated text-only and audio-only readings of "
                                  "the validation sets together",
                    "voice_head": f"the voice reads (1 - h) network + h summary head, h = {head.share}; validation UA "
                                  f"by head C {head_selection['c_grid_valid_ua']}, by share h "
                                  f"{ {str(k): v for k, v in share_ua.items()} }"}
    return fusion


SELECT_TEXT_WEIGHT = {"lddu": 0.75, "lamb": 0.5}
"""Share of the words in the validation score that selects the epoch (the rest: the voice). With
voice features v2, LDDU's voice reached its validation level by epoch 3 while its words were still
below their earlier level (dev macro-F1 0.605 at the selected epoch 3 against 0.630 before, with
equal shares, early stopping at epoch 5); the words have a floor (the GoEmotions test macro-F1 of
the previous checkpoint), so LDDU's selection weighs them 3:1. LAMB keeps equal shares."""


@dataclass
class TrainOutcome:
    model: torch.nn.Module
    fusion: LateFusion
    thresholds: list[float]
    best_epoch: int
    epochs_run: int
    history: list[dict]
    seconds: float


def macro_f1_at(probs: np.ndarray, labels: np.ndarray, thresholds) -> float:
    """Macro-F1 over LABEL_NAMES of probs (N, q) decided at per-label `thresholds` (q,), labels (N, q)."""
    from mmer.metrics import multilabel_metrics

    from mmer.thresholds import apply_thresholds

    pred = apply_thresholds(probs, thresholds)
    return multilabel_metrics(labels.astype(np.int64), pred, LABEL_NAMES).macro_f1


class _MixtureHooks(TrainerHooks):
    """`train_one`'s epochs: a fresh mixture of samples per epoch; validation = mean of text-only
    macro-F1 (thresholds tuned on the three validation sets) and speech macro-F1; the best epoch's
    weights and thresholds are kept in memory."""

    def __init__(self, model_name: str, model, stopper: EarlyStopping, mixture: EpochMixture, valid_text: EvalSet,
                 valid_audio: EvalSet, valid_paired: EvalSet, valid_visual: EvalSet, batch_size: int, log) -> None:
        self.model_name, self.model, self.stopper, self.mixture = model_name, model, stopper, mixture
        self.valid_text, self.valid_audio, self.valid_paired, self.valid_visual = (valid_text, valid_audio,
                                                                                   valid_paired, valid_visual)
        self.batch_size, self.log = batch_size, log
        self.best_state, self.best_thresholds, self.history = None, None, []
        self.scores: dict = {}

    def batches(self, epoch: int):
        samples = self.mixture.epoch(epoch)
        return (collate(samples[b:b + self.batch_size]) for b in range(0, len(samples), self.batch_size))

    def validate(self, epoch: int) -> float:
        device = torch.device("cpu")
        sets = (self.valid_text, self.valid_audio, self.valid_paired)
        probs = {s.name: predict_probs(self.model, s.dataset(), 256, device)[0] for s in sets}
        all_probs = np.concatenate([probs[s.name] for s in sets])
        all_labels = np.concatenate([s.labels for s in sets])
        thresholds = tune_label_thresholds(all_probs, all_labels.astype(np.int64))
        text_f1 = macro_f1_at(probs[self.valid_text.name], self.valid_text.labels, thresholds)
        speech = speech_scores(probs[self.valid_audio.name], self.valid_audio.labels)
        visual_probs = predict_probs(self.model, self.valid_visual.dataset(), 256, device)[0]
        visual_acc = float(np.mean(visual_probs.argmax(1) == self.valid_visual.labels.argmax(1)))
        self.scores = {"thresholds": thresholds, "text_f1": text_f1, "speech": speech, "visual_acc": visual_acc}
        w = SELECT_TEXT_WEIGHT[self.model_name]
        return w * text_f1 + (1 - w) * speech["macro_f1"]

    def epoch_done(self, outcome: EpochOutcome) -> None:
        text_f1, speech, visual_acc = self.scores["text_f1"], self.scores["speech"], self.scores["visual_acc"]
        if outcome.improved:
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best_thresholds = self.scores["thresholds"]
        record = {"epoch": outcome.epoch, "train_loss": outcome.train.get("total", 0.0),
                  "valid_text_macro_f1": text_f1,
                  "valid_speech_macro_f1": speech["macro_f1"], "valid_speech_ua": speech["unweighted_accuracy"],
                  "valid_synthetic_face_accuracy": visual_acc,
                  "select_value": outcome.value, "improved": outcome.improved, "seconds": round(outcome.seconds, 1)}
        self.history.append(record)
        self.log(f"  {self.model_name} epoch {outcome.epoch}: loss {record['train_loss']:.4f} text F1 {text_f1:.3f} "
                 f"speech F1 {speech['macro_f1']:.3f} face acc {visual_acc:.3f} ({record['seconds']} s)"
                 f"{' *' if outcome.improved else ''}")


def train_one(model_name: str, config, mixture: EpochMixture, valid_text: EvalSet, valid_audio: EvalSet,
              valid_paired: EvalSet, valid_visual: EvalSet, seed: int, log=print) -> TrainOutcome:
    """Fit the model's input standardisation on the training pools (`mixture.pools`: the training
    comments and the training speakers' utterances, never validation/test data), then train with
    early stopping on the validation score = mean of (text-only macro-F1 at
    per-label thresholds tuned on the validation text+paired+audio sets) and (speech macro-F1 of
    the arg-max over the six EmoDB labels on the validation speakers). Returns the best epoch's
    model and its thresholds (tuned on all three validation sets together)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    model = build_model(model_name, config)
    model.fit_input_statistics(mixture.pools.input_samples())  # training split only (text + audio pools)
    model.prepare_training(mixture.num_ids)
    optimizer = build_optimizer(model, config)
    steps = int(np.ceil(mixture.settings.epoch_samples / config.batch_size))
    schedule = LRSchedule(optimizer, config, steps, maximize=True)
    stopper = EarlyStopping(config.early_stop_patience, maximize=True)
    hooks = _MixtureHooks(model_name, model, stopper, mixture, valid_text, valid_audio, valid_paired, valid_visual,
                          config.batch_size, log)
    Trainer(model, optimizer, schedule, stopper, config.grad_clip).fit(hooks, config.epochs)
    best_state, best_thresholds, history = hooks.best_state, hooks.best_thresholds, hooks.history
    model.load_state_dict(best_state)
    model.eval()
    fusion = fit_fusion(model, valid_text, valid_audio, mixture.pools)
    return TrainOutcome(model, fusion, best_thresholds, stopper.best_epoch, len(history), history,
                        time.perf_counter() - started)
