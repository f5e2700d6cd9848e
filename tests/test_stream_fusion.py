"""Reliability-weighted late fusion (mmer/stream_fusion.py)."""

from __future__ import annotations

import numpy as np
import pytest

from mmer.thresholds import apply_thresholds

from mmer.stream_fusion import (STATISTICS, LateFusion, StreamCalibration, StreamDomain, SummaryHead,
                                    binary_entropy_bits, discrimination, fit_temperature, frame_statistics, roc_auc)

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


def test_a_stream_that_shows_nothing_does_not_dilute_a_clear_one():
    f = fusion(text_r=0.6, audio_r=0.9, visual_r=0.6)
    words = np.array([0.8, 0.05, 0.05])  # label 0, clearly
    flat = np.array([0.02, 0.02, 0.02])  # the most trusted stream sees nothing
    probs, _ = f.fuse({"text": words, "audio": flat, "visual": flat})
    # the words count at 0.6 / 0.9 of the most trusted stream: their odds shrink by that factor, no more
    assert probs[0] == pytest.approx(1 / (1 + (0.2 / 0.8) / (0.6 / 0.9)))
    assert probs[0] > 0.5 and probs[1] < 0.05  # and nothing is made up from two "no"s


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


def test_frame_statistics_are_the_documented_functionals():
    frames = np.array([[0.0, 10.0], [1.0, 10.0], [3.0, 10.0], [6.0, 10.0]])  # (T=4, D=2)
    stats = frame_statistics(frames).reshape(len(STATISTICS), 2)  # (statistic, D)
    named = dict(zip(STATISTICS, stats))
    np.testing.assert_allclose(named["mean"], [2.5, 10.0])
    np.testing.assert_allclose(named["std"], [np.std([0, 1, 3, 6]), 0.0])
    np.testing.assert_allclose(named["p50"], [2.0, 10.0])
    np.testing.assert_allclose(named["p90-p10"], named["p90"] - named["p10"])
    np.testing.assert_allclose(named["mean |delta|"], [2.0, 0.0])  # changes 1, 2, 3
    np.testing.assert_allclose(named["std delta"], [np.std([1, 2, 3]), 0.0])
    single = frame_statistics(frames[:1]).reshape(len(STATISTICS), 2)
    assert np.isfinite(single).all() and (single[STATISTICS.index("mean |delta|")] == 0).all()


def voice_head() -> SummaryHead:
    """Two classes (labels 0 and 2) separated by the mean of the first feature."""
    f = len(STATISTICS) * 2
    coef = np.zeros((2, f))
    coef[0, 0], coef[1, 0] = 4.0, -4.0  # statistic "mean" of dimension 0
    return SummaryHead(labels=[0, 2], mean=[0.0] * f, scale=[1.0] * f, coef=coef.tolist(), intercept=[0.0, 0.0],
                       share=0.75)


def test_summary_head_is_averaged_into_its_stream_only():
    f = fusion()
    f.heads["audio"] = voice_head()
    net = np.array([0.2, 0.7, 0.6])
    high = np.ones((5, 2))  # mean of dimension 0 = 1 -> class 0 (label 0) strongly
    head = f.heads["audio"].probs(high)
    assert head.sum() == pytest.approx(1.0) and head[0] > 0.99
    out = f.stream_probs("audio", net, high)
    np.testing.assert_allclose(out, [0.25 * 0.2 + 0.75 * head[0], 0.7, 0.25 * 0.6 + 0.75 * head[1]])
    np.testing.assert_allclose(f.stream_probs("text", net, high), net)  # no head: the network as is
    np.testing.assert_allclose(f.stream_probs("audio", net, None), net)  # no frames: the network as is
    assert f.stream_probs("audio", net, -high)[2] > 0.75  # the other class


def test_summary_head_round_trip_and_refusal():
    f = fusion()
    f.heads["audio"] = voice_head()
    again = LateFusion.from_dict(f.to_dict())
    np.testing.assert_allclose(again.stream_probs("audio", np.full(3, 0.5), np.ones((3, 2))),
                               f.stream_probs("audio", np.full(3, 0.5), np.ones((3, 2))))
    for field, value in (("labels", [0, 7]), ("scale", [0.0] * (len(STATISTICS) * 2)), ("intercept", [0.0]),
                         ("share", 1.5)):
        bad = f.to_dict()
        bad["heads"]["audio"][field] = value
        with pytest.raises(ValueError, match="summary head of stream 'audio'"):
            LateFusion.from_dict(bad)


def decide(fusion: LateFusion, probs: np.ndarray) -> np.ndarray:
    """The fusion's decisions (q,) bool at its thresholds (`apply_thresholds`, the one decision rule)."""
    return apply_thresholds(probs[None, :], fusion.thresholds)[0].astype(bool)


def test_neutral_words_do_not_veto_a_voice_that_shows_an_emotion():
    """`any_stream_shows`: neutral only when no stream shows an emotion, however little the voice
    is trusted; without it (checkpoints before voice features v2) the discounted voice is silenced."""
    words = np.array([0.05, 0.05, 0.95])  # neutral words
    voice = np.array([0.85, 0.05, 0.05])  # a voice clearly showing label 0
    before = fusion()
    probs, _ = before.fuse({"text": words, "audio": voice}, weights={"text": 1.0, "audio": 0.01})
    assert not decide(before, probs)[0] and decide(before, probs)[NEUTRAL]  # the veto
    after = fusion()
    after.any_stream_shows = True
    probs, unc = after.fuse({"text": words, "audio": voice}, weights={"text": 1.0, "audio": 0.01})
    assert decide(after, probs).tolist() == [True, False, False]
    assert probs[0] == pytest.approx(0.5) and unc[0] == pytest.approx(1.0)  # present, but not sure
    # a voice that shows nothing leaves "no emotion"; a stream with weight 0 shows nothing
    calm = np.array([0.3, 0.1, 0.7])
    probs, _ = after.fuse({"text": words, "audio": calm}, weights={"text": 1.0, "audio": 0.01})
    assert decide(after, probs).tolist() == [False, False, True]
    probs, _ = after.fuse({"text": words, "audio": voice}, weights={"text": 1.0, "audio": 0.0})
    assert decide(after, probs).tolist() == [False, False, True]
    # the field survives the checkpoint's JSON; older fusions read as False
    assert LateFusion.from_dict(after.to_dict()).any_stream_shows
    data = before.to_dict()
    del data["any_stream_shows"]
    assert not LateFusion.from_dict(data).any_stream_shows
