"""Bootstrap intervals over students: coverage of the estimate, width, determinism, degenerate cases."""

import numpy as np
import pandas as pd
import pytest

from study.eval.bootstrap import percentile_interval, resample_weights
from study.eval.metrics import compute_metrics


def random_records(num_students, seed, interactions_per_student=5, hit_rate=0.3):
    rng = np.random.default_rng(seed)
    students = np.repeat(np.arange(num_students, dtype=np.int64) + 1000, interactions_per_student)
    hits = rng.random(len(students)) < hit_rate
    return pd.DataFrame(
        {
            "student_hash": students,
            "rank": np.where(hits, 0, 50).astype(np.int32),
            "is_novel": rng.integers(0, 2, len(students)),
            "is_continuation": np.zeros(len(students), dtype=np.int32),
            "history_len": np.arange(len(students)) % 30,
            "grade": np.zeros(len(students), dtype=np.int32),
            "wealth": np.zeros(len(students), dtype=np.int32),
        }
    )


def interval(metrics, subset="all", average="macro", n=1):
    entry = metrics["overall"][subset][average][f"hits@{n}"]
    return entry["ci_low"], entry["value"], entry["ci_high"]


def test_resample_weights_draw_students_with_replacement():
    draws = list(resample_weights(7, 4, seed=1))
    assert len(draws) == 4
    for weights in draws:
        assert weights.shape == (7,) and weights.sum() == 7 and weights.min() >= 0
    again = list(resample_weights(7, 4, seed=1))
    assert all(np.array_equal(a, b) for a, b in zip(draws, again))


def test_interval_of_two_students_matches_the_binomial_quantiles():
    # Mean of values {0, 1} over 2 students: a resample gives 0 (prob 1/4), 0.5 (1/2) or 1 (1/4),
    # so the 2.5% and 97.5% quantiles are 0 and 1.
    values = np.array([0.0, 1.0])
    low, high = percentile_interval(lambda w: w @ values / w.sum(), 2, num_resamples=2000, seed=0)
    assert (float(low), float(high)) == (0.0, 1.0)


def test_interval_contains_point_estimate_and_is_deterministic():
    records = random_records(40, seed=0)
    first, _ = compute_metrics(records, ns=(1, 3), num_bootstrap=50, seed=5)
    second, _ = compute_metrics(records, ns=(1, 3), num_bootstrap=50, seed=5)
    other_seed, _ = compute_metrics(records, ns=(1, 3), num_bootstrap=50, seed=6)
    for subset in ("all", "novel"):
        for average in ("macro", "micro"):
            low, point, high = interval(first, subset, average)
            assert low <= point <= high and low < high
            assert interval(second, subset, average) == (low, point, high)
    assert interval(other_seed) != interval(first)


def test_interval_narrows_with_more_students():
    small, _ = compute_metrics(random_records(20, seed=1), ns=(1,), num_bootstrap=50)
    large, _ = compute_metrics(random_records(2000, seed=1), ns=(1,), num_bootstrap=50)
    for average in ("macro", "micro"):
        small_low, _, small_high = interval(small, average=average)
        large_low, _, large_high = interval(large, average=average)
        # Width shrinks like 1/sqrt(students): a factor 10 expected, 3 asked.
        assert (large_high - large_low) < (small_high - small_low) / 3


def test_one_student_gives_a_degenerate_interval():
    records = random_records(1, seed=2, interactions_per_student=12, hit_rate=0.5)
    metrics, _ = compute_metrics(records, ns=(1,), num_bootstrap=30)
    for average in ("macro", "micro"):
        low, point, high = interval(metrics, average=average)
        assert low == pytest.approx(point) and high == pytest.approx(point)


def test_no_resamples_gives_nan_bounds():
    metrics, _ = compute_metrics(random_records(5, seed=3), ns=(1,), num_bootstrap=0)
    low, point, high = interval(metrics)
    assert np.isnan(low) and np.isnan(high) and not np.isnan(point)


def test_bad_confidence_is_rejected():
    with pytest.raises(ValueError, match="confidence"):
        percentile_interval(lambda w: w.sum(), 3, confidence=95)
