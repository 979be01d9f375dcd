"""Properties of the dataset job's output on generated data, checked against pandas references.

The expectations (deduplicated events, split boundary, vocabulary, classroom keys) are computed
here from the raw files with pandas, independently of the pipeline's code.
"""

import collections
import datetime
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from data_pipeline import build_dataset
from data_pipeline import splits
from study.data import reserved_ids
from study.data import row_format
from study.sims import synthetic_learning_ally

NUM_STUDENTS = 1500
ROW_LENGTH = 12
SEGMENT_LENGTH = 5
NUM_PACKINGS = 2
VOCAB_SIZE = 300


def reference(raw_dir):
    """Expected kept interactions with split, token id and classroom, from pandas alone."""
    events = pd.read_csv(raw_dir / "interactions.csv", dtype=str)
    roster = pd.read_csv(raw_dir / "roster.csv", dtype=str)
    events["timestamp"] = events["timestamp"].astype(np.int64)
    events = events.drop_duplicates(["student_id", "item_id", "timestamp"], keep="first")
    events = events[events["student_id"].isin(roster["student_id"])]
    moments = pd.to_datetime(events["timestamp"], unit="s", utc=True)
    first = moments.min()
    first_year = first.year if first.month >= 8 else first.year - 1
    boundary = int(datetime.datetime(first_year + 1, 8, 1, tzinfo=datetime.timezone.utc).timestamp())

    def later(student):
        digest = hashlib.sha256((splits.SPLIT_SALT + student).encode()).digest()
        return "validation" if int.from_bytes(digest[:8], "big") / 2**64 < 0.5 else "test"

    events["split"] = np.where(
        events["timestamp"] < boundary, "train", events["student_id"].map(later)
    )
    counts = events[events["split"] == "train"]["item_id"].value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:VOCAB_SIZE]
    token_of = {item: reserved_ids.FIRST_ITEM_ID + i for i, (item, _) in enumerate(ranked)}
    events["token"] = events["item_id"].map(token_of).fillna(reserved_ids.OOV).astype(int)
    school_year = np.where(moments.dt.month >= 8, moments.dt.year, moments.dt.year - 1)
    merged = events.merge(roster, on="student_id", how="left")
    events["classroom"] = (
        merged["school_id"].to_numpy()
        + "|"
        + merged["grade"].to_numpy()
        + "|"
        + school_year.astype(str)
    )
    events["student_hash"] = events["student_id"].map(row_format.student_hash)
    return events, boundary, [item for item, _ in ranked]


def load(out, dataset, split):
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(out / dataset))
    if split not in builder.info.splits:
        return []
    return [dict(r) for r in tfds.as_numpy(builder.as_dataset(split=split))]


def interactions_of(rows):
    """(student_hash, timestamp, token) of every interaction position, with its row classroom."""
    found = collections.Counter()
    classrooms = {}
    for row in rows:
        for i in np.flatnonzero(row["student_index"] >= 0):
            key = (int(row["student_hash"][i]), int(row["timestamps"][i]), int(row["item_ids"][i]))
            found[key] += 1
            classrooms[key] = row["classroom"].decode()
    return found, classrooms


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    raw_dir = tmp_path_factory.mktemp("generated")
    data = synthetic_learning_ally.generate(NUM_STUDENTS, seed=3)
    synthetic_learning_ally.write(data, str(raw_dir), formats=("canonical",))
    out = raw_dir / "out"
    config = build_dataset.PipelineConfig(
        interactions=str(raw_dir / "interactions.csv"),
        roster=str(raw_dir / "roster.csv"),
        schools=str(raw_dir / "schools.csv"),
        output_dir=str(out),
        vocab_size=VOCAB_SIZE,
        row_length=ROW_LENGTH,
        segment_length=SEGMENT_LENGTH,
        num_packings=NUM_PACKINGS,
        rows_per_shard=700,
    )
    stats = build_dataset.build_dataset(config)
    events, boundary, vocab_items = reference(raw_dir)
    rows = {
        (dataset, split): load(out, dataset, split)
        for dataset in row_format.DATASETS
        for split in row_format.SPLITS
    }
    return out, stats, events, boundary, vocab_items, rows


def expected_counter(events, split):
    part = events[events["split"] == split]
    return collections.Counter(
        zip(part["student_hash"].tolist(), part["timestamp"].tolist(), part["token"].tolist())
    )


