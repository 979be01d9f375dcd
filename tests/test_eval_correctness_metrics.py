"""Correctness metrics (AUC, F1, accuracy, log-loss, report) against hand-worked values and a slow reference."""

import json
import math

import numpy as np
import pytest

from study.eval.bootstrap import resample_weights
from study.eval.correctness_metrics import (
    accuracy_at_threshold,
    correctness_report,
    f1_at_threshold,
    log_loss,
    roc_auc,
)


def brute_force_auc(labels, scores):
    """O(N^2) reference: over all (positive, negative) pairs, 1 if the positive scores higher, 1/2 on a tie."""
    total, pairs = 0.0, 0
    for label_p, score_p in zip(labels, scores):
        for label_n, score_n in zip(labels, scores):
            if label_p == 1 and label_n == 0:
                pairs += 1
                total += 1.0 if score_p > score_n else 0.5 if score_p == score_n else 0.0
    return total / pairs


def test_auc_hand_worked():
    # Positives score 0.35, 0.8; negatives 0.1, 0.4. Pairs: 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes,
    # 0.8>0.4 yes -> 3 of 4 pairs = 0.75.
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auc_ties_count_half():
    # Positives 0.5, 0.9; negatives 0.5, 0.2. Pairs: 0.5 vs 0.5 tie (1/2), 0.5>0.2 (1), 0.9>0.5 (1),
    # 0.9>0.2 (1) -> 3.5 / 4 = 0.875.
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)
    # All scores tied: every pair is a tie -> 0.5.
    assert roc_auc([1, 0, 1, 0, 0], [0.3] * 5) == pytest.approx(0.5)
    # Perfect and reversed orderings.
    assert roc_auc([0, 0, 1], [0.1, 0.2, 0.9]) == pytest.approx(1.0)
    assert roc_auc([0, 0, 1], [0.8, 0.9, 0.1]) == pytest.approx(0.0)


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0], [0]])
def test_auc_single_class_is_nan(labels):
    assert math.isnan(roc_auc(labels, [0.5] * len(labels)))


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_brute_force_pair_count(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 80))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]  # both classes present
    scores = np.round(rng.random(n), 1)  # one decimal: many ties
    assert roc_auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)
    # Reversing the order swaps wins and losses; ties stay 1/2.
    assert roc_auc(labels, 1.0 - scores) == pytest.approx(1.0 - brute_force_auc(labels, scores), abs=1e-12)


@pytest.mark.parametrize(
    "transform",
    [
        lambda p: p**3,
        lambda p: np.log(p / (1 - p)) / 10 + 0.5,  # logit, squeezed back into [0, 1] (|logit| <= 4.6)
        lambda p: (np.exp(4 * p) - 1) / (np.exp(4) - 1),
        lambda p: 0.2 + 0.01 * p,
    ],
)
def test_auc_invariant_to_strictly_increasing_transform(transform):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.uniform(0.01, 0.99, 300), 2)  # ties kept, they must stay ties
    transformed = transform(scores)
    assert np.all((transformed >= 0) & (transformed <= 1))
    assert len(np.unique(transformed)) == len(np.unique(scores))  # the transform merged no scores
    assert roc_auc(labels, transformed) == pytest.approx(roc_auc(labels, scores), abs=1e-12)


# labels:         1    1    0    0    1    0
# probabilities:  0.9  0.4  0.6  0.2  0.5  0.5
# predicted (>= 0.5): 1 0 1 0 1 1 -> TP = 2 (#0, #4), FP = 2 (#2, #5), FN = 1 (#1), TN = 1 (#3).
F1_LABELS = [1, 1, 0, 0, 1, 0]
F1_PROBABILITIES = [0.9, 0.4, 0.6, 0.2, 0.5, 0.5]


def test_f1_and_accuracy_hand_worked():
    # precision 2/4, recall 2/3: F1 = 2 * (1/2) * (2/3) / (1/2 + 2/3) = 4/7 (= 2TP / (2TP + FP + FN)).
    assert f1_at_threshold(F1_LABELS, F1_PROBABILITIES) == pytest.approx(4 / 7)
    assert accuracy_at_threshold(F1_LABELS, F1_PROBABILITIES) == pytest.approx(3 / 6)
    # threshold 0.7: predicted 1 0 0 0 0 0 -> TP 1, FP 0, FN 2, TN 3: F1 = 2 / (2 + 0 + 2), accuracy 4/6.
    assert f1_at_threshold(F1_LABELS, F1_PROBABILITIES, threshold=0.7) == pytest.approx(0.5)
    assert accuracy_at_threshold(F1_LABELS, F1_PROBABILITIES, threshold=0.7) == pytest.approx(4 / 6)


