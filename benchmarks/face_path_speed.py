"""The face path's cost before and after issue 20, in one process (robust to a shared machine's load).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/face_path_speed.py

On ../shared/media/WolfgangLanger_Pexels.mp4 (sampled at 5 fps, downscaled to 320 px as `mmer analyze`
does), the MTCNN detections are made once; then, alternating `--rounds` times, the per-clip work that
follows detection is timed both ways (minimum over rounds):
- before: the detector box squared and widened by 10 % (the old crop, `face_crop_policies.OLD`-style
  box cut), the expression network on every face;
- now: grey frame, the upright landmark crop (`face_crop`), its sharpness and the face quality, the
  expression network on the usable faces.
MTCNN itself (timed once per round on the same frames, unchanged by issue 20) is added to both to give
the face path (detection + crop + expression). Writes benchmarks/results/face_path_speed.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))
from face_crop_policies import Policy, cut  # noqa: E402

from mmer.extractors.expression import ExpressionReader, face_crop, face_scale, grey_frame  # noqa: E402
from mmer.extractors.face import GEOMETRY_FEATURE_NAMES, FaceDetector, FaceTrack, face_vector  # noqa: E402
from mmer.extractors.face_quality import USABLE_QUALITY, crop_sharpness, face_quality  # noqa: E402
from mmer.extractors.media import MediaReader, probe_media  # noqa: E402
from mmer.provenance import cpu_model, git_state, utc_now  # noqa: E402

CLIP = REPO.parent / "shared" / "media" / "WolfgangLanger_Pexels.mp4"
OLD = Policy("box", margin=0.1, upright=False)
LIMIT = 0.15


def main(rounds: int = 5) -> None:
    torch.set_num_threads(1)
    reader = MediaReader(probe_media(CLIP), 5.0, 320, 16, threads=1)
    batches = [b.frames for b in reader.frame_batches()]
    detector, network = FaceDetector("cpu"), ExpressionReader("cpu")
    yaw, pitch = GEOMETRY_FEATURE_NAMES.index("nose_along_eyes"), GEOMETRY_FEATURE_NAMES.index("nose_down_fraction")

    def detect() -> list:
        track, faces = FaceTrack(), []
        for frames in batches:
            for frame, found in zip(frames, detector.detect(frames)):
                pick = track.choose(found)
                if pick is not None:
                    faces.append((frame, found.boxes[pick], found.landmarks[pick], float(found.probs[pick])))
        return faces

    def before(faces) -> None:
        for k in range(0, len(faces), 16):
            network(np.stack([cut(OLD, f, b, m)[0] for f, b, m, _ in faces[k:k + 16]]))

    def now(faces) -> None:
        for k in range(0, len(faces), 16):
            crops = []
            for frame, box, marks, prob in faces[k:k + 16]:
                vector = face_vector(box, prob, marks, frame.shape[1], frame.shape[0])
                crop = face_crop(grey_frame(frame), marks)
                if face_quality(prob, face_scale(marks), float(vector[yaw]), float(vector[pitch]),
                                crop_sharpness(crop)) >= USABLE_QUALITY:
                    crops.append(crop)
            network(np.stack(crops)) if crops else None

    faces = detect()
    times = {"detection": [], "before": [], "now": []}
    for _ in range(rounds):
        for name, work in (("detection", detect), ("before", lambda: before(faces)), ("now", lambda: now(faces))):
            start = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    path_before, path_now = best["detection"] + best["before"], best["detection"] + best["now"]
    change = path_now / path_before - 1
    result = {
        "what": "face path of one clip: MTCNN detection + crop + expression network, before and after issue 20",
        "clip": CLIP.name, "frames": sum(len(b) for b in batches), "faces": len(faces),
        "rounds": rounds, "seconds_min_over_rounds": best, "seconds_all_rounds": times,
        "face_path_before_s": path_before, "face_path_now_s": path_now, "change": change,
        "target": f"the face path at most {LIMIT:.0%} slower", "met": change <= LIMIT,
        "hardware": {"cpu_model": cpu_model(), "logical_cores": os.cpu_count(), "torch_threads": 1,
                     "load_average_1min_after": os.getloadavg()[0]},
        "git": git_state(), "date_utc": utc_now(),
    }
    out = REPO / "benchmarks" / "results" / "face_path_speed.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(faces)} faces: detection {best['detection']:.2f} s, crop+network before {best['before']:.3f} s, "
          f"now {best['now']:.3f} s; face path {path_before:.2f} -> {path_now:.2f} s ({change:+.1%}); wrote {out}")


if __name__ == "__main__":
    main()
