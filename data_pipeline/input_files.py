"""The raw input files: their kinds and columns, and their inspection before they are read.

Columns follow ``study.data.raw_schema``: canonical names, or the official STUDY release's aliases
where the canonical name is absent. A file that cannot be read at all (no match, unknown format,
missing columns, no data) raises ``InputError`` (``inspect_inputs``). Every input row is known by
its global input order ``file_index << 40 | line`` (``input_order``): files in sorted path order,
then physical lines.
"""

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from data_pipeline import csv_lines
from study.data import raw_schema

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
    header: tuple = ()  # CSV: every column name of line 1, in order (to parse a range after it)


def input_order(file_index: int, line) -> np.ndarray:
    """Global input order key of (file, line), int64; sorts files first, then lines."""
    return (np.int64(file_index) << _LINE_BITS) | np.asarray(line, dtype=np.int64)


def order_to_file_line(order: int) -> tuple:
    """Inverse of ``input_order``: (file_index, line)."""
    order = int(order)
    return order >> _LINE_BITS, order & ((1 << _LINE_BITS) - 1)


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


_PROBE_BYTES = 1 << 16


def _csv_header(path: str, kind: FileKind) -> list:
    with csv_lines.open_file(path) as handle:
        source = csv_lines.CsvLines(handle, _PROBE_BYTES)
        header = csv_lines.open_csv(source, _PROBE_BYTES, lambda row: "skip").schema.names
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
    for chunk in csv_lines.read_chunks(input_file, _PROBE_BYTES):
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
            with csv_lines.open_file(path) as handle:
                parquet = pq.ParquetFile(handle)
                header = parquet.schema_arrow.names
                has_rows = parquet.metadata.num_rows > 0
        input_file = InputFile(
            index=index,
            path=path,
            file_format=file_format,
            columns=resolve_columns(header, kind, path),
            header=tuple(header) if file_format == "csv" else (),
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


def file_paths(files: list) -> list:
    """Paths of inspected files indexed by file index (paths given as such stay as they are)."""
    if all(isinstance(f, str) for f in files):
        return list(files)
    return [f.path for f in sorted(files, key=lambda f: f.index)]
