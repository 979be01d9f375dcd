"""Load a serving artifact (``study.serve.export``) and recommend next items for raw histories.

This module needs jax, numpy, the standard library and the NumPy row layout of ``study.data``
(``row_builder``, shared with the data pipeline): it never imports the model or training code, so a
serving process runs from the artifact directory alone.

The serving row
---------------
A request is one student's history (``[(raw_item_id, timestamp), ...]``, timestamps in integer
seconds since the epoch) and, for STUDY artifacts, the classmates' histories. It becomes ONE model row
laid out like the pipeline's rows (``study/data/row_format.py``)::

    [classmate A events] SEP [classmate B events] SEP ... SEP [student's history] [query]  PAD ...

* Only classmates' events strictly before the query time are kept (the model could not attend to
  later ones anyway); each classmate's events are time-ordered and form one segment.
* The query is one extra position of the student at ``query_time`` (default: one second after the
  student's last event, or after the last classmate event when the history is empty). The model's
  score at a position never depends on the item at that position, so the query position holds a
  placeholder (``OOV``) and its top-k is the recommendation for the next item.
* Unknown raw items map to ``OOV``. An empty history is allowed (a prediction from the classmates,
  the grade and the model's prior).
* When the row is too short, the student's most recent ``row_length - 1`` events are kept first; the
  classmates' events fill what is left, most recent first (the oldest are dropped), each classmate
  segment costing one ``SEP`` as well.
* Individual artifacts ignore classmates.
* Timestamps are only compared by the model, so each row is shifted to start at 0 (int32 seconds).

Usage::

    recommender = load_artifact("artifacts/study")
    recommender.recommend([("book-17", 1600000000), ("book-4", 1600086400)],
                          classmates={"s2": [("book-9", 1600040000)]}, grade=5, k=10)
    # -> [("book-23", -2.31), ("book-9", -2.95), ...]   (raw item id, log-probability)
"""

import json
import numbers
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np

# Row layout code shared with the data pipeline (NumPy only), so serving rows match training rows.
from study.data import reserved_ids, row_builder, row_format

FORMAT_NAME = "study-serving"
SUPPORTED_FORMAT_VERSIONS = (1,)
MANIFEST_FILE = "manifest.json"
SEQUENCE_INPUTS = ("item_ids", "timestamps", "student_index", "positions")
INT32_MAX = np.iinfo(np.int32).max
# Requests scored per model call by ``recommend_batch`` / ``recommend_stream``; with the default model
# (row_length 65, 2,003 ids) the logits of one call take about 256 * 65 * 2003 * 4 B = 133 MB.
DEFAULT_BATCH_SIZE = 256
REQUEST_FIELDS = frozenset({"id", "history", "classmates", "grade", "query_time", "exclude", "k"})


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} is missing: the directory is not a complete serving artifact "
            "(write one with study.serve.export.export_model / `study export`)"
        ) from None


