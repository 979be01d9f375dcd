"""Reading and validating the raw input files: interactions, roster and schools (CSV or Parquet).

Every file is cut into ranges (``file_ranges``: byte ranges of a CSV file, runs of row groups of a
Parquet file) that workers read in parallel, each in large chunks (``csv_lines``) validated with
vectorized NumPy/pandas operations. Good interactions and roster records leave per chunk and student
bucket (``student_buckets``: many students per element, so that later stages work on large
batches); bad ones leave as dead letters ``{"source", "line", "reason", "record"}``; per-chunk
counters leave on a ``stats`` output.

``line`` is the physical line of a CSV file (1-based, the header is line 1; blank lines are counted
there and skipped), whichever range it was read in, or the 1-based row index of a Parquet file. A
CSV line that is not UTF-8 is a dead letter (``invalid_utf8``), not a failed job. The files and
their columns: ``input_files``.
"""

import abc
import json
import zlib
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_pipeline import csv_lines
from data_pipeline import file_ranges
from data_pipeline import statistics
from data_pipeline.input_files import INTERACTIONS
from data_pipeline.input_files import ROSTER
from data_pipeline.input_files import SCHOOLS
from data_pipeline.input_files import FileKind
from data_pipeline.input_files import InputError
from data_pipeline.input_files import InputFile
from data_pipeline.input_files import file_paths
from data_pipeline.input_files import input_order
from data_pipeline.input_files import inspect_inputs
from data_pipeline.input_files import order_to_file_line

DEAD_LETTER = "dead_letter"
STATS = "stats"


class InteractionBatch(NamedTuple):
    """Some interactions of one student, in input order. Arrays are ``[n]``.

    items: ``<U`` array of raw item ids; timestamps: int64 seconds since the epoch;
    orders: int64 global input order (``file_index << 40 | line``).
    """

    items: np.ndarray
    timestamps: np.ndarray
    orders: np.ndarray


class StudentInteractions(NamedTuple):
    """Interactions of several students, in input order. Arrays are ``[n]``.

    students, items: ``<U`` arrays of raw ids; timestamps, orders: int64 (see InteractionBatch).
    """

    students: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    orders: np.ndarray


# Students travel between stages in buckets (many students per element) rather than one by one;
# the number of buckets comes from the data (``file_ranges.BucketCount``) or is given.
DEFAULT_INTERACTIONS_PER_BUCKET = 50_000


def student_buckets(student_ids: np.ndarray, num_buckets: int) -> np.ndarray:
    """``[n]`` student ids -> ``[n] int64`` bucket in ``[0, num_buckets)``, the same on every runner."""
    encoded = pc.dictionary_encode(pa.array(np.asarray(student_ids, dtype=object), pa.string()))
    names = encoded.dictionary.to_pylist()
    per_name = np.array(
        [zlib.crc32(name.encode("utf-8")) % num_buckets for name in names], dtype=np.int64
    )
    return per_name[encoded.indices.to_numpy(zero_copy_only=False)]


def _string_column(array: pa.Array) -> np.ndarray:
    """Any arrow column -> object array of stripped str, nulls as ""."""
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        if pa.types.is_floating(array.type):
            # Float ids (a CSV column read by another tool) print without a trailing ".0".
            as_int = pc.cast(array, pa.int64(), safe=False)
            exact = pc.equal(pc.cast(as_int, array.type), array)
            array = pc.if_else(exact, pc.cast(as_int, pa.string()), pc.cast(array, pa.string()))
        else:
            array = pc.cast(array, pa.string())
    array = pc.utf8_trim_whitespace(pc.fill_null(array, ""))
    return array.to_numpy(zero_copy_only=False)


