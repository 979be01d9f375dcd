"""DIGINETICA sessions (CIKM Cup 2016 ``train-item-views.csv``) with SR-GNN's preprocessing, as model rows.

Input: a ``;``-separated file with a header naming at least ``sessionId``, ``itemId``, ``timeframe`` and
``eventdate`` (``session_id`` / ``item_id`` spellings and any ``userId`` column are accepted too): one item view
per line, ``timeframe`` in milliseconds since the session's start, ``eventdate`` as ``YYYY-MM-DD``.

Preprocessing of the SR-GNN paper (Wu et al., AAAI 2019, section "Datasets and preprocessing"):

1. A session's clicks are ordered by ``timeframe``; its date is its latest ``eventdate``.
2. Sessions of one click are dropped; then clicks of items viewed fewer than 5 times (counted over the
   remaining sessions) are dropped, and sessions left with fewer than 2 clicks go too.
3. Test = the sessions of the last 7 days (dated after ``last date - 7 days``), train = the earlier ones.
   (The official script also drops the sessions dated exactly ``last date - 7 days``; here they train.)
4. Item ids are numbered in order of first appearance in the date-ordered training sessions, from
   ``FIRST_ITEM_ID`` on (the reserved ids of ``study.data.reserved_ids`` come first); test clicks of items
   never seen in training are dropped, and test sessions left with fewer than 2 clicks.
5. Optionally (``validation_fraction > 0``) the latest ``ceil(fraction * n)`` of the ``n`` training sessions
   (date order) become a validation split for early stopping; the item numbering and the test split stay as
   in step 4 (they are made from all training sessions), so the test cases never depend on the slice.
6. Sequence augmentation (:func:`augment`): a session ``[v_1 .. v_n]`` gives the cases ``([v_1 .. v_t], v_{t+1})``
   for ``t = 1 .. n-1``.

As model rows (:func:`session_rows`: one session per row, ``student_index`` 0, ``positions`` 0..n-1), the
causal models of ``study.models`` score every position from the clicks before it, so one row stands for all
of its session's augmented cases at once (plus position 0, which is not a case; see
``study.models.srgnn.session_next_item_loss`` and ``study.eval.session_metrics.next_click_mask``).

Bad input never passes silently: a missing file or a header without the required columns raises an error
naming the file; a line with the wrong number of fields, a non-integer id or timeframe, or an unparseable
date is skipped and counted by reason (with its line numbers) in the :class:`ReadReport`.

Why no Beam: two global quantities (the item counts and the last date) are needed before any session can be
kept or split, and the full DIGINETICA file (about 1.2M views) fits easily in one process's memory, so a plain
loader is simpler and as fast; a Beam job would need side inputs for no gain in scale.

Usage::

    python -m data_pipeline.diginetica --input=../shared/data/sessions_diginetica_sample/sample_train-item-views.csv \
        --output_dir=/tmp/diginetica --row_length=20
"""

import collections
import csv
import dataclasses
import datetime
import json
import math
import os
from typing import NamedTuple, Sequence

import numpy as np

from study.data import reserved_ids, row_format, vocabulary

REQUIRED_COLUMNS = ("session_id", "item_id", "timeframe", "eventdate")
# header spelling (lower case, underscores removed) -> canonical column
_COLUMN_NAMES = {"sessionid": "session_id", "itemid": "item_id", "timeframe": "timeframe",
                 "eventdate": "eventdate", "userid": "user_id"}
MIN_ITEM_COUNT = 5
TEST_DAYS = 7
_EXAMPLE_LINES = 5  # line numbers kept per skip reason


class ItemView(NamedTuple):
    """One parsed line: ``session_id``, raw ``item_id`` (str), ``timeframe`` (ms, int), ``day`` (date)."""

    session_id: int
    item_id: str
    timeframe: int
    day: datetime.date


