"""Visual features: MTCNN face detection (facenet-pytorch weights) -> one vector per frame.

Per sampled frame we keep one face (see `FaceTrack`) and describe it by `VISUAL_FEATURE_NAMES`
(29 values): 22 of geometry (detection probability, the box normalised by the frame size, the
five MTCNN landmarks normalised to the box, seven derived geometry values; `face_vector`) and the
7 expression probabilities the FER2013 mini-Xception reads from the face crop
(`mmer.extractors.expression`; `EXPRESSION_FEATURE_NAMES`).
"""

from __future__ import annotations

import contextlib
import math
import sys
import types
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from mmer.extractors.expression import EXPRESSION_LABELS
from mmer.extractors.nms import batched_nms, box_overlap

MIN_FACE_PX = 20
"""Smallest face side searched, in pixels of the downscaled frame."""
STAGE_THRESHOLDS = (0.6, 0.7, 0.9)
"""Face-probability thresholds of the PNet, RNet and ONet stages. The first two are MTCNN's usual
values; the final one is stricter than its usual 0.7 so weak false hits do not count as faces."""
PYRAMID_FACTOR = 0.709
"""Scale ratio between two levels of the image pyramid searched by PNet."""
TRACK_MIN_IOU = 0.3
"""The tracked face continues into a detection overlapping its last box by at least this IoU."""
RNET_CROPS_PER_PASS, ONET_CROPS_PER_PASS = 128, 32
"""Candidate crops per RNet / ONet forward pass (fixed-size buffers, see `FaceDetector._on_crops`)."""
_PIXEL_CENTRE, _PIXEL_SCALE = 127.5, 1.0 / 128.0  # MTCNN input normalisation of 0..255 pixels
_EPS = 1e-6

GEOMETRY_FEATURE_NAMES: tuple[str, ...] = (
    "face_prob",
    "box_x", "box_y", "box_w", "box_h",  # box / frame width or height
    # landmarks relative to the box: (x - box_x1) / box_w, (y - box_y1) / box_h
    "left_eye_x", "left_eye_y", "right_eye_x", "right_eye_y", "nose_x", "nose_y",
    "mouth_left_x", "mouth_left_y", "mouth_right_x", "mouth_right_y",
    "eye_distance_over_box_w",  # |right eye - left eye| / box width
    "mouth_width_over_box_w",  # |mouth right - mouth left| / box width
    "roll_rad",  # angle of the eye line against the horizontal, radians
    "nose_along_eyes",  # nose offset from the eye midpoint along the eye line / eye distance (yaw cue)
    "nose_down_fraction",  # nose depth below the eye line / mouth depth below it (pitch cue)
    "eye_mouth_over_eye_distance",  # mouth-midpoint depth below the eye line / eye distance
    "mouth_width_over_eye_distance",  # mouth width / eye distance (smile cue)
)
EXPRESSION_FEATURE_NAMES: tuple[str, ...] = tuple(f"expr_{label}" for label in EXPRESSION_LABELS)
"""Probabilities of the FER2013 classes (angry, disgust, fear, happy, sad, surprise, neutral)."""
VISUAL_FEATURE_NAMES = GEOMETRY_FEATURE_NAMES + EXPRESSION_FEATURE_NAMES
VISUAL_DIM = len(VISUAL_FEATURE_NAMES)
VISUAL_LAYOUT_VERSION = "3-upright-crop"
"""Bumped whenever the meaning of the visual vector or the detector settings above change.
3: the expression is read from an upright crop placed by the landmarks (`expression.FaceCrop`,
was the detector box widened by 10 %), and faces below `face_quality.USABLE_QUALITY` are left out."""


@dataclass
class FaceDetections:
    """Faces found in one frame, in that frame's pixels.

    boxes (N, 4) x1, y1, x2, y2; probs (N,); landmarks (N, 5, 2) x, y of left eye, right eye,
    nose, mouth left, mouth right (left/right as seen in the image).
    """

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class _Unavailable(types.ModuleType):
    """Stand-in module whose attributes fail loudly if facenet-pytorch ever reaches for them."""

    def __getattr__(self, name: str):
        raise AttributeError(f"torchvision is not installed: {self.__name__}.{name} is unavailable "
                             "(only facenet_pytorch's detector networks are used)")


@contextlib.contextmanager
def _torchvision_stand_ins() -> Iterator[None]:
    """While importing facenet_pytorch, let its two torchvision imports resolve to stand-ins.

    facenet_pytorch/models/utils/detect_face.py runs, at import time,
    `from torchvision.transforms import functional as F` (used only by `extract_face`, which we
    never call) and `from torchvision.ops.boxes import batched_nms` (bound to our `mmer.extractors.nms`).
    The stand-ins leave `sys.modules` again afterwards so no other library (e.g. transformers,
    which probes for torchvision) ever sees a fake torchvision; the pipeline builds its models one
    at a time in one thread so no other import runs meanwhile.
    """
    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
             "torchvision.ops", "torchvision.ops.boxes")
    if "facenet_pytorch.models.utils.detect_face" in sys.modules or any(name in sys.modules for name in names):
        yield  # facenet is imported already, or a real torchvision is loaded: nothing to stand in for
        return
    modules = {name: _Unavailable(name) for name in names}
    modules["torchvision.ops.boxes"] = types.ModuleType("torchvision.ops.boxes")
    modules["torchvision.ops.boxes"].batched_nms = batched_nms
    for name, module in modules.items():
        parent, _, child = name.rpartition(".")
        if parent:
            object.__setattr__(modules[parent], child, module)
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in names:
            sys.modules.pop(name, None)