def _check_timestamp(value, where: str) -> int:
    """An integer number of seconds since the epoch, else a ValueError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(
            f"{where}: timestamp must be an integer number of seconds since the epoch, got {value!r}"
        )
    return int(value)


def _check_item(value, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Integral)):
        raise ValueError(f"{where}: raw item id must be a string or an integer, got {value!r}")
    return str(value)


def _check_events(events, where: str) -> list[tuple[str, int]]:
    """Validates ``[(raw_item_id, timestamp), ...]``; returns it time-ordered (stable)."""
    if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
        raise ValueError(
            f"{where} must be a list of (raw_item_id, timestamp) pairs, got {type(events).__name__}"
        )
    checked = []
    for index, event in enumerate(events):
        # The common case (a JSON pair of a string and an int) skips the generic checks: they cost the
        # HTTP service about half of its per-request CPU.
        if type(event) in (list, tuple) and len(event) == 2 and type(event[0]) is str and type(event[1]) is int:
            checked.append((event[0], event[1]))
            continue
        if isinstance(event, (str, bytes, Mapping)) or not isinstance(event, Sequence) or len(event) != 2:
            raise ValueError(
                f"{where}[{index}] must be a (raw_item_id, timestamp) pair, got {event!r}"
            )
        checked.append(
            (_check_item(event[0], f"{where}[{index}]"), _check_timestamp(event[1], f"{where}[{index}]"))
        )
    return sorted(checked, key=lambda event: event[1])


class Recommender:
    """A loaded serving artifact: builds serving rows from raw histories and ranks next items.

    Attributes: ``row_length``, ``top_k`` (the most recommendations per request), ``attention``
    ("individual" | "study" | "study_two_stream"), ``manifest``, ``model_config`` (dicts),
    ``raw_items`` (raw item id of every item id ``>= first_item_id``), ``exported`` (the ``jax.export.Exported``
    model function, for callers that compile it per batch shape), ``query_exported`` (the function ranking
    only at ``query_index``; None for artifacts written before it existed).
    """

    def __init__(self, path: str, exported, manifest: dict, model_config: dict, vocab: dict, query_exported=None):
        self.path = path
        self.manifest = manifest
        self.model_config = model_config
        self.exported = exported
        self.query_exported = query_exported
        reserved = manifest["reserved_ids"]
        expected = dict(reserved_ids.RESERVED, first_item_id=reserved_ids.FIRST_ITEM_ID)
        if reserved != expected:
            raise ValueError(
                f"{path}: the artifact's reserved ids {reserved} differ from this code's {expected}; "
                "serve it with the version of study that exported it"
            )
        self.oov = reserved_ids.OOV
        self.first_item_id = reserved_ids.FIRST_ITEM_ID
        self.row_length = int(manifest["row_length"])
        self.top_k = int(manifest["top_k"])
        self.batch_size = manifest.get("batch_size")
        self.attention = manifest.get("attention", "")
        self.uses_classmates = bool(manifest.get("reads_classmates", self.attention != "individual"))
        self.num_grades = int(manifest.get("num_grades", 0))
        self.raw_items = [str(item) for item in vocab["items"]]
        self._item_ids = {raw: self.first_item_id + index for index, raw in enumerate(self.raw_items)}

    # ----------------------------------------------------------------------------- rows
    def item_id(self, raw_item_id) -> int:
        """Vocabulary id of a raw item id; ``OOV`` when the item is not in the vocabulary."""
        return self._item_ids.get(str(raw_item_id), self.oov)

    def _grade(self, grade) -> int:
        if grade is None:
            return 0
        if isinstance(grade, str) and grade.strip().isdigit():
            grade = int(grade)
        if isinstance(grade, bool) or not isinstance(grade, numbers.Integral):
            raise ValueError(f"grade must be an integer 0..12 (0 = unknown) or None, got {grade!r}")
        if not 0 <= int(grade) < max(self.num_grades, 1):
            raise ValueError(
                f"grade {grade} is outside 0..{max(self.num_grades, 1) - 1} "
                "(the grades the model was trained with; 0 = unknown)"
            )
        return int(grade)

    def build_row(
        self,
        history,
        classmates: Mapping[Any, Any] | None = None,
        grade=None,
        *,
        query_time: int | None = None,
        placeholder_id: int | None = None,
    ) -> tuple[dict[str, np.ndarray], int]:
        """Raw request -> (model row, query index).

        The row is a dict of ``item_ids, timestamps, student_index, positions``
        (``[row_length] int32``) and ``grade`` (``[] int32``); the recommendation is read at the
        query index. ``placeholder_id`` is the item id put at the query position (default ``OOV``);
        it does not change the scores. Raises ValueError for malformed input.
        """
        history = _check_events(history, "history")
        if classmates is None:
            classmates = {}
        if not isinstance(classmates, Mapping):
            raise ValueError(
                "classmates must be a dict classmate_id -> [(raw_item_id, timestamp), ...], "
                f"got {type(classmates).__name__}"
            )
        classmate_events = {
            key: _check_events(events, f"classmates[{key!r}]") for key, events in classmates.items()
        }
        if not self.uses_classmates:
            classmate_events = {}
        grade = self._grade(grade)

        if query_time is None:
            if history:
                query_time = history[-1][1] + 1
            else:
                latest = [events[-1][1] for events in classmate_events.values() if events]
                query_time = max(latest) + 1 if latest else 0
        query_time = _check_timestamp(query_time, "query_time")
        if history and history[-1][1] > query_time:
            raise ValueError(
                f"query_time {query_time} is before the history's last event ({history[-1][1]}); "
                "ask for a time at or after the last event, or drop the later events"
            )

        # The student's most recent events first, then classmates' most recent events before query_time.
        student_events = history[-(self.row_length - 1) :] if self.row_length > 1 else []
        budget = self.row_length - len(student_events) - 1
        candidates = sorted(
            (
                (timestamp, order, item)
                for order, (key, events) in enumerate(classmate_events.items())
                for item, timestamp in events
                if timestamp < query_time
            ),
            key=lambda event: event[0],
            reverse=True,
        )
        kept: dict[int, list[tuple[str, int]]] = {}
        for timestamp, order, item in candidates:
            cost = 1 if order in kept else 2  # a new classmate segment also needs its SEP
            if cost > budget:
                break
            budget -= cost
            kept.setdefault(order, []).append((item, timestamp))
        # Segments in order of each classmate's first kept event; events time-ordered within one.
        keys = list(classmate_events)
        segments = sorted(
            ((keys[order], sorted(events, key=lambda event: event[1])) for order, events in kept.items()),
            key=lambda segment: segment[1][0][1],
        )
        placeholder = self.oov if placeholder_id is None else int(placeholder_id)
        segments = [self._segment(events, row_format.student_hash(key)) for key, events in segments]
        query = self._segment(student_events, 0, history_len_offset=len(history) - len(student_events))
        query = row_builder.Segment(
            item_ids=np.append(query.item_ids, placeholder).astype(np.int32),
            timestamps=np.append(query.timestamps, query_time).astype(np.int64),
            student_hash=0,
            history_len=np.append(query.history_len, len(history)).astype(np.int32),
            is_novel=np.append(query.is_novel, 0).astype(np.int32),
            is_continuation=np.append(query.is_continuation, 0).astype(np.int32),
        )
        layout = row_builder.build_row(segments + [query], self.row_length, grade=grade)
        query_index = sum(len(segment) + 1 for segment in segments) + len(query) - 1

        # The model sees int32 seconds since the row's earliest interaction (study.data.input_pipeline).
        is_item = reserved_ids.is_item(layout["item_ids"])
        timestamps = layout["timestamps"]
        relative = np.where(is_item, timestamps - timestamps[is_item].min(), 0)
        if relative.max() > INT32_MAX:
            raise ValueError(
                "the request spans more than 68 years of timestamps "
                f"({int(relative.max())} s); timestamps must be seconds since the epoch"
            )
        row = {name: layout[name] for name in SEQUENCE_INPUTS}
        row["timestamps"] = relative
        row = {name: values.astype(np.int32) for name, values in row.items()}
        row["grade"] = np.int32(grade)
        return row, query_index

    def _segment(self, events, student_hash: int, history_len_offset: int = 0) -> row_builder.Segment:
        """Time-ordered ``[(raw_item_id, timestamp)]`` -> ``row_builder.Segment`` (unknown items -> OOV)."""
        raw_items = [item for item, _ in events]
        history_len, is_novel, is_continuation = row_builder.history_features(raw_items)
        return row_builder.Segment(
            item_ids=np.asarray([self.item_id(item) for item in raw_items], np.int32),
            timestamps=np.asarray([timestamp for _, timestamp in events], np.int64),
            student_hash=student_hash,
            history_len=(history_len + history_len_offset).astype(np.int32),
            is_novel=is_novel,
            is_continuation=is_continuation,
        )

    # ----------------------------------------------------------------------------- scoring
    def score_rows(self, rows: Sequence[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Rows from ``build_row`` -> ``(top_ids, top_scores)``, each ``[rows, row_length, top_k]``.

        ``top_ids`` are vocabulary ids (int32), ``top_scores`` log-probabilities (float32).
        """
        if not rows:
            return (np.zeros((0, self.row_length, self.top_k), np.int32),
                    np.zeros((0, self.row_length, self.top_k), np.float32))
        step = self.batch_size or len(rows)
        all_ids, all_scores = [], []
        for start in range(0, len(rows), step):
            chunk = list(rows[start : start + step])
            real = len(chunk)
            chunk += [chunk[-1]] * (step - real)  # a fixed-batch artifact needs full batches
            batch = {name: np.stack([row[name] for row in chunk]) for name in SEQUENCE_INPUTS}
            batch["grade"] = np.asarray([row["grade"] for row in chunk], np.int32)
            outputs = self.exported.call(batch)
            all_ids.append(np.asarray(outputs["top_ids"])[:real])
            all_scores.append(np.asarray(outputs["top_scores"])[:real])
        return np.concatenate(all_ids), np.concatenate(all_scores)

    def _check_k(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= self.top_k:
            raise ValueError(f"k must be an integer in 1..{self.top_k} (the top-k fixed at export), got {k!r}")
        return int(k)

    def rank(self, ids: np.ndarray, scores: np.ndarray, k: int, exclude) -> list[tuple[str, float]]:
        """One position's ``ids, scores [top_k]`` -> the best ``k`` ``(raw_item_id, score)`` not in ``exclude``."""
        excluded = {self.item_id(raw) for raw in exclude or ()} - {self.oov}
        ranked = []
        for item_id, score in zip(ids.tolist(), scores.tolist()):
            if item_id in excluded:
                continue
            ranked.append((self.raw_items[item_id - self.first_item_id], float(score)))
            if len(ranked) == k:
                break
        return ranked

    def recommend(
        self,
        history,
        classmates: Mapping[Any, Any] | None = None,
        grade=None,
        k: int = 10,
        *,
        query_time: int | None = None,
        exclude: Iterable | None = None,
    ) -> list[tuple[str, float]]:
        """The ``k`` most likely next items after ``history``: ``[(raw_item_id, log_probability)]``.

        Args:
          history: the student's ``[(raw_item_id, timestamp), ...]`` (seconds since the epoch), may be empty.
          classmates: STUDY only: ``{classmate_id: [(raw_item_id, timestamp), ...]}``.
          grade: 0..12 (0 or None = unknown); used when the model was trained with grades.
          k: number of recommendations, at most ``top_k``.
          query_time: when the next item is asked for (default: just after the last event).
          exclude: raw item ids never to recommend; with exclusions fewer than ``k`` items may
            come back, since only the exported top-k are searched.
        """
        return self.recommend_batch(
            [dict(history=history, classmates=classmates, grade=grade, query_time=query_time,
                  exclude=exclude)],
            k=k,
        )[0]

    def recommend_batch(self, requests: Sequence[Mapping[str, Any]], k: int = 10,
                        batch_size: int = DEFAULT_BATCH_SIZE) -> list[list[tuple[str, float]]]:
        """``recommend`` for many requests, ``batch_size`` model rows per call; each request is a dict with
        key ``history`` and optional ``classmates``, ``grade``, ``query_time``, ``exclude``, ``k``, ``id``."""
        return list(self.recommend_stream(requests, k=k, batch_size=batch_size))

    def recommend_stream(self, requests: Iterable[Mapping[str, Any]], k: int = 10,
                         batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[list[tuple[str, float]]]:
        """Yields the ranked ``[(raw_item_id, log_probability)]`` of each request of ``requests`` in order.

        ``requests`` may be any iterable (a generator reading a file): at most ``batch_size`` requests are
        held and scored at once, so memory does not grow with the number of requests. Model outputs per
        call: ``[batch_size, row_length, top_k]`` ids and scores; a fixed-batch artifact is called in its
        own batch size. Raises ValueError ``request <number>: ...`` (numbers count from 0) for a malformed
        request, after yielding the answers of the batches before it.
        """
        k = self._check_k(k)
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        pending = []
        for number, request in enumerate(requests):
            pending.append(self.prepare(number, request, k))
            if len(pending) == batch_size:
                yield from self._answer(pending)
                pending = []
        if pending:
            yield from self._answer(pending)

    def prepare(self, number: int, request, k: int) -> tuple:
        """Request number ``number`` -> ``(row, query_index, k, exclude)``; ValueError naming the request."""
        if not isinstance(request, Mapping) or "history" not in request:
            raise ValueError(f"request {number} must be a dict with at least a 'history' key")
        unknown = set(request) - REQUEST_FIELDS
        if unknown:
            raise ValueError(f"request {number} has unknown fields {sorted(unknown)}; the fields are "
                             f"{sorted(REQUEST_FIELDS)}")
        try:
            row, query_index = self.build_row(
                request["history"], request.get("classmates"), request.get("grade"),
                query_time=request.get("query_time"),
            )
            request_k = k if request.get("k") is None else self._check_k(request["k"])
            exclude = request.get("exclude")
            if exclude is not None and (isinstance(exclude, (str, bytes, Mapping)) or not isinstance(exclude, Iterable)):
                raise ValueError(f"exclude must be a list of raw item ids, got {type(exclude).__name__}")
        except ValueError as error:
            raise ValueError(f"request {number}: {error}") from None
        return row, query_index, request_k, exclude

    def _answer(self, prepared: Sequence[tuple]) -> list[list[tuple[str, float]]]:
        """Scores prepared requests in one ``score_rows`` call; their ranked lists in order."""
        ids, scores = self.score_rows([row for row, _, _, _ in prepared])
        return [
            self.rank(ids[n, query], scores[n, query], request_k, exclude)
            for n, (_, query, request_k, exclude) in enumerate(prepared)
        ]


def load_artifact(path: str) -> Recommender:
    """Loads the serving artifact in directory ``path`` (written by ``study.serve.export``)."""
    manifest = _read_json(os.path.join(path, MANIFEST_FILE))
    if manifest.get("format") != FORMAT_NAME or manifest.get("format_version") not in SUPPORTED_FORMAT_VERSIONS:
        raise ValueError(
            f"{path}: unsupported artifact format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this code reads {FORMAT_NAME} versions "
            f"{SUPPORTED_FORMAT_VERSIONS}"
        )
    files = manifest["files"]
    model_config = _read_json(os.path.join(path, files["model_config"]))
    vocab = _read_json(os.path.join(path, files["vocab"]))
    exported, query_exported = (_read_exported(os.path.join(path, files[name])) if name in files else None
                                for name in ("exported", "query_exported"))
    return Recommender(path, exported, manifest, model_config, vocab, query_exported)


def _read_exported(path: str):
    with open(path, "rb") as handle:
        return jax.export.deserialize(bytearray(handle.read()))
