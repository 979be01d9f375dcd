"""Per-student histories: join interactions with the roster, drop duplicates, order in time.

``StudentHistories`` groups the per-chunk interaction batches and the roster records by student
bucket (many students per element) and emits ``HistoryBatch`` elements holding one
``StudentHistory`` per student: time-ordered (ties by input order), duplicate events removed (the
first in input order is kept), with the history features of every interaction
(``history_len``, ``is_novel``, ``is_continuation`` over the whole history) and the classroom key
of every interaction. Interactions of students absent from the roster, duplicate events and extra
roster entries of a student leave as dead letters.
"""

from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_pipeline import read_raw
from study.data import raw_schema
from study.data import row_builder
from study.data import row_format


class StudentProfile(NamedTuple):
    """Roster facts of one student (raw strings as given; codes per ``row_format``)."""

    school_id: str
    grade: str
    grade_code: int
    classroom_id: str
    district_id: str
    wealth_indicator: str
    wealth_code: int


class StudentHistory(NamedTuple):
    """One student's whole history, oldest first. Arrays are ``[n]``.

    items: ``<U`` raw item ids; timestamps: int64 seconds since the epoch; history_len, is_novel,
    is_continuation: int32 (``row_format``); classroom_names: the student's classroom keys in order
    of first appearance; classroom_codes: int16 index into classroom_names of each interaction;
    splits: int8 split index into ``row_format.SPLITS`` (None until splits are assigned).
    """

    student_id: str
    student_hash: int
    profile: StudentProfile
    items: np.ndarray
    timestamps: np.ndarray
    history_len: np.ndarray
    is_novel: np.ndarray
    is_continuation: np.ndarray
    classroom_names: tuple
    classroom_codes: np.ndarray
    splits: np.ndarray | None = None

    @property
    def classrooms(self) -> np.ndarray:
        """``[n]`` object array: the classroom key of each interaction."""
        return np.array(self.classroom_names, dtype=object)[self.classroom_codes]


class HistoryBatch(NamedTuple):
    """StudentHistory of many students in columns: one array set per batch, cheap to move between
    pipeline stages. Per student: ``student_ids``, ``student_hashes`` (``[m]`` int64),
    ``profiles``, ``classroom_names`` and ``sizes`` (``[m]`` int64); per interaction, students
    side by side: ``items``, ``timestamps``, ``history_len``, ``is_novel``, ``is_continuation``,
    ``classroom_codes`` (as in StudentHistory).
    """

    student_ids: list
    student_hashes: np.ndarray
    profiles: list
    classroom_names: list
    sizes: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    history_len: np.ndarray
    is_novel: np.ndarray
    is_continuation: np.ndarray
    classroom_codes: np.ndarray

    @classmethod
    def from_histories(cls, histories: list) -> "HistoryBatch":
        def joined(name):
            return np.concatenate([getattr(h, name) for h in histories])

        return cls(
            student_ids=[h.student_id for h in histories],
            student_hashes=np.array([h.student_hash for h in histories], dtype=np.int64),
            profiles=[h.profile for h in histories],
            classroom_names=[h.classroom_names for h in histories],
            sizes=np.array([len(h.items) for h in histories], dtype=np.int64),
            items=joined("items"),
            timestamps=joined("timestamps"),
            history_len=joined("history_len"),
            is_novel=joined("is_novel"),
            is_continuation=joined("is_continuation"),
            classroom_codes=joined("classroom_codes"),
        )

    def histories(self) -> list:
        """The StudentHistory of each student (array fields are views into the batch)."""
        bounds = np.cumsum(np.r_[0, self.sizes]).tolist()
        hashes = self.student_hashes.tolist()
        out = []
        for i, student_id in enumerate(self.student_ids):
            part = slice(bounds[i], bounds[i + 1])
            out.append(
                StudentHistory(
                    student_id=student_id,
                    student_hash=hashes[i],
                    profile=self.profiles[i],
                    items=self.items[part],
                    timestamps=self.timestamps[part],
                    history_len=self.history_len[part],
                    is_novel=self.is_novel[part],
                    is_continuation=self.is_continuation[part],
                    classroom_names=self.classroom_names[i],
                    classroom_codes=self.classroom_codes[part],
                )
            )
        return out


