"""Reading and validating the raw input files: interactions, roster and schools (CSV or Parquet).

Files are read in large chunks inside a DoFn (pyarrow's streaming CSV reader, Parquet record
batches) and validated with vectorized NumPy/pandas operations. Good interactions and roster records
leave per chunk and student bucket (``student_buckets``: many students per element, so that later
stages work on large batches); bad ones leave as dead letters ``{"source", "line", "reason",
"record"}``; per-chunk counters leave on a ``stats`` output.

Columns follow ``study.data.raw_schema``: canonical names, or the official STUDY release's aliases
where the canonical name is absent. ``line`` is the physical line of a CSV file (1-based, the
header is line 1; blank lines are counted there and skipped) or the 1-based row index of a Parquet
file. A CSV line that is not UTF-8 is a dead letter (``invalid_utf8``), not a failed job.

A file that cannot be read at all (no match, unknown format, missing columns, no data) raises
``InputError`` from ``inspect_inputs`` before the pipeline starts.
"""

import abc
import dataclasses
import json
import zlib
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from study.data import raw_schema

DEAD_LETTER = "dead_letter"
STATS = "stats"

# Bits of the global input order key reserved for the line number: order = file_index << 40 | line.
_LINE_BITS = 40


class InputError(ValueError):
    """An input file cannot be used at all; the message says which file and what to do."""


@dataclasses.dataclass(frozen=True)
class FileKind:
    """Column contract of one kind of raw input file."""

    name: str  # "interactions", "roster", "schools"
    required: tuple
    optional: tuple
    aliases: dict  # official column -> canonical column
    required_unless: dict = dataclasses.field(default_factory=dict)  # required -> column replacing it


INTERACTIONS = FileKind(
    "interactions",
    raw_schema.INTERACTION_COLUMNS,
    raw_schema.INTERACTION_OPTIONAL,
    raw_schema.INTERACTION_ALIASES,
)
ROSTER = FileKind(
    "roster",
    raw_schema.ROSTER_COLUMNS,
    raw_schema.ROSTER_OPTIONAL,
    raw_schema.ROSTER_ALIASES,
    raw_schema.ROSTER_REQUIRED_UNLESS,
)
SCHOOLS = FileKind(
    "schools", raw_schema.SCHOOL_COLUMNS, raw_schema.SCHOOL_OPTIONAL, raw_schema.SCHOOL_ALIASES
)


@dataclasses.dataclass(frozen=True)
class InputFile:
    """One readable input file: its index (for the input order), path, format and column map."""

    index: int
    path: str
    file_format: str  # "csv" or "parquet"
    columns: dict  # canonical column -> column name in the file
    has_rows: bool = True  # False when the file holds a header only


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


# Students travel between stages in buckets (many students per element) rather than one by one.
DEFAULT_STUDENT_BUCKETS = 128


def student_buckets(student_ids: np.ndarray, num_buckets: int) -> np.ndarray:
    """``[n]`` student ids -> ``[n] int64`` bucket in ``[0, num_buckets)``, the same on every runner."""
    encoded = pc.dictionary_encode(pa.array(np.asarray(student_ids, dtype=object), pa.string()))
    names = encoded.dictionary.to_pylist()
    per_name = np.array(
        [zlib.crc32(name.encode("utf-8")) % num_buckets for name in names], dtype=np.int64
    )
    return per_name[encoded.indices.to_numpy(zero_copy_only=False)]


def input_order(file_index: int, line) -> np.ndarray:
    """Global input order key of (file, line), int64; sorts files first, then lines."""
    return (np.int64(file_index) << _LINE_BITS) | np.asarray(line, dtype=np.int64)


def order_to_file_line(order: int) -> tuple:
    """Inverse of ``input_order``: (file_index, line)."""
    order = int(order)
    return order >> _LINE_BITS, order & ((1 << _LINE_BITS) - 1)


# ---------------------------------------------------------------------------------------------
# Inspection before the pipeline runs.


