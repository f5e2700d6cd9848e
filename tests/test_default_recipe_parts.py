"""Parts of the default-model recipe that decide what ships: the voice summary head and the
feature cache's staleness check (recipes/default_model_training.py, recipes/default_model_features.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "recipes"))

import default_model_features as features  # noqa: E402
from default_model_training import VOICE_HEAD_C_GRID, fit_voice_head  # noqa: E402

from mmer.stream_fusion import LateFusion  # noqa: E402


def utterances(rng: np.random.Generator, labels: list[int], q: int = 7, d: int = 3):
    """Frames (T, d) whose level in dimension `label % d` and spread encode the label; one-hot (N, q)."""
    frames, onehot = [], np.zeros((len(labels), q), np.float32)
    for i, label in enumerate(labels):
        x = rng.normal(0.0, 1.0 + label % 2, size=(int(rng.integers(20, 60)), d))
        x[:, label % d] += 3.0 * (1 + label // d)
        frames.append(x.astype(np.float32))
        onehot[i, label] = 1
    return frames, onehot


def test_voice_head_learns_from_utterance_statistics():
    rng = np.random.default_rng(0)
    classes = [0, 1, 2, 3, 4, 5]
    train, train_y = utterances(rng, classes * 20)
    valid, valid_y = utterances(rng, classes * 5)
    test, test_y = utterances(rng, classes * 5)
    head, selection = fit_voice_head(train, train_y, valid, valid_y)
    assert sorted(head.labels) == classes and head.labels == sorted(head.labels)
    assert selection["selected_c"] in VOICE_HEAD_C_GRID and "validation" in head.basis
    predicted = [head.labels[int(np.argmax(head.probs(x)))] for x in test]
    assert np.mean(np.array(predicted) == test_y.argmax(1)) > 0.9
    fusion = LateFusion({}, [0.5] * 7, heads={"audio": head})  # survives the checkpoint's JSON
    again = LateFusion.from_dict(json.loads(json.dumps(fusion.to_dict())))
    np.testing.assert_allclose(again.heads["audio"].probs(test[0]), head.probs(test[0]))


class _Spec:
    def __init__(self, text_version: str):
        from mmer.core.feature_spec import ModalitySpec

        self.text = ModalitySpec("bert-wordpiece:x", 384, None, text_version)
        self.audio = ModalitySpec("egemaps", 25, 25.0, "a1")
        self.visual = ModalitySpec("faces", 29, 5.0, "v1")


@pytest.fixture
def cache(tmp_path):
    for files in features.FEATURE_FILES.values():
        for name in files:
            (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_cached_features_of_a_changed_extractor_are_dropped(cache, monkeypatch):
    monkeypatch.setattr(features, "default_feature_spec", lambda: _Spec("t1"))
    features.drop_stale_features(cache)  # no record yet: every file's origin is unknown
    assert not any((cache / n).exists() for files in features.FEATURE_FILES.values() for n in files)
    for files in features.FEATURE_FILES.values():
        for name in files:
            (cache / name).write_bytes(b"x")
    features.drop_stale_features(cache)  # same spec: nothing to do
    assert all((cache / n).exists() for files in features.FEATURE_FILES.values() for n in files)
    monkeypatch.setattr(features, "default_feature_spec", lambda: _Spec("t2"))  # new text layers
    features.drop_stale_features(cache)
    assert not any((cache / n).exists() for n in features.FEATURE_FILES["text"])
    assert all((cache / n).exists() for m in ("audio", "visual") for n in features.FEATURE_FILES[m])
    assert json.loads((cache / "feature_spec.json").read_text())["text"][2] == "t2"


@pytest.mark.slow  # loads the packaged MiniLM encoder
def test_text_finetune_recipe_trains_through_the_one_epoch_loop():
    """recipes/finetune_text_encoder.py's layers and head trained by mmer.trainer.Trainer (its hooks:
    shuffled batches, dev macro-F1 selection, the best epoch kept) on comments whose label is written
    into their states: the loss falls, every epoch is recorded and the best one is kept."""
    import torch

    import finetune_text_encoder as recipe
    from mmer.extractors.text import TextEncoder, encoder_info
    from mmer.optimization import EarlyStopping, LRSchedule
    from mmer.trainer import Trainer

    torch.manual_seed(0)
    base = TextEncoder(encoder_info(None), "cpu").model
    rng = np.random.default_rng(0)
    q, dim = len(features.LABEL_NAMES), base.config.hidden_size

    def comments(n: int):
        labels = np.zeros((n, q), np.float32)
        states = []
        for i in range(n):
            k = i % 2  # two labels, told apart by the sign of the states' first dimensions
            labels[i, k] = 1
            x = rng.normal(0.0, 0.5, size=(int(rng.integers(4, 9)), dim)).astype(np.float16)
            x[:, :32] += 2.0 if k else -2.0
            states.append(x)
        return states, labels

    net = recipe.TopAndHead(base, q)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    hooks = recipe.FineTuneHooks(net, comments(96), comments(32), np.random.default_rng(0))
    trainer = Trainer(net, optimizer, LRSchedule.per_step(torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)),
                      EarlyStopping(patience=0, maximize=True), grad_clip=1.0,
                      forward=lambda batch: net(batch.states, batch.mask))
    assert trainer.fit(hooks, 3) == 3
    assert [r["epoch"] for r in hooks.history] == [1, 2, 3]
    assert hooks.history[-1]["train_loss"] < hooks.history[0]["train_loss"]
    best_f1, best_epoch, state, thresholds = hooks.best
    assert best_f1 == max(r["dev_macro_f1"] for r in hooks.history) and len(thresholds) == q
