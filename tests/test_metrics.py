"""Metrics, calibration and threshold tuning against hand-computed values (arithmetic in comments)."""

from __future__ import annotations

import numpy as np
import pytest

from mmer.metrics import (
    brier_score,
    error_rate_by_uncertainty,
    expected_calibration_error,
    multilabel_metrics,
    reliability_bins,
)
from mmer.thresholds import apply_thresholds, tune_global_threshold, tune_label_thresholds

# Shared case: 4 samples, labels a, b, c.
TRUTH = np.array([
    [1, 0, 1],  # s1: Y = {a, c}
    [0, 1, 0],  # s2: Y = {b}
    [0, 0, 0],  # s3: Y = {}
    [1, 1, 0],  # s4: Y = {a, b}
])
PRED = np.array([
    [1, 0, 0],  # s1: Ŷ = {a}        ∩ = {a}   ∪ = {a, c}     -> 1/2
    [0, 1, 1],  # s2: Ŷ = {b, c}     ∩ = {b}   ∪ = {b, c}     -> 1/2
    [0, 0, 0],  # s3: Ŷ = {}         empty/empty              -> 0 (reference) or 1 (usual)
    [1, 1, 1],  # s4: Ŷ = {a, b, c}  ∩ = {a,b} ∪ = {a, b, c}  -> 2/3
])
NAMES = ["a", "b", "c"]


def test_shared_case_every_metric():
    m = multilabel_metrics(TRUTH, PRED, NAMES)
    # acc = (1/2 + 1/2 + 0 + 2/3) / 4 = (5/3) / 4 = 5/12
    assert m.acc == pytest.approx(5 / 12)
    # acc_empty_as_one = (1/2 + 1/2 + 1 + 2/3) / 4 = (8/3) / 4 = 2/3
    assert m.acc_empty_as_one == pytest.approx(2 / 3)
    # TP: s1 a, s2 b, s4 a, s4 b = 4;  FP: s2 c, s4 c = 2;  FN: s1 c = 1
    # precision = TP / (TP + FP) = 4/6;  recall = TP / (TP + FN) = 4/5
    assert m.precision == pytest.approx(4 / 6)
    assert m.recall == pytest.approx(4 / 5)
    # micro F1 = 2TP / (2TP + FP + FN) = 8 / 11
    assert m.micro_f1 == pytest.approx(8 / 11)
    # wrong bits = FP + FN = 3 of 4 * 3 = 12
    assert m.hamming_loss == pytest.approx(3 / 12)
    # per label: a TP2 FP0 FN0 -> 1,1,1; b TP2 FP0 FN0 -> 1,1,1; c TP0 FP2 FN1 -> 0,0,0
    assert (m.per_label["a"].precision, m.per_label["a"].recall, m.per_label["a"].f1) == (1.0, 1.0, 1.0)
    assert (m.per_label["c"].precision, m.per_label["c"].recall, m.per_label["c"].f1) == (0.0, 0.0, 0.0)
    assert [m.per_label[n].support for n in NAMES] == [2, 2, 1]
    # macro F1 = (1 + 1 + 0) / 3
    assert m.macro_f1 == pytest.approx(2 / 3)
    assert m.num_samples == 4


def test_precision_and_recall_are_not_swapped():
    # Same case as above: precision 4/6 != recall 4/5. Passing (prediction, truth), as the TAILOR /
    # CARAT / LDDU authors' code did, exchanges them; Acc, micro-F1 and Hamming loss do not change.
    right = multilabel_metrics(TRUTH, PRED, NAMES)
    swapped = multilabel_metrics(PRED, TRUTH, NAMES)
    assert right.precision == pytest.approx(4 / 6) and right.recall == pytest.approx(4 / 5)
    assert swapped.precision == pytest.approx(4 / 5) and swapped.recall == pytest.approx(4 / 6)
    assert swapped.micro_f1 == pytest.approx(right.micro_f1)
    assert swapped.acc == pytest.approx(right.acc)
    assert swapped.hamming_loss == pytest.approx(right.hamming_loss)


