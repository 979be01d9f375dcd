"""The dataset job on a hand-worked example (tests/golden/): splits, vocabulary, rows, stats.

tests/golden/expected.json was written by hand from the CSV files beside it; see its _comment.
"""

import collections
import csv
import datetime
import json
import pathlib

import numpy as np
import pytest

from study.data import reserved_ids
from study.data import row_format

GOLDEN = pathlib.Path(__file__).parent / "golden"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text())
SEQUENCE_FIELDS = (
    "item_ids",
    "timestamps",
    "student_hash",
    "student_index",
    "positions",
    "history_len",
    "is_novel",
    "is_continuation",
)


def epoch(date_text):
    if date_text is None:
        return 0
    moment = datetime.datetime.fromisoformat(date_text).replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp())


def expected_row(row):
    """Hand-written row -> canonical tuple (student names -> hashes, dates -> epoch seconds)."""
    values = dict(row)
    values["student_hash"] = [row_format.student_hash(s) if s else 0 for s in row["students"]]
    values["timestamps"] = [epoch(t) for t in row["timestamps"]]
    return (
        row["classroom"].encode(),
        int(row["grade"]),
        int(row["wealth"]),
        *(tuple(int(v) for v in values[name]) for name in SEQUENCE_FIELDS),
    )


def loaded_row(row):
    return (
        bytes(row["classroom"]),
        int(row["grade"]),
        int(row["wealth"]),
        *(tuple(int(v) for v in row[name]) for name in SEQUENCE_FIELDS),
    )


def load_rows(dataset_dir, split):
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(dataset_dir))
    return [dict(r) for r in tfds.as_numpy(builder.as_dataset(split=split))]




def test_vocabulary_is_the_hand_computed_one(golden_output):
    out, _ = golden_output
    assert json.loads((out / "vocab.json").read_text()) == EXPECTED["vocab"]


def test_split_boundary_is_the_second_school_year(golden_output):
    _, stats = golden_output
    assert stats["split_timestamp"] == epoch(EXPECTED["split_timestamp"])


def test_students_csv_holds_splits_and_counts(golden_output):
    out, _ = golden_output
    with open(out / "students.csv", newline="") as handle:
        rows = {r["student_id"]: r for r in csv.DictReader(handle)}
    assert set(rows) == set(EXPECTED["students"])
    for student, expected in EXPECTED["students"].items():
        row = rows[student]
        assert row["splits"] == expected["splits"], student
        counts = [int(row[f"{s}_interactions"]) for s in row_format.SPLITS]
        assert counts == expected["counts"], student
        assert row["district_id"] == expected["district_id"], student
        assert row["wealth_indicator"] == expected["wealth_indicator"], student
        assert int(row["student_hash"]) == row_format.student_hash(student)


def test_stats_table_and_accounting(golden_output):
    _, stats = golden_output
    for split, expected in EXPECTED["stats_splits"].items():
        for measure, value in expected.items():
            assert stats["splits"][split][measure] == value, (split, measure)
    assert stats["rows"]["individual"] == EXPECTED["stats_rows"]["individual"]
    interactions = stats["inputs"]["interactions"]
    assert interactions == {
        "rows_in": 26,
        "rows_kept": 26,
        "rows_dead_lettered": 0,
        "dead_letter_reasons": {},
    }
    assert stats["inputs"]["roster"]["rows_kept"] == 6


@pytest.mark.parametrize("split", row_format.SPLITS)
def test_individual_rows_match_by_hand(golden_output, split):
    out, stats = golden_output
    got = sorted(loaded_row(r) for r in load_rows(out / "individual", split))
    want = sorted(expected_row(r) for r in EXPECTED["individual"][split])
    assert got == want


@pytest.mark.parametrize("split", ["validation", "test"])
def test_study_evaluation_rows_match_by_hand(golden_output, split):
    out, stats = golden_output
    got = sorted(loaded_row(r) for r in load_rows(out / "study", split))
    want = sorted(expected_row(r) for r in EXPECTED["study"][split])
    assert got == want
    assert stats["rows"]["study"][split] == len(want)


def _segments_of_row(row):
    """Decomposes a loaded STUDY row into (classroom, student_hash, items, ts, hl, novel, cont)."""
    item_ids = np.asarray(row["item_ids"])
    segments = []
    for index in range(int(np.max(row["student_index"])) + 1):
        at = np.flatnonzero(np.asarray(row["student_index"]) == index)
        assert np.array_equal(at, np.arange(at[0], at[0] + len(at))), "segment not contiguous"
        assert list(row["positions"][at]) == list(range(len(at)))
        hashes = set(np.asarray(row["student_hash"])[at].tolist())
        assert len(hashes) == 1
        segments.append(
            (
                bytes(row["classroom"]),
                hashes.pop(),
                tuple(item_ids[at].tolist()),
                tuple(np.asarray(row["timestamps"])[at].tolist()),
                tuple(np.asarray(row["history_len"])[at].tolist()),
                tuple(np.asarray(row["is_novel"])[at].tolist()),
                tuple(np.asarray(row["is_continuation"])[at].tolist()),
            )
        )
    return segments


def test_study_training_rows_are_packings_of_the_hand_computed_segments(golden_output):
    out, _ = golden_output
    rows = load_rows(out / "study", "train")
    num_packings = EXPECTED["options"]["num_packings"]
    got = collections.Counter()
    for row in rows:
        item_ids = list(row["item_ids"])
        used = len(item_ids) - item_ids[::-1].index(next(t for t in item_ids[::-1] if t))
        segments = _segments_of_row(row)
        # SEP exactly between consecutive segments, padding only after the last.
        assert item_ids.count(reserved_ids.SEP) == len(segments) - 1
        assert all(t == reserved_ids.PAD for t in item_ids[used:])
        assert len({s[1] for s in segments}) == len(segments), "a student twice in a row"
        got.update(segments)
    want = collections.Counter()
    for segment in EXPECTED["study"]["train_segments"]:
        key = (
            segment["classroom"].encode(),
            row_format.student_hash(segment["student"]),
            tuple(segment["item_ids"]),
            tuple(epoch(t) for t in segment["timestamps"]),
            tuple(segment["history_len"]),
            tuple(segment["is_novel"]),
            tuple(segment["is_continuation"]),
        )
        want[key] += num_packings
    assert got == want


def test_outputs_are_on_disk(golden_output):
    out, _ = golden_output
    config = json.loads((out / "pipeline_config.json").read_text())
    assert config["row_length"] == 6 and config["segment_length"] == 3
    assert (out / "stats.md").read_text().startswith("# Dataset statistics")
    names = sorted(p.name for p in (out / "study").glob("study-*.tfrecord-*"))
    assert names == [
        "study-test.tfrecord-00000-of-00001",
        "study-train.tfrecord-00000-of-00001",
        "study-validation.tfrecord-00000-of-00001",
    ]
    dead = list((out / "dead_letter").glob("*.jsonl"))
    assert dead and all(p.read_text() == "" for p in dead)
