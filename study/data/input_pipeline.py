"""Host input pipeline: TFRecord rows (``study.data.row_format``) -> NumPy batches -> global device arrays.

Files: ``<data_dir>/<dataset>/**/<name>-<split>.tfrecord-<shard>-of-<n>`` (a tfds-style folder).

Reading is batched and vectorized: serialized records are batched first and parsed with one
``tf.io.parse_example`` per batch. Training batches are shuffled deterministically per epoch, all seeded
by ``(seed, epoch)``: file order, chunks of 128 records over a buffer of ``shuffle_buffer`` rows, and rows
within windows of 8 batches. They repeat forever, drop the
remainder of an epoch, and can start at any batch index ``k`` without parsing the ``k`` batches before
it (``epoch = k // batches_per_epoch``; within the epoch the serialized batches are skipped unparsed).

A batch is a dict of NumPy arrays, ``B`` = rows of this process, ``L`` = row length:

===================  ============  =============================================================
name                 dtype/shape   meaning
===================  ============  =============================================================
item_ids             int32 [B, L]  as in the row format
timestamps           int32 [B, L]  seconds since the row's earliest interaction (0 at PAD/SEP and in
                                   empty rows); relative so that int32 holds them, comparisons unchanged
student_index        int32 [B, L]  as in the row format (-1 at PAD/SEP)
positions            int32 [B, L]
history_len          int32 [B, L]
is_novel             int32 [B, L]
is_continuation      int32 [B, L]
grade, wealth        int32 [B]
row_valid            int32 [B]     1 for a real row, 0 for an evaluation padding row
student_hash         int64 [B, L]  host only (join key for the evaluator); training batches carry it
                                   only with ``host_features=True``
classroom            bytes [B]     host only (object array of ``bytes``), as ``student_hash``
===================  ============  =============================================================

:data:`HOST_ONLY_FEATURES` never go to the device; :func:`device_batch` drops them.

Multi-process sharding (``shard_by``):

* ``"file"``: process p reads files ``p, p + P, p + 2P, ...`` (falls back to ``"row"`` when there are
  fewer files than processes). Every process takes the same number of batches per epoch (the minimum
  over processes, computed from the record counts of all files, so no communication is needed).
* ``"row"``: every process reads all files in the same global order and parses only its slice
  ``[p * B, (p + 1) * B)`` of each global batch: the global batches are identical for any number of
  processes (runs are reproducible across topologies), at the cost of every host reading all bytes.
"""

import glob
import json
import os
from typing import Iterator, Sequence

import jax
import numpy as np
import tensorflow as tf

from study.data import reserved_ids, row_format

HOST_ONLY_FEATURES = ("student_hash", "classroom")
INT32_FEATURES = tuple(
    name for name in row_format.SEQUENCE_FEATURES if name not in ("timestamps", "student_hash")
) + ("grade", "wealth")
SHARD_MODES = ("file", "row")
_CHUNK_ROWS = 128  # serialized records per tf.data element when reading training files
_WINDOW_BATCHES = 8  # training rows are shuffled within windows of this many batches


def dataset_files(data_dir: str, dataset: str, split: str) -> list[str]:
    """Sorted TFRecord files of ``split`` under ``<data_dir>/<dataset>/`` (any sub-folder depth)."""
    root = os.path.join(data_dir, dataset)
    files = sorted(glob.glob(os.path.join(root, "**", f"*-{split}.tfrecord-*"), recursive=True))
    if not files:
        raise FileNotFoundError(
            f"no TFRecord files '*-{split}.tfrecord-*' under {root}; run the data pipeline first or fix "
            "config.data_dir / config.dataset"
        )
    return files


def _shard_lengths_from_metadata(files: Sequence[str]) -> dict[str, int]:
    """{file: number of records} from tfds ``dataset_info.json`` files beside ``files``, where present."""
    lengths = {}
    for folder in sorted({os.path.dirname(f) for f in files}):
        info_path = os.path.join(folder, "dataset_info.json")
        if not os.path.exists(info_path):
            continue
        with open(info_path) as f:
            info = json.load(f)
        for split in info.get("splits", []):
            shard_lengths = split.get("shardLengths") or []
            shard_files = sorted(glob.glob(os.path.join(folder, f"*-{split.get('name')}.tfrecord-*")))
            if len(shard_files) == len(shard_lengths):
                lengths.update({path: int(n) for path, n in zip(shard_files, shard_lengths)})
    return lengths


def count_records(files: Sequence[str]) -> list[int]:
    """Number of records of each file (from tfds metadata when present, else by reading the file)."""
    known = _shard_lengths_from_metadata(files)
    counts = []
    for path in files:
        if path not in known:
            known[path] = int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
        counts.append(known[path])
    return counts


