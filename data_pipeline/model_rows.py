"""Individual and STUDY model rows (``study.data.row_format``) from split student histories.

* ``SplitAndTokenize``: assigns each interaction its split (``data_pipeline.splits``) and maps raw
  items to vocabulary ids; also emits per-split statistics and one ``students.csv`` line per student.
* ``IndividualRows``: each student's sequence within a split cut into consecutive chunks of at
  most c items, one chunk per row.
* ``StudyRows``: per (split, classroom), each student's sequence in the classroom cut into segments
  of at most s items, packed greedily (first fit) into rows of at most c positions with one SEP
  between consecutive segments and never two segments of one student in a row. Training:
  ``num_packings`` packings, each in a seeded random segment order; evaluation: one packing with
  students ordered by id and each student's segments in time order, covering every interaction once.

Rows leave in batches as ``(split name, row batch)``: a row batch is a dict of ``[rows, c]`` arrays
named as ``row_format.SEQUENCE_FEATURES`` plus per-row ``classroom`` (list of bytes), ``grade`` and
``wealth`` (``[rows] int32``), built with vectorized NumPy (``row_builder.layout_segments``).
"""

import csv
import io
import zlib
from typing import NamedTuple

import apache_beam as beam
import numpy as np

from data_pipeline import read_raw
from data_pipeline import splits as splits_lib
from study.data import reserved_ids
from study.data import row_builder
from study.data import row_format

STUDENTS_CSV = "students_csv"
STUDENTS_CSV_COLUMNS = (
    "student_id",
    "student_hash",
    "splits",
    "classrooms",
    "school_id",
    "district_id",
    "grade",
    "wealth_indicator",
    "train_interactions",
    "validation_interactions",
    "test_interactions",
)


class StudentTokens(NamedTuple):
    """A StudentHistory (with splits) plus its ``[n] int32`` token ids."""

    history: object
    token_ids: np.ndarray


class ClassroomMember(NamedTuple):
    """One student's interactions in one (split, classroom), time-ordered.

    features: ``[5, n] int64`` rows token ids, timestamps, history_len, is_novel, is_continuation
    (one array: cheap to move between pipeline stages).
    """

    student_id: str
    student_hash: int
    grade_code: int
    wealth_code: int
    features: np.ndarray


def _students_csv_line(history, per_split_counts: list) -> str:
    profile = history.profile
    present = [row_format.SPLITS[s] for s in range(3) if per_split_counts[s]]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        [
            history.student_id,
            history.student_hash,
            ";".join(present),
            ";".join(history.classroom_names),
            profile.school_id,
            profile.district_id,
            profile.grade,
            profile.wealth_indicator,
            *per_split_counts,
        ]
    )
    return buffer.getvalue()


class SplitAndTokenizeDoFn(read_raw.BundleCounters, beam.DoFn):
    """``student_sequences.HistoryBatch`` -> StudentTokens list (splits assigned); per-split stats;
    the students' students.csv lines (one string, a line per student)."""

    def __init__(self, validation_fraction: float):
        self._validation_fraction = validation_fraction

    def process(self, history_batch, boundary, vocab):
        histories = [
            splits_lib.assign_splits(h, boundary, self._validation_fraction)
            for h in history_batch.histories()
        ]
        token_ids = _lookup_all(vocab, [h.items for h in histories])
        lines = []
        for history, tokens in zip(histories, token_ids):
            per_split_counts = self._count_student(history, tokens)
            lines.append(_students_csv_line(history, per_split_counts))
        yield beam.pvalue.TaggedOutput(STUDENTS_CSV, "\n".join(lines))
        yield [StudentTokens(h, t) for h, t in zip(histories, token_ids)]

    def _count_student(self, history, token_ids) -> list:
        """Adds a student's per-split stats; returns its interaction count per split."""
        stats = {}
        per_split_counts = []
        for split_index, split_name in enumerate(row_format.SPLITS):
            in_split = history.splits == split_index
            count = int(in_split.sum())
            per_split_counts.append(count)
            if not count:
                continue
            prefix = f"split/{split_name}/"
            stats[prefix + "interactions"] = count
            stats[prefix + "students"] = 1
            stats[prefix + "oov_interactions"] = int((token_ids[in_split] == reserved_ids.OOV).sum())
            codes = np.unique(history.classroom_codes[in_split])
            stats[prefix + "classrooms"] = {history.classroom_names[c] for c in codes}
            if history.profile.district_id:
                stats[prefix + "districts"] = {history.profile.district_id}
        self.count(stats)
        return per_split_counts


