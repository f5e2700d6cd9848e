"""The London faces (../shared/data/london_faces, CC BY 4.0): 102 people, once neutral, once smiling.

Shared by the face recipes (face_crop_policies.py, face_hard_cases.py, fit_face_reading.py):
- `split()`: the people cut once, by a seeded permutation of their ids, into a development half
  (choices and fits are made on it) and a held-out half (only measured);
- `photo()`: a photograph as the pipeline sees a frame (RGB, downscaled to the extraction's
  `max_side_px` with area interpolation, as `MediaReader` does);
- `write_clip()`: a still (possibly degraded) as a short silent H.264 clip for `mmer analyze`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LONDON = REPO.parent / "shared" / "data" / "london_faces"
SPLIT_SEED = 20
EXPRESSIONS = {"neutral": "neutral", "smiling": "happy"}
"""Folder -> the FER2013 class / mmer label a face in it should read as."""


def people() -> list[str]:
    """All person ids (zero-padded, as in the file names), sorted."""
    return sorted(p.name.split("_")[0] for p in (LONDON / "neutral").glob("*.jpg"))


def split() -> tuple[list[str], list[str]]:
    """(development ids, held-out ids): half each, by a permutation seeded with SPLIT_SEED."""
    ids = people()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(ids))
    half = len(ids) // 2
    return sorted(ids[i] for i in order[:half]), sorted(ids[i] for i in order[half:])


def photo_path(person: str, folder: str) -> Path:
    """The photograph of `person` in `folder` ("neutral" | "smiling")."""
    return next((LONDON / folder).glob(f"{person}_*.jpg"))


def photo(person: str, folder: str, max_side_px: int = 320) -> np.ndarray:
    """(H, W, 3) uint8 RGB, downscaled so the longer side is at most `max_side_px` (area interpolation)."""
    import cv2

    image = cv2.imread(str(photo_path(person, folder)))[:, :, ::-1]
    h, w = image.shape[:2]
    scale = min(1.0, max_side_px / max(h, w))
    size = (round(w * scale), round(h * scale))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1 else image)


def write_clip(image: np.ndarray, path: Path, seconds: float = 2.0, fps: int = 10, crf: int = 18) -> Path:
    """A silent H.264 clip (yuv420p, `crf` quality) showing `image` (H, W, 3) uint8 RGB for `seconds`."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = (image.shape[0] // 2) * 2, (image.shape[1] // 2) * 2
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24")
        for _ in range(int(round(seconds * fps))):
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