def _parse_fn(row_length: int, host_features: bool = True):
    """serialized ``[b] string`` -> dict of tensors in the batch format above (vectorized).

    ``host_features=False`` skips ``HOST_ONLY_FEATURES`` (training never needs them; the 63-bit student
    hashes are the costliest field to decode).
    """
    spec = row_format.parse_spec(row_length)
    if not host_features:
        spec = {name: value for name, value in spec.items() if name not in HOST_ONLY_FEATURES}

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, spec)
        batch = {name: tf.cast(parsed[name], tf.int32) for name in INT32_FEATURES}
        is_item = tf.logical_and(
            parsed["item_ids"] != reserved_ids.PAD, parsed["item_ids"] != reserved_ids.SEP
        )
        timestamps = parsed["timestamps"]
        earliest = tf.reduce_min(tf.where(is_item, timestamps, timestamps.dtype.max), axis=1, keepdims=True)
        relative = tf.where(is_item, timestamps - earliest, 0)
        batch["timestamps"] = tf.cast(tf.clip_by_value(relative, 0, np.iinfo(np.int32).max), tf.int32)
        if host_features:
            batch["student_hash"] = parsed["student_hash"]
            batch["classroom"] = parsed["classroom"]
        batch["row_valid"] = tf.ones_like(batch["grade"])
        return batch

    return parse


def _process_files(files: Sequence[str], process_index: int, process_count: int, shard_by: str):
    """(files this process reads, whether it must also take a row slice of each global batch)."""
    if shard_by not in SHARD_MODES:
        raise ValueError(f"unknown shard_by {shard_by!r}; choose one of {SHARD_MODES}")
    if shard_by == "file" and len(files) >= process_count:
        return list(files[process_index::process_count]), False
    return list(files), process_count > 1


