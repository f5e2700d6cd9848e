"""The face's own reading (mmer/face_reading.py): robust pooling over the face track, calibration,
mixing with the network's visual reading, and the checkpoint record's checks."""

from __future__ import annotations

import numpy as np
import pytest

from mmer.extractors.expression import EXPRESSION_LABELS
from mmer.extractors.face import GEOMETRY_FEATURE_NAMES, VISUAL_DIM
from mmer.face_reading import FaceReading, quality_factor, weighted_median

LABELS = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
FER_TO_LABEL = [LABELS.index(n) for n in ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral")]
NEUTRAL, HAPPY, ANGRY = (EXPRESSION_LABELS.index(n) for n in ("neutral", "happy", "angry"))


def _frames(readings: np.ndarray) -> np.ndarray:
    """Visual frames (T, 29) with the given expression readings (T, 7) after zero geometry."""
    readings = np.asarray(readings, dtype=np.float32)
    return np.concatenate([np.zeros((len(readings), len(GEOMETRY_FEATURE_NAMES)), np.float32), readings], axis=1)


def _reading(k: int, strength: float = 0.8) -> np.ndarray:
    p = np.full(7, (1 - strength) / 6)
    p[k] = strength
    return p


def _face(**kwargs) -> FaceReading:
    return FaceReading(labels=FER_TO_LABEL, first_column=len(GEOMETRY_FEATURE_NAMES), **kwargs)


def test_weighted_median():
    values = np.array([[1.0], [5.0], [2.0]])
    assert weighted_median(values, np.ones(3))[0] == 2.0
    assert weighted_median(values[:2], np.ones(2))[0] == 3.0  # two equal frames: their mean
    assert weighted_median(values, np.array([1.0, 5.0, 1.0]))[0] == 5.0  # the heavy frame decides


def test_a_blink_does_not_decide_the_clip():
    neutral = np.stack([_reading(NEUTRAL)] * 9)
    blink = _reading(ANGRY, 0.95)[None]
    face = _face()
    pooled = face.pooled(_frames(np.concatenate([neutral[:5], blink, neutral[5:]])))
    assert pooled.argmax() == NEUTRAL
    np.testing.assert_allclose(pooled, _reading(NEUTRAL), atol=1e-6)  # the odd frame is simply outvoted
    # A mean would move: the median is what makes the difference.
    mean = np.concatenate([neutral, blink]).mean(axis=0)
    assert abs(mean[ANGRY] - _reading(NEUTRAL)[ANGRY]) > 0.05


def test_a_poor_frame_counts_less():
    frames = _frames([_reading(HAPPY), _reading(HAPPY), _reading(ANGRY), _reading(ANGRY)])
    face = _face()
    assert face.pooled(frames, np.array([1.0, 1.0, 0.2, 0.2])).argmax() == HAPPY
    assert face.pooled(frames, np.array([0.2, 0.2, 1.0, 1.0])).argmax() == ANGRY
    assert quality_factor(np.array([1.0, 0.5])) == pytest.approx(0.75)
    assert quality_factor(np.zeros(0)) == 1.0  # features without qualities count fully


def test_calibration_and_mixing():
    pooled = _reading(NEUTRAL, 0.5)
    pooled[HAPPY] = 0.3
    pooled /= pooled.sum()
    plain = _face()
    np.testing.assert_allclose(plain.calibrated(pooled), pooled, atol=1e-9)
    bias = [0.0] * 7
    bias[HAPPY], bias[NEUTRAL] = 1.0, -1.0
    assert _face(bias=bias).calibrated(pooled).argmax() == HAPPY
    sharper = _face(temperature=0.5).calibrated(pooled)
    assert sharper.max() > pooled.max() and sharper.argmax() == pooled.argmax()
    network = np.linspace(0.1, 0.7, 7)
    frames = _frames([pooled])
    np.testing.assert_allclose(_face(share=0.0).mix(network, frames), network)
    own = _face(share=1.0).mix(network, frames)
    np.testing.assert_allclose(own[FER_TO_LABEL], pooled, atol=1e-6)
    half = _face(share=0.5).mix(network, frames)
    np.testing.assert_allclose(half, (network + own) / 2, atol=1e-9)


def test_record_round_trip_and_checks():
    face = _face(temperature=0.8, bias=[0.0, 0, 0, 0.5, 0, 0, -0.5], share=0.75, basis="test")
    again = FaceReading.from_dict(face.to_dict(), len(LABELS), VISUAL_DIM)
    assert again == face
    for bad in ({"temperature": 0.0}, {"share": 1.5}, {"labels": [0] * 7}, {"first_column": VISUAL_DIM - 3},
                {"bias": [0.0] * 3}, {"labels": list(range(1, 8))}):
        with pytest.raises(ValueError, match="face reading"):
            FaceReading.from_dict({**face.to_dict(), **bad}, len(LABELS), VISUAL_DIM)
    with pytest.raises(ValueError, match="face reading: malformed"):
        FaceReading.from_dict({"labels": FER_TO_LABEL}, len(LABELS), VISUAL_DIM)


def test_the_analysis_weighs_the_face_by_its_quality(monkeypatch):
    """With the shipped default, a face of mean quality 0.4 enters the fusion with 0.4 of the face's
    reliability, and the face's reading is the checkpoint's FaceReading of its frames."""
    from mmer.analysis import AnalyzeOptions, Analyzer, span_windows
    from mmer.extractors.featureset import FeatureSet

    analyzer = Analyzer(AnalyzeOptions(model="lddu", device="cpu", threads=1, use_cache=False))
    assert analyzer.face_reading is not None
    spec = analyzer.info.feature_spec
    readings = np.stack([_reading(HAPPY, 0.9)] * 5)
    features = {"text": np.zeros((0, spec.text.dim), np.float32), "audio": np.zeros((0, spec.audio.dim), np.float32),
                "visual": _frames(readings)}
    times = {"text": np.zeros(0), "audio": np.zeros(0), "visual": np.arange(5) / 5.0}
    seen = {}
    fuse = analyzer.fusion.fuse

    def spy(evidence, weights=None):
        seen.update(weights)
        return fuse(evidence, weights)

    monkeypatch.setattr(analyzer.fusion, "fuse", spy)
    for quality in (1.0, 0.4):
        fs = FeatureSet(features=features, times=times, spec=spec, duration_s=1.0,
                        face_quality=np.full(5, quality, np.float32))
        spans = [(0.0, 1.0)]
        windows = span_windows(fs, spans)
        evidence = analyzer._by_modality(fs, spans, windows)
        analyzer._scores(fs, spans, evidence, windows)
        assert seen["visual"] == pytest.approx(quality * analyzer.fusion.streams["visual"].reliability)
        face = dict(zip(analyzer.label_names, evidence[0]["visual"]))
        assert max(face, key=face.get) == "happy"