def _lookup_all(vocab, item_arrays: list) -> list:
    """Raw item arrays -> token id arrays (``[n] int32`` each); one lookup per distinct item."""
    if not item_arrays:
        return []
    distinct, inverse = np.unique(np.concatenate(item_arrays), return_inverse=True)
    token_ids = vocab.lookup(distinct.tolist())[inverse.ravel()]
    return np.split(token_ids, np.cumsum([len(a) for a in item_arrays])[:-1])


class SplitAndTokenize(beam.PTransform):
    """``(histories, boundary, vocab)`` -> outputs ``good`` (lists of StudentTokens), ``stats``,
    ``students_csv``.

    boundary and vocab are singleton PCollections (``splits.SplitBoundary``,
    ``vocabulary.BuildVocabulary``).
    """

    def __init__(self, validation_fraction: float):
        super().__init__()
        self._validation_fraction = validation_fraction

    def expand(self, inputs):
        histories, boundary, vocab = inputs
        return histories | "SplitAndTokenize" >> beam.ParDo(
            SplitAndTokenizeDoFn(self._validation_fraction),
            boundary=beam.pvalue.AsSingleton(boundary),
            vocab=beam.pvalue.AsSingleton(vocab),
        ).with_outputs(read_raw.STATS, STUDENTS_CSV, main="good")


def concat_row_batches(batches: list) -> dict:
    """Row batches (``row_builder.stack_rows`` layout) -> one batch; ``classroom`` as a list."""
    out = {
        name: np.concatenate([b[name] for b in batches])
        for name in (*row_format.SEQUENCE_FEATURES, "grade", "wealth")
    }
    out["classroom"] = [c for b in batches for c in b["classroom"]]
    return out


def _row_batch(layout: dict, classrooms: list, grades, wealths) -> dict:
    layout["classroom"] = [c.encode("utf-8") if isinstance(c, str) else c for c in classrooms]
    layout["grade"] = np.asarray(grades, dtype=np.int32)
    layout["wealth"] = np.asarray(wealths, dtype=np.int32)
    return layout


def individual_rows(tokens_batch: list, row_length: int):
    """StudentTokens list -> ``(split name, row batch)`` per split present.

    Each student's interactions of a split are cut into consecutive chunks of at most
    ``row_length``, one chunk per row. A row batch is a dict of ``[rows, row_length]`` sequence
    arrays plus per-row ``classroom`` (list of bytes), ``grade`` and ``wealth`` (``[rows] int32``).
    """
    if not tokens_batch:
        return
    histories = [t.history for t in tokens_batch]
    sizes = np.array([len(h.items) for h in histories], dtype=np.int64)
    owner = np.repeat(np.arange(len(histories)), sizes)
    split_of = np.concatenate([h.splits for h in histories]).astype(np.int64)
    # Stable sort by (split, student) keeps every student's time order.
    order = np.lexsort((owner, split_of))
    owner, split_of = owner[order], split_of[order]
    group_start = np.r_[True, (owner[1:] != owner[:-1]) | (split_of[1:] != split_of[:-1])]
    group_id = np.cumsum(group_start) - 1
    group_first = np.flatnonzero(group_start)
    group_size = np.diff(np.r_[group_first, len(owner)])
    position = np.arange(len(owner)) - group_first[group_id]  # index within (student, split)
    remaining = group_size[group_id] - position
    starts = np.flatnonzero(position % row_length == 0)
    lengths = np.minimum(row_length, remaining[starts])
    features = _concat_features(tokens_batch, order)
    name_offsets = np.cumsum([0] + [len(h.classroom_names) for h in histories])
    classroom_names = [name for h in histories for name in h.classroom_names]
    classroom_index = (
        name_offsets[:-1][owner] + np.concatenate([h.classroom_codes for h in histories])[order]
    )
    grades = np.array([h.profile.grade_code for h in histories])
    wealths = np.array([h.profile.wealth_code for h in histories])
    for split_index, split_name in enumerate(row_format.SPLITS):
        chosen = starts[split_of[starts] == split_index]
        if not len(chosen):
            continue
        layout = row_builder.layout_segments(
            features,
            chosen,
            lengths[split_of[starts] == split_index],
            np.arange(len(chosen)),
            np.zeros(len(chosen), dtype=np.int64),
            len(chosen),
            row_length,
        )
        classrooms = [classroom_names[i] for i in classroom_index[chosen]]
        yield split_name, _row_batch(
            layout, classrooms, grades[owner[chosen]], wealths[owner[chosen]]
        )


