"""Rank of each target item among the candidate items, on device with ``jax.numpy``.

Rank definition (the one every recommender is measured by):

* Candidates are the token ids ``>= FIRST_ITEM_ID``; ``PAD``, ``SEP`` and ``OOV`` are never candidates,
  whatever score a model gives them.
* ``rank`` = the number of candidates *other than the target* whose score is ``>=`` the target's score.
  Ties are counted against the target (pessimistic), so a constant model gets no free hits.
* ``hit@n`` holds iff ``rank < n``; the best rank is 0.
* A target that is not a candidate (``OOV``, or ``PAD``/``SEP`` if ever asked) and a target whose score
  is NaN get ``MISS_RANK``: a miss for every ``n``, still counted in the denominator.

Two model outputs are supported: full scores ``[B, L, V]`` (``ranks_from_scores``) and ranked lists of
item ids ``[B, L, K]`` (``ranks_from_top_k``, for models such as KNN that only rank a short list). Both
functions are elementwise over ``(B, L)``, so callers may split a batch into chunks of rows freely; the
largest intermediate is the ``[B, L, V]`` comparison, which XLA fuses into the reduction.
"""

import jax
import jax.numpy as jnp
import numpy as np

from study.data.reserved_ids import FIRST_ITEM_ID

MISS_RANK = int(np.iinfo(np.int32).max)  # rank of a target that cannot be hit at any n


def ranks_from_scores(scores: jax.Array, targets: jax.Array) -> jax.Array:
    """Pessimistic rank of each target among the candidate items.

    Args:
      scores: ``[B, L, V]`` float; ``scores[b, i, v]`` is the model's score of token ``v`` as the item at
        position ``i`` of row ``b``. Any float dtype; compared in that dtype.
      targets: ``[B, L]`` int; the token at each position (``item_ids`` of the row).

    Returns:
      ``[B, L] int32``: number of candidates ``v != target`` with ``scores[v] >= scores[target]``;
      ``MISS_RANK`` where the target is not a candidate (``< FIRST_ITEM_ID`` or ``>= V``) or its score is NaN.
    """
    scores = jnp.asarray(scores)
    targets = jnp.asarray(targets).astype(jnp.int32)
    vocab_size = scores.shape[-1]
    safe_targets = jnp.clip(targets, 0, vocab_size - 1)
    target_scores = jnp.take_along_axis(scores, safe_targets[..., None], axis=-1)  # [B, L, 1]
    token_ids = jnp.arange(vocab_size, dtype=jnp.int32)
    competes = (token_ids >= FIRST_ITEM_ID) & (token_ids != targets[..., None])  # [B, L, V]
    ranks = jnp.sum((scores >= target_scores) & competes, axis=-1, dtype=jnp.int32)
    scorable = (
        (targets >= FIRST_ITEM_ID) & (targets < vocab_size) & ~jnp.isnan(target_scores[..., 0])
    )
    return jnp.where(scorable, ranks, MISS_RANK)


def ranks_from_top_k(top_k_ids: jax.Array, targets: jax.Array) -> jax.Array:
    """Rank of each target within a model's ranked list of item ids (best first).

    Entries that are not candidates (``PAD``/``SEP``/``OOV``, e.g. list padding) and repeated ids are
    skipped, so the rank is the number of distinct candidate ids listed before the target. A target
    missing from the list gets ``MISS_RANK``: a list of ``K`` ids can only decide ``hit@n`` for ``n <= K``.

    Args:
      top_k_ids: ``[B, L, K]`` int; the model's ranked item ids for each position.
      targets: ``[B, L]`` int; the token at each position.

    Returns:
      ``[B, L] int32`` ranks, ``MISS_RANK`` where the target is not a candidate or not in the list.
    """
    top_k_ids = jnp.asarray(top_k_ids).astype(jnp.int32)
    targets = jnp.asarray(targets).astype(jnp.int32)
    list_length = top_k_ids.shape[-1]
    # earlier[j, k]: list slot j comes before slot k.
    earlier = jnp.arange(list_length)[:, None] < jnp.arange(list_length)[None, :]
    repeats_earlier = jnp.any(
        (top_k_ids[..., :, None] == top_k_ids[..., None, :]) & earlier, axis=-2
    )  # [B, L, K]: slot k repeats an id already listed before it
    counted = (top_k_ids >= FIRST_ITEM_ID) & ~repeats_earlier
    before = jnp.cumsum(counted, axis=-1, dtype=jnp.int32) - counted  # counted slots before each slot
    match = counted & (top_k_ids == targets[..., None])
    found = jnp.any(match, axis=-1) & (targets >= FIRST_ITEM_ID)
    ranks = jnp.sum(jnp.where(match, before, 0), axis=-1, dtype=jnp.int32)
    return jnp.where(found, ranks, MISS_RANK)
