"""hits@n subsets, macro vs micro averages and breakdowns on hand-worked record tables."""

import numpy as np
import pandas as pd
import pytest

from study.eval.metrics import compute_metrics, history_bucket_labels, macro_micro, student_totals

MISS = 2**31 - 1


def make_records(rows):
    """rows: (student_hash, rank, is_novel, is_continuation[, history_len, grade, wealth])."""
    full = [tuple(row) + (0,) * (7 - len(row)) for row in rows]
    return pd.DataFrame(
        full,
        columns=["student_hash", "rank", "is_novel", "is_continuation", "history_len", "grade", "wealth"],
    )


def hand_worked_records():
    # Student 101 reads raw items x, x, y, x, z (first time in the logs at x):
    #   x novel, not a continuation | x continuation | y novel | x neither (differs from y) | z novel.
    # Student 202 reads w, w: w novel | w continuation.
    # Student 303 read v last in training and reads v again: a continuation, not novel.
    return make_records(
        [
            (101, 0, 1, 0),
            (101, 0, 0, 1),
            (101, 5, 1, 0),
            (101, 2, 0, 0),
            (101, 1, 1, 0),
            (202, 4, 1, 0),
            (202, 0, 0, 1),
            (303, 0, 0, 1),
        ]
    )


def value(metrics, subset, average, n):
    return metrics["overall"][subset][average][f"hits@{n}"]["value"]


def test_subsets_macro_and_micro_by_hand():
    metrics, per_student = compute_metrics(hand_worked_records(), ns=(1, 3), num_bootstrap=0)
    expected = {
        # all: 101 hits@1 2/5, hits@3 4/5; 202: 1/2, 1/2; 303: 1/1, 1/1.
        ("all", "macro", 1): (2 / 5 + 1 / 2 + 1) / 3,
        ("all", "micro", 1): 4 / 8,
        ("all", "macro", 3): (4 / 5 + 1 / 2 + 1) / 3,
        ("all", "micro", 3): 6 / 8,
        # non-continuation: 101 has x, y, x, z (ranks 0, 5, 2, 1); 202 has w (rank 4); 303 has none.
        ("non_continuation", "macro", 1): (1 / 4 + 0) / 2,
        ("non_continuation", "micro", 1): 1 / 5,
        ("non_continuation", "macro", 3): (3 / 4 + 0) / 2,
        ("non_continuation", "micro", 3): 3 / 5,
        # novel: 101 has x, y, z (ranks 0, 5, 1); 202 has w (rank 4); 303 has none.
        ("novel", "macro", 1): (1 / 3 + 0) / 2,
        ("novel", "micro", 1): 1 / 4,
        ("novel", "macro", 3): (2 / 3 + 0) / 2,
        ("novel", "micro", 3): 2 / 4,
    }
    for (subset, average, n), want in expected.items():
        assert value(metrics, subset, average, n) == pytest.approx(want), (subset, average, n)
    assert [metrics["overall"][s]["num_students"] for s in ("all", "non_continuation", "novel")] == [3, 2, 2]
    assert [metrics["overall"][s]["num_interactions"] for s in ("all", "non_continuation", "novel")] == [8, 5, 4]
    assert metrics["counts"]["students"] == 3
    row = per_student.set_index("student_hash").loc[101]
    assert (row["num_interactions_novel"], row["hits@3_novel"], row["hits@1_non_continuation"]) == (3, 2, 1)


def test_macro_and_micro_differ_with_unequal_student_counts():
    # Student 1: nine interactions, all hits. Student 2: one interaction, a miss.
    records = make_records([(1, 0, 1, 0)] * 9 + [(2, MISS, 1, 0)])
    metrics, _ = compute_metrics(records, ns=(1,), num_bootstrap=0)
    assert value(metrics, "all", "micro", 1) == pytest.approx(0.9)
    assert value(metrics, "all", "macro", 1) == pytest.approx(0.5)


