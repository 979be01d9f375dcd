"""Row construction (study/data/row_builder.py) and the vocabulary file (study/data/vocabulary.py)."""

import itertools
import json

import numpy as np
import pytest

from study.data import reserved_ids
from study.data import row_builder
from study.data import row_format
from study.data import vocabulary


def make_segment(item_ids, student_hash=7, start_time=100):
    n = len(item_ids)
    return row_builder.Segment(
        item_ids=np.asarray(item_ids, np.int32),
        timestamps=np.arange(start_time, start_time + n, dtype=np.int64),
        student_hash=student_hash,
        history_len=np.arange(n, dtype=np.int32),
        is_novel=np.ones(n, np.int32),
        is_continuation=np.zeros(n, np.int32),
    )


def test_history_features_by_hand():
    history_len, is_novel, is_continuation = row_builder.history_features(
        ["a", "b", "b", "a", "c", "c"]
    )
    assert history_len.tolist() == [0, 1, 2, 3, 4, 5]
    assert is_novel.tolist() == [1, 1, 0, 0, 1, 0]
    assert is_continuation.tolist() == [0, 0, 1, 0, 0, 1]
    assert [a.tolist() for a in row_builder.history_features([])] == [[], [], []]


def test_chunk_bounds():
    assert row_builder.chunk_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert row_builder.chunk_bounds(6, 3) == [(0, 3), (3, 6)]
    assert row_builder.chunk_bounds(0, 3) == []
    with pytest.raises(ValueError):
        row_builder.chunk_bounds(3, 0)


def test_build_row_lays_out_segments_with_separators_and_padding():
    row = row_builder.build_row(
        [make_segment([5, 6], student_hash=11, start_time=10), make_segment([7], 22, 20)],
        row_length=6,
        classroom="room",
        grade=3,
        wealth=2,
    )
    assert row["item_ids"].tolist() == [5, 6, reserved_ids.SEP, 7, 0, 0]
    assert row["student_index"].tolist() == [0, 0, -1, 1, -1, -1]
    assert row["positions"].tolist() == [0, 1, 0, 0, 0, 0]
    assert row["timestamps"].tolist() == [10, 11, 0, 20, 0, 0]
    assert row["student_hash"].tolist() == [11, 11, 0, 22, 0, 0]
    assert row["classroom"] == b"room" and row["grade"] == 3 and row["wealth"] == 2
    for name, dtype in row_format.SEQUENCE_FEATURES.items():
        assert row[name].dtype == dtype and row[name].shape == (6,)


def test_build_row_rejects_overflow():
    with pytest.raises(ValueError, match="row_length"):
        row_builder.build_row([make_segment([3, 3, 3]), make_segment([4, 4], 8)], row_length=5)


def test_pack_segments_first_fit_by_hand():
    # Lengths 3, 1, 2, 2 of students a, a, b, c into rows of 6, in the given order.
    rows = row_builder.pack_segments([3, 1, 2, 2], ["a", "a", "b", "c"], 6, [0, 1, 2, 3])
    # a3 -> row0 (3); a1 cannot join row0 (same student) -> row1 (1);
    # b2 -> row0 (3+1+2=6); c2 -> row1 (1+1+2=4).
    assert rows == [[0, 2], [1, 3]]


def brute_force_check(lengths, students, row_length, rows):
    placed = sorted(itertools.chain.from_iterable(rows))
    assert placed == list(range(len(lengths)))
    for row in rows:
        assert sum(lengths[i] for i in row) + len(row) - 1 <= row_length
        assert len({students[i] for i in row}) == len(row)


def test_pack_segments_properties_on_random_inputs():
    rng = np.random.default_rng(0)
    for _ in range(200):
        row_length = int(rng.integers(1, 12))
        count = int(rng.integers(0, 30))
        lengths = rng.integers(1, row_length + 1, size=count).tolist()
        students = rng.integers(0, 5, size=count).tolist()
        order = rng.permutation(count)
        rows = row_builder.pack_segments(lengths, students, row_length, order)
        brute_force_check(lengths, students, row_length, rows)


def test_packing_seed_is_stable_and_distinct():
    assert row_builder.packing_seed(0, 1, "room") == row_builder.packing_seed(0, 1, "room")
    seeds = {row_builder.packing_seed(s, p, c) for s in (0, 1) for p in (0, 1) for c in "ab"}
    assert len(seeds) == 8