def test_f1_undefined_without_any_positive():
    # No correct label and no correct prediction: 2TP / (2TP + FP + FN) = 0 / 0.
    assert math.isnan(f1_at_threshold([0, 0], [0.1, 0.2]))
    # Positives exist but none predicted: 0 / (0 + 0 + 1) = 0.
    assert f1_at_threshold([0, 1], [0.1, 0.2]) == 0.0


def test_log_loss_hand_worked():
    # -(log 0.8 + log(1 - 0.3) + log 0.5) / 3
    expected = -(math.log(0.8) + math.log(0.7) + math.log(0.5)) / 3
    assert log_loss([1, 0, 1], [0.8, 0.3, 0.5]) == pytest.approx(expected, rel=1e-12)


def test_log_loss_clips_confident_mistakes_and_hits():
    # p = 1 for a wrong answer and p = 0 for a right one are clipped to 1 - eps and eps: each costs -log(eps).
    assert log_loss([0, 1], [1.0, 0.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert log_loss([0, 1], [1.0, 0.0], eps=1e-3) == pytest.approx(-math.log(1e-3), rel=1e-9)
    # A confident hit costs -log(1 - eps), about eps.
    assert log_loss([1], [1.0]) == pytest.approx(1e-7, rel=1e-3)


def test_weights_mask_and_counts():
    labels = np.array([0, 0, 1, 1, 1])
    probabilities = np.array([0.1, 0.4, 0.35, 0.8, 0.05])
    mask = np.array([True, True, True, True, False])
    # The mask drops the last response: the hand-worked 0.75 case.
    assert roc_auc(labels, probabilities, weights=mask) == pytest.approx(0.75)
    # Counts repeat responses: negative 0.4 twice, positive 0.35 dropped -> positive 0.8 beats all 3 negatives.
    counts = np.array([1, 2, 0, 1, 0])
    assert roc_auc(labels, probabilities, weights=counts) == pytest.approx(1.0)
    # log-loss of counts is the mean over the repeated responses: (-log 0.9 - 2 log 0.6 - log 0.8) / 4.
    expected = -(math.log(0.9) + 2 * math.log(0.6) + math.log(0.8)) / 4
    assert log_loss(labels, probabilities, weights=counts) == pytest.approx(expected, rel=1e-12)


# groups:         a    a    a    b    b    b
# labels:         1    0    1    0    1    1
# probabilities:  0.9  0.2  0.4  0.6  0.7  0.3
REPORT_LABELS = [1, 0, 1, 0, 1, 1]
REPORT_PROBABILITIES = [0.9, 0.2, 0.4, 0.6, 0.7, 0.3]
REPORT_GROUPS = ["a", "a", "a", "b", "b", "b"]


def test_report_by_group_hand_worked():
    report = correctness_report(REPORT_LABELS, REPORT_PROBABILITIES, REPORT_GROUPS)
    overall, a, b = report["overall"], report["by_group"]["a"], report["by_group"]["b"]
    assert set(report["by_group"]) == {"a", "b"}
    # overall: positives 0.9, 0.4, 0.7, 0.3 vs negatives 0.2, 0.6: wins 2 + 1 + 2 + 1 = 6 of 8 pairs.
    # predicted 1 0 0 1 1 0: TP 2 (#0, #4), FP 1 (#3), FN 2 (#2, #5), TN 1 (#1): F1 4/7, accuracy 3/6.
    assert overall["auc"] == pytest.approx(6 / 8)
    assert overall["f1"] == pytest.approx(4 / 7)
    assert overall["accuracy"] == pytest.approx(0.5)
    assert overall["log_loss"] == pytest.approx(
        -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.4) + math.log(0.7) + math.log(0.3)) / 6
    )
    assert overall["num_responses"] == 6
    assert overall["positive_rate"] == pytest.approx(4 / 6)
    # a: positives 0.9, 0.4 both beat negative 0.2 -> AUC 1. predicted 1 0 0: TP 1, FN 1 -> F1 2/3, accuracy 2/3.
    assert a == pytest.approx(
        {
            "auc": 1.0,
            "f1": 2 / 3,
            "accuracy": 2 / 3,
            "log_loss": -(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3,
            "num_responses": 3,
            "positive_rate": 2 / 3,
        }
    )
    # b: positives 0.7, 0.3 vs negative 0.6: one win of two -> 0.5. predicted 1 1 0: TP 1, FP 1, FN 1 ->
    # F1 2/4, accuracy 1/3 (only #4 right).
    assert b == pytest.approx(
        {
            "auc": 0.5,
            "f1": 0.5,
            "accuracy": 1 / 3,
            "log_loss": -(math.log(0.4) + math.log(0.7) + math.log(0.3)) / 3,
            "num_responses": 3,
            "positive_rate": 2 / 3,
        }
    )
    assert "auc_ci_low" not in overall  # no bootstrap asked


def test_report_group_keys_are_strings_and_json_ready():
    report = correctness_report([1, 0, 1, 1], [0.9, 0.1, 0.8, 0.7], groups=np.array([3, 3, 5, 5]))
    assert list(report["by_group"]) == ["3", "5"]
    assert math.isnan(report["by_group"]["5"]["auc"])  # group 5 holds only correct answers
    assert report["by_group"]["5"]["num_responses"] == 2
    assert json.loads(json.dumps(report))["by_group"]["3"]["auc"] == 1.0
    assert correctness_report([1, 0], [0.9, 0.1])["by_group"] == {}


def test_report_mask_applies_to_groups():
    mask = [True, True, True, True, True, False]  # drops the last response (group b, label 1, p 0.3)
    report = correctness_report(REPORT_LABELS, REPORT_PROBABILITIES, REPORT_GROUPS, weights=mask)
    assert report["overall"]["num_responses"] == 5
    # b is now labels 0 1 with probabilities 0.6 0.7 -> AUC 1.
    assert report["by_group"]["b"]["num_responses"] == 2
    assert report["by_group"]["b"]["auc"] == pytest.approx(1.0)


def test_report_bootstrap_is_over_responses_with_the_shared_helper():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 60)
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random(60), 0, 1)
    report = correctness_report(labels, probabilities, num_bootstrap=100, seed=11, confidence=0.9)
    # Reference: the same resamples of the 60 responses, metrics recomputed on the repeated responses.
    aucs, accuracies = [], []
    for counts in resample_weights(60, 100, 11):
        aucs.append(roc_auc(np.repeat(labels, counts), np.repeat(probabilities, counts)))
        accuracies.append(accuracy_at_threshold(np.repeat(labels, counts), np.repeat(probabilities, counts)))
    overall = report["overall"]
    assert overall["auc_ci_low"] == pytest.approx(np.quantile(aucs, 0.05))
    assert overall["auc_ci_high"] == pytest.approx(np.quantile(aucs, 0.95))
    assert overall["accuracy_ci_low"] == pytest.approx(np.quantile(accuracies, 0.05))
    assert overall["accuracy_ci_low"] < overall["accuracy"] < overall["accuracy_ci_high"]
    for name in ("f1", "log_loss"):
        assert overall[f"{name}_ci_low"] < overall[name] < overall[f"{name}_ci_high"]
    # Same seed, same intervals; another seed, other intervals.
    assert correctness_report(labels, probabilities, num_bootstrap=100, seed=11, confidence=0.9) == report
    assert correctness_report(labels, probabilities, num_bootstrap=100, seed=12, confidence=0.9)["overall"] != overall


