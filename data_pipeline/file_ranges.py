"""Splittable reading: input files cut into ranges that workers read in parallel.

``ListInputFiles`` lists and inspects the files of one input when the pipeline runs (so that a
graph can be built, e.g. for a Dataflow dry run, without reaching the storage). ``IndexRanges``
cuts every file into ``FileRange``s and numbers their lines:

* an uncompressed CSV file into byte ranges of about ``split_bytes``; a range holds the lines that
  start in it. A first pass counts the line breaks of every range (in parallel; it reads bytes,
  it does not parse), then the ranges of a file are numbered by a running sum, so that every range
  knows the physical number of its first line and dead letters keep the line numbers of the whole
  file;
* a compressed CSV file (not seekable) into one range, its line breaks counted the same way;
* a Parquet file into runs of row groups, numbered from the file's metadata.

The line counts also size the student buckets (``bucket_count``).
"""

import dataclasses
import math

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from data_pipeline import csv_lines
from data_pipeline import input_files

_COMPRESSED = (".gz", ".bz2", ".zst", ".deflate")
_COUNT_READ_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class FileRange:
    """Part of one input file read by one worker.

    CSV: bytes ``[start, end)`` (``end=None``: to the end of the file), ``first_line`` = 1 + line
    breaks before ``start``; Parquet: row groups ``[start, end)``, ``first_line`` = 1 + rows
    before them. ``lines``: line breaks (CSV) or rows (Parquet) in the range, once counted.
    """

    file: input_files.InputFile
    index: int  # position of the range in its file
    start: int
    end: int | None
    first_line: int = 1
    lines: int = 0


def list_files(patterns: str, kind: input_files.FileKind):
    """Comma-separated patterns -> ``(file index, path)`` in sorted path order."""
    yield from enumerate(input_files.expand_pattern(patterns, kind))


def inspect_listed(indexed_path: tuple, kind: input_files.FileKind) -> input_files.InputFile:
    """``(file index, path)`` -> the inspected InputFile."""
    index, path = indexed_path
    return input_files.inspect_file(index, path, kind)


class ListInputFiles(beam.PTransform):
    """PBegin -> PCollection of ``input_files.InputFile`` (listed and inspected at run time).

    ``source``: comma-separated paths / globs, or a list of already inspected InputFiles.
    """

    def __init__(self, source, kind: input_files.FileKind):
        super().__init__()
        self._source = source
        self._kind = kind

    def expand(self, pbegin):
        if not isinstance(self._source, str):
            return pbegin | "InspectedFiles" >> beam.Create(list(self._source))
        return (
            pbegin
            | "Patterns" >> beam.Create([self._source])
            | "MatchFiles" >> beam.FlatMap(list_files, self._kind)
            | "InspectFiles" >> beam.Map(inspect_listed, self._kind)
        )


def plan_ranges(input_file: input_files.InputFile, split_bytes: int) -> list:
    """InputFile -> its FileRanges, not yet counted (``first_line`` of Parquet ranges set)."""
    if input_file.file_format == "parquet":
        with csv_lines.open_file(input_file.path) as handle:
            metadata = pq.ParquetFile(handle).metadata
        ranges, group_start, size, rows, first_line = [], 0, 0, 0, 1
        for group in range(metadata.num_row_groups):
            size += metadata.row_group(group).total_byte_size
            rows += metadata.row_group(group).num_rows
            if size >= split_bytes or group == metadata.num_row_groups - 1:
                ranges.append(
                    FileRange(input_file, len(ranges), group_start, group + 1, first_line, rows)
                )
                group_start, first_line, size, rows = group + 1, first_line + rows, 0, 0
        return ranges
    if input_file.path.lower().endswith(_COMPRESSED):
        return [FileRange(input_file, 0, 0, None)]
    size = FileSystems.match([input_file.path])[0].metadata_list[0].size_in_bytes
    count = max(1, math.ceil(size / split_bytes))
    return [
        FileRange(input_file, i, i * split_bytes, min(size, (i + 1) * split_bytes))
        for i in range(count)
    ]


def count_lines(file_range: FileRange) -> FileRange:
    """A CSV range with ``lines`` (line breaks in its bytes) counted; Parquet ranges as they are."""
    if file_range.file.file_format == "parquet":
        return file_range
    lines = 0
    with csv_lines.open_file(file_range.file.path) as handle:
        left = None if file_range.end is None else file_range.end - file_range.start
        if file_range.start:
            handle.seek(file_range.start)
        while left is None or left > 0:
            data = handle.read(_COUNT_READ_BYTES if left is None else min(left, _COUNT_READ_BYTES))
            if not data:
                break
            lines += data.count(b"\n")
            if left is not None:
                left -= len(data)
    return dataclasses.replace(file_range, lines=lines)


def number_ranges(keyed) -> list:
    """``(file index, [counted FileRange])`` -> the ranges with ``first_line`` set, in file order."""
    _, ranges = keyed
    ranges = sorted(ranges, key=lambda r: r.index)
    if ranges and ranges[0].file.file_format == "parquet":
        return ranges
    numbered, first_line = [], 1
    for file_range in ranges:
        numbered.append(dataclasses.replace(file_range, first_line=first_line))
        first_line += file_range.lines
    return numbered


class IndexRanges(beam.PTransform):
    """PCollection of InputFile -> PCollection of numbered, counted FileRanges."""

    def __init__(self, split_bytes: int):
        super().__init__()
        if split_bytes < 1:
            raise ValueError(f"split_bytes={split_bytes} must be >= 1")
        self._split_bytes = split_bytes

    def expand(self, files):
        return (
            files
            | "PlanRanges" >> beam.FlatMap(plan_ranges, self._split_bytes)
            | "SpreadRanges" >> beam.Reshuffle()
            | "CountLines" >> beam.Map(count_lines)
            | "ByFile" >> beam.Map(lambda r: (r.file.index, r))
            | "GroupByFile" >> beam.GroupByKey()
            | "NumberRanges" >> beam.FlatMap(number_ranges)
        )


def bucket_count(total_lines: int, per_bucket: int) -> int:
    """Buckets for ``total_lines`` input lines so that a bucket holds about ``per_bucket``."""
    return max(1, math.ceil(total_lines / per_bucket))


class BucketCount(beam.PTransform):
    """Counted FileRanges -> singleton PCollection of the number of student buckets.

    ``fixed``: that number; else one bucket per ``per_bucket`` input lines (the line breaks of the
    interaction files: blank lines and the header count too, a bound from above).
    """

    def __init__(self, per_bucket: int, fixed: int | None = None):
        super().__init__()
        if fixed is not None and fixed < 1 or per_bucket < 1:
            raise ValueError(f"bucket count {fixed} and per_bucket {per_bucket} must be >= 1")
        self._per_bucket = per_bucket
        self._fixed = fixed

    def expand(self, ranges):
        if self._fixed is not None:
            return ranges.pipeline | "FixedBuckets" >> beam.Create([self._fixed])
        per_bucket = self._per_bucket
        return (
            ranges
            | "RangeLines" >> beam.Map(lambda r: r.lines)
            | "TotalLines" >> beam.CombineGlobally(sum)
            | "Buckets" >> beam.Map(bucket_count, per_bucket)
        )
