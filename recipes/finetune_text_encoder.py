"""Fine-tune the top layers of the packaged all-MiniLM-L6-v2 on GoEmotions-Ekman -> emotion-aware
word-piece vectors for the default text stream.

The lower `FROZEN_LAYERS` transformer layers (and the embeddings) stay as packaged; the layers
above them are trained together with a small classification head (mean of the word-piece vectors
-> linear -> 7 sigmoid outputs) on all 43,410 GoEmotions train comments, for `EPOCHS` epochs,
selecting the epoch by macro-F1 on the dev split (per-label thresholds tuned on dev). Only the
trained layers are written (`extractors/weights/minilm_emotion_top.safetensors`, float16), with
the base encoder's config hash in the metadata; the head is discarded: the encoder only produces
word-piece vectors, the LDDU/LAMB networks learn their own heads on them.

Comments are tokenised exactly as the pipeline does (words from `spread_words`, word-pieces
without [CLS]/[SEP], one window) so training and `mmer analyze` see the same inputs. The frozen
layers run once over every comment; their outputs are cached in memory.

Run:  python recipes/finetune_text_encoder.py [--data DIR] [--epochs N]
Writes extractors/weights/minilm_emotion_top.safetensors and recipes/results/text_encoder_finetune.json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from default_model_features import LABEL_NAMES, comment_piece_ids, read_goemotions, wordpiece_batch
from default_model_training import macro_f1_at
from recipe_results import REPO_ROOT, SHARED_DATA, provenance, write_result

from mmer.optimization import EarlyStopping, LRSchedule
from mmer.trainer import EpochOutcome, Trainer, TrainerHooks

FROZEN_LAYERS = 4
"""Transformer layers kept as packaged (of 6); the ones above are fine-tuned."""
EPOCHS = 3
BATCH = 32
LR_LAYERS, LR_HEAD = 5e-5, 1e-3
WEIGHT_DECAY = 0.01
SEED = 0
THREADS = 2
OUT = REPO_ROOT / "extractors" / "weights" / "minilm_emotion_top.safetensors"


def run_layers(layers, config, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """BERT layers over hidden (B, L, D) with padding mask (B, L) -> (B, L, D), using the mask
    format of the installed transformers (as `BertModel.forward` builds it)."""
    from transformers.masking_utils import create_bidirectional_mask

    attention = create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=mask)
    for layer in layers:
        out = layer(hidden, attention_mask=attention)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


@torch.inference_mode()
def frozen_states(model, tokenizer, ids: list[list[int]]) -> list[np.ndarray]:
    """Hidden states of `[CLS] ids [SEP]` after the embeddings and the first FROZEN_LAYERS layers:
    (L_i + 2, D) float16 each."""
    out: list[np.ndarray | None] = [None] * len(ids)
    order = np.argsort([len(i) for i in ids], kind="stable")
    for b in range(0, len(order), 128):
        rows = order[b:b + 128]
        input_ids, mask = wordpiece_batch(tokenizer, [ids[i] for i in rows])
        hidden = run_layers(model.encoder.layer[:FROZEN_LAYERS], model.config, model.embeddings(input_ids=input_ids),
                            mask)
        for r, i in enumerate(rows):
            out[i] = hidden[r, :len(ids[i]) + 2].numpy().astype(np.float16)
    return out  # type: ignore[return-value]


class TopAndHead(nn.Module):
    """The trainable upper layers + a mean-pooling linear head: (B, L, D) states -> (B, 7) logits."""

    def __init__(self, model, num_labels: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for layer in model.encoder.layer[FROZEN_LAYERS:])
        self.config = model.config
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(model.config.hidden_size, num_labels)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        states = run_layers(self.layers, self.config, states, mask)
        keep = mask.clone()
        keep[:, 0] = 0  # [CLS]
        keep[torch.arange(len(mask)), mask.sum(1) - 1] = 0  # [SEP]
        keep = keep.unsqueeze(-1).float()
        pooled = (states * keep).sum(1) / keep.sum(1).clamp(min=1.0)  # mean over word-pieces (B, D)
        return self.head(self.dropout(pooled))

    def loss(self, logits: torch.Tensor, batch: "CommentBatch") -> "HeadLoss":
        """Binary cross-entropy of logits (B, 7) against the batch's multi-hot labels (B, 7)."""
        return HeadLoss(nn.functional.binary_cross_entropy_with_logits(logits, batch.labels))


@dataclass
class HeadLoss:
    """What `Trainer` reads of a loss: the total and its parts (none here)."""

    total: torch.Tensor
    parts: dict = field(default_factory=dict)