def _facenet_networks():
    """The facenet_pytorch PNet, RNet, ONet classes and the cascade helpers of detect_face."""
    with _torchvision_stand_ins():
        from facenet_pytorch.models import mtcnn
        from facenet_pytorch.models.utils import detect_face
    return mtcnn, detect_face


def pyramid_scales(height: int, width: int, min_face_px: int) -> list[float]:
    """Scales at which PNet (a 12 px detector) scans the frame, from `min_face_px` faces upwards."""
    scale = 12.0 / min_face_px
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= PYRAMID_FACTOR
        side *= PYRAMID_FACTOR
    return scales


class FaceDetector:
    """MTCNN cascade over a batch of equally sized frames, on `device`. Load once, reuse."""

    def __init__(self, device: str = "cpu"):
        mtcnn, self._helpers = _facenet_networks()
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (net().to(self.device).eval()
                                           for net in (mtcnn.PNet, mtcnn.RNet, mtcnn.ONet))

    @torch.inference_mode()
    def detect(self, frames: np.ndarray) -> list[FaceDetections]:
        """frames (B, H, W, 3) uint8 RGB -> one `FaceDetections` per frame, highest score first."""
        h = self._helpers
        imgs = torch.as_tensor(frames, device=self.device).permute(0, 3, 1, 2).float()  # (B, 3, H, W)
        batch, _, height, width = imgs.shape

        # Stage 1: PNet over the pyramid -> candidate boxes (N, 9): x1 y1 x2 y2 score reg(4).
        found, frame_of, level_of = [], [], []
        for level, scale in enumerate(pyramid_scales(height, width, MIN_FACE_PX)):
            scaled = h.imresample(imgs, (int(height * scale + 1), int(width * scale + 1)))
            reg, prob = self.pnet((scaled - _PIXEL_CENTRE) * _PIXEL_SCALE)
            boxes, frames_idx = h.generateBoundingBox(reg, prob[:, 1], scale, STAGE_THRESHOLDS[0])
            found.append(boxes)
            frame_of.append(frames_idx)
            level_of.append(frames_idx + level * batch)
        if not found:  # frame smaller than one 12 px cell
            return [self._empty() for _ in range(batch)]
        cand = torch.cat(found)
        frame_of, level_of = torch.cat(frame_of), torch.cat(level_of)
        keep = batched_nms(cand[:, :4], cand[:, 4], level_of, 0.5)
        cand, frame_of = cand[keep], frame_of[keep]
        keep = batched_nms(cand[:, :4], cand[:, 4], frame_of, 0.7)
        cand, frame_of = cand[keep], frame_of[keep]
        boxes = h.rerec(h.bbreg(cand[:, :5].clone(), cand[:, 5:9]))

        # Stage 2: RNet on 24x24 crops rejects and refines.
        boxes, frame_of, outputs = self._on_crops(self.rnet, imgs, boxes, frame_of, 24, RNET_CROPS_PER_PASS)
        if outputs is not None:
            reg, prob = outputs
            passed = prob[:, 1] > STAGE_THRESHOLDS[1]
            boxes = torch.cat([boxes[passed, :4], prob[passed, 1:2]], dim=1)
            frame_of, reg = frame_of[passed], reg[passed]
            keep = batched_nms(boxes[:, :4], boxes[:, 4], frame_of, 0.7)
            boxes = h.rerec(h.bbreg(boxes[keep], reg[keep]))
            frame_of = frame_of[keep]

        # Stage 3: ONet on 48x48 crops -> final score, box and five landmarks.
        landmarks = torch.zeros(0, 5, 2, device=self.device)
        boxes, frame_of, outputs = self._on_crops(self.onet, imgs, boxes, frame_of, 48, ONET_CROPS_PER_PASS)
        if outputs is not None:
            reg, points, prob = outputs
            passed = prob[:, 1] > STAGE_THRESHOLDS[2]
            boxes = torch.cat([boxes[passed, :4], prob[passed, 1:2]], dim=1)
            frame_of, reg, points = frame_of[passed], reg[passed], points[passed]
            box_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
            box_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
            landmarks = torch.stack([boxes[:, 0:1] + box_w * points[:, :5] - 1,
                                     boxes[:, 1:2] + box_h * points[:, 5:] - 1], dim=2)  # (N, 5, 2)
            boxes = h.bbreg(boxes, reg)
            keep = batched_nms(boxes[:, :4], boxes[:, 4], frame_of, 0.7, mode="min")
            boxes, frame_of, landmarks = boxes[keep], frame_of[keep], landmarks[keep]

        boxes, landmarks, frame_of = boxes.cpu().numpy(), landmarks.cpu().numpy(), frame_of.cpu().numpy()
        return [FaceDetections(boxes[frame_of == i, :4], boxes[frame_of == i, 4], landmarks[frame_of == i])
                for i in range(batch)]

    def _on_crops(self, net, imgs: torch.Tensor, boxes: torch.Tensor, frame_of: torch.Tensor, size: int,
                  per_pass: int):
        """Run `net` on the square crops of `boxes` (K, 5) resized to size x size.

        Crops go through the network `per_pass` at a time in one fixed-size buffer, so every pass
        allocates the same tensor sizes: with candidate counts varying from batch to batch, varying
        sizes fragment the C heap and memory would creep up over long videos.
        Returns the boxes and frame indices of the non-empty crops and the network outputs for them
        (None when there is no non-empty crop).
        """
        _, _, height, width = imgs.shape
        y, ey, x, ex = self._helpers.pad(boxes, width, height)  # 1-based inclusive pixel ranges
        valid = np.flatnonzero((ey > y - 1) & (ex > x - 1))
        buffer = torch.zeros(per_pass, 3, size, size, device=self.device)  # (P, 3, S, S)
        outputs = []
        for first in range(0, len(valid), per_pass):
            chunk = valid[first:first + per_pass]
            for slot, k in enumerate(chunk):
                buffer[slot] = self._helpers.imresample(imgs[frame_of[k], :, y[k] - 1:ey[k], x[k] - 1:ex[k]][None],
                                                        (size, size))[0]
            result = net(((buffer - _PIXEL_CENTRE) * _PIXEL_SCALE).contiguous(memory_format=torch.channels_last))
            outputs.append([out[:len(chunk)] for out in result])
        keep = torch.as_tensor(valid, dtype=torch.long, device=boxes.device)
        joined = [torch.cat(parts) for parts in zip(*outputs)] if outputs else None
        return boxes[keep], frame_of[keep], joined

    @staticmethod
    def _empty() -> FaceDetections:
        return FaceDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                              np.zeros((0, 5, 2), np.float32))


