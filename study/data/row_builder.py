"""Construction of model rows (``study.data.row_format``) from time-ordered student histories.

Pure NumPy, shared by the Beam pipeline (``data_pipeline.model_rows``) and serving, so that a row
built at serving time is laid out exactly as the rows the model was trained on.

Vocabulary:
  * a *segment* is one student's consecutive, time-ordered interactions (at most s items);
  * an Individual row holds one segment (a chunk of at most c items of one student);
  * a STUDY row holds segments of different students of one classroom joined by one ``SEP``
    token between consecutive segments (no leading or trailing ``SEP``), total length <= c.
"""

import dataclasses
import hashlib
from typing import Sequence

import numpy as np

from study.data import reserved_ids
from study.data import row_format


@dataclasses.dataclass(frozen=True)
class Segment:
    """One student's consecutive interactions in time order. Arrays are ``[n]``.

    Attributes:
      item_ids: int32 token ids (vocabulary ids, ``OOV`` outside the vocabulary).
      timestamps: int64 seconds since the epoch.
      student_hash: ``row_format.student_hash`` of the student.
      history_len: int32 number of the student's earlier interactions (all splits).
      is_novel: int32 1 where the student meets the raw item for the first time.
      is_continuation: int32 1 where the raw item equals the previous interaction's item.
    """

    item_ids: np.ndarray
    timestamps: np.ndarray
    student_hash: int
    history_len: np.ndarray
    is_novel: np.ndarray
    is_continuation: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)


def history_features(raw_items: Sequence) -> tuple:
    """Per-interaction history features of one student's time-ordered raw items.

    Args:
      raw_items: ``[n]`` raw item ids of the student's whole history, oldest first.

    Returns:
      ``(history_len, is_novel, is_continuation)``, each ``[n] int32``.
    """
    items = np.asarray(raw_items)
    count = len(items)
    history_len = np.arange(count, dtype=np.int32)
    is_novel = np.zeros(count, dtype=np.int32)
    if count:
        _, first_index = np.unique(items, return_index=True)
        is_novel[first_index] = 1
    is_continuation = np.zeros(count, dtype=np.int32)
    if count > 1:
        is_continuation[1:] = items[1:] == items[:-1]
    return history_len, is_novel, is_continuation


def chunk_bounds(length: int, max_length: int) -> list:
    """Consecutive ``(start, end)`` chunks of at most ``max_length`` covering ``range(length)``."""
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    return [(start, min(start + max_length, length)) for start in range(0, length, max_length)]


_EMPTY_ROWS = {}  # row_length -> template row of padding


def _empty_row(row_length: int) -> dict:
    template = _EMPTY_ROWS.get(row_length)
    if template is None:
        template = _EMPTY_ROWS[row_length] = row_format.empty_row(row_length)
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in template.items()}


def build_row(
    segments: Sequence[Segment],
    row_length: int,
    classroom: str = "",
    grade: int = 0,
    wealth: int = 0,
) -> dict:
    """Lays segments out in one row: ``seg0 SEP seg1 SEP ... PAD PAD``.

    Args:
      segments: segments of distinct students (one segment for an Individual row).
      row_length: c, the fixed row length.
      classroom, grade, wealth: per-row features (``row_format``).

    Returns:
      A dict of ``[row_length]`` arrays named and typed as ``row_format.SEQUENCE_FEATURES`` plus
      the per-row ``classroom`` (bytes), ``grade`` and ``wealth`` (int32).
    """
    used = sum(len(s) for s in segments) + max(len(segments) - 1, 0)
    if used > row_length:
        raise ValueError(f"segments need {used} positions, more than row_length={row_length}")
    row = _empty_row(row_length)
    cursor = 0
    for index, segment in enumerate(segments):
        if index:
            row["item_ids"][cursor] = reserved_ids.SEP
            cursor += 1
        end = cursor + len(segment)
        row["item_ids"][cursor:end] = segment.item_ids
        row["timestamps"][cursor:end] = segment.timestamps
        row["student_index"][cursor:end] = index
        row["positions"][cursor:end] = np.arange(len(segment), dtype=np.int32)
        row["student_hash"][cursor:end] = segment.student_hash
        row["history_len"][cursor:end] = segment.history_len
        row["is_novel"][cursor:end] = segment.is_novel
        row["is_continuation"][cursor:end] = segment.is_continuation
        cursor = end
    row["classroom"] = classroom.encode("utf-8") if isinstance(classroom, str) else classroom
    row["grade"] = np.int32(grade)
    row["wealth"] = np.int32(wealth)
    return row


# Per-interaction features that ``layout_segments`` copies from its sources.
SOURCE_FEATURES = ("item_ids", "timestamps", "student_hash", "history_len", "is_novel", "is_continuation")


