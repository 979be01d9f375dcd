"""Ranks of targets among candidates: hand-worked cases, a brute-force reference, the top-k form."""

import jax.numpy as jnp
import numpy as np
import pytest

from study.data.reserved_ids import OOV, PAD, SEP
from study.eval.ranking import MISS_RANK, ranks_from_scores, ranks_from_top_k

# Tokens: 0 PAD, 1 OOV, 2 SEP, items 3..7. The reserved ids get the highest scores: they must not count.
BASE_SCORES = np.array([9.0, 9.0, 9.0, 0.5, 0.2, 0.9, 0.5, 0.1], dtype=np.float32)


def test_ranks_by_hand_with_ties_reserved_ids_and_oov():
    item_ids = np.array([[5, 3, 6, OOV, 7, PAD], [4, SEP, 7, 3, PAD, PAD]], dtype=np.int32)
    scores = np.zeros((2, 6, 8), dtype=np.float32)
    scores[0] = BASE_SCORES  # row 0: same scores at every position
    # row 1 stays constant (all zero): every candidate ties with the target.
    ranks = np.asarray(ranks_from_scores(scores, item_ids))
    expected = np.array(
        [
            # 5 (0.9): nothing >= 0.9 -> 0; 3 (0.5): 5 and the tie 6 -> 2; 6 (0.5): 5 and the tie 3 -> 2;
            # OOV: miss; 7 (0.1): 3, 4, 5, 6 -> 4; PAD: not a candidate -> miss.
            [0, 2, 2, MISS_RANK, 4, MISS_RANK],
            # constant model: the 4 other candidates all tie -> rank 4, a hit only at n = 5 (5 candidates).
            [4, MISS_RANK, 4, 4, MISS_RANK, MISS_RANK],
        ]
    )
    np.testing.assert_array_equal(ranks, expected)
    assert ranks.dtype == np.int32


def test_nan_target_score_and_out_of_vocab_target_are_misses():
    scores = np.tile(BASE_SCORES, (1, 3, 1))
    scores[0, 0, 5] = np.nan
    item_ids = np.array([[5, 8, 3]], dtype=np.int32)  # 8 is beyond V = 8
    ranks = np.asarray(ranks_from_scores(scores, item_ids))
    # position 2: target 3 (0.5) is beaten by 5 (0.9) and tied by 6; NaN scores elsewhere never count.
    np.testing.assert_array_equal(ranks, [[MISS_RANK, MISS_RANK, 2]])


def test_ranks_match_brute_force_reference_with_many_ties():
    rng = np.random.default_rng(3)
    batch, length, vocab = 3, 9, 12
    scores = rng.integers(0, 4, size=(batch, length, vocab)).astype(np.float32)  # many ties
    item_ids = rng.integers(0, vocab, size=(batch, length)).astype(np.int32)
    expected = np.empty((batch, length), dtype=np.int64)
    for b in range(batch):
        for i in range(length):
            target = item_ids[b, i]
            if target < 3:
                expected[b, i] = MISS_RANK
                continue
            expected[b, i] = sum(
                1 for v in range(3, vocab) if v != target and scores[b, i, v] >= scores[b, i, target]
            )
    np.testing.assert_array_equal(np.asarray(ranks_from_scores(jnp.asarray(scores), item_ids)), expected)


def test_bfloat16_scores_are_ranked_in_their_own_dtype():
    scores = jnp.asarray(np.tile(BASE_SCORES, (1, 2, 1)), dtype=jnp.bfloat16)
    ranks = np.asarray(ranks_from_scores(scores, np.array([[5, 4]])))
    np.testing.assert_array_equal(ranks, [[0, 3]])  # 4 (0.2) is beaten by 3, 5, 6


def test_top_k_ranks_skip_reserved_ids_and_repeats():
    top_k = np.array([[[PAD, 5, 5, 3, OOV, 6]] * 5], dtype=np.int32)  # [1, 5, 6]
    targets = np.array([[5, 3, 6, 4, OOV]], dtype=np.int32)
    ranks = np.asarray(ranks_from_top_k(top_k, targets))
    # counted ids in order: 5, 3, 6 -> ranks 0, 1, 2; 4 not listed -> miss; OOV never a hit.
    np.testing.assert_array_equal(ranks, [[0, 1, 2, MISS_RANK, MISS_RANK]])


@pytest.mark.parametrize("list_length", [5, 8])
def test_top_k_form_gives_the_same_hits_as_scores(list_length):
    rng = np.random.default_rng(7)
    batch, length, vocab = 4, 6, 15
    scores = rng.normal(size=(batch, length, vocab)).astype(np.float32)  # ties have probability 0
    item_ids = rng.integers(0, vocab, size=(batch, length)).astype(np.int32)
    masked = np.where(np.arange(vocab) >= 3, scores, -np.inf)
    top_k = np.argsort(-masked, axis=-1)[..., :list_length].astype(np.int32)
    from_scores = np.asarray(ranks_from_scores(scores, item_ids))
    from_top_k = np.asarray(ranks_from_top_k(top_k, item_ids))
    for n in range(1, list_length + 1):
        np.testing.assert_array_equal(from_scores < n, from_top_k < n)
