"""Reading one input file, or one byte range of it, in chunks that keep physical line numbers.

A CSV file is cut into byte ranges at line starts (``file_ranges``); each range is read on its own
by Arrow's streaming CSV reader behind ``CsvLines``, which hands the parser whole lines and notes
the blank lines and the lines that are not UTF-8. The range carries the physical number of its
first line, so every row, dead letter and blank line keeps the number it has in the whole file
(the header is line 1). A Parquet range is a run of row groups; its line numbers are 1-based row
indices in the file.
"""

from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems


def open_file(path: str):
    """A binary file object over ``path`` on any Beam filesystem (compressed files decompressed)."""
    return FileSystems.open(path)


class _Reader:
    """The file-object surface Arrow's reader needs besides ``read``; the wrapped handle is
    closed by its owner."""

    closed = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


class RangeHandle(_Reader):
    """A binary file object over the lines of ``handle`` that start in ``[start, end)``.

    Reading begins at the first line start at or after ``start`` (``start`` itself when byte
    ``start - 1`` is a line break) and stops after the line break that ends the line holding byte
    ``end - 1``. ``skipped_break``: whether a line break was passed to reach the first line start
    (the caller adds it to the line count before ``start``). ``end=None``: to the end of the file.
    """

    def __init__(self, handle, start: int, end: int | None, read_size: int):
        self._handle = handle
        self._end = end
        self._read_size = read_size
        self._done = False
        self._pending = b""
        self.skipped_break = False
        self.position = start  # file offset of the next byte handed out
        if start > 0:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":
                self._skip_to_line_start()

    def _skip_to_line_start(self) -> None:
        while True:
            data = self._handle.read(self._read_size)
            if not data:
                self._done = True
                return
            cut = data.find(b"\n")
            if cut >= 0:
                self.skipped_break = True
                self.position += cut + 1
                self._pending = data[cut + 1 :]
                return
            self.position += len(data)

    @property
    def empty(self) -> bool:
        """No line starts in the range."""
        return self._done or (self._end is not None and self.position >= self._end)

    def read(self, size: int = -1) -> bytes:
        if self._done:
            return b""
        data = self._pending or self._handle.read(self._read_size if size is None or size < 0 else size)
        self._pending = b""
        if not data:
            self._done = True
            return b""
        if self._end is not None and self.position + len(data) >= self._end:
            # The last line is the one holding byte end - 1: stop after its line break.
            cut = data.find(b"\n", max(0, self._end - 1 - self.position))
            if cut >= 0:
                data = data[: cut + 1]
                self._done = True
        self.position += len(data)
        return data


class CsvLines(_Reader):
    """A binary file over a CSV file that hands the CSV parser whole lines and notes, by physical
    line number (the header is line 1): the blank lines, and the lines that are not UTF-8.

    A line that is not UTF-8 reaches the parser as a blank line (so that one bad byte cannot stop
    the parser); its text, bad bytes escaped (``\\xff``), is kept in ``not_utf8``. The parser must
    keep empty lines (``ignore_empty_lines=False``) so that its rows stay one per physical line.
    """

    def __init__(self, handle, read_size: int, first_line: int = 1):
        self._handle = handle
        self._read_size = read_size
        self._ready = bytearray()  # scanned whole lines not yet handed out
        self._tail = b""  # the start of a line not complete yet
        self._eof = False
        self._next_line = first_line  # physical number of the line starting ``_tail``
        self.blank = set()
        self.not_utf8 = {}  # line -> text

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


def open_csv(source: CsvLines, block_size: int, on_invalid_row, columns=None, header=None):
    """Arrow's streaming CSV reader over ``source``, serial (so that invalid rows carry their
    line number counted from the start of ``source``), one row per line, blank lines included;
    ``columns``: read only these, as strings; ``header``: the column names when ``source`` starts
    after the header (a byte range inside the file)."""
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
        read_options=pa_csv.ReadOptions(
            block_size=block_size, use_threads=False, column_names=list(header) if header else None
        ),
        parse_options=pa_csv.ParseOptions(
            invalid_row_handler=on_invalid_row, ignore_empty_lines=False
        ),
        convert_options=convert_options,
    )


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


def read_chunks(input_file, chunk_bytes: int, file_range=None):
    """Yields the ``Chunk``s of a file (``input_files.InputFile``), or of one ``file_ranges.
    FileRange`` of it, in file order."""
    wanted = input_file.columns  # canonical -> file column
    if input_file.file_format == "parquet":
        with open_file(input_file.path) as handle:
            parquet = pq.ParquetFile(handle)
            groups = range(parquet.num_row_groups)
            next_line = 1
            if file_range is not None:
                groups = range(file_range.start, file_range.end)
                next_line = file_range.first_line
            batch_rows = max(1024, chunk_bytes // 64)
            for batch in parquet.iter_batches(
                batch_size=batch_rows,
                row_groups=list(groups),
                columns=list(dict.fromkeys(wanted.values())),
            ):
                lines = np.arange(next_line, next_line + batch.num_rows, dtype=np.int64)
                next_line += batch.num_rows
                yield Chunk({c: batch.column(f) for c, f in wanted.items()}, lines, [])
        return
    malformed_lines = []
    line_offset = 0

    def on_invalid_row(row):
        # Serial parsing (use_threads=False) gives physical line numbers; the header is line 1.
        malformed_lines.append((int(row.number) + line_offset if row.number else -1, row.text))
        return "skip"

    with open_file(input_file.path) as handle:
        first_line, header = 1, None  # the whole file: the parser reads the header on line 1
        if file_range is not None and file_range.start > 0:
            handle = RangeHandle(handle, file_range.start, file_range.end, chunk_bytes)
            if handle.empty:
                return
            first_line = file_range.first_line + handle.skipped_break
            header = input_file.header
        elif file_range is not None:
            handle = RangeHandle(handle, 0, file_range.end, chunk_bytes)
        # Arrow numbers the lines it is given from 1: line 1 of the range is ``first_line`` (set
        # before the reader opens: opening parses the first block).
        line_offset = first_line - 1
        source = CsvLines(handle, chunk_bytes, first_line)
        reader = open_csv(
            source, chunk_bytes, on_invalid_row, list(dict.fromkeys(wanted.values())), header
        )
        next_line = first_line + (header is None)
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