def _concat_features(tokens_batch: list, order: np.ndarray) -> dict:
    """Per-interaction ``row_builder.SOURCE_FEATURES`` of all students, reordered by ``order``."""
    histories = [t.history for t in tokens_batch]
    sizes = [len(h.items) for h in histories]
    return {
        "item_ids": np.concatenate([t.token_ids for t in tokens_batch])[order],
        "timestamps": np.concatenate([h.timestamps for h in histories])[order],
        "student_hash": np.repeat([h.student_hash for h in histories], sizes).astype(np.int64)[order],
        "history_len": np.concatenate([h.history_len for h in histories])[order],
        "is_novel": np.concatenate([h.is_novel for h in histories])[order],
        "is_continuation": np.concatenate([h.is_continuation for h in histories])[order],
    }


class IndividualRows(beam.PTransform):
    """Lists of StudentTokens -> ``(split name, row batch of Individual rows)``."""

    def __init__(self, row_length: int):
        super().__init__()
        self._row_length = row_length

    def expand(self, tokens):
        return tokens | "ChunkStudents" >> beam.FlatMap(individual_rows, self._row_length)


def classroom_members(tokens: StudentTokens):
    """StudentTokens -> ``((split name, classroom), ClassroomMember)`` per split and classroom."""
    history = tokens.history
    features = np.stack(
        [
            tokens.token_ids.astype(np.int64),
            history.timestamps,
            history.history_len.astype(np.int64),
            history.is_novel.astype(np.int64),
            history.is_continuation.astype(np.int64),
        ]
    )
    # One group per (split, classroom) pair, in time order.
    group = history.splits.astype(np.int64) * 65536 + history.classroom_codes
    for key in np.unique(group):
        split_index, code = divmod(int(key), 65536)
        member_index = np.flatnonzero(group == key)
        yield (row_format.SPLITS[split_index], history.classroom_names[code]), ClassroomMember(
            history.student_id,
            history.student_hash,
            history.profile.grade_code,
            history.profile.wealth_code,
            features[:, member_index],
        )


def classroom_bucket(classroom: str, num_buckets: int) -> int:
    """Stable bucket of a classroom key in ``[0, num_buckets)`` (same on every runner)."""
    return zlib.crc32(classroom.encode("utf-8")) % num_buckets


class MemberBatch(NamedTuple):
    """ClassroomMembers of many (split, classroom) pairs in columns: one array set per batch,
    cheap to move between pipeline stages. Per member: ``keys`` (split name, classroom, part, parts),
    ``student_ids``, ``student_hashes`` / ``grade_codes`` / ``wealth_codes`` / ``sizes`` (``[m]``
    int64); ``features``: ``[5, sum(sizes)]`` int64, the members' features side by side.
    """

    keys: list
    student_ids: list
    student_hashes: np.ndarray
    grade_codes: np.ndarray
    wealth_codes: np.ndarray
    sizes: np.ndarray
    features: np.ndarray

    @classmethod
    def from_members(cls, keyed_members: list) -> "MemberBatch":
        members = [m for _, m in keyed_members]
        return cls(
            keys=[k for k, _ in keyed_members],
            student_ids=[m.student_id for m in members],
            student_hashes=np.array([m.student_hash for m in members], dtype=np.int64),
            grade_codes=np.array([m.grade_code for m in members], dtype=np.int64),
            wealth_codes=np.array([m.wealth_code for m in members], dtype=np.int64),
            sizes=np.array([m.features.shape[1] for m in members], dtype=np.int64),
            features=np.concatenate([m.features for m in members], axis=1),
        )

    def members(self):
        """Yields ``((split name, classroom, part, parts), ClassroomMember)`` per member."""
        bounds = np.cumsum(np.r_[0, self.sizes]).tolist()
        hashes, grades, wealths = (
            a.tolist() for a in (self.student_hashes, self.grade_codes, self.wealth_codes)
        )
        for i, key in enumerate(self.keys):
            yield key, ClassroomMember(
                self.student_ids[i],
                hashes[i],
                grades[i],
                wealths[i],
                self.features[:, bounds[i] : bounds[i + 1]],
            )


