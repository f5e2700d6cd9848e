"""How well a tracked face can be read: one quality in [0, 1] per frame.

The expression network reads a face well when the face is large enough, sharp, seen from the front
and surely a face. Each cue gives a factor in [0, 1] by a linear ramp between two limits (1 on the
good side of the first, 0 beyond the second); the quality is their product. A frame whose quality
is below USABLE_QUALITY is not used at all (`FeatureExtractor` leaves it out of the visual stream
and counts it in `ModalityStats.face_frames` only); the others weigh the face stream in the fusion
by their mean quality (`mmer.face_reading`).

Limits: size and sharpness from degraded London faces of the development people
(recipes/face_hard_cases.py: neutral/happy accuracy held from full size down to a face scale of about
12 px and fell below chance by 6-7 px; blurred, it held down to a crop sharpness of about 0.15 and
fell from about 0.8 to 0.68 at 0.11 and 0.54 at 0.08); the pose limits
are geometric priors (no labelled turned faces are available): a nose displaced from the eye
midpoint by a quarter of the eye distance is a head turned by roughly 25-30 degrees.
"""

from __future__ import annotations

import cv2
import numpy as np

SCALE_PX = (12.0, 6.0)
"""Face scale (`expression.face_scale`: max of eye distance and eye-to-mouth depth) in pixels of
the analysed frame: factor 1 from the first value up, 0 at the second and below."""
SHARPNESS = (0.14, 0.05)
"""Sharpness of the 64 x 64 crop (`crop_sharpness`): factor 1 from the first value up, 0 at the second."""
YAW = (0.25, 0.6)
"""|nose offset along the eye line| / eye distance (0 for a frontal face): factor 1 up to the first, 0 from the second."""
PITCH = ((0.25, 0.8), (0.0, 1.05))
"""nose depth below the eye line / mouth depth (about 0.5 for a level face; 0.36-0.72 on the London
faces): factor 1 inside the first range, 0 outside the second."""
DETECTOR = (0.98, 0.9)
"""MTCNN face probability (ONet; faces below 0.9 are not detected): factor 1 from the first up, 0 at the second."""
USABLE_QUALITY = 0.2
"""Frames with a face of lower quality are left out of the visual stream."""


def _ramp(value: float, good: float, bad: float) -> float:
    """1 at `good` (and beyond it, away from `bad`), 0 at `bad` and beyond, linear between."""
    return float(np.clip((value - bad) / (good - bad), 0.0, 1.0))


def crop_sharpness(crop: np.ndarray) -> float:
    """Mean absolute Laplacian of a crop (64, 64) over its standard deviation: high-frequency
    detail relative to contrast, so a darker or flatter face is not taken for a blurred one."""
    crop = np.asarray(crop, dtype=np.float32)
    return float(np.abs(cv2.Laplacian(crop, cv2.CV_32F)).mean() / (float(crop.std()) + 1e-3))


def face_quality(detector_prob: float, scale_px: float, nose_along_eyes: float, nose_down_fraction: float,
                 sharpness: float) -> float:
    """Quality in [0, 1] of one face: the product of the factors above.

    detector_prob: MTCNN probability; scale_px: `face_scale` in frame pixels; nose_along_eyes and
    nose_down_fraction: the yaw and pitch cues of `face.face_vector`; sharpness: `crop_sharpness`.
    """
    pitch = min(_ramp(nose_down_fraction, PITCH[0][0], PITCH[1][0]), _ramp(nose_down_fraction, PITCH[0][1], PITCH[1][1]))
    return (_ramp(detector_prob, *DETECTOR) * _ramp(scale_px, *SCALE_PX) * _ramp(abs(nose_along_eyes), *YAW)
            * pitch * _ramp(sharpness, *SHARPNESS))