class FaceTrack:
    """Follows one person through a clip.

    Rule: in the first frame with a face, take the largest face. In later frames take the face
    with the highest IoU with the last tracked box if that IoU is at least `TRACK_MIN_IOU`;
    otherwise (the person left or moved abruptly) fall back to the largest face.
    """

    def __init__(self) -> None:
        self.last_box: np.ndarray | None = None

    def choose(self, faces: FaceDetections) -> int | None:
        """Index of the followed face in `faces`, or None when there is no face."""
        if len(faces) == 0:
            return None
        boxes = faces.boxes
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        pick = int(np.argmax(areas))
        if self.last_box is not None:
            iou = box_overlap(torch.as_tensor(self.last_box[None]), torch.as_tensor(boxes))[0].numpy()
            if iou.max() >= TRACK_MIN_IOU:
                pick = int(np.argmax(iou))
        self.last_box = boxes[pick].copy()
        return pick


def face_vector(box: np.ndarray, prob: float, landmarks: np.ndarray, frame_w: int, frame_h: int) -> np.ndarray:
    """One face -> its geometry, (len(GEOMETRY_FEATURE_NAMES),) float32 following `GEOMETRY_FEATURE_NAMES`.

    box (4,) x1 y1 x2 y2 and landmarks (5, 2) in pixels of a frame of frame_w x frame_h pixels.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    box_w, box_h = max(x2 - x1, _EPS), max(y2 - y1, _EPS)
    rel = (landmarks - np.array([x1, y1])) / np.array([box_w, box_h])  # (5, 2)
    left_eye, right_eye, nose, mouth_left, mouth_right = landmarks.astype(np.float64)
    eye_vec = right_eye - left_eye
    eye_dist = max(float(np.hypot(*eye_vec)), _EPS)
    along = eye_vec / eye_dist  # unit vector along the eye line
    down = np.array([-along[1], along[0]])  # unit normal pointing down the face (image y grows down)
    eye_mid = (left_eye + right_eye) / 2
    mouth_mid = (mouth_left + mouth_right) / 2
    mouth_w = float(np.hypot(*(mouth_right - mouth_left)))
    mouth_depth = float(np.dot(mouth_mid - eye_mid, down))
    derived = [
        eye_dist / box_w,
        mouth_w / box_w,
        math.atan2(eye_vec[1], eye_vec[0]),
        float(np.dot(nose - eye_mid, along)) / eye_dist,
        float(np.dot(nose - eye_mid, down)) / (mouth_depth if abs(mouth_depth) > _EPS else _EPS),
        mouth_depth / eye_dist,
        mouth_w / eye_dist,
    ]
    values = [prob, x1 / frame_w, y1 / frame_h, box_w / frame_w, box_h / frame_h, *rel.reshape(-1), *derived]
    return np.asarray(values, dtype=np.float32)