def layout_segments(
    features: dict,
    starts: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray,
    student_index: np.ndarray,
    num_rows: int,
    row_length: int,
) -> dict:
    """Vectorized ``build_row`` of many rows at once (sequence features only).

    Segment j copies ``features[name][starts[j] : starts[j] + lengths[j]]`` into row ``rows[j]``
    as the row's ``student_index[j]``-th segment. A row's segments must be given in layout order
    (student_index 0, 1, ...); segment k > 0 of a row starts after segment k - 1 and one ``SEP``.

    Args:
      features: ``SOURCE_FEATURES`` -> ``[n]`` per-interaction arrays (student_hash per interaction).
      starts, lengths, rows, student_index: ``[num_segments]`` ints.
      num_rows: rows to build (rows without a segment stay padding); row_length: c.

    Returns:
      ``row_format.SEQUENCE_FEATURES`` -> ``[num_rows, row_length]`` arrays, equal to stacking
      ``build_row`` of each row's segments.
    """
    starts, lengths, rows, student_index = (
        np.asarray(a, dtype=np.int64) for a in (starts, lengths, rows, student_index)
    )
    # Column of each segment: after the earlier segments of its row and one SEP each.
    order = np.lexsort((student_index, rows))
    ends = np.cumsum(lengths[order] + 1)
    row_first = np.r_[True, rows[order][1:] != rows[order][:-1]]
    row_base = np.maximum.accumulate(np.where(row_first, ends - lengths[order] - 1, 0))
    columns = np.empty_like(lengths)
    columns[order] = ends - lengths[order] - 1 - row_base
    if len(lengths) and int((columns + lengths).max()) > row_length:
        raise ValueError(f"segments need more than row_length={row_length} positions")
    segment_of = np.repeat(np.arange(len(lengths)), lengths)
    offset = np.arange(len(segment_of)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    source = starts[segment_of] + offset
    target = (rows[segment_of], columns[segment_of] + offset)
    out = {
        name: np.full((num_rows, row_length), row_format.FILL_VALUES[name], dtype=dtype)
        for name, dtype in row_format.SEQUENCE_FEATURES.items()
    }
    for name in SOURCE_FEATURES:
        out[name][target] = np.asarray(features[name])[source]
    out["student_index"][target] = student_index[segment_of]
    out["positions"][target] = offset
    after_sep = student_index > 0
    out["item_ids"][rows[after_sep], columns[after_sep] - 1] = reserved_ids.SEP
    return out


def pack_segments(
    lengths: Sequence[int], student_keys: Sequence, row_length: int, order: Sequence[int]
) -> list:
    """Greedy first-fit packing of segments into rows.

    Segments are taken in ``order``; each goes into the first open row that has room for it (its
    length plus one ``SEP``) and holds no segment of the same student, else it opens a new row.

    Args:
      lengths: ``[num_segments]`` segment lengths, each <= row_length.
      student_keys: ``[num_segments]`` the student of each segment.
      row_length: c.
      order: permutation of ``range(num_segments)``, the order segments are placed in.

    Returns:
      Rows as lists of segment indices, in placement order within each row; rows in order opened.
    """
    rows = []  # segment indices per row
    used = []  # positions used per row
    students = []  # set of students per row
    open_rows = []  # indices of rows that can still take a 1-item segment
    for segment_index in order:
        length = int(lengths[segment_index])
        if not 1 <= length <= row_length:
            raise ValueError(f"segment length {length} outside [1, {row_length}]")
        student = student_keys[segment_index]
        placed = False
        for row_index in open_rows:
            if used[row_index] + 1 + length <= row_length and student not in students[row_index]:
                rows[row_index].append(segment_index)
                used[row_index] += 1 + length
                students[row_index].add(student)
                placed = True
                break
        if not placed:
            rows.append([segment_index])
            used.append(length)
            students.append({student})
            open_rows.append(len(rows) - 1)
        # A row with fewer than 2 free positions cannot take SEP + one item any more.
        open_rows = [r for r in open_rows if used[r] + 2 <= row_length]
    return rows


def packing_seed(seed: int, packing_index: int, classroom: str) -> int:
    """Seed of one training packing of one classroom, stable across runs, machines and runners."""
    digest = hashlib.sha256(f"{seed}|{packing_index}|{classroom}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def shuffled_order(num_segments: int, seed: int) -> np.ndarray:
    """A seeded random permutation of ``range(num_segments)`` (NumPy PCG64)."""
    return np.random.default_rng(seed).permutation(num_segments)


def stack_rows(rows: Sequence[dict]) -> dict:
    """List of row dicts -> dict of ``[num_rows, ...]`` arrays (a batch)."""
    if not rows:
        return {}
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}