def test_empty_sets_in_truth_or_prediction():
    truth = np.array([[0, 0], [1, 0], [0, 0], [0, 1]])
    pred = np.array([[1, 0], [0, 0], [0, 0], [0, 1]])
    # s1: Y={} Ŷ={a}: 0/1 = 0 both conventions; s2: Y={a} Ŷ={}: 0/1 = 0 both conventions
    # s3: empty/empty: 0 (reference) / 1 (usual); s4: {b} vs {b}: 1
    m = multilabel_metrics(truth, pred, ["a", "b"])
    assert m.acc == pytest.approx((0 + 0 + 0 + 1) / 4)
    assert m.acc_empty_as_one == pytest.approx((0 + 0 + 1 + 1) / 4)


def test_all_correct_with_an_empty_sample():
    truth = np.array([[1, 0], [0, 0], [0, 1]])
    m = multilabel_metrics(truth, truth.copy(), ["a", "b"])
    # Jaccard per sample: 1, empty/empty, 1 -> acc = (1 + 0 + 1)/3, acc_empty_as_one = 3/3
    assert m.acc == pytest.approx(2 / 3)
    assert m.acc_empty_as_one == 1.0
    assert (m.precision, m.recall, m.micro_f1, m.macro_f1, m.hamming_loss) == (1.0, 1.0, 1.0, 1.0, 0.0)


def test_all_wrong():
    truth = np.array([[1, 0], [0, 1]])
    pred = 1 - truth
    m = multilabel_metrics(truth, pred, ["a", "b"])
    # every sample: ∩ = {} -> Jaccard 0; TP = 0 -> P = 0/2 = 0, R = 0/2 = 0, F1 = 0; all 4 bits wrong
    assert (m.acc, m.acc_empty_as_one, m.precision, m.recall, m.micro_f1, m.macro_f1) == (0.0,) * 6
    assert m.hamming_loss == 1.0


def test_zero_division_rules():
    truth = np.array([[1, 0], [1, 0]])
    pred = np.array([[1, 0], [0, 0]])
    m = multilabel_metrics(truth, pred, ["a", "b"])
    # a: TP1 FP0 FN1 -> P = 1, R = 1/2, F1 = 2/(2+0+1) = 2/3
    # b: no support, no predictions -> P = R = F1 = 0 (defined, not NaN); macro = (2/3 + 0)/2 = 1/3
    assert m.per_label["a"].f1 == pytest.approx(2 / 3)
    assert (m.per_label["b"].precision, m.per_label["b"].recall, m.per_label["b"].f1, m.per_label["b"].support) == (0.0, 0.0, 0.0, 0)
    assert m.macro_f1 == pytest.approx(1 / 3)
    # nothing predicted at all: precision 0/0 -> 0; recall 0/2 = 0; F1 0
    none = multilabel_metrics(truth, np.zeros_like(truth), ["a", "b"])
    assert (none.precision, none.recall, none.micro_f1) == (0.0, 0.0, 0.0)
    # no positives anywhere: every sample empty/empty
    empty = multilabel_metrics(np.zeros((2, 2)), np.zeros((2, 2)), ["a", "b"])
    assert (empty.acc, empty.acc_empty_as_one, empty.micro_f1, empty.hamming_loss) == (0.0, 1.0, 0.0, 0.0)