def _add_sizes(sizes: dict, history, split_codes) -> None:
    group = split_codes.astype(np.int64) * 65536 + history.classroom_codes
    keys, counts = np.unique(group, return_counts=True)
    for key, count in zip(keys.tolist(), counts.tolist()):
        split_index, code = divmod(key, 65536)
        pair = (row_format.SPLITS[split_index], history.classroom_names[code])
        sizes[pair] = sizes.get(pair, 0) + count


def classroom_sizes(tokens_batch: list):
    """StudentTokens list -> ``((split name, classroom), interactions)`` per pair met."""
    sizes = {}
    for tokens in tokens_batch:
        _add_sizes(sizes, tokens.history, tokens.history.splits)
    yield from sizes.items()


def history_classroom_sizes(history_batch, boundary: int, validation_fraction: float):
    """``student_sequences.HistoryBatch`` -> ``((split name, classroom), interactions)`` per pair
    met, with the splits ``SplitAndTokenize`` assigns (known before the vocabulary, so that the
    classroom stage needs not wait for the rows' tokens). One ``np.unique`` per batch."""
    later = np.array(
        [splits_lib.later_period_split(s, validation_fraction) for s in history_batch.student_ids],
        dtype=np.int64,
    )
    owner = np.repeat(np.arange(len(later)), history_batch.sizes)
    split_codes = np.where(history_batch.timestamps < boundary, splits_lib.TRAIN, later[owner])
    names = [name for names in history_batch.classroom_names for name in names]
    offsets = np.cumsum([0] + [len(names) for names in history_batch.classroom_names])[:-1]
    name_index = offsets[owner] + history_batch.classroom_codes
    keys, counts = np.unique(split_codes * len(names) + name_index, return_counts=True)
    sizes = {}
    for key, count in zip(keys.tolist(), counts.tolist()):
        split_index, index = divmod(key, len(names))
        pair = (row_format.SPLITS[split_index], names[index])
        sizes[pair] = sizes.get(pair, 0) + count
    yield from sizes.items()


