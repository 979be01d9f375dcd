"""The session-based recommendation metrics of SR-GNN (Wu et al., AAAI 2019): P@K and MRR@K.

Both are computed from the 0-based ranks of ``study.eval.ranking`` (rank 0 = the target scored best;
``MISS_RANK`` = cannot be hit), over *test cases*: every (session prefix, next click) pair of the test
sessions, i.e. every click of a session but its first (:func:`next_click_mask`).

* ``P@K`` (the paper's "precision", a hit rate): fraction of test cases whose target is among the top
  ``K`` items, ``mean(rank < K)``.
* ``MRR@K``: mean reciprocal rank, ``mean(1 / (rank + 1))`` where ``rank < K`` and 0 otherwise.

The paper reports both in percent with ``K = 20``; these functions return fractions in [0, 1].
"""

import numpy as np

from study.data import reserved_ids


def _checked_ranks(ranks) -> np.ndarray:
    ranks = np.asarray(ranks).reshape(-1)
    if ranks.size == 0:
        raise ValueError("no test cases: P@K / MRR@K need at least one rank")
    if not np.issubdtype(ranks.dtype, np.integer) or np.any(ranks < 0):
        raise ValueError(f"ranks must be non-negative integers (0 = best), got dtype {ranks.dtype}")
    return ranks.astype(np.int64)


def precision_at_k(ranks, k: int = 20) -> float:
    """P@K: fraction of ``ranks`` (any shape, int, 0 = best) below ``k``."""
    return float(np.mean(_checked_ranks(ranks) < k))


def mrr_at_k(ranks, k: int = 20) -> float:
    """MRR@K: mean of ``1 / (rank + 1)`` over ``ranks`` (any shape, int, 0 = best), counting 0 for ``rank >= k``."""
    ranks = _checked_ranks(ranks)
    return float(np.mean(np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0)))


def session_metrics(ranks, k: int = 20) -> dict:
    """``{"P@k": ..., "MRR@k": ..., "test_cases": n}`` (fractions) of the ranks of the test cases."""
    return {f"P@{k}": precision_at_k(ranks, k), f"MRR@{k}": mrr_at_k(ranks, k),
            "test_cases": int(np.asarray(ranks).size)}


def next_click_mask(item_ids, positions) -> np.ndarray:
    """``[B, L] bool``: the positions of model rows that are SR-GNN test cases (an item click that has at
    least one earlier click of its session, ``positions > 0``)."""
    return reserved_ids.is_item(np.asarray(item_ids)) & (np.asarray(positions) > 0)