def test_as_dict_is_flat_and_complete():
    d = multilabel_metrics(TRUTH, PRED, NAMES).as_dict()
    for key in ("acc", "acc_empty_as_one", "precision", "recall", "micro_f1", "macro_f1", "hamming_loss"):
        assert isinstance(d[key], float)
    assert d["num_samples"] == 4
    assert d["per_label"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


@pytest.mark.parametrize("truth, pred, names", [
    (np.zeros((2, 3)), np.zeros((3, 3)), NAMES),  # shape mismatch
    (np.zeros((2, 3)), np.full((2, 3), 0.5), NAMES),  # not 0/1
    (np.zeros((0, 3)), np.zeros((0, 3)), NAMES),  # no samples
    (np.zeros((2, 3)), np.zeros((2, 3)), ["a", "b"]),  # wrong number of names
])
def test_invalid_inputs_raise(truth, pred, names):
    with pytest.raises(ValueError):
        multilabel_metrics(truth, pred, names)


def test_agrees_with_scikit_learn_on_random_data():
    metrics_module = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, size=(50, 6))
    pred = rng.integers(0, 2, size=(50, 6))
    m = multilabel_metrics(truth, pred, list("abcdef"))
    assert m.precision == pytest.approx(metrics_module.precision_score(truth, pred, average="micro"))
    assert m.recall == pytest.approx(metrics_module.recall_score(truth, pred, average="micro"))
    assert m.micro_f1 == pytest.approx(metrics_module.f1_score(truth, pred, average="micro"))
    assert m.macro_f1 == pytest.approx(metrics_module.f1_score(truth, pred, average="macro", zero_division=0))
    assert m.hamming_loss == pytest.approx(metrics_module.hamming_loss(truth, pred))
    assert m.acc_empty_as_one == pytest.approx(metrics_module.jaccard_score(truth, pred, average="samples", zero_division=1))


# Calibration: 4 decisions, probabilities 0.1, 0.3, 0.8, 0.9 with truth 0, 1, 1, 0; 2 bins.
CAL_PROBS = np.array([[0.1, 0.3], [0.8, 0.9]])
CAL_TRUTH = np.array([[0, 1], [1, 0]])


def test_ece_and_reliability_bins_by_hand():
    # bin [0, 0.5): p 0.1, 0.3 -> mean 0.2, frac positive 1/2 -> gap 0.3, weight 2/4
    # bin [0.5, 1]: p 0.8, 0.9 -> mean 0.85, frac positive 1/2 -> gap 0.35, weight 2/4
    # ECE = 0.5 * 0.3 + 0.5 * 0.35 = 0.325
    assert expected_calibration_error(CAL_PROBS, CAL_TRUTH, n_bins=2) == pytest.approx(0.325)
    bins = reliability_bins(CAL_PROBS, CAL_TRUTH, n_bins=2)
    assert [(b["lower"], b["upper"], b["count"]) for b in bins] == [(0.0, 0.5, 2), (0.5, 1.0, 2)]
    assert bins[0]["mean_prob"] == pytest.approx(0.2) and bins[0]["frac_positive"] == 0.5
    assert bins[1]["mean_prob"] == pytest.approx(0.85) and bins[1]["frac_positive"] == 0.5


def test_ece_bin_edges_and_empty_bins():
    # p = 0.5 belongs to [0.5, 1]; p = 1.0 to the last (closed) bin; p = 0.0 to the first.
    probs = np.array([[0.0, 0.5, 1.0]])
    truth = np.array([[0, 1, 1]])
    bins = reliability_bins(probs, truth, n_bins=4)
    assert [b["count"] for b in bins] == [1, 0, 1, 1]
    assert bins[1]["mean_prob"] is None and bins[1]["frac_positive"] is None
    # gaps: |0 - 0| = 0, |1 - 0.5| = 0.5, |1 - 1| = 0 -> ECE = (1/3) * 0.5
    assert expected_calibration_error(probs, truth, n_bins=4) == pytest.approx(1 / 6)
    # an edge value lands in the bin it opens, despite 0.29 * 100 == 28.999999999999996 in floating point
    assert reliability_bins(np.array([[0.29]]), np.array([[1]]), n_bins=100)[29]["count"] == 1
    # perfectly confident and right: ECE 0, Brier 0
    assert expected_calibration_error(truth.astype(float), truth) == 0.0
    assert brier_score(truth.astype(float), truth) == 0.0


def test_brier_by_hand():
    # (0.1-0)^2 + (0.3-1)^2 + (0.8-1)^2 + (0.9-0)^2 = 0.01 + 0.49 + 0.04 + 0.81 = 1.35; / 4 = 0.3375
    assert brier_score(CAL_PROBS, CAL_TRUTH) == pytest.approx(0.3375)


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError):
        expected_calibration_error(np.array([[1.2]]), np.array([[1]]))
    with pytest.raises(ValueError):
        brier_score(np.array([[0.2, 0.3]]), np.array([[1]]))


