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

Rows leave as ``(split name, row dict)``.
"""

import csv
import io
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

    def segment(self, index: np.ndarray) -> row_builder.Segment:
        """The interactions at ``index`` (time-ordered) as a row_builder.Segment."""
        h = self.history
        return row_builder.Segment(
            item_ids=self.token_ids[index],
            timestamps=h.timestamps[index],
            student_hash=h.student_hash,
            history_len=h.history_len[index],
            is_novel=h.is_novel[index],
            is_continuation=h.is_continuation[index],
        )


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

    def segment(self) -> row_builder.Segment:
        token_ids, timestamps, history_len, is_novel, is_continuation = self.features
        return row_builder.Segment(
            item_ids=token_ids,
            timestamps=timestamps,
            student_hash=self.student_hash,
            history_len=history_len,
            is_novel=is_novel,
            is_continuation=is_continuation,
        )


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
    """StudentHistory -> StudentTokens (splits assigned); per-split stats; one students.csv line."""

    def __init__(self, validation_fraction: float):
        self._validation_fraction = validation_fraction

    def process(self, history, boundary, vocab):
        history = splits_lib.assign_splits(history, boundary, self._validation_fraction)
        token_ids = vocab.lookup(history.items.tolist())
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
        yield beam.pvalue.TaggedOutput(STUDENTS_CSV, _students_csv_line(history, per_split_counts))
        yield StudentTokens(history, token_ids)


class SplitAndTokenize(beam.PTransform):
    """``(histories, boundary, vocab)`` -> outputs ``good`` (StudentTokens), ``stats``, ``students_csv``.

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


def individual_rows(tokens: StudentTokens, row_length: int):
    """StudentTokens -> ``(split name, row)`` per chunk of at most ``row_length`` per split."""
    history = tokens.history
    for split_index, split_name in enumerate(row_format.SPLITS):
        index = np.flatnonzero(history.splits == split_index)
        for start, end in row_builder.chunk_bounds(len(index), row_length):
            chunk = index[start:end]
            yield split_name, row_builder.build_row(
                [tokens.segment(chunk)],
                row_length,
                classroom=history.classroom_names[history.classroom_codes[chunk[0]]],
                grade=history.profile.grade_code,
                wealth=history.profile.wealth_code,
            )


class IndividualRows(beam.PTransform):
    """StudentTokens -> ``(split name, Individual row)``."""

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


def pack_classroom(
    split_name: str,
    classroom: str,
    members: list,
    row_length: int,
    segment_length: int,
    num_packings: int,
    seed: int,
) -> list:
    """STUDY rows of one (split, classroom).

    Args:
      members: ClassroomMember of each student (any order; sorted by student id here).
      row_length: c; segment_length: s <= c.
      num_packings: packings of training rows; evaluation splits get one ordered packing.

    Returns:
      Row dicts (``row_builder.build_row``).
    """
    members = sorted(members, key=lambda m: m.student_id)
    segments, owners = [], []
    for member_index, member in enumerate(members):
        for segment in row_builder.split_segments(member.segment(), segment_length):
            segments.append(segment)
            owners.append(member_index)
    lengths = [len(s) for s in segments]
    if split_name == row_format.SPLITS[splits_lib.TRAIN]:
        orders = [
            row_builder.shuffled_order(
                len(segments), row_builder.packing_seed(seed, packing, classroom)
            )
            for packing in range(num_packings)
        ]
    else:
        orders = [np.arange(len(segments))]
    rows = []
    for order in orders:
        for packed in row_builder.pack_segments(lengths, owners, row_length, order):
            first = members[owners[packed[0]]]
            rows.append(
                row_builder.build_row(
                    [segments[i] for i in packed],
                    row_length,
                    classroom=classroom,
                    grade=first.grade_code,
                    wealth=first.wealth_code,
                )
            )
    return rows


class StudyRows(beam.PTransform):
    """StudentTokens -> ``(split name, STUDY row)``."""

    def __init__(self, row_length: int, segment_length: int, num_packings: int, seed: int):
        super().__init__()
        if not 1 <= segment_length <= row_length:
            raise ValueError(
                f"segment_length={segment_length} must be in [1, row_length={row_length}]"
            )
        self._args = (row_length, segment_length, num_packings, seed)

    def expand(self, tokens):
        args = self._args

        def rows_of_classroom(keyed):
            (split_name, classroom), members = keyed
            for row in pack_classroom(split_name, classroom, list(members), *args):
                yield split_name, row

        return (
            tokens
            | "ClassroomMembers" >> beam.FlatMap(classroom_members)
            | "GroupByClassroom" >> beam.GroupByKey()
            | "PackClassrooms" >> beam.FlatMap(rows_of_classroom)
        )
