"""Per-student histories: join interactions with the roster, drop duplicates, order in time.

``StudentHistories`` groups the per-chunk interaction batches and the roster records by student and
emits one ``StudentHistory`` per student: time-ordered (ties by input order), duplicate events
removed (the first in input order is kept), with the history features of every interaction
(``history_len``, ``is_novel``, ``is_continuation`` over the whole history) and the classroom key
of every interaction. Interactions of students absent from the roster, duplicate events and extra
roster entries of a student leave as dead letters.
"""

from typing import NamedTuple

import apache_beam as beam
import numpy as np

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


class BuildStudentHistoryDoFn(read_raw.BundleCounters, beam.DoFn):
    """``(student_id, {"interactions": [batches], "roster": [records]})`` -> StudentHistory."""

    def __init__(self, interaction_paths: list, roster_paths: list, start_month: int):
        self._interaction_paths = interaction_paths
        self._roster_paths = roster_paths
        self._start_month = start_month

    def _letter(self, paths, order, reason, record):
        file_index, line = read_raw.order_to_file_line(order)
        return beam.pvalue.TaggedOutput(
            read_raw.DEAD_LETTER,
            {"source": paths[file_index], "line": line, "reason": reason, "record": record},
        )

    def process(self, keyed, schools):
        student_id, grouped = keyed
        batches = list(grouped["interactions"])
        rosters = sorted(grouped["roster"], key=lambda r: r["order"])
        stats = {}
        for extra in rosters[1:]:
            record = {k: v for k, v in extra.items() if k != "order"}
            yield self._letter(self._roster_paths, extra["order"], "duplicate_roster_entry", record)
        if rosters:
            stats["roster/rows_kept"] = 1
            if len(rosters) > 1:
                stats["roster/dead/duplicate_roster_entry"] = len(rosters) - 1
        if batches:
            items, timestamps, orders, kept, duplicates = order_and_deduplicate(batches)
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
    """Joins interaction batches, roster records and the schools table into StudentHistory.

    Inputs: ``(interactions, roster, schools)`` PCollections of ``(student_id, InteractionBatch)``,
    ``(student_id, roster record)`` and ``(school_id, school record)``. Outputs tagged ``good``
    (StudentHistory), ``dead_letter`` and ``stats``.
    """

    def __init__(self, interaction_paths: list, roster_paths: list, start_month: int):
        super().__init__()
        self._do_fn = BuildStudentHistoryDoFn(interaction_paths, roster_paths, start_month)

    def expand(self, inputs):
        interactions, roster, schools = inputs
        return (
            {"interactions": interactions, "roster": roster}
            | "GroupByStudent" >> beam.CoGroupByKey()
            | "BuildHistories"
            >> beam.ParDo(self._do_fn, schools=beam.pvalue.AsDict(schools)).with_outputs(
                read_raw.DEAD_LETTER, read_raw.STATS, main="good"
            )
        )