def _file_format(path: str) -> str | None:
    name = path.lower()
    for suffix in (".gz", ".bz2", ".zst", ".deflate"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return None


def resolve_columns(present: list, kind: FileKind, path: str) -> dict:
    """Canonical column -> column in the file, canonical names first, official aliases second."""
    present_set = set(present)
    alias_for = {canonical: official for official, canonical in kind.aliases.items()}
    columns = {}
    for canonical in kind.required + kind.optional:
        if canonical in present_set:
            columns[canonical] = canonical
        elif alias_for.get(canonical) in present_set:
            columns[canonical] = alias_for[canonical]
    missing = [
        c for c in kind.required if c not in columns and kind.required_unless.get(c) not in columns
    ]
    if missing:
        wanted = ", ".join(
            f"{c}"
            + (f" (or {alias_for[c]})" if c in alias_for else "")
            + (f" (or a {kind.required_unless[c]} column)" if c in kind.required_unless else "")
            for c in missing
        )
        raise InputError(
            f"{kind.name} file {path}: missing required column(s) {wanted}; found columns "
            f"{present}. Rename the columns or pass the right file (see study/data/raw_schema.py)."
        )
    return columns


def _open(path: str):
    return FileSystems.open(path)


class CsvLines:
    """A binary file over a CSV file that hands the CSV parser whole lines and notes, by physical
    line number (the header is line 1): the blank lines, and the lines that are not UTF-8.

    A line that is not UTF-8 reaches the parser as a blank line (so that one bad byte cannot stop
    the parser); its text, bad bytes escaped (``\\xff``), is kept in ``not_utf8``. The parser must
    keep empty lines (``ignore_empty_lines=False``) so that its rows stay one per physical line.
    """

    def __init__(self, handle, read_size: int):
        self._handle = handle
        self._read_size = read_size
        self._ready = bytearray()  # scanned whole lines not yet handed out
        self._tail = b""  # the start of a line not complete yet
        self._eof = False
        self._next_line = 1  # physical number of the line starting ``_tail``
        self.blank = set()
        self.not_utf8 = {}  # line -> text

    closed = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size is None or size < 0 or len(self._ready) < size):
            data = self._handle.read(self._read_size)
            if not data:
                self._eof = True
                if self._tail:  # a last line without a line break
                    self._ready += self._scan(self._tail + b"\n")
                break
            data = self._tail + data
            cut = data.rfind(b"\n") + 1
            self._tail = data[cut:]
            if cut:
                self._ready += self._scan(data[:cut])
        size = len(self._ready) if size is None or size < 0 else min(size, len(self._ready))
        out = bytes(self._ready[:size])
        del self._ready[:size]
        return out

    def _scan(self, data: bytes) -> bytes:
        """Whole lines -> the same with lines that are not UTF-8 blanked; notes blank lines."""
        first = self._next_line
        self._next_line += data.count(b"\n")
        if data.startswith((b"\n", b"\r\n")) or b"\n\n" in data or b"\n\r\n" in data:
            codes = np.frombuffer(data, dtype=np.uint8)
            ends = np.flatnonzero(codes == ord("\n"))
            starts = np.concatenate([[0], ends[:-1] + 1])
            lengths = ends - starts
            blank = (lengths == 0) | ((lengths == 1) & (codes[starts] == ord("\r")))
            self.blank.update((first + np.flatnonzero(blank)).tolist())
        pieces, position = [], 0
        while True:
            try:
                data[position:].decode("utf-8")
            except UnicodeDecodeError as error:
                bad = position + error.start
                start = data.rfind(b"\n", 0, bad) + 1
                end = data.index(b"\n", bad)
                line = first + data.count(b"\n", 0, start)
                self.not_utf8[line] = data[start:end].rstrip(b"\r").decode("utf-8", "backslashreplace")
                pieces += [data[position:start], b"\n"]
                position = end + 1
                continue
            if not pieces:
                return data
            pieces.append(data[position:])
            return b"".join(pieces)