def classroom_parts(size: int, max_interactions: int) -> int:
    """Parts a (split, classroom) of ``size`` interactions is packed in: at most about
    ``max_interactions`` each."""
    return max(1, -(-size // max_interactions))


def bucketed_members(tokens_batch: list, num_buckets: int, parts: dict | None = None):
    """StudentTokens list -> ``(bucket, MemberBatch)`` per classroom bucket met.

    ``parts``: ``{(split name, classroom): parts}`` of the classrooms too large for one element;
    their students go to part ``student_hash % parts``, each part to its own bucket. A member's
    key is ``(split name, classroom, part, parts)``.
    """
    parts = parts or {}
    by_bucket = {}
    for tokens in tokens_batch:
        for (split_name, classroom), member in classroom_members(tokens):
            count = parts.get((split_name, classroom), 1)
            part = member.student_hash % count
            name = classroom if count == 1 else f"{classroom}|part{part}"
            key = (split_name, classroom, part, count)
            by_bucket.setdefault(classroom_bucket(name, num_buckets), []).append((key, member))
    for bucket, keyed_members in by_bucket.items():
        yield bucket, MemberBatch.from_members(keyed_members)


def pack_classroom(
    split_name: str,
    classroom: str,
    members: list,
    row_length: int,
    segment_length: int,
    num_packings: int,
    seed: int,
    part: int = 0,
) -> dict:
    """STUDY rows of one (split, classroom), or of one part of a classroom too large for one
    element (its packings seeded by the classroom and the part).

    Args:
      members: ClassroomMember of each student (any order; sorted by student id here).
      row_length: c; segment_length: s <= c.
      num_packings: packings of training rows; evaluation splits get one ordered packing.

    Returns:
      A row batch (see ``individual_rows``), rows in packing order.
    """
    members = sorted(members, key=lambda m: m.student_id)
    sizes = [m.features.shape[1] for m in members]
    member_start = np.cumsum([0] + sizes)
    starts, lengths, owners = [], [], []
    for member_index, size in enumerate(sizes):
        for start, end in row_builder.chunk_bounds(size, segment_length):
            starts.append(member_start[member_index] + start)
            lengths.append(end - start)
            owners.append(member_index)
    if split_name == row_format.SPLITS[splits_lib.TRAIN]:
        orders = [
            row_builder.shuffled_order(
                len(starts),
                row_builder.packing_seed(
                    seed, packing, classroom if not part else f"{classroom}|part{part}"
                ),
            )
            for packing in range(num_packings)
        ]
    else:
        orders = [np.arange(len(starts))]
    segment_ids, segment_rows, segment_slots, first_owner = [], [], [], []
    for order in orders:
        for packed in row_builder.pack_segments(lengths, owners, row_length, order):
            row = len(first_owner)
            first_owner.append(owners[packed[0]])
            segment_ids.extend(packed)
            segment_rows.extend([row] * len(packed))
            segment_slots.extend(range(len(packed)))
    stacked = np.concatenate([m.features for m in members], axis=1)
    features = dict(
        zip(("item_ids", "timestamps", "history_len", "is_novel", "is_continuation"), stacked)
    )
    features["student_hash"] = np.repeat([m.student_hash for m in members], sizes).astype(np.int64)
    segment_ids = np.asarray(segment_ids, dtype=np.int64)
    layout = row_builder.layout_segments(
        features,
        np.asarray(starts, dtype=np.int64)[segment_ids],
        np.asarray(lengths, dtype=np.int64)[segment_ids],
        segment_rows,
        segment_slots,
        len(first_owner),
        row_length,
    )
    first = [members[o] for o in first_owner]
    return _row_batch(
        layout,
        [classroom] * len(first),
        [m.grade_code for m in first],
        [m.wealth_code for m in first],
    )


class StudyRows(beam.PTransform):
    """Lists of StudentTokens -> tagged outputs ``good``: ``(split name, row batch of STUDY rows)``;
    ``stats``: the largest grouped element (``max/classroom_bucket_interactions``) and the most
    parts a classroom was packed in (``max/classroom_parts``).

    Classrooms travel in ``num_buckets`` buckets (``classroom_bucket``; an int or a singleton
    PCollection of it): one grouping element per bucket and batch of students rather than one per
    student and classroom. A (split, classroom) of more than ``max_classroom_interactions`` is
    packed in ``classroom_parts`` parts, students split by ``student_hash``, so that no element
    holds a whole huge classroom; its rows never mix students of two parts.
    ``classroom_sizes_input``: ``((split name, classroom), interactions)`` pairs computed upstream
    (``history_classroom_sizes``); by default they are counted from the tokens.
    """

    def __init__(
        self,
        row_length: int,
        segment_length: int,
        num_packings: int,
        seed: int,
        num_buckets=64,
        max_classroom_interactions: int = 1 << 40,
        classroom_sizes_input=None,
    ):
        super().__init__()
        if not 1 <= segment_length <= row_length:
            raise ValueError(
                f"segment_length={segment_length} must be in [1, row_length={row_length}]"
            )
        self._args = (row_length, segment_length, num_packings, seed)
        self._num_buckets = num_buckets
        self._max_interactions = max_classroom_interactions
        self._sizes = classroom_sizes_input

    def expand(self, tokens):
        args = self._args
        max_interactions = self._max_interactions

        def rows_of_bucket(keyed):
            _, member_batches = keyed
            classrooms = {}
            size = 0
            for batch in member_batches:
                size += int(batch.sizes.sum())
                for key, member in batch.members():
                    classrooms.setdefault(tuple(key), []).append(member)
            parts = max(key[3] for key in classrooms) if classrooms else 1
            yield beam.pvalue.TaggedOutput(
                read_raw.STATS,
                {"max/classroom_bucket_interactions": size, "max/classroom_parts": parts},
            )
            by_split = {}
            for (split_name, classroom, part, _), members in sorted(classrooms.items()):
                by_split.setdefault(split_name, []).append(
                    pack_classroom(split_name, classroom, members, *args, part=part)
                )
            for split_name, batches in by_split.items():
                yield split_name, concat_row_batches(batches)

        num_buckets = self._num_buckets
        if not isinstance(num_buckets, int):
            num_buckets = beam.pvalue.AsSingleton(num_buckets)
        sizes = self._sizes
        if sizes is None:
            sizes = tokens | "ClassroomSizes" >> beam.FlatMap(classroom_sizes)
        large = (
            sizes
            | "SumSizes" >> beam.CombinePerKey(sum)
            | "LargeClassrooms" >> beam.Filter(lambda pair: pair[1] > max_interactions)
            | "Parts" >> beam.MapTuple(lambda key, n: (key, classroom_parts(n, max_interactions)))
        )
        return (
            tokens
            | "ClassroomMembers"
            >> beam.FlatMap(bucketed_members, num_buckets, beam.pvalue.AsDict(large))
            | "GroupByBucket" >> beam.GroupByKey()
            | "PackClassrooms"
            >> beam.FlatMap(rows_of_bucket).with_outputs(read_raw.STATS, main="good")
        )
