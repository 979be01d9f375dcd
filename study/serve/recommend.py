"""Next-item recommendations for a JSON file of requests, from a serving artifact (``study recommend``).

Requests file: a JSON list of requests, or ``{"requests": [...]}``. A request::

    {"id": "alice",                                   # optional, echoed back (default: its number from 0)
     "history": [["book-17", 1600000000], ["book-4", 1600086400]],   # (raw item, epoch seconds)
     "classmates": {"bob": [["book-9", 1600040000]]},                # optional, STUDY artifacts
     "grade": 5,                                       # optional, 0..12 (0 = unknown)
     "query_time": 1600090000,                         # optional, default just after the history
     "exclude": ["book-4"],                            # optional raw items never to recommend
     "k": 5}                                           # optional, overrides the command's k

Responses file: one JSON object ``{"artifact": path, "k": k, "responses": [{"id": ..., "recommendations":
[{"item_id": raw id, "score": log-probability}, ...]}, ...]}``, the responses in request order, one response
per line.

Memory stays flat in the number of requests: the requests file is parsed incrementally (one request at a
time), ``--batch_size`` requests are scored per model call, and each response is written as soon as it is
computed. The responses go to a temporary file next to ``--output`` that is renamed into place at the end, so
a failed run (a malformed request, even the last one) leaves no partial output; without ``--output`` they are
copied to stdout at the end.

Usage::

    python -m study.serve.recommend --artifact=artifacts/study --requests=requests.json \\
        --output=responses.json [--k=10] [--batch_size=256]
"""

import collections
import json
import os
import re
import shutil
import sys
import tempfile
from typing import IO, Iterator

from absl import flags

from study import cli

FLAGS = flags.FLAGS
CHUNK_CHARS = 1 << 16  # characters of the requests file read at a time
WHITESPACE = " \t\n\r"


class _JsonReader:
    """Reads JSON values one at a time from a text file, keeping only the unread part in memory.

    ``line`` is the 1-based line of the next unread character (for error messages)."""

    def __init__(self, handle: IO[str], path: str):
        self.handle, self.path = handle, path
        self.buffer, self.pos, self.line, self.eof = "", 0, 1, False
        self._decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        """Appends the next chunk of the file to the buffer; False at the end of the file."""
        if self.eof:
            return False
        chunk = self.handle.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.buffer = self.buffer[self.pos :] + chunk
        self.pos = 0
        return True

    def _advance(self, end: int) -> None:
        self.line += self.buffer.count("\n", self.pos, end)
        self.pos = end

    def peek(self) -> str:
        """The next character that is not white space ('' at the end of the file), not consumed."""
        while True:
            end = self.pos
            while end < len(self.buffer) and self.buffer[end] in WHITESPACE:
                end += 1
            self._advance(end)
            if self.pos < len(self.buffer) or not self._fill():
                return self.buffer[self.pos : self.pos + 1]

    def expect(self, allowed: str, what: str) -> str:
        char = self.peek()
        if not char or char not in allowed:
            found = repr(char) if char else "the end of the file"
            raise self.error(f"expected {what}, found {found}")
        self._advance(self.pos + 1)
        return char

    def value(self):
        """Decodes the next JSON value, reading more of the file while it is incomplete."""
        self.peek()
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buffer, self.pos)
            except json.JSONDecodeError as error:
                if self._fill():
                    continue
                raise self.error(error.msg) from None
            if end == len(self.buffer) and self._fill():
                continue  # a number may go on in the next chunk
            self._advance(end)
            return value

    def error(self, message: str) -> ValueError:
        return ValueError(f"requests file {self.path} is not valid JSON: line {self.line}: {message}")


def iter_requests(path: str) -> Iterator[tuple[int, dict]]:
    """Yields ``(line, request)`` for every request of the file at ``path``, reading it incrementally.

    The file holds a JSON list of requests or an object whose ``"requests"`` field is that list; ``line`` is
    the 1-based line where the request starts. Raises FileNotFoundError, or ValueError naming the file and line
    (invalid JSON, another layout), possibly after yielding the requests before the error.
    """
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"requests file {path} does not exist") from None
    with handle:
        reader = _JsonReader(handle, path)
        try:
            if reader.expect("[{", 'a JSON list of requests "[" or an object {"requests": [...]}') == "[":
                yield from _iter_list(reader)
            elif not (yield from _iter_wrapped(reader)):
                raise ValueError(f'requests file {path} must hold a JSON list of requests or {{"requests": [...]}}; '
                                 'its object has no "requests" list')
            if reader.peek():
                raise reader.error("extra data after the requests")
        except UnicodeDecodeError as error:
            raise ValueError(f"requests file {path} is not UTF-8 text: {error}") from None


def _iter_wrapped(reader: _JsonReader):
    """The requests of an object ``{"requests": [...], ...}`` whose ``{`` was just read (other fields are
    skipped); returns whether it had a ``"requests"`` list."""
    found = False
    if reader.peek() == "}":
        reader.expect("}", "'}'")
        return found
    while True:
        key = reader.value()
        reader.expect(":", "':' after an object key")
        if key == "requests" and reader.peek() == "[":
            reader.expect("[", "'['")
            yield from _iter_list(reader)
            found = True
        else:
            reader.value()
        if reader.expect(",}", "',' or '}'") == "}":
            return found


def _iter_list(reader: _JsonReader) -> Iterator[tuple[int, dict]]:
    """The elements of a JSON list whose ``[`` was just read, with their line numbers."""
    if reader.peek() == "]":
        reader.expect("]", "']'")
        return
    while True:
        reader.peek()
        line = reader.line
        yield line, reader.value()
        if reader.expect(",]", "',' or ']' between requests") == "]":
            return