def _open_csv(source: CsvLines, block_size: int, on_invalid_row, columns=None):
    """Arrow's streaming CSV reader over ``source``, serial (so that invalid rows carry their
    physical line number), one row per line, blank lines included; ``columns``: read only these,
    as strings."""
    convert_options = None
    if columns is not None:
        convert_options = pa_csv.ConvertOptions(
            include_columns=columns,
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
    return pa_csv.open_csv(
        source,
        read_options=pa_csv.ReadOptions(block_size=block_size, use_threads=False),
        parse_options=pa_csv.ParseOptions(
            invalid_row_handler=on_invalid_row, ignore_empty_lines=False
        ),
        convert_options=convert_options,
    )


_PROBE_BYTES = 1 << 16


def _csv_header(path: str, kind: FileKind) -> list:
    with _open(path) as handle:
        source = CsvLines(handle, _PROBE_BYTES)
        header = _open_csv(source, _PROBE_BYTES, lambda row: "skip").schema.names
    if 1 in source.not_utf8:
        raise InputError(
            f"{kind.name} file {path}: line 1 (the header) is not UTF-8: "
            f"{source.not_utf8[1]!r}. Save the file as UTF-8."
        )
    if 1 in source.blank:
        raise InputError(
            f"{kind.name} file {path}: line 1 is blank. The header must be the first line."
        )
    return header


def _csv_has_rows(input_file: "InputFile") -> bool:
    """Whether a CSV file holds a line after the header that is not blank."""
    for chunk in read_chunks(input_file, _PROBE_BYTES):
        if len(chunk.lines) or chunk.rejected:
            return True
    return False


def inspect_file(index: int, path: str, kind: FileKind) -> InputFile:
    """Checks that a file is readable and has the columns of ``kind``; raises ``InputError``."""
    file_format = _file_format(path)
    if file_format is None:
        raise InputError(
            f"{kind.name} file {path}: unknown format; use a .csv (optionally .gz) or .parquet file."
        )
    try:
        if file_format == "csv":
            header = _csv_header(path, kind)
        else:
            with _open(path) as handle:
                parquet = pq.ParquetFile(handle)
                header = parquet.schema_arrow.names
                has_rows = parquet.metadata.num_rows > 0
        input_file = InputFile(
            index=index,
            path=path,
            file_format=file_format,
            columns=resolve_columns(header, kind, path),
        )
        if file_format == "csv":
            has_rows = _csv_has_rows(input_file)
    except InputError:
        raise
    except (OSError, pa.ArrowException, ValueError) as error:
        raise InputError(
            f"{kind.name} file {path}: cannot be read as {file_format} ({error}). "
            f"Check the file is a valid {file_format} file."
        ) from None
    return dataclasses.replace(input_file, has_rows=has_rows)


def expand_pattern(patterns: str, kind: FileKind) -> list:
    """Comma-separated glob patterns -> sorted file paths; raises ``InputError`` when none match."""
    paths = []
    for pattern in [p.strip() for p in patterns.split(",") if p.strip()]:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as error:  # Beam raises BeamIOError for unreachable filesystems
            raise InputError(f"{kind.name} input {pattern}: cannot be listed ({error}).") from None
        if not matched:
            raise InputError(
                f"{kind.name} input {pattern}: no file matches. Check the path or glob pattern."
            )
        paths.extend(sorted(m.path for m in matched))
    if not paths:
        raise InputError(f"{kind.name} input is empty: pass --{kind.name}=PATH_OR_GLOB.")
    return sorted(dict.fromkeys(paths))


def inspect_inputs(patterns: str, kind: FileKind, require_rows: bool = False) -> list:
    """All files of one input, inspected (``InputFile`` each), file indices 0..n-1."""
    files = [inspect_file(i, path, kind) for i, path in enumerate(expand_pattern(patterns, kind))]
    if require_rows and not any(f.has_rows for f in files):
        names = ", ".join(f.path for f in files)
        raise InputError(
            f"{kind.name} input has no data rows (only headers) in {names}. Pass the files "
            f"holding the {kind.name}."
        )
    return files


# ---------------------------------------------------------------------------------------------
# Chunked reading.


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


class Chunk(NamedTuple):
    """Part of a file read at once.

    columns: canonical name -> arrow array (CSV: strings) of the rows; lines: ``[n] int64`` line
    number of each row (CSV: physical line, the header is line 1; Parquet: 1-based row index);
    rejected: ``(line, reason, record)`` of lines that gave no row (``malformed_line``, wrong number
    of fields; ``invalid_utf8``); blank_lines: blank lines skipped (neither a row nor rejected).
    """

    columns: dict
    lines: np.ndarray
    rejected: list
    blank_lines: int = 0


def read_chunks(input_file: InputFile, chunk_bytes: int):
    """Yields the ``Chunk``s of a file, in file order."""
    wanted = input_file.columns  # canonical -> file column
    if input_file.file_format == "parquet":
        with _open(input_file.path) as handle:
            parquet = pq.ParquetFile(handle)
            next_line = 1
            batch_rows = max(1024, chunk_bytes // 64)
            for batch in parquet.iter_batches(
                batch_size=batch_rows, columns=list(dict.fromkeys(wanted.values()))
            ):
                lines = np.arange(next_line, next_line + batch.num_rows, dtype=np.int64)
                next_line += batch.num_rows
                yield Chunk({c: batch.column(f) for c, f in wanted.items()}, lines, [])
        return
    malformed_lines = []

    def on_invalid_row(row):
        # Serial parsing (use_threads=False) gives physical line numbers; the header is line 1.
        malformed_lines.append((int(row.number) if row.number else -1, row.text))
        return "skip"

    with _open(input_file.path) as handle:
        source = CsvLines(handle, chunk_bytes)
        reader = _open_csv(
            source, chunk_bytes, on_invalid_row, list(dict.fromkeys(wanted.values()))
        )
        next_line = 2
        pending = []  # malformed lines not yet placed
        for batch in reader:
            pending.extend(malformed_lines)
            rejected = [(line, "malformed_line", {"text": text}) for line, text in malformed_lines]
            malformed_lines.clear()
            taken = {line for line, _ in pending}
            count = batch.num_rows
            candidates = np.arange(next_line, next_line + count + len(taken), dtype=np.int64)
            if taken:
                candidates = candidates[~np.isin(candidates, list(taken))]
            lines = candidates[:count]
            if count:
                next_line = int(lines[-1]) + 1
            pending = [(line, text) for line, text in pending if line >= next_line]
            columns = {c: batch.column(f) for c, f in wanted.items()}
            blank_lines = 0
            if source.blank or source.not_utf8:
                # Blank lines and lines that were not UTF-8 reached the parser as rows of "".
                marked = np.fromiter(source.blank | source.not_utf8.keys(), dtype=np.int64)
                skipped = np.isin(lines, marked)
                for line in lines[skipped].tolist():
                    if line in source.not_utf8:
                        rejected.append((line, "invalid_utf8", {"text": source.not_utf8.pop(line)}))
                    else:
                        source.blank.discard(line)
                        blank_lines += 1
                keep = ~skipped
                lines = lines[keep]
                columns = {c: values.filter(pa.array(keep)) for c, values in columns.items()}
            yield Chunk(columns, lines, rejected, blank_lines)
        if malformed_lines:
            rejected = [(line, "malformed_line", {"text": text}) for line, text in malformed_lines]
            yield Chunk({c: pa.array([], pa.string()) for c in wanted}, np.zeros(0, np.int64), rejected)


def _dead_letter(source: str, line: int, reason: str, record: dict) -> dict:
    return {"source": source, "line": int(line), "reason": reason, "record": record}


class _ReadFileDoFn(beam.DoFn, abc.ABC):
    """Reads one ``InputFile`` in chunks; subclasses validate a chunk."""

    kind: FileKind

    def __init__(self, chunk_bytes: int, num_buckets: int = 1):
        self._chunk_bytes = chunk_bytes
        self._num_buckets = num_buckets

    def process(self, input_file: InputFile):
        for chunk in read_chunks(input_file, self._chunk_bytes):
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
        buckets = student_buckets(students, self._num_buckets)
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
        buckets = student_buckets(texts["student_id"][kept], self._num_buckets)
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


class ReadRawFiles(beam.PTransform):
    """Inspected input files -> tagged outputs ``good``, ``dead_letter``, ``stats``.

    ``good``: interactions as ``(bucket, StudentInteractions)``, roster records as ``(bucket,
    [records])`` (``student_buckets``: many students per element), schools as ``(school_id,
    record)``.
    """

    _DO_FNS = {
        "interactions": ReadInteractionFileDoFn,
        "roster": ReadRosterFileDoFn,
        "schools": ReadSchoolFileDoFn,
    }

    def __init__(
        self,
        files: list,
        kind: FileKind,
        chunk_bytes: int = 64 << 20,
        num_buckets: int = DEFAULT_STUDENT_BUCKETS,
    ):
        super().__init__()
        self._files = files
        self._kind = kind
        self._chunk_bytes = chunk_bytes
        self._num_buckets = num_buckets

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self._files)
            # Files spread over workers, one reader each.
            | "Reshuffle" >> beam.Reshuffle()
            | "ReadChunks"
            >> beam.ParDo(
                self._DO_FNS[self._kind.name](self._chunk_bytes, self._num_buckets)
            ).with_outputs(
                DEAD_LETTER, STATS, main="good"
            )
        )


