"""Attention masks of the STUDY and Individual transformers: the temporal-causality contract as code.

All masks are pure functions of per-position row features, each ``[batch, length]``:
``item_ids`` (int; ``PAD``/``SEP`` positions are never attended to and attend to nothing),
``timestamps`` (int, seconds; only compared), ``student_index`` (int, student within the row),
``positions`` (int, 0-based position within the student's segment). They return
``[batch, 1, length, length] bool`` masks, ``mask[b, 0, i, j]`` = "query ``i`` may attend key ``j``";
the singleton axis broadcasts over attention heads.

Single-stream policies (the input at ``j`` is the embedding of the student's *previous* item):

* ``individual_mask``: same student and ``positions[j] <= positions[i]``.
* ``study_mask``: the above, or another student and ``timestamps[j] < timestamps[i]``.

Two-stream policy (content stream carries the item *at* ``j``; the query stream carries no item):

* content: same student and ``positions[k] <= positions[j]``, or other student and ``t[k] < t[j]``.
* query: same student and ``positions[k] < positions[i]``, or other student and ``t[k] < t[i]``.
"""

from study.data import reserved_ids


def _pair_features(item_ids, timestamps, student_index, positions):
    """Pairwise ``[batch, length, length]`` comparisons shared by every mask (query i, key j)."""
    is_item = reserved_ids.is_item(item_ids)
    both_items = is_item[:, :, None] & is_item[:, None, :]
    same_student = student_index[:, :, None] == student_index[:, None, :]
    key_position = positions[:, None, :]
    query_position = positions[:, :, None]
    key_earlier_in_time = timestamps[:, None, :] < timestamps[:, :, None]
    return both_items, same_student, key_position, query_position, key_earlier_in_time


def individual_mask(item_ids, timestamps, student_index, positions):
    """``[B, L]`` row features -> ``[B, 1, L, L] bool``: own interactions up to and including this one.

    Query ``i`` attends key ``j`` iff both are item positions of the same student and
    ``positions[j] <= positions[i]``. ``timestamps`` is accepted for a uniform signature and unused.
    """
    both_items, same_student, key_pos, query_pos, _ = _pair_features(
        item_ids, timestamps, student_index, positions
    )
    return (both_items & same_student & (key_pos <= query_pos))[:, None]


def study_mask(item_ids, timestamps, student_index, positions):
    """``[B, L]`` row features -> ``[B, 1, L, L] bool``: Individual, plus classmates strictly earlier in time.

    Query ``i`` attends key ``j`` iff both are item positions and either (same student and
    ``positions[j] <= positions[i]``) or (different student and ``timestamps[j] < timestamps[i]``).
    """
    both_items, same_student, key_pos, query_pos, earlier = _pair_features(
        item_ids, timestamps, student_index, positions
    )
    own = same_student & (key_pos <= query_pos)
    classmates = ~same_student & earlier
    return (both_items & (own | classmates))[:, None]


def two_stream_masks(item_ids, timestamps, student_index, positions):
    """``[B, L]`` row features -> ``(content_mask, query_mask)``, each ``[B, 1, L, L] bool``.

    content_mask[j, k]: both items and ((same student and ``positions[k] <= positions[j]``) or
      (other student and ``timestamps[k] < timestamps[j]``)); the content stream may see its own item.
    query_mask[i, k]: both items and ((same student and ``positions[k] < positions[i]``) or
      (other student and ``timestamps[k] < timestamps[i]``)); the query never sees the item it predicts.
    A query row can be all False (a student's first item with no earlier classmate); the attention
    layer must handle that (the transformer adds an always-visible null key).
    """
    both_items, same_student, key_pos, query_pos, earlier = _pair_features(
        item_ids, timestamps, student_index, positions
    )
    classmates = ~same_student & earlier
    content = both_items & ((same_student & (key_pos <= query_pos)) | classmates)
    query = both_items & ((same_student & (key_pos < query_pos)) | classmates)
    return content[:, None], query[:, None]


MASK_FUNCTIONS = {"individual": individual_mask, "study": study_mask}