def parse_timestamps(values) -> tuple:
    """Raw timestamps -> (``[n] int64`` seconds since the epoch, ``[n] bool`` parsed).

    Accepts ISO dates, ISO datetimes (with or without zone; naive is UTC), epoch seconds (digits,
    optionally with a fraction, floored), and arrow timestamp / date / integer columns.
    """
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        kind = values.type
        if pa.types.is_timestamp(kind):
            if kind.tz is None:
                values = pc.assume_timezone(values, "UTC")
            seconds = pc.cast(pc.cast(values, pa.timestamp("s", tz="UTC"), safe=False), pa.int64())
            parsed = pc.is_valid(seconds).to_numpy(zero_copy_only=False)
            return np.asarray(pc.fill_null(seconds, 0), dtype=np.int64), parsed
        if pa.types.is_date(kind):
            days = pc.cast(pc.cast(values, pa.date32()), pa.int32())
            parsed = pc.is_valid(days).to_numpy(zero_copy_only=False)
            return np.asarray(pc.fill_null(days, 0), dtype=np.int64) * 86400, parsed
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
            numbers = np.asarray(pc.fill_null(pc.cast(values, pa.float64()), 0.0))
            finite = valid & np.isfinite(numbers)
            return np.floor(np.where(finite, numbers, 0)).astype(np.int64), finite
        try:  # fast path: a column of whole epoch seconds
            seconds = pc.cast(pc.utf8_trim_whitespace(values), pa.int64())
            if seconds.null_count == 0:
                return np.asarray(seconds, dtype=np.int64), np.ones(len(seconds), dtype=bool)
        except pa.ArrowInvalid:
            pass
        values = _string_column(values)
    texts = pd.Series(np.asarray(values, dtype=object), dtype="string").str.strip()
    seconds = np.zeros(len(texts), dtype=np.int64)
    parsed = np.zeros(len(texts), dtype=bool)
    numeric = texts.str.fullmatch(r"[+-]?\d+(\.\d*)?").fillna(False).to_numpy(dtype=bool)
    if numeric.any():
        numbers = pd.to_numeric(texts[numeric], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(numbers)
        seconds[np.flatnonzero(numeric)[ok]] = np.floor(numbers[ok]).astype(np.int64)
        parsed[np.flatnonzero(numeric)[ok]] = True
    others = ~numeric & (texts != "").fillna(False).to_numpy(dtype=bool)
    if others.any():
        dates = pd.to_datetime(texts[others], format="ISO8601", utc=True, errors="coerce")
        ok = dates.notna().to_numpy()
        values_s = dates[ok].dt.as_unit("s").astype("int64").to_numpy()
        seconds[np.flatnonzero(others)[ok]] = values_s
        parsed[np.flatnonzero(others)[ok]] = True
    return seconds, parsed


def _dead_letter(source: str, line: int, reason: str, record: dict) -> dict:
    return {"source": source, "line": int(line), "reason": reason, "record": record}


class _ReadFileDoFn(beam.DoFn, abc.ABC):
    """Reads one ``file_ranges.FileRange`` in chunks; subclasses validate a chunk.

    ``num_buckets``: the student buckets, fixed here or given per element as a side input."""

    kind: FileKind

    def __init__(self, chunk_bytes: int, num_buckets: int | None = 1):
        self._chunk_bytes = chunk_bytes
        self._num_buckets = num_buckets

    def process(self, file_range, num_buckets=None):
        self._buckets = num_buckets if num_buckets is not None else self._num_buckets
        input_file = file_range.file
        for chunk in csv_lines.read_chunks(input_file, self._chunk_bytes, file_range):
            stats = {f"{self.kind.name}/rows_in": len(chunk.lines) + len(chunk.rejected)}
            if chunk.blank_lines:
                stats[f"{self.kind.name}/blank_lines"] = chunk.blank_lines
            for line, reason, record in chunk.rejected:
                key = f"{self.kind.name}/dead/{reason}"
                stats[key] = stats.get(key, 0) + 1
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER, _dead_letter(input_file.path, line, reason, record)
                )
            if len(chunk.lines):
                yield from self.validate(input_file, chunk.columns, chunk.lines, stats)
            yield beam.pvalue.TaggedOutput(STATS, stats)

    @abc.abstractmethod
    def validate(self, input_file, columns, lines, stats):
        """Yields the good records of one chunk (main output) and dead letters (``DEAD_LETTER``) for the
        rest, adding the counts to ``stats``; ``columns`` are the chunk's raw columns, ``lines`` their
        line numbers."""

    def _reject(self, input_file, texts, lines, bad_mask, reason, stats):
        """Dead letters for ``bad_mask`` rows; returns the rows left."""
        for i in np.flatnonzero(bad_mask):
            record = {name: str(values[i]) for name, values in texts.items()}
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER, _dead_letter(input_file.path, lines[i], reason, record)
            )
        count = int(bad_mask.sum())
        if count:
            key = f"{self.kind.name}/dead/{reason}"
            stats[key] = stats.get(key, 0) + count


