"""The attention masks equal a slow, loop-by-loop reading of the temporal-causality contract."""

import numpy as np
import pytest

from study.data import reserved_ids
from study.models import attention_masks


def random_classroom_rows(rng, batch_size, row_length, max_students=4, max_time=12):
    """STUDY-shaped rows: segments of distinct students joined by SEP, padding at the end.

    Each student's timestamps are non-decreasing along the segment (as the pipeline writes them) and drawn
    from a small range, so ties within and across students are frequent. Some rows hold one student only
    (Individual-shaped) and some are short (much padding).
    Returns a dict of ``[batch_size, row_length] int32`` arrays and ``grade [batch_size] int32``.
    """
    rows = {
        name: np.zeros((batch_size, row_length), np.int32)
        for name in ("item_ids", "timestamps", "student_index", "positions")
    }
    rows["student_index"][:] = -1
    for b in range(batch_size):
        num_students = rng.integers(1, max_students + 1)
        cursor = 0
        for student in range(num_students):
            if cursor >= row_length:
                break
            if student:
                rows["item_ids"][b, cursor] = reserved_ids.SEP
                cursor += 1
            room = row_length - cursor
            if room <= 0:
                break
            length = int(rng.integers(1, max(2, room * 2 // (num_students - student) + 1)))
            length = min(length, room)
            span = slice(cursor, cursor + length)
            # OOV is a normal interaction; items start at FIRST_ITEM_ID.
            rows["item_ids"][b, span] = rng.integers(reserved_ids.OOV, 30, size=length)
            rows["item_ids"][b, span][rows["item_ids"][b, span] == reserved_ids.SEP] = reserved_ids.OOV
            rows["timestamps"][b, span] = np.sort(rng.integers(0, max_time, size=length))
            rows["student_index"][b, span] = student
            rows["positions"][b, span] = np.arange(length)
            cursor += length
    rows["grade"] = rng.integers(0, 13, size=batch_size).astype(np.int32)
    return rows


def _reference_masks(row):
    """Loop-by-loop masks of one row: dict policy -> [L, L] bool (two-stream: content and query)."""
    items, times, students, positions = (
        row["item_ids"], row["timestamps"], row["student_index"], row["positions"]
    )
    length = len(items)
    names = ("individual", "study", "content", "query")
    masks = {name: np.zeros((length, length), bool) for name in names}
    for i in range(length):
        for j in range(length):
            if items[i] in (reserved_ids.PAD, reserved_ids.SEP):
                continue
            if items[j] in (reserved_ids.PAD, reserved_ids.SEP):
                continue
            same = students[i] == students[j]
            if same:
                masks["individual"][i, j] = positions[j] <= positions[i]
                masks["study"][i, j] = positions[j] <= positions[i]
                masks["content"][i, j] = positions[j] <= positions[i]
                masks["query"][i, j] = positions[j] < positions[i]
            else:
                masks["study"][i, j] = times[j] < times[i]
                masks["content"][i, j] = times[j] < times[i]
                masks["query"][i, j] = times[j] < times[i]
    return masks


def _arbitrary_rows(rng, batch_size, row_length):
    """Rows with no structure at all: any token anywhere, unsorted times, repeated positions."""
    return {
        "item_ids": rng.integers(0, 6, size=(batch_size, row_length)).astype(np.int32),
        "timestamps": rng.integers(0, 4, size=(batch_size, row_length)).astype(np.int32),
        "student_index": rng.integers(-1, 3, size=(batch_size, row_length)).astype(np.int32),
        "positions": rng.integers(0, 5, size=(batch_size, row_length)).astype(np.int32),
    }


@pytest.mark.parametrize("make_rows", ["classroom", "arbitrary"])
def test_masks_equal_loop_reference(make_rows):
    rng = np.random.default_rng(0)
    if make_rows == "classroom":
        rows = random_classroom_rows(rng, batch_size=16, row_length=20)
    else:
        rows = _arbitrary_rows(rng, batch_size=16, row_length=12)
    features = [rows[name] for name in ("item_ids", "timestamps", "student_index", "positions")]
    individual = np.asarray(attention_masks.individual_mask(*features))
    study = np.asarray(attention_masks.study_mask(*features))
    content, query = (np.asarray(m) for m in attention_masks.two_stream_masks(*features))
    length = rows["item_ids"].shape[1]
    for mask in (individual, study, content, query):
        assert mask.shape == (16, 1, length, length) and mask.dtype == bool
    for b in range(16):
        expected = _reference_masks({name: rows[name][b] for name in rows if name != "grade"})
        np.testing.assert_array_equal(individual[b, 0], expected["individual"])
        np.testing.assert_array_equal(study[b, 0], expected["study"])
        np.testing.assert_array_equal(content[b, 0], expected["content"])
        np.testing.assert_array_equal(query[b, 0], expected["query"])


def test_hand_worked_row():
    # Student 0: items at t=1, t=3; SEP; student 1: items at t=1, t=2; one PAD.
    items = np.array([[5, 6, 2, 7, 8, 0]])
    times = np.array([[1, 3, 0, 1, 2, 0]])
    students = np.array([[0, 0, -1, 1, 1, -1]])
    positions = np.array([[0, 1, 0, 0, 1, 0]])
    study = np.asarray(attention_masks.study_mask(items, times, students, positions))[0, 0]
    expected_study = np.array([
        # keys: s0p0 s0p1 SEP s1p0 s1p1 PAD
        [1, 0, 0, 0, 0, 0],  # s0 at t=1: itself only (s1's t=1 is a tie, not earlier)
        [1, 1, 0, 1, 1, 0],  # s0 at t=3: own two, and both of s1 (t=1, 2 < 3)
        [0, 0, 0, 0, 0, 0],  # SEP attends nothing
        [0, 0, 0, 1, 0, 0],  # s1 at t=1: itself only
        [1, 0, 0, 1, 1, 0],  # s1 at t=2: own two, s0's t=1
        [0, 0, 0, 0, 0, 0],  # PAD attends nothing
    ], bool)
    np.testing.assert_array_equal(study, expected_study)
    individual = np.asarray(attention_masks.individual_mask(items, times, students, positions))[0, 0]
    np.testing.assert_array_equal(individual, expected_study & (students.T == students))
    _, query = attention_masks.two_stream_masks(items, times, students, positions)
    expected_query = expected_study & ~np.eye(6, dtype=bool)  # the query never sees its own item
    np.testing.assert_array_equal(np.asarray(query)[0, 0], expected_query)