@dataclasses.dataclass
class ReadReport:
    """What :func:`read_item_views` did with the file's data lines.

    ``lines`` = ``views`` + sum of ``skipped``; ``skipped`` maps a reason to its count and ``skipped_lines`` to
    the first few 1-based line numbers (the header is line 1).
    """

    path: str
    lines: int = 0
    views: int = 0
    skipped: dict = dataclasses.field(default_factory=dict)
    skipped_lines: dict = dataclasses.field(default_factory=dict)

    def skip(self, reason: str, line_number: int) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        examples = self.skipped_lines.setdefault(reason, [])
        if len(examples) < _EXAMPLE_LINES:
            examples.append(line_number)


class Session(NamedTuple):
    """A preprocessed session: ``items`` token ids and ``timestamps`` (epoch seconds) in click order."""

    session_id: int
    day: datetime.date
    items: tuple
    timestamps: tuple


@dataclasses.dataclass
class SessionSplits:
    """Output of :func:`preprocess`: date-ordered ``train`` / ``test`` sessions, the item ``vocab``
    (``study.data.vocabulary.Vocabulary``: raw ids in token-id order, training click counts), the first test
    day ``test_start``, ``stats`` (counts at every step) and the ``validation`` sessions held out of the
    training period (empty unless asked for)."""

    train: list
    test: list
    vocab: vocabulary.Vocabulary
    test_start: datetime.date
    stats: dict
    validation: list = dataclasses.field(default_factory=list)


def _header_columns(header: Sequence[str], path: str) -> dict:
    """``{canonical column: field index}``; raises naming the file when a required column is missing."""
    columns = {}
    for index, name in enumerate(header):
        canonical = _COLUMN_NAMES.get(name.strip().lower().replace("_", ""))
        if canonical:
            columns[canonical] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ValueError(
            f"{path}: header {header} lacks column(s) {missing}; expected a ';'-separated DIGINETICA "
            "train-item-views file with header sessionId;userId;itemId;timeframe;eventdate"
        )
    return columns