class ReadInteractionFileDoFn(_ReadFileDoFn):
    """InputFile -> ``(bucket, StudentInteractions)`` per student bucket and chunk; dead letters;
    stats."""

    kind = INTERACTIONS

    def validate(self, input_file, columns, lines, stats):
        students = _string_column(columns["student_id"])
        items = _string_column(columns["item_id"])
        timestamps, parsed = parse_timestamps(columns["timestamp"])
        texts = {
            "student_id": students,
            "item_id": items,
            "timestamp": _string_column(columns["timestamp"]),
        }
        missing_student = students == ""
        missing_item = ~missing_student & (items == "")
        bad_time = ~missing_student & ~missing_item & ~parsed
        yield from self._reject(input_file, texts, lines, missing_student, "missing_student_id", stats)
        yield from self._reject(input_file, texts, lines, missing_item, "missing_item_id", stats)
        yield from self._reject(input_file, texts, lines, bad_time, "unparseable_timestamp", stats)
        good = np.flatnonzero(~(missing_student | missing_item | bad_time))
        if not len(good):
            return
        # Fixed-width unicode pickles as one buffer, much faster than an object array of str.
        students, items = students[good].astype(str), items[good].astype(str)
        timestamps, orders = timestamps[good], input_order(input_file.index, lines[good])
        buckets = student_buckets(students, self._buckets)
        for bucket in np.unique(buckets):
            rows = np.flatnonzero(buckets == bucket)
            yield int(bucket), StudentInteractions(
                students[rows], items[rows], timestamps[rows], orders[rows]
            )


class ReadRosterFileDoFn(_ReadFileDoFn):
    """InputFile -> ``(bucket, [roster record dicts])`` per student bucket and chunk; dead letters;
    stats."""

    kind = ROSTER

    def validate(self, input_file, columns, lines, stats):
        texts = {name: _string_column(values) for name, values in columns.items()}
        missing_student = texts["student_id"] == ""
        missing_school = ~missing_student & (texts["school_id"] == "")
        yield from self._reject(input_file, texts, lines, missing_student, "missing_student_id", stats)
        yield from self._reject(input_file, texts, lines, missing_school, "missing_school_id", stats)
        rejected = missing_student | missing_school
        for column, replacement in self.kind.required_unless.items():
            if column not in texts:  # the file has ``replacement`` instead: every row needs it
                missing = ~rejected & (texts[replacement] == "")
                yield from self._reject(
                    input_file, texts, lines, missing, f"missing_{replacement}", stats
                )
                rejected |= missing
        orders = input_order(input_file.index, lines)
        names = list(texts)
        kept = np.flatnonzero(~rejected)
        buckets = student_buckets(texts["student_id"][kept], self._buckets)
        by_bucket = {}
        for i, bucket in zip(kept.tolist(), buckets.tolist()):
            record = {name: texts[name][i] for name in names}
            record["order"] = int(orders[i])
            by_bucket.setdefault(bucket, []).append(record)
        yield from by_bucket.items()


class ReadSchoolFileDoFn(_ReadFileDoFn):
    """InputFile -> ``(school_id, school record dict)``; dead letters; stats."""

    kind = SCHOOLS

    def validate(self, input_file, columns, lines, stats):
        texts = {name: _string_column(values) for name, values in columns.items()}
        missing_school = texts["school_id"] == ""
        yield from self._reject(input_file, texts, lines, missing_school, "missing_school_id", stats)
        orders = input_order(input_file.index, lines)
        for i in np.flatnonzero(~missing_school):
            record = {name: texts[name][i] for name in texts}
            record["order"] = int(orders[i])
            yield record["school_id"], record


class ReadRanges(beam.PTransform):
    """Counted FileRanges of one kind -> tagged outputs ``good``, ``dead_letter``, ``stats``.

    ``good``: interactions as ``(bucket, StudentInteractions)``, roster records as ``(bucket,
    [records])`` (``student_buckets``: many students per element), schools as ``(school_id,
    record)``. ``num_buckets``: an int, or a singleton PCollection of it (``file_ranges.BucketCount``).
    """

    _DO_FNS = {
        "interactions": ReadInteractionFileDoFn,
        "roster": ReadRosterFileDoFn,
        "schools": ReadSchoolFileDoFn,
    }

    def __init__(self, kind: FileKind, chunk_bytes: int = 64 << 20, num_buckets=1):
        super().__init__()
        self._kind = kind
        self._chunk_bytes = chunk_bytes
        self._num_buckets = num_buckets

    def expand(self, ranges):
        do_fn = self._DO_FNS[self._kind.name]
        if isinstance(self._num_buckets, int):
            read = beam.ParDo(do_fn(self._chunk_bytes, self._num_buckets))
        else:
            read = beam.ParDo(
                do_fn(self._chunk_bytes, None), num_buckets=beam.pvalue.AsSingleton(self._num_buckets)
            )
        return (
            ranges
            # Ranges spread over workers, one reader each.
            | "SpreadRanges" >> beam.Reshuffle()
            | "ReadChunks" >> read.with_outputs(DEAD_LETTER, STATS, main="good")
        )