def test_oov_miss_stays_in_the_denominator_and_empty_subset_is_nan():
    records = make_records([(1, 0, 0, 1), (1, MISS, 0, 1)])  # no novel interaction at all
    records["item_id"] = [5, 1]
    metrics, _ = compute_metrics(records, ns=(1, 20), num_bootstrap=0)
    assert value(metrics, "all", "micro", 20) == pytest.approx(0.5)
    assert np.isnan(value(metrics, "novel", "macro", 1))
    assert metrics["overall"]["novel"]["num_students"] == 0
    assert metrics["counts"]["oov_targets"] == 1


def test_macro_micro_weights_equal_duplicating_students():
    records = hand_worked_records()
    totals = student_totals(records, ns=(1, 3))
    counts = totals[["num_interactions_all", "num_interactions_novel"]].to_numpy()
    hits = totals[["hits@1_all", "hits@1_novel"]].to_numpy()[..., None]
    weighted = macro_micro(counts, hits, weights=np.array([2, 0, 1]))
    # Same as a table where student 101 appears twice and 202 not at all.
    duplicated = make_records(
        [r for r in hand_worked_records().itertuples(index=False) if r.student_hash == 101]
        + [(909,) + tuple(r)[1:] for r in hand_worked_records().itertuples(index=False) if r.student_hash == 101]
        + [r for r in hand_worked_records().itertuples(index=False) if r.student_hash == 303]
    )
    metrics, _ = compute_metrics(duplicated, ns=(1,), num_bootstrap=0)
    assert weighted[0][0, 0] == pytest.approx(value(metrics, "all", "macro", 1))
    assert weighted[1][0, 0] == pytest.approx(value(metrics, "all", "micro", 1))
    assert weighted[0][1, 0] == pytest.approx(value(metrics, "novel", "macro", 1))


def test_history_buckets():
    labels = history_bucket_labels(np.array([0, 1, 2, 3, 5, 6, 10, 11, 20, 21, 50, 51, 400]))
    assert list(labels) == ["0", "1-2", "1-2", "3-5", "3-5", "6-10", "6-10", "11-20", "11-20",
                            "21-50", "21-50", "51+", "51+"]


def test_breakdowns_by_history_grade_and_wealth():
    records = make_records(
        [
            # (student, rank, novel, continuation, history_len, grade, wealth)
            (1, 0, 1, 0, 0, 3, 2),
            (1, 9, 1, 0, 1, 3, 2),
            (1, 0, 1, 0, 2, 3, 2),
            (2, 9, 1, 0, 0, 0, 0),
            (2, 0, 1, 0, 60, 0, 0),
        ]
    )
    metrics, _ = compute_metrics(records, ns=(1,), num_bootstrap=0)
    by_history = metrics["breakdowns"]["history_len"]
    assert list(by_history) == ["0", "1-2", "3-5", "6-10", "11-20", "21-50", "51+"]
    # bucket 0: student 1 hit, student 2 miss -> 0.5 both ways.
    assert by_history["0"]["all"]["macro"]["hits@1"] == pytest.approx(0.5)
    # bucket 1-2: only student 1, one hit of two.
    assert by_history["1-2"]["all"]["micro"]["hits@1"] == pytest.approx(0.5)
    assert by_history["1-2"]["all"]["num_students"] == 1
    assert by_history["51+"]["all"]["macro"]["hits@1"] == pytest.approx(1.0)
    assert by_history["3-5"]["all"]["num_interactions"] == 0
    assert np.isnan(by_history["3-5"]["all"]["macro"]["hits@1"])
    assert set(metrics["breakdowns"]["grade"]) == {"Other", "3"}
    assert metrics["breakdowns"]["grade"]["3"]["all"]["micro"]["hits@1"] == pytest.approx(2 / 3)
    assert set(metrics["breakdowns"]["wealth"]) == {"Unknown", "B"}
    assert metrics["breakdowns"]["wealth"]["Unknown"]["all"]["macro"]["hits@1"] == pytest.approx(0.5)


def test_missing_column_is_a_clear_error():
    with pytest.raises(ValueError, match="is_novel"):
        compute_metrics(pd.DataFrame({"student_hash": [1], "rank": [0]}))
