"""Harder faces made from the London photographs: does the face stream hold up?

    OMP_NUM_THREADS=1 .venv/bin/python recipes/face_hard_cases.py      # ~20-30 min on 1 CPU thread

Every photograph (as the pipeline sees a frame: 320 px) is degraded: shrunk on a plain background
(face scale from ~50 px down to ~5 px), blurred (Gaussian, sigma in frame pixels), rotated in the
image plane, darkened, moved off-centre into the corner of a wide frame, and passed through a heavily
compressed H.264 clip (crf 40). Then as in `FeatureExtractor`: MTCNN, the tracked face, its quality
(`mmer.extractors.face_quality`), and the FER2013 network on the old box crop (before issue 20) and on
the new upright landmark crop. Reported per degradation and part (development: where the quality
limits were read off; held-out: only measured): faces found, neutral/smiling accuracy (a photograph
without a found face counts as wrong), the same among the usable faces, the share of usable faces,
median face scale, crop sharpness and quality. Writes recipes/results/face_hard_cases.json.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from face_crop_policies import Policy, cut  # noqa: E402
from london_faces import EXPRESSIONS, photo, split, write_clip  # noqa: E402
from recipe_results import provenance, write_result  # noqa: E402

from mmer.extractors.expression import EXPRESSION_LABELS, face_crop, face_scale, grey_frame, load_expression_network  # noqa: E402
from mmer.extractors.face import GEOMETRY_FEATURE_NAMES, FaceDetector, FaceTrack, face_vector  # noqa: E402
from mmer.extractors.face_quality import USABLE_QUALITY, crop_sharpness, face_quality  # noqa: E402

OLD = Policy("box", margin=0.1, upright=False)


def shrink(image: np.ndarray, factor: float) -> np.ndarray:
    """The picture scaled by `factor`, centred on a canvas of its own size filled with its corner colour."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(2, round(w * factor)), max(2, round(h * factor))), interpolation=cv2.INTER_AREA)
    canvas = np.empty_like(image)
    canvas[:] = image[5, 5]
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def off_centre(image: np.ndarray) -> np.ndarray:
    """The picture at half size in the top-left corner of a 16:9 frame of the same width (320 x 180)."""
    h, w = image.shape[:2]
    frame = np.empty((h * 9 // 16, w, 3), np.uint8)
    frame[:] = image[5, 5]
    small = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    frame[:min(small.shape[0], frame.shape[0]), :small.shape[1]] = small[:frame.shape[0]]
    return frame


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def compressed(image: np.ndarray, workdir: Path) -> np.ndarray:
    """The picture after a 1 s H.264 clip at crf 40 (heavy blocking), decoded again."""
    import av

    path = write_clip(image, workdir / "compressed.mp4", seconds=1.0, fps=5, crf=40)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def degradations(workdir: Path) -> dict:
    out = {"original": lambda im: im}
    for factor in (0.5, 0.35, 0.25, 0.18, 0.13, 0.1):
        out[f"shrunk x{factor}"] = lambda im, f=factor: shrink(im, f)
    for sigma in (2.0, 3.0, 4.5):
        out[f"blurred sigma {sigma} px"] = lambda im, s=sigma: cv2.GaussianBlur(im, (0, 0), s)
    for degrees in (20, 40):
        out[f"rotated {degrees} deg"] = lambda im, d=degrees: rotate(im, d)
    out["darkened x0.3"] = lambda im: (im.astype(np.float32) * 0.3).astype(np.uint8)
    out["off-centre, half size, 16:9 frame"] = off_centre
    out["H.264 crf 40"] = lambda im: compressed(im, workdir)
    return out


@torch.inference_mode()
def measure(people: list[str], degrade, detector: FaceDetector, net) -> dict:
    yaw, pitch = GEOMETRY_FEATURE_NAMES.index("nose_along_eyes"), GEOMETRY_FEATURE_NAMES.index("nose_down_fraction")
    rows = []
    for person in people:
        for folder, expression in EXPRESSIONS.items():
            frame = np.ascontiguousarray(degrade(photo(person, folder)))
            faces = detector.detect(frame[None])[0]
            pick = FaceTrack().choose(faces)
            row = {"folder": folder, "truth": EXPRESSION_LABELS.index(expression), "found": pick is not None}
            if pick is not None:
                marks, prob = faces.landmarks[pick], float(faces.probs[pick])
                vector = face_vector(faces.boxes[pick], prob, marks, frame.shape[1], frame.shape[0])
                new = face_crop(grey_frame(frame), marks)
                old = cut(OLD, frame, faces.boxes[pick], marks)[0]
                probs = torch.softmax(net(torch.from_numpy(np.stack([old, new])[:, None])), dim=-1).numpy()
                row.update(old=int(probs[0].argmax()), new=int(probs[1].argmax()), scale=face_scale(marks),
                           sharpness=crop_sharpness(new),
                           quality=face_quality(prob, face_scale(marks), float(vector[yaw]), float(vector[pitch]),
                                                crop_sharpness(new)))
            rows.append(row)
    found = [r for r in rows if r["found"]]
    usable = [r for r in found if r["quality"] >= USABLE_QUALITY]
    out = {"photos": len(rows), "faces_found": len(found), "usable_faces": len(usable),
           "median_face_scale_px": float(np.median([r["scale"] for r in found])) if found else None,
           "median_crop_sharpness": float(np.median([r["sharpness"] for r in found])) if found else None,
           "median_quality": float(np.median([r["quality"] for r in found])) if found else None}
    for folder in EXPRESSIONS:
        total = [r for r in rows if r["folder"] == folder]
        for crop in ("old", "new"):
            out[f"{folder}_accuracy_{crop}_crop"] = float(np.mean([r["found"] and r[crop] == r["truth"] for r in total]))
        among = [r for r in usable if r["folder"] == folder]
        out[f"{folder}_accuracy_new_crop_usable_faces"] = (float(np.mean([r["new"] == r["truth"] for r in among]))
                                                          if among else None)
    return out


def main() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    dev, held = split()
    detector, net = FaceDetector("cpu"), load_expression_network()
    results = {"development": {}, "held_out": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, degrade in degradations(Path(tmp)).items():
            for part, people in (("development", dev), ("held_out", held)):
                results[part][name] = r = measure(people, degrade, detector, net)
                print(f"{part:11s} {name:36s} found {r['faces_found']:3d} usable {r['usable_faces']:3d} "
                      f"neutral old/new {r['neutral_accuracy_old_crop']:.2f}/{r['neutral_accuracy_new_crop']:.2f} "
                      f"smiling old/new {r['smiling_accuracy_old_crop']:.2f}/{r['smiling_accuracy_new_crop']:.2f} "
                      f"scale {r['median_face_scale_px']} sharp {r['median_crop_sharpness']}", flush=True)
    path = write_result("face_hard_cases", {
        "what": "FER2013 network on degraded London faces: old box crop vs the upright landmark crop; face quality",
        "data": {"corpus": "London faces (DeBruine & Jones 2017, CC BY 4.0)", "development_people": dev,
                 "held_out_people": held},
        "usable_quality": USABLE_QUALITY,
        **results,
        "provenance": provenance(threads=1),
        "wall_s": round(time.perf_counter() - started, 1),
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