def read_item_views(path: str) -> tuple[list, ReadReport]:
    """Parses a DIGINETICA item-views file.

    Returns:
      ``(views, report)``: the :class:`ItemView` of every well-formed line in file order, and the
      :class:`ReadReport` counting the skipped lines by reason.

    Raises:
      FileNotFoundError: no file at ``path``. ValueError: the file is empty or its header lacks a column.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"DIGINETICA file {path} does not exist")
    report = ReadReport(path=path)
    views = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=";")
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty; expected a header sessionId;userId;itemId;timeframe;eventdate")
        columns = _header_columns(header, path)
        for fields in reader:
            report.lines += 1
            line_number = reader.line_num
            if len(fields) != len(header):
                report.skip("wrong_field_count", line_number)
                continue
            try:
                session_id = int(fields[columns["session_id"]])
                item_id = str(int(fields[columns["item_id"]]))
            except ValueError:
                report.skip("bad_id", line_number)
                continue
            try:
                timeframe = int(fields[columns["timeframe"]])
            except ValueError:
                report.skip("bad_timeframe", line_number)
                continue
            try:
                day = datetime.date.fromisoformat(fields[columns["eventdate"]].strip())
            except ValueError:
                report.skip("bad_eventdate", line_number)
                continue
            views.append(ItemView(session_id, item_id, timeframe, day))
    report.views = len(views)
    return views, report


def _group_sessions(views: Sequence[ItemView]) -> dict:
    """``{session_id: (day, [(raw item, timeframe)] ordered by timeframe)}`` in order of first appearance."""
    clicks, days = collections.defaultdict(list), {}
    for view in views:
        clicks[view.session_id].append((view.item_id, view.timeframe))
        days[view.session_id] = max(days.get(view.session_id, view.day), view.day)
    return {sid: (days[sid], sorted(seq, key=lambda click: click[1])) for sid, seq in clicks.items()}


def _to_session(session_id, day, clicks, item_ids: dict) -> Session:
    midnight = int(datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc).timestamp())
    return Session(session_id, day, tuple(item_ids[raw] for raw, _ in clicks),
                   tuple(midnight + timeframe // 1000 for _, timeframe in clicks))


def preprocess(views: Sequence[ItemView], test_days: int = TEST_DAYS, min_item_count: int = MIN_ITEM_COUNT,
               validation_fraction: float = 0.0) -> SessionSplits:
    """SR-GNN's filtering, date split and item numbering (module docstring, steps 1-4), and the validation
    slice of step 5 when ``0 < validation_fraction < 1``."""
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    sessions = _group_sessions(views)
    stats = {"views": len(views), "sessions": len(sessions)}
    sessions = {sid: value for sid, value in sessions.items() if len(value[1]) > 1}
    stats["sessions_dropped_length_1"] = stats["sessions"] - len(sessions)

    counts = collections.Counter(raw for _, clicks in sessions.values() for raw, _ in clicks)
    kept = {}
    for sid, (day, clicks) in sessions.items():
        frequent = [click for click in clicks if counts[click[0]] >= min_item_count]
        if len(frequent) >= 2:
            kept[sid] = (day, frequent)
    stats["items_dropped_rare"] = sum(1 for c in counts.values() if c < min_item_count)
    stats["sessions_dropped_rare_items"] = len(sessions) - len(kept)
    if not kept:
        raise ValueError(f"no session has 2 clicks of items viewed >= {min_item_count} times; nothing to train on")

    test_start = max(day for day, _ in kept.values()) - datetime.timedelta(days=test_days - 1)
    order = sorted(kept, key=lambda sid: kept[sid][0])  # by date; stable: file order within a day
    train_ids = [sid for sid in order if kept[sid][0] < test_start]
    test_ids = [sid for sid in order if kept[sid][0] >= test_start]

    item_ids, train_counts = {}, collections.Counter()
    for sid in train_ids:
        for raw, _ in kept[sid][1]:
            item_ids.setdefault(raw, reserved_ids.FIRST_ITEM_ID + len(item_ids))
            train_counts[raw] += 1
    train = [_to_session(sid, *kept[sid], item_ids) for sid in train_ids]
    test, unseen_clicks = [], 0
    for sid in test_ids:
        day, clicks = kept[sid]
        seen = [click for click in clicks if click[0] in item_ids]
        unseen_clicks += len(clicks) - len(seen)
        if len(seen) >= 2:
            test.append(_to_session(sid, day, seen, item_ids))
    items = tuple(item_ids)  # dicts keep insertion order = token-id order
    vocab = vocabulary.Vocabulary(items=items, counts=tuple(train_counts[raw] for raw in items))
    held_out = math.ceil(validation_fraction * len(train)) if validation_fraction else 0
    train, validation = train[:len(train) - held_out], train[len(train) - held_out:]
    stats.update({
        "test_clicks_dropped_unseen_item": unseen_clicks,
        "test_sessions_dropped_unseen_items": len(test_ids) - len(test),
        "train_sessions": len(train), "test_sessions": len(test), "items": len(items),
        "train_clicks": sum(len(s.items) for s in train), "test_clicks": sum(len(s.items) for s in test),
        "train_cases": sum(len(s.items) - 1 for s in train), "test_cases": sum(len(s.items) - 1 for s in test),
    })
    if validation:
        stats.update({"validation_sessions": len(validation),
                      "validation_clicks": sum(len(s.items) for s in validation),
                      "validation_cases": sum(len(s.items) - 1 for s in validation)})
    return SessionSplits(train, test, vocab, test_start, stats, validation)


def augment(sessions: Sequence[Session]) -> tuple[list, list]:
    """The paper's sequence augmentation: ``(prefixes, targets)``, ``([v_1 .. v_t], v_{t+1})`` for every
    session and ``t = 1 .. n-1``, sessions in order and ``t`` ascending (lists of tuples of token ids / ints)."""
    prefixes, targets = [], []
    for session in sessions:
        for t in range(1, len(session.items)):
            prefixes.append(tuple(session.items[:t]))
            targets.append(session.items[t])
    return prefixes, targets


def session_rows(sessions: Sequence[Session], row_length: int) -> list:
    """One model row (``study.data.row_format``) per session: its clicks at positions 0..n-1, then PAD.

    Per-position features: ``student_index`` 0, ``positions`` = click index = ``history_len``,
    ``is_novel`` (first click of the item in the session), ``is_continuation`` (same item as the previous
    click), ``student_hash`` of ``"diginetica-session-<id>"``; per row ``grade``/``wealth`` 0 (unknown).

    Raises:
      ValueError: a session is longer than ``row_length`` (pass a larger ``row_length``).
    """
    longest = max((len(s.items) for s in sessions), default=0)
    if longest > row_length:
        raise ValueError(f"a session has {longest} clicks > row_length={row_length}; pass row_length >= {longest}")
    rows = []
    for session in sessions:
        row = row_format.empty_row(row_length)
        n = len(session.items)
        items = np.asarray(session.items, np.int32)
        row["item_ids"][:n] = items
        row["timestamps"][:n] = session.timestamps
        row["student_index"][:n] = 0
        row["positions"][:n] = np.arange(n)
        row["history_len"][:n] = np.arange(n)
        row["student_hash"][:n] = row_format.student_hash(f"diginetica-session-{session.session_id}")
        row["is_novel"][:n] = [int(item not in session.items[:t]) for t, item in enumerate(session.items)]
        row["is_continuation"][1:n] = items[1:] == items[:-1]
        row["classroom"] = f"diginetica-{session.day.isoformat()}".encode()
        rows.append(row)
    return rows


def write_processed(splits: SessionSplits, data_dir: str, row_length: int) -> dict:
    """Writes a processed dataset the trainer and evaluator read (``config.dataset = "individual"``).

    Files: ``<data_dir>/vocab.json``, ``<data_dir>/individual/diginetica-{train,test}.tfrecord-00000-of-00001``
    (rows of :func:`session_rows`; also ``validation`` when the splits hold one) and ``<data_dir>/stats.json``.
    Returns ``{split: number of rows}``.
    """
    import tensorflow as tf

    from data_pipeline.write_rows import row_to_example

    folder = os.path.join(data_dir, "individual")
    os.makedirs(folder, exist_ok=True)
    written = {}
    parts = [("train", splits.train), ("test", splits.test)] + (
        [("validation", splits.validation)] if splits.validation else [])
    for split, sessions in parts:
        path = os.path.join(folder, f"diginetica-{split}.tfrecord-00000-of-00001")
        with tf.io.TFRecordWriter(path) as writer:
            for row in session_rows(sessions, row_length):
                writer.write(row_to_example(row))
        written[split] = len(sessions)
    vocabulary.save_vocab(splits.vocab, os.path.join(data_dir, "vocab.json"))
    with open(os.path.join(data_dir, "stats.json"), "w", encoding="utf-8") as handle:
        json.dump({**splits.stats, "test_start": splits.test_start.isoformat(), "row_length": row_length},
                  handle, indent=1)
    return written


def load_splits(path: str, test_days: int = TEST_DAYS, min_item_count: int = MIN_ITEM_COUNT,
                validation_fraction: float = 0.0):
    """``read_item_views`` then ``preprocess``: ``(SessionSplits, ReadReport)``; the report's skip counts
    are also copied into ``splits.stats["lines_skipped"]``."""
    views, report = read_item_views(path)
    splits = preprocess(views, test_days, min_item_count, validation_fraction)
    splits.stats["lines_skipped"] = dict(report.skipped)
    return splits, report


def main(argv):
    from absl import flags

    del argv
    flags_ = flags.FLAGS
    splits, report = load_splits(flags_.input, validation_fraction=flags_.validation_fraction)
    written = write_processed(splits, flags_.output_dir, flags_.row_length)
    print(json.dumps({"rows": written, "skipped_lines": report.skipped,
                      "skipped_line_examples": report.skipped_lines, **splits.stats,
                      "test_start": splits.test_start.isoformat()}, indent=1))


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("input", None, "DIGINETICA train-item-views CSV")
    flags.DEFINE_string("output_dir", None, "processed dataset folder to write")
    flags.DEFINE_integer("row_length", 65, "row length (>= the longest kept session)")
    flags.DEFINE_float("validation_fraction", 0.0, "latest training sessions held out for validation")
    flags.mark_flags_as_required(["input", "output_dir"])
    app.run(main)
