"""Reliability-weighted late fusion (mmer_cli/stream_fusion.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mmer_cli.stream_fusion import (LateFusion, StreamCalibration, binary_entropy_bits, discrimination,
                                    fit_temperature, roc_auc)


def fusion(text_r=1.0, audio_r=0.2, visual_r=0.4, text_t=1.0) -> LateFusion:
    return LateFusion({"text": StreamCalibration(text_t, text_r), "audio": StreamCalibration(1.0, audio_r),
                       "visual": StreamCalibration(1.0, visual_r)}, [0.5, 0.5, 0.5])


def test_one_stream_alone_gives_its_calibrated_reading():
    f = fusion(text_t=2.0)
    p = np.array([0.9, 0.2, 0.5])
    probs, unc = f.fuse({"text": p, "audio": None, "visual": None})
    z = np.log(p / (1 - p)) / 2.0
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(unc, binary_entropy_bits(probs))
    assert unc[2] == pytest.approx(1.0)  # a coin flip is maximally uncertain


def test_a_weak_stream_cannot_overrule_a_strong_one():
    f = fusion(text_r=1.0, audio_r=0.2)
    words = np.array([0.05, 0.95, 0.5])  # clearly label 1
    voice = np.array([0.99, 0.01, 0.5])  # confidently the opposite
    probs, _ = f.fuse({"text": words, "audio": voice, "visual": None})
    assert probs[1] > 0.5 > probs[0]
    assert f.decide(probs).tolist() == [False, True, True]


def test_agreeing_streams_and_an_absent_stream():
    f = fusion()
    p = np.array([0.8, 0.3, 0.6])
    probs, _ = f.fuse({"text": p, "audio": p, "visual": None})
    np.testing.assert_allclose(probs, p)  # same reading from two streams: the same answer


def test_no_usable_stream_is_no_answer():
    probs, unc = fusion().fuse({"text": None, "audio": None, "visual": None})
    assert probs.tolist() == [0.0, 0.0, 0.0] and unc.tolist() == [1.0, 1.0, 1.0]
    probs, unc = fusion(visual_r=0.0).fuse({"text": None, "audio": None, "visual": np.array([0.9, 0.9, 0.9])})
    assert probs.tolist() == [0.0, 0.0, 0.0] and unc.tolist() == [1.0, 1.0, 1.0]  # zero weight = unusable


def test_fit_temperature_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.5, size=(20000, 3))
    labels = (rng.random(true_logits.shape) < 1 / (1 + np.exp(-true_logits))).astype(float)
    overconfident = 1 / (1 + np.exp(-3.0 * true_logits))  # logits three times too large
    assert fit_temperature(overconfident, labels) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(overconfident, labels, [0]) == pytest.approx(3.0, rel=0.1)


def test_discrimination_and_auc():
    truth = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), truth) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), truth) == 0.0
    assert roc_auc(np.array([0.5, 0.5, 0.5, 0.5]), truth) == 0.5
    probs = np.array([[0.1, 0.9], [0.2, 0.1], [0.8, 0.5], [0.9, 0.5]])
    labels = np.array([[0, 1], [0, 0], [1, 0], [1, 0]])
    # column 0 perfect (1.0); column 1: AUC 1.0 as well -> mean 1.0; a constant column is skipped
    assert discrimination(probs, labels) == pytest.approx(1.0)
    assert discrimination(probs, np.c_[labels[:, :1], np.zeros((4, 1))]) == pytest.approx(1.0)


def test_round_trip_and_refusal_of_bad_calibration():
    f = fusion()
    assert LateFusion.from_dict(f.to_dict()).to_dict() == f.to_dict()
    bad = f.to_dict()
    bad["streams"]["audio"]["temperature"] = float("nan")
    with pytest.raises(ValueError, match="'audio'"):
        LateFusion.from_dict(bad)
    bad = f.to_dict()
    bad["thresholds"][0] = float("inf")
    with pytest.raises(ValueError, match="thresholds"):
        LateFusion.from_dict(bad)
    with pytest.raises(ValueError, match="malformed"):
        LateFusion.from_dict({"streams": {}})