def test_accounting_and_boundary(generated):
    _, stats, events, boundary, _, _ = generated
    for kind, entry in stats["inputs"].items():
        assert entry["rows_in"] == entry["rows_kept"] + entry["rows_dead_lettered"], kind
    assert stats["inputs"]["interactions"]["rows_kept"] == len(events)
    assert stats["split_timestamp"] == boundary
    for split in row_format.SPLITS:
        assert stats["splits"][split]["interactions"] == int((events["split"] == split).sum())


def test_vocabulary_matches_pandas_counts(generated):
    out, _, _, _, vocab_items, _ = generated
    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["items"] == vocab_items
    assert vocab["vocab_size"] == len(vocab_items) + reserved_ids.NUM_RESERVED


@pytest.mark.parametrize("dataset", row_format.DATASETS)
@pytest.mark.parametrize("split", ["validation", "test"])
def test_every_evaluation_interaction_appears_exactly_once(generated, dataset, split):
    _, _, events, _, _, rows = generated
    found, _ = interactions_of(rows[(dataset, split)])
    assert found == expected_counter(events, split)


def test_training_rows_cover_train_once_per_packing(generated):
    _, _, events, _, _, rows = generated
    expected = expected_counter(events, "train")
    individual, _ = interactions_of(rows[("individual", "train")])
    assert individual == expected
    study, _ = interactions_of(rows[("study", "train")])
    assert study == collections.Counter({k: NUM_PACKINGS * v for k, v in expected.items()})


def test_study_rows_stay_in_one_classroom(generated):
    _, _, events, _, _, rows = generated
    classroom_of = {
        (h, t, tok): c
        for h, t, tok, c in zip(
            events["student_hash"], events["timestamp"], events["token"], events["classroom"]
        )
    }
    for split in row_format.SPLITS:
        _, classrooms = interactions_of(rows[("study", split)])
        for key, classroom in classrooms.items():
            assert classroom_of[key] == classroom


def test_row_layout_invariants(generated):
    _, _, _, _, _, rows = generated
    for (dataset, split), split_rows in rows.items():
        assert split_rows, (dataset, split)
        for row in split_rows:
            items = row["item_ids"]
            index = row["student_index"]
            assert len(items) == ROW_LENGTH
            used = int(np.max(np.flatnonzero(items != reserved_ids.PAD))) + 1
            assert (items[used:] == reserved_ids.PAD).all() and (index[used:] == -1).all()
            assert items[0] != reserved_ids.SEP and items[used - 1] != reserved_ids.SEP
            # SEP exactly where the student index steps from k to k+1.
            is_sep = items[:used] == reserved_ids.SEP
            assert (index[:used][is_sep] == -1).all() and (index[:used][~is_sep] >= 0).all()
            runs = index[:used][~is_sep]
            assert is_sep.sum() == runs.max()
            assert sorted(set(runs.tolist())) == list(range(runs.max() + 1))
            # Each segment contiguous, one student, time-ordered, positions 0..len-1.
            hashes = []
            for k in range(runs.max() + 1):
                at = np.flatnonzero(index == k)
                assert (np.diff(at) == 1).all()
                assert row["positions"][at].tolist() == list(range(len(at)))
                assert (np.diff(row["timestamps"][at]) >= 0).all()
                assert len(set(row["student_hash"][at].tolist())) == 1
                hashes.append(int(row["student_hash"][at[0]]))
                if dataset == "study":
                    assert len(at) <= SEGMENT_LENGTH
            assert len(set(hashes)) == len(hashes), "a student twice in a row"
            if dataset == "individual":
                assert len(hashes) == 1 and not is_sep.any()


def test_later_splits_are_disjoint_by_student(generated):
    _, _, _, _, _, rows = generated
    students = {
        split: {
            int(h)
            for dataset in row_format.DATASETS
            for row in rows[(dataset, split)]
            for h in row["student_hash"][row["student_index"] >= 0]
        }
        for split in ("validation", "test")
    }
    assert students["validation"] and students["test"]
    assert not students["validation"] & students["test"]


def test_shards_and_metadata(generated):
    out, stats, _, _, _, rows = generated
    for dataset in row_format.DATASETS:
        for split in row_format.SPLITS:
            count = stats["rows"][dataset][split]
            assert count == len(rows[(dataset, split)])
            files = sorted((out / dataset).glob(f"{dataset}-{split}.tfrecord-*"))
            shards = -(-count // 700)
            assert [f.name for f in files] == [
                f"{dataset}-{split}.tfrecord-{i:05d}-of-{shards:05d}" for i in range(shards)
            ]
