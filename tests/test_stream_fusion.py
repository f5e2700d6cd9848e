"""Reliability-weighted late fusion (mmer_cli/stream_fusion.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mmer_cli.stream_fusion import (LateFusion, StreamCalibration, StreamDomain, binary_entropy_bits,
                                    discrimination, fit_temperature, roc_auc)

NEUTRAL = 2  # label 2 of the three test labels plays "no emotion"


def fusion(text_r=1.0, audio_r=0.2, visual_r=0.4, text_t=1.0) -> LateFusion:
    return LateFusion({"text": StreamCalibration(text_t, text_r), "audio": StreamCalibration(1.0, audio_r),
                       "visual": StreamCalibration(1.0, visual_r)}, [0.5, 0.5, 0.5], exclusive_label=NEUTRAL)


def test_one_stream_alone_gives_its_calibrated_reading():
    f = fusion(text_t=2.0)
    p = np.array([0.9, 0.2, 0.5])
    probs, unc = f.fuse({"text": p, "audio": None, "visual": None})
    z = np.log(p / (1 - p)) / 2.0
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-z)))
    np.testing.assert_allclose(unc, binary_entropy_bits(probs))
    assert unc[2] == pytest.approx(1.0)  # a coin flip is maximally uncertain


def test_no_stream_removes_what_a_clear_stream_shows():
    f = fusion(text_r=1.0, audio_r=0.2)
    words = np.array([0.05, 0.95, 0.05])  # clearly label 1
    voice = np.array([0.9, 0.01, 0.05])  # label 0 instead
    probs, _ = f.fuse({"text": words, "audio": voice, "visual": None})
    assert probs[1] > 0.9  # the words' emotion stays
    # the voice adds its own emotion only in proportion to its weight
    weak = probs[0]
    strong, _ = f.fuse({"text": words, "audio": voice}, weights={"text": 1.0, "audio": 1.0})
    assert weak < strong[0] and weak < 0.65
    ignored, _ = f.fuse({"text": words, "audio": voice}, weights={"text": 1.0, "audio": 0.0})
    np.testing.assert_allclose(ignored, f.fuse({"text": words})[0])


def test_no_emotion_only_when_every_stream_says_so():
    f = fusion()
    calm = np.array([0.05, 0.05, 0.9])
    angry = np.array([0.9, 0.05, 0.05])
    both, _ = f.fuse({"text": calm, "visual": calm})
    assert both[NEUTRAL] == pytest.approx(0.9)
    mixed, _ = f.fuse({"text": angry, "visual": calm})
    assert mixed[NEUTRAL] < 0.5 < mixed[0]


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


def test_domain_factor_is_one_inside_and_falls_outside():
    rng = np.random.default_rng(1)
    train = [rng.normal(0, 1, size=(40, 5)) + rng.normal(0, 0.3, size=5) for _ in range(300)]
    held_out = [rng.normal(0, 1, size=(40, 5)) + rng.normal(0, 0.3, size=5) for _ in range(60)]
    domain = StreamDomain.fit(train, held_out)
    assert domain.factor(held_out[0]) <= 1.0
    assert np.mean([domain.factor(x) == 1.0 for x in held_out]) >= 0.9
    far = rng.normal(3, 1, size=(40, 5))
    assert domain.factor(far) < 0.05
    f = fusion()
    f.domains["audio"] = domain
    assert f.weight("audio", far) == pytest.approx(0.2 * domain.factor(far))
    assert f.weight("text", far) == 1.0  # no domain model: reliability alone
    assert LateFusion.from_dict(f.to_dict()).domains["audio"].factor(far) == pytest.approx(domain.factor(far))


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
