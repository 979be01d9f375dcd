"""Writing model rows as ``tf.train.Example`` TFRecord shards with tfds metadata.

Files: ``<dataset_dir>/{name}-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}``, then
``tfds.folder_dataset.write_metadata`` so that ``tfds.builder_from_directory(dataset_dir)`` loads
them. Each split gets ``ceil(rows / rows_per_shard)`` shards; rows are spread over shards and
ordered within a shard by ``sha256(seed, serialized row)``, a deterministic shuffle that is the
same on every runner. Rows are serialized deterministically (map entries sorted by feature name,
``serialize_rows``), so the same rows always give the same files. Serialization of the
fixed ``tf.train.Example`` schema is vectorized NumPy over batches of rows and TFRecord framing
(``tfrecord_frames``, CRC-32C by ``google_crc32c``) is byte-identical to TensorFlow's, so the job never
imports TensorFlow (tests check both against TensorFlow).
"""

import functools
import hashlib
import math

import apache_beam as beam
import google_crc32c
import numpy as np
from apache_beam.io.filesystems import FileSystems

from study.data import row_format

_FRAME_BATCH = 4096  # records framed and written at once


# Feature names in the order deterministic protobuf serialization writes map entries (sorted).
_INT_FEATURES = tuple(row_format.SEQUENCE_FEATURES) + ("grade", "wealth")
_FEATURE_ORDER = tuple(sorted(_INT_FEATURES + ("classroom",)))
_VARINT_BYTES = 10  # an int64 takes at most 10 bytes as a varint