def _response(number: int, request, ranked) -> dict:
    return {"id": request.get("id", number),
            "recommendations": [{"item_id": item, "score": score} for item, score in ranked]}


def write_responses(recommender, requests_path: str, k: int, handle: IO[str], artifact_dir: str,
                    batch_size: int) -> int:
    """Streams the responses document for every request of ``requests_path`` into ``handle``.

    Returns the number of responses. Raises ValueError ``<file>: request <n> (line <l>): <field>: ...``."""
    pending_lines = {}  # request number -> line, for the requests read but not yet answered
    requests = collections.deque()  # the requests read but not yet answered (at most batch_size)

    def read():
        for number, (line, request) in enumerate(iter_requests(requests_path)):
            pending_lines[number] = line
            requests.append(request)
            yield request

    handle.write(json.dumps({"artifact": artifact_dir, "k": k})[:-1] + ', "responses": [\n')
    count = 0
    try:
        for ranked in recommender.recommend_stream(read(), k=k, batch_size=batch_size):
            del pending_lines[count]
            handle.write((",\n" if count else "") + json.dumps(_response(count, requests.popleft(), ranked)))
            count += 1
    except ValueError as error:
        message = str(error)
        named = re.match(r"request (\d+)", message)
        if named and int(named.group(1)) in pending_lines:  # a malformed request: say its line too
            message = f"{named.group(0)} (line {pending_lines[int(named.group(1))]}){message[named.end():]}"
            raise ValueError(f"{requests_path}: {message}") from None
        raise
    handle.write("\n]}\n")
    return count


def recommend_from_file(artifact_dir: str, requests_path: str, k: int = 10, output_json: str | None = None, *,
                        batch_size: int | None = None, stdout: IO[str] | None = None) -> dict:
    """Answers every request of ``requests_path`` with the artifact in ``artifact_dir``.

    Writes the responses document (module docstring) to ``output_json``, or to ``stdout`` (default
    ``sys.stdout``) when it is None, only once every request has been answered: nothing is written when a
    request is malformed. ``batch_size`` requests (default ``serving_artifact.DEFAULT_BATCH_SIZE``) are scored
    per model call. Returns ``{"artifact", "k", "num_responses", "output"}``. Raises ValueError naming the file,
    request number, line and field for malformed requests, FileNotFoundError for a missing file.
    """
    from study.serve import serving_artifact  # JAX: after the flags are checked

    recommender = serving_artifact.load_artifact(artifact_dir)
    batch_size = batch_size or serving_artifact.DEFAULT_BATCH_SIZE
    directory = os.path.dirname(os.path.abspath(output_json)) if output_json else None
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=directory, prefix=".responses-", suffix=".tmp",
                                     delete=False) as handle:
        temporary = handle.name
        try:
            count = write_responses(recommender, requests_path, k, handle, artifact_dir, batch_size)
        except BaseException:
            handle.close()
            os.unlink(temporary)
            raise
    try:
        if output_json:
            os.replace(temporary, output_json)
        else:
            with open(temporary, encoding="utf-8") as source:
                shutil.copyfileobj(source, stdout or sys.stdout)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return {"artifact": artifact_dir, "k": k, "num_responses": count, "output": output_json}


def check_flags() -> None:
    """Checks the flags and files before JAX is imported; ``cli.InputError`` naming the flag otherwise."""
    artifact = FLAGS.artifact
    manifest = os.path.join(artifact, "manifest.json")
    if not os.path.isfile(manifest):
        what = "no such folder" if not os.path.isdir(artifact) else "it holds no manifest.json"
        raise cli.InputError(f"--artifact={artifact}: {what}; pass a serving artifact folder written by "
                             "`study export`")
    try:
        with open(manifest, encoding="utf-8") as handle:
            top_k = int(json.load(handle)["top_k"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
        raise cli.InputError(f"--artifact={artifact}: {manifest} is not a serving manifest ({error}); "
                             "export the artifact again") from None
    if not 1 <= FLAGS.k <= top_k:
        raise cli.InputError(f"--k={FLAGS.k} is out of range: the artifact {artifact} returns at most "
                             f"top_k={top_k} items, so --k must be in 1..{top_k} (export with a larger --top_k "
                             "for more)")
    if FLAGS.batch_size < 1:
        raise cli.InputError(f"--batch_size={FLAGS.batch_size}: must be >= 1")
    if not os.path.isfile(FLAGS.requests):
        raise cli.InputError(f"--requests={FLAGS.requests}: no such file; pass a JSON file of requests "
                             "(see `study recommend --help`)")
    if FLAGS.output:
        directory = os.path.dirname(os.path.abspath(FLAGS.output))
        if os.path.isdir(FLAGS.output) or not os.path.isdir(directory):
            raise cli.InputError(f"--output={FLAGS.output}: name a file in an existing folder")


def main(argv) -> None:
    del argv
    check_flags()
    try:
        recommend_from_file(FLAGS.artifact, FLAGS.requests, FLAGS.k, FLAGS.output, batch_size=FLAGS.batch_size)
    except (ValueError, FileNotFoundError) as error:
        raise cli.InputError(str(error)) from None


def define_flags() -> None:
    flags.DEFINE_string("artifact", None, "serving artifact folder (written by study export)")
    flags.DEFINE_string("requests", None, 'JSON file of requests: a list, or {"requests": [...]}')
    flags.DEFINE_string("output", None, "where to write the JSON responses (default stdout)")
    flags.DEFINE_integer("k", 10, "recommendations per request, 1..the artifact's top_k")
    flags.DEFINE_integer("batch_size", 256, "requests scored per model call; memory grows with it, not with "
                                            "the number of requests")
    flags.mark_flags_as_required(["artifact", "requests"])


if __name__ == "__main__":
    define_flags()
    cli.run(main)