def test_report_bootstrap_of_a_perfect_ranking_is_exactly_one():
    labels = np.array([0] * 10 + [1] * 10)
    probabilities = np.linspace(0.0, 1.0, 20)  # every positive above every negative
    overall = correctness_report(labels, probabilities, num_bootstrap=50)["overall"]
    assert overall["auc_ci_low"] == overall["auc_ci_high"] == overall["auc"] == 1.0


@pytest.mark.parametrize(
    "labels, probabilities, match",
    [
        ([0, 1, 1], [0.2, 0.3], "probabilities must have the shape of labels"),
        ([], [], "labels is empty"),
        ([0, 2], [0.2, 0.3], "labels must all be 0 or 1"),
        ([0, -1], [0.2, 0.3], "labels must all be 0 or 1"),
        (["0", "1"], [0.2, 0.3], "labels must be numbers"),
        ([[0, 1]], [[0.2, 0.3]], "labels must be 1-D"),
        ([0, 1], [0.2, 1.5], r"probabilities must lie in \[0, 1\]"),
        ([0, 1], [-0.1, 0.5], r"probabilities must lie in \[0, 1\]"),
        ([0, 1], [float("nan"), 0.5], r"probabilities must lie in \[0, 1\]"),
    ],
)
@pytest.mark.parametrize("metric", [roc_auc, f1_at_threshold, accuracy_at_threshold, log_loss, correctness_report])
def test_bad_input_raises_naming_the_argument(metric, labels, probabilities, match):
    with pytest.raises(ValueError, match=match):
        metric(labels, probabilities)


def test_bad_weights_and_groups_raise():
    with pytest.raises(ValueError, match="weights must have the shape of labels"):
        roc_auc([0, 1], [0.2, 0.3], weights=[1])
    with pytest.raises(ValueError, match="weights must be a boolean mask or non-negative integer counts"):
        roc_auc([0, 1], [0.2, 0.3], weights=[1, -1])
    with pytest.raises(ValueError, match="weights must be a boolean mask or non-negative integer counts"):
        roc_auc([0, 1], [0.2, 0.3], weights=[0.5, 1.0])
    with pytest.raises(ValueError, match="weights select no response"):
        log_loss([0, 1], [0.2, 0.3], weights=[False, False])
    with pytest.raises(ValueError, match="groups must have the length of labels"):
        correctness_report([0, 1], [0.2, 0.3], groups=["a"])