class ReadRawFiles(beam.PTransform):
    """Input files -> tagged outputs ``good``, ``dead_letter``, ``stats`` (see ``ReadRanges``).

    ``files``: inspected InputFiles, or comma-separated paths / globs listed when the pipeline runs;
    ``split_bytes``: the size of the byte ranges that a CSV file is cut into; ``num_buckets``: the
    student buckets, by default one per ``DEFAULT_INTERACTIONS_PER_BUCKET`` lines of the files.
    """

    def __init__(
        self,
        files,
        kind: FileKind,
        chunk_bytes: int = 64 << 20,
        num_buckets: int | None = None,
        split_bytes: int = 64 << 20,
    ):
        super().__init__()
        self._files = files
        self._kind = kind
        self._chunk_bytes = chunk_bytes
        self._num_buckets = num_buckets
        self._split_bytes = split_bytes

    def expand(self, pbegin):
        ranges = (
            pbegin
            | "ListFiles" >> file_ranges.ListInputFiles(self._files, self._kind)
            | "IndexRanges" >> file_ranges.IndexRanges(self._split_bytes)
        )
        buckets = self._num_buckets
        if buckets is None:
            buckets = ranges | "Buckets" >> file_ranges.BucketCount(DEFAULT_INTERACTIONS_PER_BUCKET)
        return ranges | "Read" >> ReadRanges(self._kind, self._chunk_bytes, buckets)


class SchoolTable(beam.PTransform):
    """``(school_id, record)`` -> one ``(school_id, record)`` per school (first in input order);
    duplicates leave on the ``dead_letter`` output and are counted on ``stats``.

    ``files``: the schools' InputFiles, a list or a PCollection (for the dead letters' paths)."""

    def __init__(self, files):
        super().__init__()
        self._files = files

    def expand(self, schools):
        files = self._files
        if not isinstance(files, list):
            files = beam.pvalue.AsList(files)
        return (
            schools
            | "GroupBySchool" >> beam.GroupByKey()
            | "KeepFirst"
            >> beam.FlatMap(_first_school, files).with_outputs(DEAD_LETTER, STATS, main="good")
        )


def _first_school(keyed, files):
    school_id, records = keyed
    paths = file_paths(files)
    records = sorted(records, key=lambda r: r["order"])
    yield school_id, records[0]
    for extra in records[1:]:
        file_index, line = order_to_file_line(extra["order"])
        record = {k: v for k, v in extra.items() if k != "order"}
        yield beam.pvalue.TaggedOutput(
            DEAD_LETTER,
            _dead_letter(paths[file_index], line, "duplicate_school_entry", record),
        )
    stats = {"schools/rows_kept": 1}
    if len(records) > 1:
        stats["schools/dead/duplicate_school_entry"] = len(records) - 1
    yield beam.pvalue.TaggedOutput(STATS, stats)


class BundleCounters:
    """Mixin for DoFns that add to flat counters per element and emit them once per bundle.

    One dict per bundle instead of one per element keeps the stats stream small.
    """

    def start_bundle(self):
        self._counters = {}

    def count(self, counters: dict) -> None:
        statistics.merge_counters(self._counters, counters)

    def finish_bundle(self):
        if self._counters:
            from apache_beam.transforms import window

            yield beam.pvalue.TaggedOutput(
                STATS, window.GlobalWindows.windowed_value(self._counters)
            )
        self._counters = {}


def dead_letter_json(letter: dict) -> str:
    """One dead letter as a JSON line."""
    return json.dumps(letter, sort_keys=True, default=str)


__all__ = [
    "FileKind",
    "InputError",
    "InputFile",
    "InteractionBatch",
    "StudentInteractions",
    "INTERACTIONS",
    "ROSTER",
    "SCHOOLS",
    "ReadRanges",
    "ReadRawFiles",
    "SchoolTable",
    "file_paths",
    "input_order",
    "inspect_inputs",
    "order_to_file_line",
    "parse_timestamps",
]