def _varint(value: int) -> bytes:
    """Protobuf varint of a non-negative int."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint_payloads(values: np.ndarray) -> tuple:
    """``[n, k]`` ints -> (concatenated varints of all rows, ``[n + 1]`` int64 row offsets).

    Ints are encoded as protobuf int64 (negative values take 10 bytes, as two's complement).
    """
    unsigned = np.ascontiguousarray(values, dtype=np.int64).view(np.uint64)
    needed = np.ones(unsigned.shape, dtype=np.int64)  # bytes of each varint
    for group in range(1, _VARINT_BYTES):
        above = unsigned >= np.uint64(1 << (7 * group))
        if not above.any():
            break
        needed += above
    width = int(needed.max(initial=1))
    encoded = np.empty(unsigned.shape + (width,), dtype=np.uint8)
    for group in range(width):
        low_bits = (unsigned >> np.uint64(7 * group)) & np.uint64(0x7F)
        encoded[..., group] = low_bits | ((needed > group + 1).astype(np.uint64) << np.uint64(7))
    if width > 1:
        encoded = encoded[np.arange(width) < needed[..., None]]
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(needed.sum(axis=1), out=offsets[1:])
    return encoded.tobytes(), offsets


@functools.lru_cache(maxsize=4096)
def _entry_header(name: bytes, payload_length: int, list_field: int) -> bytes:
    """Bytes before the payload of one ``features`` map entry holding a one-field list message.

    Entry: key (field 1) = name, value (field 2) = Feature{list_field: List{value (field 1)}}.
    """
    inner = b"\x0a" + _varint(payload_length)  # List.value, packed (ints) or one bytes value
    list_length = len(inner) + payload_length
    feature = bytes([list_field << 3 | 2]) + _varint(list_length)
    feature_length = len(feature) + list_length
    value = b"\x12" + _varint(feature_length)
    key = b"\x0a" + _varint(len(name)) + name
    entry_length = len(key) + len(value) + feature_length
    return b"\x0a" + _varint(entry_length) + key + value + feature + inner


def serialize_rows(rows: dict) -> list:
    """A batch of rows -> serialized ``tf.train.Example`` per row (ints as int64 lists).

    Args:
      rows: ``row_format.SEQUENCE_FEATURES`` as ``[n, c]`` int arrays, ``grade`` and ``wealth`` as
        ``[n]`` ints and ``classroom`` as a length-n sequence of bytes or str.

    Returns:
      n ``bytes``, each equal to ``Example.SerializeToString(deterministic=True)`` of the row
      (map entries sorted by feature name), so the same row always gives the same bytes.
    """
    count = len(rows["grade"])
    columns = []  # (name, concatenated payloads, row offsets, protobuf list field) per feature
    for name in _FEATURE_ORDER:
        if name == "classroom":
            payloads = [c.encode("utf-8") if isinstance(c, str) else bytes(c) for c in rows[name]]
            offsets = np.cumsum([0] + [len(p) for p in payloads]).tolist()
            columns.append((b"classroom", b"".join(payloads), offsets, 1))
        else:
            buffer, offsets = _varint_payloads(np.asarray(rows[name]).reshape(count, -1))
            columns.append((name.encode("utf-8"), buffer, offsets.tolist(), 3))
    serialized = []
    for i in range(count):
        parts = []
        for name, buffer, offsets, list_field in columns:
            start, end = offsets[i], offsets[i + 1]
            parts.append(_entry_header(name, end - start, list_field))
            parts.append(buffer[start:end])
        features = b"".join(parts)
        serialized.append(b"\x0a" + _varint(len(features)) + features)
    return serialized


def row_to_example(row: dict) -> bytes:
    """Row dict (``row_format``) -> serialized ``tf.train.Example`` (see ``serialize_rows``)."""
    batch = {name: np.asarray(row[name])[None] for name in _INT_FEATURES}
    batch["classroom"] = [row["classroom"]]
    return serialize_rows(batch)[0]


def crc32c(records: list) -> np.ndarray:
    """CRC-32C (Castagnoli) of each bytes object, ``[n] uint32`` (``google_crc32c``, C-accelerated)."""
    return np.fromiter((google_crc32c.value(record) for record in records), dtype=np.uint32, count=len(records))


def _masked(crcs: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC: rotate right by 15 bits, add 0xa282ead8 (mod 2**32)."""
    crcs = crcs.astype(np.uint64)
    rotated = ((crcs >> np.uint64(15)) | (crcs << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return ((rotated + np.uint64(0xA282EAD8)) & np.uint64(0xFFFFFFFF)).astype("<u4")


def tfrecord_frames(records: list) -> bytes:
    """Records -> their TFRecord file bytes: per record ``uint64 length, uint32 masked CRC-32C of
    the length, data, uint32 masked CRC-32C of the data`` (little-endian), as TensorFlow writes."""
    lengths = [len(r).to_bytes(8, "little") for r in records]
    length_crcs = _masked(crc32c(lengths))
    data_crcs = _masked(crc32c(records))
    parts = []
    for i, record in enumerate(records):
        parts += (lengths[i], length_crcs[i].tobytes(), record, data_crcs[i].tobytes())
    return b"".join(parts)


def shard_file_name(name: str, split: str, shard: int, num_shards: int) -> str:
    return f"{name}-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"


def num_shards_for(num_rows: int, rows_per_shard: int) -> int:
    return max(1, math.ceil(num_rows / rows_per_shard))


def _shuffle_key(seed: int, serialized: bytes) -> bytes:
    """8 bytes of ``sha256(seed, row)``; read big-endian it picks the shard, and it orders the rows
    of a shard (as bytes, which sort like the big-endian number; bytes travel between stages
    without pickling, unlike ints of 64 bits)."""
    return hashlib.sha256(seed.to_bytes(8, "big") + serialized).digest()[:8]


def _write_shard(keyed, dataset_dir: str, name: str, num_shards_by_split: dict):
    """``((split, shard), [[(key, bytes)], ...])`` -> writes the file.

    Yields ``(split, shard, rows, bytes)``.
    """
    (split, shard), batches = keyed
    records = [record for _, record in sorted(r for batch in batches for r in batch)]
    num_shards = num_shards_by_split[split]
    path = FileSystems.join(dataset_dir, shard_file_name(name, split, shard, num_shards))
    with FileSystems.create(path) as handle:
        for start in range(0, len(records), _FRAME_BATCH):
            handle.write(tfrecord_frames(records[start : start + _FRAME_BATCH]))
    yield split, shard, len(records), sum(len(s) for s in records)


def _finish_dataset(shard_infos: list, dataset_dir: str, name: str, row_length: int,
                    num_shards_by_split: dict) -> dict:
    """Writes empty files for shards that got no row and the tfds metadata; returns row counts."""
    import tensorflow_datasets as tfds

    by_split = {}
    for split, shard, count, num_bytes in shard_infos:
        by_split.setdefault(split, {})[shard] = (count, num_bytes)
    split_infos = []
    for split in row_format.SPLITS:
        if split not in by_split:
            continue
        num_shards = num_shards_by_split[split]
        for shard in range(num_shards):
            if shard not in by_split[split]:
                path = FileSystems.join(dataset_dir, shard_file_name(name, split, shard, num_shards))
                FileSystems.create(path).close()
        lengths = [by_split[split].get(s, (0, 0))[0] for s in range(num_shards)]
        split_infos.append(
            tfds.core.SplitInfo(
                name=split,
                shard_lengths=lengths,
                num_bytes=sum(b for _, b in by_split[split].values()),
            )
        )
    if split_infos:
        tfds.folder_dataset.write_metadata(
            data_dir=dataset_dir,
            features=row_format.tfds_features(row_length),
            split_infos=split_infos,
            check_data=False,
            description=f"{name} rows of the study data pipeline (see study/data/row_format.py).",
        )
    return {f"rows/{name}/{info.name}": sum(info.shard_lengths) for info in split_infos}


def _serialize_batch(split: str, batch: dict) -> tuple:
    """``(split, row batch)`` -> ``(split, [serialized rows])``."""
    return split, serialize_rows(batch)


def _assign_shards(keyed, seed: int, num_shards_by_split: dict):
    """``(split, [bytes])`` -> ``((split, shard), [(shuffle key, bytes)])`` per shard met."""
    split, records = keyed
    num_shards = num_shards_by_split[split]
    by_shard = {}
    for record in records:
        key = _shuffle_key(seed, record)
        shard = int.from_bytes(key, "big") % num_shards
        by_shard.setdefault(shard, []).append((key, record))
    for shard, keyed_records in by_shard.items():
        yield (split, shard), keyed_records


class WriteRows(beam.PTransform):
    """``(split name, row batch)`` -> TFRecord shards + tfds metadata; outputs a stats dict (row counts).

    A row batch is a dict of ``[rows, c]`` sequence arrays plus per-row ``classroom``, ``grade``
    and ``wealth`` (``serialize_rows``).
    """

    def __init__(self, dataset_dir: str, name: str, row_length: int, rows_per_shard: int, seed: int):
        super().__init__()
        self._dataset_dir = dataset_dir
        self._name = name
        self._row_length = row_length
        self._rows_per_shard = rows_per_shard
        self._seed = seed

    def expand(self, rows):
        rows_per_shard = self._rows_per_shard
        serialized = rows | "Serialize" >> beam.MapTuple(_serialize_batch)
        num_shards = (
            serialized
            | "BatchSizes" >> beam.MapTuple(lambda split, batch: (split, len(batch)))
            | "CountPerSplit" >> beam.CombinePerKey(sum)
            | "NumShards" >> beam.MapTuple(lambda split, n: (split, num_shards_for(n, rows_per_shard)))
        )
        num_shards_dict = beam.pvalue.AsDict(num_shards)
        shard_infos = (
            serialized
            | "AssignShards" >> beam.FlatMap(_assign_shards, self._seed, num_shards_dict)
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard"
            >> beam.FlatMap(_write_shard, self._dataset_dir, self._name, num_shards_dict)
        )
        return (
            shard_infos
            | "AllShards" >> beam.combiners.ToList()
            | "WriteMetadata"
            >> beam.Map(
                _finish_dataset,
                self._dataset_dir,
                self._name,
                self._row_length,
                num_shards_dict,
            )
        )