@dataclass
class CommentBatch:
    """states (B, L, D) after the frozen layers, mask (B, L), labels (B, 7): one training batch."""

    states: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor

    @property
    def batch_size(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> "CommentBatch":
        return CommentBatch(self.states.to(device), self.mask.to(device), self.labels.to(device))


class FineTuneHooks(TrainerHooks):
    """The recipe's part of mmer's one epoch loop (`mmer.trainer.Trainer`): length-bucketed shuffled
    batches, the epoch selected by dev macro-F1 (per-label thresholds tuned on dev), the best
    epoch's weights kept in memory."""

    def __init__(self, net: TopAndHead, train: tuple, valid: tuple, rng: np.random.Generator) -> None:
        self.net, self.train, self.valid, self.rng = net, train, valid, rng
        self.history: list[dict] = []
        self.best: tuple | None = None  # (dev macro-F1, epoch, state dict, thresholds)
        self._last: tuple[float, np.ndarray] | None = None

    def batches(self, epoch: int):
        states, labels = self.train
        # length-bucketed shuffling: sort by length inside random chunks of 50 batches
        order = self.rng.permutation(len(states))
        chunks = [order[i:i + 50 * BATCH] for i in range(0, len(order), 50 * BATCH)]
        order = np.concatenate([c[np.argsort([len(states[i]) for i in c], kind="stable")] for c in chunks])
        for k in self.rng.permutation(int(np.ceil(len(order) / BATCH))):
            rows = order[k * BATCH:(k + 1) * BATCH]
            (_, x, mask), = list(batches(states, rows))
            yield CommentBatch(x, mask, torch.from_numpy(labels[rows]))

    def validate(self, epoch: int) -> float:
        from mmer.thresholds import tune_label_thresholds

        dev_probs = predict(self.net, self.valid[0])
        thresholds = tune_label_thresholds(dev_probs, self.valid[1].astype(np.int64))
        dev_f1 = macro_f1_at(dev_probs, self.valid[1], thresholds)
        self._last = (dev_f1, thresholds)
        return dev_f1

    def epoch_done(self, outcome: EpochOutcome) -> None:
        record = {"epoch": outcome.epoch, "train_loss": outcome.train["total"], "dev_macro_f1": outcome.value,
                  "seconds": round(outcome.seconds, 1)}
        self.history.append(record)
        print(record, flush=True)
        if outcome.improved:
            self.best = (outcome.value, outcome.epoch, copy.deepcopy(self.net.state_dict()), self._last[1])


def batches(states: list[np.ndarray], order: np.ndarray):
    for b in range(0, len(order), BATCH):
        rows = order[b:b + BATCH]
        longest = max(len(states[i]) for i in rows)
        x = torch.zeros(len(rows), longest, states[rows[0]].shape[1])
        mask = torch.zeros(len(rows), longest, dtype=torch.long)
        for r, i in enumerate(rows):
            x[r, :len(states[i])] = torch.from_numpy(states[i].astype(np.float32))
            mask[r, :len(states[i])] = 1
        yield rows, x, mask


@torch.no_grad()
def predict(net: TopAndHead, states: list[np.ndarray]) -> np.ndarray:
    net.eval()
    order = np.argsort([len(s) for s in states], kind="stable")
    probs = np.zeros((len(states), len(LABEL_NAMES)))
    for rows, x, mask in batches(states, order):
        probs[rows] = torch.sigmoid(net(x, mask)).numpy()
    return probs


def main() -> None:
    from safetensors.torch import save_file

    from mmer.extractors.text import TextEncoder, encoder_info

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(THREADS)
    torch.manual_seed(SEED)
    info = dataclasses.replace(encoder_info(None), tuned_layers=None)  # start from the packaged layers
    encoder = TextEncoder(info, "cpu")
    tok, base = encoder.tokenizer, encoder.model
    go = args.data / "goemotions" / "ekman"
    splits = {}
    for split in ("train", "valid", "test"):
        texts, labels, _ = read_goemotions(go, split)
        t0 = time.perf_counter()
        states = frozen_states(base, tok, [comment_piece_ids(tok, t, encoder.window) for t in texts])
        splits[split] = (states, labels.astype(np.float32))
        print(f"{split}: {len(texts)} comments, frozen layers {time.perf_counter() - t0:.0f} s", flush=True)
    net = TopAndHead(base, len(LABEL_NAMES))
    optimizer = torch.optim.AdamW([{"params": net.layers.parameters(), "lr": LR_LAYERS},
                                   {"params": net.head.parameters(), "lr": LR_HEAD}], weight_decay=WEIGHT_DECAY)
    steps = args.epochs * int(np.ceil(len(splits["train"][0]) / BATCH))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[LR_LAYERS, LR_HEAD], total_steps=steps,
                                                   pct_start=0.1, anneal_strategy="linear")
    hooks = FineTuneHooks(net, splits["train"], splits["valid"], np.random.default_rng(SEED))
    trainer = Trainer(net, optimizer, LRSchedule.per_step(schedule), EarlyStopping(patience=0, maximize=True),
                      grad_clip=1.0, forward=lambda batch: net(batch.states, batch.mask))
    trainer.fit(hooks, args.epochs)
    best, history = hooks.best, hooks.history
    net.load_state_dict(best[2])
    test_probs = predict(net, splits["test"][0])
    test_f1 = macro_f1_at(test_probs, splits["test"][1], best[3])
    layers = {f"encoder.layer.{FROZEN_LAYERS + i}.{k}": v.detach().half().contiguous()
              for i, layer in enumerate(net.layers) for k, v in layer.state_dict().items()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(layers, str(OUT), metadata={
        "base_encoder": info.identity, "frozen_layers": str(FROZEN_LAYERS),
        "trained_on": "GoEmotions-Ekman train (43,410 comments), epoch selected on dev",
        "recipe": "recipes/finetune_text_encoder.py"})
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    write_result("text_encoder_finetune", {
        "recipe": "recipes/finetune_text_encoder.py", "base_encoder": info.identity,
        "frozen_layers": FROZEN_LAYERS, "epochs": args.epochs, "batch": BATCH, "lr_layers": LR_LAYERS,
        "lr_head": LR_HEAD, "weight_decay": WEIGHT_DECAY, "history": history, "best_epoch": best[1],
        "probe_head_test_macro_f1": test_f1,
        "probe_head_note": "the discarded training head on the test split, thresholds tuned on dev: how much "
                           "emotion the tuned vectors carry (the shipped networks learn their own heads)",
        "weights": {"file": str(OUT.relative_to(REPO_ROOT)), "bytes": OUT.stat().st_size, "sha256": digest},
        **provenance(THREADS), "wall_time_s": round(time.perf_counter() - started, 1)})
    print(f"best epoch {best[1]} dev macro-F1 {best[0]:.3f}; probe head test macro-F1 {test_f1:.3f}; wrote {OUT}")


if __name__ == "__main__":
    main()