def school_years(timestamps: np.ndarray, start_month: int = raw_schema.SCHOOL_YEAR_START_MONTH):
    """Vectorized ``raw_schema.school_year``: ``[n] int64`` epoch seconds -> ``[n] int64`` years."""
    moments = np.asarray(timestamps, dtype=np.int64).astype("datetime64[s]")
    years = moments.astype("datetime64[Y]").astype(np.int64) + 1970
    months = moments.astype("datetime64[M]").astype(np.int64) % 12 + 1
    return years - (months < start_month)


def classroom_keys(profile: StudentProfile, timestamps: np.ndarray, start_month: int) -> tuple:
    """Classroom key of each interaction: ``classroom_id``, else ``school|grade|school_year``.

    Returns:
      ``(names, codes)``: the distinct keys in time order and ``[n] int16`` index of each interaction.
    """
    if profile.classroom_id:
        return (profile.classroom_id,), np.zeros(len(timestamps), dtype=np.int16)
    years = school_years(timestamps, start_month)
    unique_years, codes = np.unique(years, return_inverse=True)  # time-ordered: years ascend
    names = tuple(f"{profile.school_id}|{profile.grade}|{year}" for year in unique_years)
    return names, codes.astype(np.int16)


def student_profile(roster: dict, schools: dict) -> StudentProfile:
    """Roster record (+ schools table) -> StudentProfile; district and wealth fall back to the school."""
    school = schools.get(roster["school_id"], {})
    district = roster.get("district_id", "") or school.get("district_id", "")
    wealth = roster.get("wealth_indicator", "") or school.get("wealth_indicator", "")
    grade = roster.get("grade", "")
    return StudentProfile(
        school_id=roster["school_id"],
        grade=grade,
        grade_code=row_format.grade_code(grade),
        classroom_id=roster.get("classroom_id", ""),
        district_id=district,
        wealth_indicator=wealth,
        wealth_code=row_format.wealth_code(wealth),
    )


def order_and_deduplicate(batches: list) -> tuple:
    """Concatenated batches -> (kept indices in time order, duplicate indices).

    Order: by (timestamp, input order). A duplicate event is a later (in input order) event with the
    same item and timestamp as another.
    """
    items = np.concatenate([b.items for b in batches])
    timestamps = np.concatenate([b.timestamps for b in batches])
    orders = np.concatenate([b.orders for b in batches])
    _, item_codes = np.unique(items, return_inverse=True)
    by_event = np.lexsort((orders, item_codes, timestamps))
    same_as_previous = np.zeros(len(by_event), dtype=bool)
    same_as_previous[1:] = (timestamps[by_event][1:] == timestamps[by_event][:-1]) & (
        item_codes[by_event][1:] == item_codes[by_event][:-1]
    )
    duplicates = by_event[same_as_previous]
    kept = by_event[~same_as_previous]
    kept = kept[np.lexsort((orders[kept], timestamps[kept]))]
    return items, timestamps, orders, kept, duplicates


def split_by_student(chunks: list) -> dict:
    """``read_raw.StudentInteractions`` chunks -> ``{student_id: read_raw.InteractionBatch}``."""
    if not chunks:
        return {}
    students = np.concatenate([c.students for c in chunks])
    items = np.concatenate([c.items for c in chunks])
    timestamps = np.concatenate([c.timestamps for c in chunks])
    orders = np.concatenate([c.orders for c in chunks])
    encoded = pc.dictionary_encode(pa.array(students.astype(object), pa.string()))
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    names = encoded.dictionary.to_pylist()
    by_student = np.argsort(codes, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(names)))])
    batches = {}
    for code, name in enumerate(names):
        rows = by_student[bounds[code] : bounds[code + 1]]
        batches[name] = read_raw.InteractionBatch(items[rows], timestamps[rows], orders[rows])
    return batches