def batches_per_epoch(counts: Sequence[int], local_batch_size: int, process_count: int, shard_by: str) -> int:
    """Training batches every process takes per epoch (same on all processes)."""
    if shard_by == "file" and len(counts) >= process_count:
        per_process = [sum(counts[p::process_count]) for p in range(process_count)]
        return min(rows // local_batch_size for rows in per_process)
    return sum(counts) // (local_batch_size * process_count)


def _check_batch_size(batch_size: int, process_count: int) -> int:
    if batch_size % process_count:
        raise ValueError(f"global batch size {batch_size} is not divisible by {process_count} processes")
    return batch_size // process_count


def train_batches(
    files: Sequence[str],
    batch_size: int,
    *,
    row_length: int = row_format.DEFAULT_ROW_LENGTH,
    seed: int = 0,
    start_batch: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    shard_by: str = "file",
    shuffle: bool = True,
    shuffle_buffer: int = 16_384,
    counts: Sequence[int] | None = None,
    host_features: bool = False,
) -> Iterator[dict]:
    """Endless training batches of this process, starting at global batch index ``start_batch``.

    Args:
      files: all TFRecord files of the split (every process passes the same list).
      batch_size: GLOBAL rows per batch; each process yields ``batch_size / process_count`` rows.
      seed: shuffle seed; epoch e uses ``(seed, e)``.
      start_batch: number of batches already consumed (resume point).
      process_index, process_count: default ``jax.process_index()`` / ``jax.process_count()``.
      shard_by: "file" or "row" (module docstring).
      shuffle: False reads rows in file order (for tests and debugging).
      counts: record counts of ``files`` (default :func:`count_records`).
      host_features: also decode ``HOST_ONLY_FEATURES`` (off: training does not use them).

    Yields:
      dicts of NumPy arrays in the module's batch format, ``[batch_size / process_count, ...]``.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    local_batch = _check_batch_size(batch_size, process_count)
    files = list(files)
    counts = list(count_records(files) if counts is None else counts)
    per_epoch = batches_per_epoch(counts, local_batch, process_count, shard_by)
    if per_epoch < 1:
        raise ValueError(
            f"{sum(counts)} rows in {len(files)} files give no full batch of {batch_size} rows "
            f"({process_count} processes, shard_by={shard_by!r}); lower config.batch_size"
        )
    my_files, slice_rows = _process_files(files, process_index, process_count, shard_by)
    read_batch = batch_size if slice_rows else local_batch
    parse = _parse_fn(row_length, host_features)

    def epoch_plan(epoch: int, skip: int):
        """Each epoch's ``(seed, file order, batches to skip)``, computed on the host with NumPy."""
        while True:
            epoch_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]) % (2**31)
            order = list(my_files)
            if shuffle:
                order = [order[i] for i in np.random.default_rng(epoch_seed).permutation(len(order))]
            yield np.int64(epoch_seed), np.asarray(order, dtype=object), np.int64(skip)
            epoch, skip = epoch + 1, 0

    def epoch_dataset(epoch_seed, order, skip) -> tf.data.Dataset:
        # Elements are chunks of serialized records (vectorized ops, no per-record tf.data overhead).
        ds = tf.data.Dataset.from_tensor_slices(order).interleave(
            lambda path: tf.data.TFRecordDataset(path).batch(_CHUNK_ROWS),
            cycle_length=min(len(my_files), 16) if shuffle else 1,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        if shuffle:
            # Chunks shuffled over a buffer of ~shuffle_buffer rows, then rows shuffled within windows of
            # _WINDOW_BATCHES batches: a record-level shuffle at the cost of a few gathers per batch.
            ds = ds.shuffle(max(shuffle_buffer // _CHUNK_ROWS, 1), seed=epoch_seed, reshuffle_each_iteration=False)
            ds = ds.rebatch(read_batch * _WINDOW_BATCHES).enumerate().map(
                lambda index, window: tf.gather(window, tf.argsort(tf.random.stateless_uniform(
                    tf.shape(window)[:1], seed=tf.stack([epoch_seed, index])))),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True,
            )
        return ds.rebatch(read_batch, drop_remainder=True).take(per_epoch).skip(skip)

    # One pipeline over all epochs (built once; prefetching runs across epoch boundaries).
    plan = tf.data.Dataset.from_generator(
        lambda: epoch_plan(*divmod(start_batch, per_epoch)),
        output_signature=(tf.TensorSpec((), tf.int64), tf.TensorSpec((None,), tf.string),
                          tf.TensorSpec((), tf.int64)))
    ds = plan.flat_map(epoch_dataset)
    if slice_rows:
        ds = ds.map(lambda s: s[process_index * local_batch:(process_index + 1) * local_batch])
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    yield from ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def pad_batch(batch: dict, batch_size: int, row_length: int) -> dict:
    """``batch`` with rows appended up to ``batch_size``: empty rows (``row_format.empty_row``,
    relative timestamps 0) with ``row_valid = 0``."""
    missing = batch_size - len(batch["row_valid"])
    if missing <= 0:
        return batch
    empty = row_format.empty_row(row_length)
    padded = {}
    for name, values in batch.items():
        if name == "row_valid":
            fill = np.zeros((missing,), values.dtype)
        elif name == "timestamps":
            fill = np.zeros((missing,) + values.shape[1:], values.dtype)
        else:
            fill = np.repeat(np.asarray(empty[name], dtype=values.dtype)[None], missing, axis=0)
        padded[name] = np.concatenate([values, fill], axis=0)
    return padded


def empty_batch(batch_size: int, row_length: int) -> dict:
    template = {
        name: np.zeros((0, row_length) if name in row_format.SEQUENCE_FEATURES else (0,), dtype)
        for name, dtype in list(row_format.SEQUENCE_FEATURES.items())
        + [("grade", np.int32), ("wealth", np.int32), ("row_valid", np.int32)]
    }
    for name in INT32_FEATURES + ("timestamps",):
        template[name] = template[name].astype(np.int32)
    template["classroom"] = np.zeros((0,), object)
    return pad_batch(template, batch_size, row_length)


def eval_batches(
    files: Sequence[str],
    batch_size: int,
    *,
    row_length: int = row_format.DEFAULT_ROW_LENGTH,
    max_batches: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    shard_by: str = "file",
    counts: Sequence[int] | None = None,
) -> Iterator[dict]:
    """Every row of ``files`` exactly once, in file order, in batches of ``batch_size / process_count``.

    The last batch is padded with empty rows (``row_valid == 0``); processes with fewer rows yield
    all-padding batches so that every process yields the same number of batches (needed by the
    collective device computations). ``max_batches`` bounds the number of batches (e.g. periodic
    validation); then not every row is seen.
    """
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    local_batch = _check_batch_size(batch_size, process_count)
    files = list(files)
    my_files, slice_rows = _process_files(files, process_index, process_count, shard_by)
    if slice_rows or process_count == 1:
        num_batches = -(-sum(counts if counts is not None else count_records(files)) // batch_size)
    else:
        counts = list(count_records(files) if counts is None else counts)
        num_batches = max(-(-sum(counts[p::process_count]) // local_batch) for p in range(process_count))
    if max_batches is not None:
        num_batches = min(num_batches, max_batches)
    parse = _parse_fn(row_length)
    ds = tf.data.TFRecordDataset(my_files)
    if slice_rows:
        ds = ds.batch(batch_size).map(lambda s: s[process_index * local_batch:(process_index + 1) * local_batch])
    else:
        ds = ds.batch(local_batch)
    ds = ds.take(num_batches).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    produced = 0
    for batch in ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        yield pad_batch(batch, local_batch, row_length)
        produced += 1
    for _ in range(num_batches - produced):
        yield empty_batch(local_batch, row_length)


def device_batch(batch: dict) -> dict:
    """The numeric features that go to the devices (drops :data:`HOST_ONLY_FEATURES`)."""
    return {name: value for name, value in batch.items() if name not in HOST_ONLY_FEATURES}
