"""Input pipeline: shapes/dtypes, relative timestamps, per-process partition, resume, eval padding."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from study.data import input_pipeline, reserved_ids, row_format

ROW_LENGTH = 12
VOCAB_SIZE = 23


def random_row(rng: np.random.Generator, row_id: int, row_length: int = ROW_LENGTH, vocab_size: int = VOCAB_SIZE):
    """A STUDY-like row: 1-3 students' segments joined by SEP, then padding. ``history_len`` holds the
    row id at every item position (so tests can identify rows)."""
    row = row_format.empty_row(row_length)
    cursor, base_time = 0, 1_600_000_000 + int(rng.integers(0, 10**6))
    for student in range(int(rng.integers(1, 4))):
        if student > 0:
            if cursor >= row_length - 1:
                break
            row["item_ids"][cursor] = reserved_ids.SEP
            cursor += 1
        length = int(rng.integers(1, max(2, (row_length - cursor) // 2 + 1)))
        length = min(length, row_length - cursor)
        times = base_time + np.sort(rng.integers(0, 10**5, size=length))
        for position in range(length):
            row["item_ids"][cursor] = rng.integers(reserved_ids.OOV, vocab_size)
            row["timestamps"][cursor] = times[position]
            row["student_index"][cursor] = student
            row["positions"][cursor] = position
            row["student_hash"][cursor] = row_format.student_hash(f"s{row_id}-{student}")
            row["history_len"][cursor] = row_id
            row["is_novel"][cursor] = rng.integers(0, 2)
            cursor += 1
    row["classroom"] = f"school|{row_id % 5}|2020".encode()
    row["grade"] = np.int32(row_id % 13)
    row["wealth"] = np.int32(row_id % 6)
    return row


def serialize(row: dict) -> bytes:
    feature = {}
    for name in row_format.SEQUENCE_FEATURES:
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=row[name].astype(np.int64)))
    feature["classroom"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[row["classroom"]]))
    for name in ("grade", "wealth"):
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(row[name])]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_dataset(data_dir, dataset="study", rows_per_split=None, num_shards=4, seed=0,
                  row_length=ROW_LENGTH, vocab_size=VOCAB_SIZE):
    """Writes ``<data_dir>/<dataset>/<dataset>-<split>.tfrecord-XXXXX-of-YYYYY`` and ``vocab.json``.

    Returns {split: list of rows in file order (shard 0 first)}.
    """
    rows_per_split = rows_per_split or {"train": 40, "validation": 10}
    rng = np.random.default_rng(seed)
    folder = os.path.join(str(data_dir), dataset, "1.0.0")
    os.makedirs(folder, exist_ok=True)
    written, row_id = {}, 0
    for split, num_rows in rows_per_split.items():
        rows = []
        for _ in range(num_rows):
            rows.append(random_row(rng, row_id, row_length, vocab_size))
            row_id += 1
        bounds = np.linspace(0, num_rows, num_shards + 1).astype(int)
        for shard in range(num_shards):
            path = os.path.join(folder, f"{dataset}-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}")
            with tf.io.TFRecordWriter(path) as writer:
                for row in rows[bounds[shard]:bounds[shard + 1]]:
                    writer.write(serialize(row))
        written[split] = rows
    with open(os.path.join(str(data_dir), "vocab.json"), "w") as f:
        json.dump({"vocab_size": vocab_size}, f)
    return written


def row_ids(batch) -> list[int]:
    """The row id (stored in history_len) of every valid row of a batch."""
    ids = []
    for history, valid, items in zip(batch["history_len"], batch["row_valid"], batch["item_ids"]):
        if valid:
            ids.append(int(history[reserved_ids.is_item(items)][0]))
    return ids


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    rows = write_dataset(data_dir, rows_per_split={"train": 40, "validation": 10})
    return data_dir, rows


def test_batches_have_documented_shapes_dtypes_and_relative_timestamps(dataset):
    data_dir, rows = dataset
    files = input_pipeline.dataset_files(str(data_dir), "study", "train")
    assert len(files) == 4
    batch = next(input_pipeline.train_batches(files, 8, row_length=ROW_LENGTH, shuffle=False,
                                              process_index=0, process_count=1, host_features=True))
    for name in ("item_ids", "timestamps", "student_index", "positions", "history_len", "is_novel",
                 "is_continuation"):
        assert batch[name].shape == (8, ROW_LENGTH) and batch[name].dtype == np.int32, name
    assert batch["student_hash"].dtype == np.int64 and batch["student_hash"].shape == (8, ROW_LENGTH)
    for name in ("grade", "wealth", "row_valid"):
        assert batch[name].shape == (8,) and batch[name].dtype == np.int32
    assert batch["classroom"].shape == (8,) and isinstance(batch["classroom"][0], bytes)
    # Unshuffled, the first batch is the first 8 rows of the first file, in order.
    np.testing.assert_array_equal(row_ids(batch), list(range(8)))
    for b, row in enumerate(rows["train"][:8]):
        items = reserved_ids.is_item(row["item_ids"])
        expected = np.where(items, row["timestamps"] - row["timestamps"][items].min(), 0)
        np.testing.assert_array_equal(batch["timestamps"][b], expected)
        np.testing.assert_array_equal(batch["item_ids"][b], row["item_ids"])
        np.testing.assert_array_equal(batch["student_index"][b], row["student_index"])
        np.testing.assert_array_equal(batch["student_hash"][b], row["student_hash"])
        assert batch["classroom"][b] == row["classroom"] and batch["grade"][b] == row["grade"]
    assert set(input_pipeline.device_batch(batch)) & set(input_pipeline.HOST_ONLY_FEATURES) == set()
    lean = next(input_pipeline.train_batches(files, 8, row_length=ROW_LENGTH, shuffle=False, process_index=0,
                                             process_count=1))
    assert set(lean) == set(input_pipeline.device_batch(batch))
    np.testing.assert_array_equal(lean["timestamps"], batch["timestamps"])


@pytest.mark.parametrize("shard_by", ["file", "row"])
def test_processes_partition_the_rows_of_an_epoch(dataset, shard_by):
    data_dir, rows = dataset
    files = input_pipeline.dataset_files(str(data_dir), "study", "train")
    seen = []
    for process in range(2):
        iterator = input_pipeline.train_batches(files, 8, row_length=ROW_LENGTH, seed=3, process_index=process,
                                                process_count=2, shard_by=shard_by)
        per_epoch = input_pipeline.batches_per_epoch([10] * 4, 4, 2, shard_by)
        assert per_epoch == 5
        epoch = [next(iterator) for _ in range(per_epoch)]
        assert all(len(b["row_valid"]) == 4 for b in epoch)
        seen.append([i for b in epoch for i in row_ids(b)])
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(40))


def test_row_sharding_gives_the_same_global_batches_as_one_process(dataset):
    data_dir, _ = dataset
    files = input_pipeline.dataset_files(str(data_dir), "study", "train")
    single = input_pipeline.train_batches(files, 8, row_length=ROW_LENGTH, seed=5, process_index=0,
                                          process_count=1, shard_by="row")
    halves = [input_pipeline.train_batches(files, 8, row_length=ROW_LENGTH, seed=5, process_index=p,
                                           process_count=2, shard_by="row") for p in range(2)]
    for _ in range(7):  # crosses the epoch boundary (5 batches per epoch)
        whole = next(single)
        parts = [next(h) for h in halves]
        assert row_ids(whole) == row_ids(parts[0]) + row_ids(parts[1])


def test_epochs_are_reshuffled_deterministically(dataset):
    data_dir, _ = dataset
    files = input_pipeline.dataset_files(str(data_dir), "study", "train")

    def first_epochs(seed):
        iterator = input_pipeline.train_batches(files, 8, row_length=ROW_LENGTH, seed=seed, process_index=0,
                                                process_count=1)
        return [row_ids(next(iterator)) for _ in range(10)]

    run_a, run_b = first_epochs(1), first_epochs(1)
    assert run_a == run_b
    epoch0 = [i for b in run_a[:5] for i in b]
    epoch1 = [i for b in run_a[5:] for i in b]
    assert sorted(epoch0) == sorted(epoch1) == list(range(40))
    assert epoch0 != epoch1 and epoch0 != list(range(40))
    assert first_epochs(2) != run_a


@pytest.mark.parametrize("start", [0, 3, 5, 12])
def test_resume_at_batch_k_equals_reading_k_batches(dataset, start):
    data_dir, _ = dataset
    files = input_pipeline.dataset_files(str(data_dir), "study", "train")
    kwargs = dict(row_length=ROW_LENGTH, seed=7, process_index=1, process_count=2)
    reference = input_pipeline.train_batches(files, 8, **kwargs)
    for _ in range(start):
        next(reference)
    resumed = input_pipeline.train_batches(files, 8, start_batch=start, **kwargs)
    for _ in range(3):
        expected, actual = next(reference), next(resumed)
        for name in expected:
            np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


@pytest.mark.parametrize("process_count,shard_by", [(1, "file"), (2, "file"), (2, "row"), (3, "file")])
def test_eval_batches_cover_every_row_once_with_padding(dataset, process_count, shard_by):
    data_dir, rows = dataset
    files = input_pipeline.dataset_files(str(data_dir), "study", "validation")  # 10 rows in 4 files
    batch_size = 4 * process_count
    per_process = [list(input_pipeline.eval_batches(files, batch_size, row_length=ROW_LENGTH, process_index=p,
                                                    process_count=process_count, shard_by=shard_by))
                   for p in range(process_count)]
    assert len({len(batches) for batches in per_process}) == 1  # same number of batches everywhere
    ids = [i for batches in per_process for b in batches for i in row_ids(b)]
    first_id = int(rows["validation"][0]["history_len"][reserved_ids.is_item(rows["validation"][0]["item_ids"])][0])
    assert sorted(ids) == list(range(first_id, first_id + 10))
    padding = [b for batches in per_process for b in batches if not b["row_valid"].all()]
    assert padding, "10 rows cannot fill batches of 4 per process: expected padding rows"
    for batch in padding:
        assert batch["row_valid"].shape == (4,)
        empty = batch["row_valid"] == 0
        assert (batch["item_ids"][empty] == reserved_ids.PAD).all()
        assert (batch["student_index"][empty] == -1).all()


def test_missing_files_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="study"):
        input_pipeline.dataset_files(str(tmp_path), "study", "train")