class BuildStudentHistoryDoFn(read_raw.BundleCounters, beam.DoFn):
    """``(bucket, {"interactions": [StudentInteractions], "roster": [[records]]})`` -> HistoryBatch
    (students of the bucket in id order, up to ``batch_size`` per batch).

    Side inputs: ``schools`` (dict), ``interaction_files`` and ``roster_files`` (InputFiles, for
    the dead letters' paths). Counts the largest bucket (``max/student_bucket_interactions``)."""

    def __init__(self, start_month: int, batch_size: int = 1024):
        self._start_month = start_month
        self._batch_size = batch_size

    def _letter(self, paths, order, reason, record):
        file_index, line = read_raw.order_to_file_line(order)
        return beam.pvalue.TaggedOutput(
            read_raw.DEAD_LETTER,
            {"source": paths[file_index], "line": line, "reason": reason, "record": record},
        )

    def process(self, keyed, schools, interaction_files, roster_files):
        _, grouped = keyed
        self._interaction_paths = read_raw.file_paths(interaction_files)
        self._roster_paths = read_raw.file_paths(roster_files)
        chunks = list(grouped["interactions"])
        self.count({"max/student_bucket_interactions": sum(len(c.items) for c in chunks)})
        batches = split_by_student(chunks)
        rosters = {}
        for records in grouped["roster"]:
            for record in records:
                rosters.setdefault(record["student_id"], []).append(record)
        histories = []
        for student_id in sorted(batches.keys() | rosters.keys()):
            batch, student_rosters = batches.get(student_id), rosters.get(student_id, [])
            for output in self._student(student_id, batch, student_rosters, schools):
                if isinstance(output, StudentHistory):
                    histories.append(output)
                    if len(histories) == self._batch_size:
                        yield HistoryBatch.from_histories(histories)
                        histories = []
                else:
                    yield output
        if histories:
            yield HistoryBatch.from_histories(histories)

    def _student(self, student_id, batch, rosters, schools):
        """One student's dead letters and StudentHistory (when in the roster and active)."""
        rosters = sorted(rosters, key=lambda r: r["order"])
        stats = {}
        for extra in rosters[1:]:
            record = {k: v for k, v in extra.items() if k != "order"}
            yield self._letter(self._roster_paths, extra["order"], "duplicate_roster_entry", record)
        if rosters:
            stats["roster/rows_kept"] = 1
            if len(rosters) > 1:
                stats["roster/dead/duplicate_roster_entry"] = len(rosters) - 1
        if batch is not None:
            items, timestamps, orders, kept, duplicates = order_and_deduplicate([batch])
            reason = "duplicate_event" if rosters else "student_not_in_roster"
            dead = duplicates if rosters else np.arange(len(items))
            for i in dead:
                record = {
                    "student_id": student_id,
                    "item_id": str(items[i]),
                    "timestamp": int(timestamps[i]),
                }
                yield self._letter(self._interaction_paths, orders[i], reason, record)
            if len(dead):
                stats[f"interactions/dead/{reason}"] = len(dead)
            if rosters:
                stats["interactions/rows_kept"] = len(kept)
                profile = student_profile(rosters[0], schools)
                items, timestamps = items[kept], timestamps[kept]
                history_len, is_novel, is_continuation = row_builder.history_features(items)
                classroom_names, classroom_codes = classroom_keys(
                    profile, timestamps, self._start_month
                )
                yield StudentHistory(
                    student_id=student_id,
                    student_hash=row_format.student_hash(student_id),
                    profile=profile,
                    items=items,
                    timestamps=timestamps,
                    history_len=history_len,
                    is_novel=is_novel,
                    is_continuation=is_continuation,
                    classroom_names=classroom_names,
                    classroom_codes=classroom_codes,
                )
        self.count(stats)


class StudentHistories(beam.PTransform):
    """Joins interactions, roster records and the schools table into HistoryBatch elements.

    Inputs: ``(interactions, roster, schools)`` PCollections of ``(bucket, StudentInteractions)``,
    ``(bucket, [roster records])`` (``read_raw.student_buckets``) and ``(school_id, school
    record)``; ``interaction_files`` / ``roster_files``: the InputFiles (lists or PCollections).
    Outputs tagged ``good`` (HistoryBatch), ``dead_letter`` and ``stats``.
    """

    def __init__(self, interaction_files, roster_files, start_month: int):
        super().__init__()
        self._files = (interaction_files, roster_files)
        self._do_fn = BuildStudentHistoryDoFn(start_month)

    def expand(self, inputs):
        interactions, roster, schools = inputs
        interaction_files, roster_files = (
            files if isinstance(files, list) else beam.pvalue.AsList(files) for files in self._files
        )
        return (
            {"interactions": interactions, "roster": roster}
            | "GroupByBucket" >> beam.CoGroupByKey()
            | "BuildHistories"
            >> beam.ParDo(
                self._do_fn,
                schools=beam.pvalue.AsDict(schools),
                interaction_files=interaction_files,
                roster_files=roster_files,
            ).with_outputs(read_raw.DEAD_LETTER, read_raw.STATS, main="good")
        )