def test_vocabulary_top_items_ties_and_roundtrip(tmp_path):
    vocab = vocabulary.top_items({"b": 3, "a": 3, "c": 5, "d": 1, "e": 1}, max_items=3)
    assert vocab.items == ("c", "a", "b")
    assert vocab.counts == (5, 3, 3)
    assert vocab.train_oov_interactions == 2
    assert vocab.vocab_size == 6
    assert vocab.lookup(["a", "zzz", "c"]).tolist() == [4, reserved_ids.OOV, 3]
    assert vocab.raw_item(3) == "c" and vocab.raw_item(reserved_ids.SEP) is None
    path = tmp_path / "vocab.json"
    vocabulary.save_vocab(vocab, str(path))
    payload = json.loads(path.read_text())
    assert payload["reserved"] == {"pad": 0, "oov": 1, "sep": 2}
    assert payload["first_item_id"] == 3 and payload["vocab_size"] == 6
    assert vocabulary.load_vocab(str(path)) == vocab


def test_load_vocab_rejects_other_reserved_ids(tmp_path):
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps({"reserved": {"pad": 0}, "first_item_id": 1, "items": []}))
    with pytest.raises(ValueError, match="reserved"):
        vocabulary.load_vocab(str(path))


def test_layout_segments_by_hand():
    # Interactions 0..5 with item ids 10..15; row 0 = [1:3] SEP [4:5], row 1 = [0:1], row 2 empty.
    features = {name: np.arange(6) for name in row_builder.SOURCE_FEATURES}
    features["item_ids"] = np.arange(10, 16)
    features["student_hash"] = np.array([7, 7, 7, 7, 9, 9])
    # Segments in any order; student_index says where each goes in its row.
    out = row_builder.layout_segments(
        features, starts=[4, 0, 1], lengths=[1, 1, 2], rows=[0, 1, 0],
        student_index=[1, 0, 0], num_rows=3, row_length=5,
    )
    assert out["item_ids"].tolist() == [[11, 12, reserved_ids.SEP, 14, 0], [10, 0, 0, 0, 0], [0] * 5]
    assert out["student_index"].tolist() == [[0, 0, -1, 1, -1], [0, -1, -1, -1, -1], [-1] * 5]
    assert out["positions"].tolist() == [[0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0] * 5]
    assert out["student_hash"].tolist() == [[7, 7, 0, 9, 0], [7, 0, 0, 0, 0], [0] * 5]
    assert {k: v.dtype for k, v in out.items()} == {
        k: np.dtype(v) for k, v in row_format.SEQUENCE_FEATURES.items()
    }
    with pytest.raises(ValueError, match="row_length"):
        row_builder.layout_segments(features, [0, 2], [2, 3], [0, 0], [0, 1], 1, 5)


def test_layout_segments_equals_build_row_on_random_rows():
    rng = np.random.default_rng(3)
    features = {name: rng.integers(0, 1000, 600) for name in row_builder.SOURCE_FEATURES}
    row_length, segments, expected, next_start = 12, [], [], 0
    for row in range(40):
        parts, used = [], 0
        while rng.random() > 0.2:
            length = int(rng.integers(1, 5))
            if used + length + (1 if parts else 0) > row_length:
                break
            start, next_start = next_start, next_start + length  # disjoint sources
            features["student_hash"][start : start + length] = features["student_hash"][start]
            segments.append((start, length, row, len(parts)))
            parts.append(
                row_builder.Segment(
                    *(features[n][start : start + length] for n in ("item_ids", "timestamps")),
                    student_hash=int(features["student_hash"][start]),
                    **{n: features[n][start : start + length] for n in ("history_len", "is_novel", "is_continuation")},
                )
            )
            used += length + (1 if len(parts) > 1 else 0)
        expected.append(row_builder.build_row(parts, row_length))
    shuffled = [segments[i] for i in rng.permutation(len(segments))]
    starts, lengths, rows, slots = (np.array(col) for col in zip(*shuffled))
    out = row_builder.layout_segments(features, starts, lengths, rows, slots, 40, row_length)
    for name in row_format.SEQUENCE_FEATURES:
        assert out[name].tolist() == [r[name].tolist() for r in expected], name