def test_error_rate_by_uncertainty_by_hand():
    uncertainty = np.array([0.6, 0.1, 0.4, 0.2, 0.5, 0.3])
    correct = np.array([1, 1, 0, 1, 0, 1])
    # sorted by uncertainty: 0.1 ok, 0.2 ok, 0.3 ok | 0.4 wrong, 0.5 wrong, 0.6 ok
    low, high = error_rate_by_uncertainty(uncertainty, correct, n_bins=2)
    assert (low["lower"], low["upper"], low["count"], low["error_rate"]) == (0.1, 0.3, 3, 0.0)
    assert low["mean_uncertainty"] == pytest.approx(0.2)
    assert (high["lower"], high["upper"], high["count"]) == (0.4, 0.6, 3)
    assert high["error_rate"] == pytest.approx(2 / 3)
    # fewer decisions than bins: one group per decision
    assert len(error_rate_by_uncertainty(np.array([0.2, 0.1]), np.array([True, False]), n_bins=5)) == 2


def test_apply_thresholds_global_and_per_label():
    probs = np.array([[0.5, 0.49, 0.9], [0.2, 0.7, 0.3]])
    # rule p >= t
    assert apply_thresholds(probs, 0.5).tolist() == [[1, 0, 1], [0, 1, 0]]
    assert apply_thresholds(probs, [0.6, 0.4, 0.3]).tolist() == [[0, 1, 1], [0, 1, 1]]
    with pytest.raises(ValueError):
        apply_thresholds(probs, [0.5, 0.5])


def test_tune_global_threshold_by_hand():
    probs = np.array([[0.9, 0.4], [0.45, 0.1], [0.35, 0.2]])
    truth = np.array([[1, 1], [1, 0], [0, 0]])
    # positives have p 0.9, 0.4, 0.45; negatives 0.1, 0.35, 0.2. Any t in (0.35, 0.40] gives
    # micro-F1 = 1 (grid 0.36 .. 0.40); the tie goes to the one closest to 0.5 -> 0.40.
    assert tune_global_threshold(probs, truth) == pytest.approx(0.40)
    # coarse grid: t = 0.3 -> TP3 FP1 -> F1 6/7; t = 0.5 -> TP1 FN2 -> F1 2/4; t = 0.7 same as 0.5
    assert tune_global_threshold(probs, truth, grid=[0.3, 0.5, 0.7]) == pytest.approx(0.3)


def test_tune_label_thresholds_by_hand():
    probs = np.array([
        [0.8, 0.30, 0.9],
        [0.7, 0.25, 0.1],
        [0.6, 0.10, 0.4],
        [0.2, 0.20, 0.6],
    ])
    truth = np.array([
        [1, 1, 0],
        [1, 1, 0],
        [0, 0, 0],
        [0, 0, 0],
    ])
    # a: positives 0.8, 0.7, negatives 0.6, 0.2 -> F1 = 1 for t in (0.6, 0.7]: grid 0.61..0.70 -> closest to 0.5: 0.61
    # b: positives 0.30, 0.25, negatives 0.10, 0.20 -> F1 = 1 for t in (0.20, 0.25]: 0.21..0.25 -> 0.25
    # c: never present -> F1 = 0 at every threshold -> tie -> 0.5
    assert tune_label_thresholds(probs, truth) == pytest.approx([0.61, 0.25, 0.5])
    # equal distance from 0.5 (0.4 and 0.6 both give F1 = 1 for this label): the lower one wins
    assert tune_label_thresholds(np.array([[0.7], [0.3]]), np.array([[1], [0]]), grid=[0.4, 0.6]) == [0.4]


def test_threshold_grid_from_a_config_spec():
    from mmer.thresholds import DEFAULT_GRID, threshold_grid

    assert threshold_grid(()) == DEFAULT_GRID
    authors = threshold_grid((0.15, 0.295, 0.005))  # the LDDU code's range(150, 300, 5) / 1000
    assert len(authors) == 30 and authors[0] == 0.15 and authors[-1] == 0.295 and 0.24 in authors