class SchoolTable(beam.PTransform):
    """``(school_id, record)`` -> one ``(school_id, record)`` per school (first in input order);
    duplicates leave on the ``dead_letter`` output and are counted on ``stats``."""

    def expand(self, schools):
        return (
            schools
            | "GroupBySchool" >> beam.GroupByKey()
            | "KeepFirst"
            >> beam.FlatMap(_first_school, self.file_paths).with_outputs(
                DEAD_LETTER, STATS, main="good"
            )
        )

    def __init__(self, file_paths: list):
        super().__init__()
        self.file_paths = file_paths


def _first_school(keyed, file_paths):
    school_id, records = keyed
    records = sorted(records, key=lambda r: r["order"])
    yield school_id, records[0]
    for extra in records[1:]:
        file_index, line = order_to_file_line(extra["order"])
        record = {k: v for k, v in extra.items() if k != "order"}
        yield beam.pvalue.TaggedOutput(
            DEAD_LETTER,
            _dead_letter(file_paths[file_index], line, "duplicate_school_entry", record),
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
        for key, value in counters.items():
            if isinstance(value, set):
                self._counters.setdefault(key, set()).update(value)
            else:
                self._counters[key] = self._counters.get(key, 0) + value

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


def file_paths(files: list) -> list:
    """Paths of inspected files indexed by file index."""
    return [f.path for f in sorted(files, key=lambda f: f.index)]


__all__ = [
    "InputError",
    "InputFile",
    "InteractionBatch",
    "StudentInteractions",
    "INTERACTIONS",
    "ROSTER",
    "SCHOOLS",
    "ReadRawFiles",
    "SchoolTable",
    "inspect_inputs",
    "parse_timestamps",
]
