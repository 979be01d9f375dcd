"""The evaluation driver: record collection over batches, both output forms, hand-worked hits, errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from study.data.reserved_ids import OOV, PAD, SEP
from study.data.row_format import empty_row
from study.eval.evaluate import collect_records, evaluate
from study.eval.ranking import MISS_RANK

LENGTH = 6
VOCAB = 8
BASE_SCORES = np.array([9.0, 9.0, 9.0, 0.5, 0.2, 0.9, 0.5, 0.1], dtype=np.float32)


def hand_batch():
    """Row 0: student 11 alone. Row 1: STUDY row, student 22 then SEP then student 33. Row 2: padding row."""
    rows = [empty_row(LENGTH) for _ in range(3)]
    rows[0].update(
        item_ids=np.array([5, 3, 6, OOV, 7, PAD], np.int32),
        student_hash=np.array([11, 11, 11, 11, 11, 0], np.int64),
        history_len=np.array([0, 1, 2, 3, 4, 0], np.int32),
        is_novel=np.array([1, 1, 1, 1, 1, 0], np.int32),
        grade=np.int32(4), wealth=np.int32(1), classroom=b"school-a|4|2021",
    )
    rows[1].update(
        item_ids=np.array([4, SEP, 7, 3, PAD, PAD], np.int32),
        student_hash=np.array([22, 0, 33, 33, 0, 0], np.int64),
        history_len=np.array([7, 0, 0, 1, 0, 0], np.int32),
        is_novel=np.array([0, 0, 1, 1, 0, 0], np.int32),
        is_continuation=np.array([1, 0, 0, 0, 0, 0], np.int32),
        grade=np.int32(4), wealth=np.int32(1), classroom=b"school-a|4|2021",
    )
    # Padding row of the last batch: its items must be ignored even though they look real.
    rows[2].update(item_ids=np.array([3, 4, 5, 0, 0, 0], np.int32), student_hash=np.full(LENGTH, 44, np.int64))
    batch = {name: np.stack([row[name] for row in rows]) for name in rows[0]}
    batch["row_valid"] = np.array([True, True, False])
    return batch


def hand_scores(batch):
    """Row 0 (and the padding row) scored by BASE_SCORES; row 1 by a constant model."""
    scores = np.tile(BASE_SCORES, (3, LENGTH, 1))
    scores[1] = 0.0
    return scores


def test_hand_worked_hits_through_the_driver():
    result = evaluate(hand_scores, [hand_batch()], ns=(1, 3, 5), num_bootstrap=0)
    records = result.records
    # 5 targets in row 0 (PAD skipped), 3 in row 1 (SEP and PADs skipped), none from the padding row.
    assert len(records) == 8
    assert sorted(records["student_hash"].unique()) == [11, 22, 33]
    assert list(records["rank"]) == [0, 2, 2, MISS_RANK, 4, 4, 4, 4]
    assert list(records["position"]) == [0, 1, 2, 3, 4, 0, 2, 3]
    assert set(records["classroom"]) == {"school-a|4|2021"}
    overall = result.metrics["overall"]

    def hits(subset, average, n):
        return overall[subset][average][f"hits@{n}"]["value"]

    # micro: hits@1 {5}; hits@3 {5, 3, 6}; hits@5 all but the OOV target, which stays in the denominator.
    assert hits("all", "micro", 1) == pytest.approx(1 / 8)
    assert hits("all", "micro", 3) == pytest.approx(3 / 8)
    assert hits("all", "micro", 5) == pytest.approx(7 / 8)
    # macro: student 11 has 1/5, 3/5, 4/5; students 22 and 33 only hit at n = 5.
    assert hits("all", "macro", 1) == pytest.approx((1 / 5) / 3)
    assert hits("all", "macro", 3) == pytest.approx((3 / 5) / 3)
    assert hits("all", "macro", 5) == pytest.approx((4 / 5 + 1 + 1) / 3)
    # student 22's only interaction is a continuation: non-continuation has 11 and 33.
    assert overall["non_continuation"]["num_students"] == 2
    assert hits("non_continuation", "macro", 5) == pytest.approx((4 / 5 + 1) / 2)
    assert result.metrics["counts"] == {"interactions": 8, "students": 3, "oov_targets": 1}
    assert result.metrics["breakdowns"]["grade"]["4"]["all"]["num_interactions"] == 8
    assert result.metrics["breakdowns"]["wealth"]["A"]["all"]["num_students"] == 3


def test_top_k_form_matches_scores_form_over_batches():
    rng = np.random.default_rng(0)

    def random_batch():
        batch = {name: np.stack([empty_row(LENGTH)[name]] * 4) for name in empty_row(LENGTH)}
        batch["item_ids"] = rng.integers(0, 20, size=(4, LENGTH)).astype(np.int32)
        batch["student_hash"] = rng.integers(1, 6, size=(4, LENGTH)).astype(np.int64)
        batch["is_novel"] = rng.integers(0, 2, size=(4, LENGTH)).astype(np.int32)
        batch["is_continuation"] = rng.integers(0, 2, size=(4, LENGTH)).astype(np.int32)
        batch["history_len"] = rng.integers(0, 80, size=(4, LENGTH)).astype(np.int32)
        batch["row_valid"] = np.array([True, True, True, False])
        batch["scores"] = rng.normal(size=(4, LENGTH, 20)).astype(np.float32)
        return batch

    batches = [random_batch() for _ in range(3)]

    def predict_scores(batch):
        return jnp.asarray(batch["scores"])

    def predict_top_k(batch):
        masked = np.where(np.arange(20) >= 3, batch["scores"], -np.inf)
        return np.argsort(-masked, axis=-1)[..., :10].astype(np.int32)

    by_scores = evaluate(predict_scores, batches, ns=(1, 3, 10), num_bootstrap=10, seed=1)
    by_top_k = evaluate(predict_top_k, batches, ns=(1, 3, 10), num_bootstrap=10, seed=1)
    for n in (1, 3, 10):
        np.testing.assert_array_equal(by_scores.records["rank"] < n, by_top_k.records["rank"] < n)
    assert by_scores.metrics["overall"] == by_top_k.metrics["overall"]


def test_shape_vocab_and_list_length_errors_are_explained():
    batch = hand_batch()
    with pytest.raises(ValueError, match=r"expected \[B, L, V\]"):
        collect_records(lambda b: np.zeros((3, LENGTH)), [batch])
    with pytest.raises(ValueError, match="scores only 6 tokens"):
        collect_records(lambda b: np.zeros((3, LENGTH, 6), np.float32), [batch])
    with pytest.raises(ValueError, match="too short to decide hits@20"):
        evaluate(lambda b: np.zeros((3, LENGTH, 10), np.int32), [batch])
    del batch["is_novel"]
    with pytest.raises(ValueError, match=r"batch 0 lacks \['is_novel'\]"):
        collect_records(hand_scores, [batch])
