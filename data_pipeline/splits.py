"""Train / validation / test splits (STUDY appendix A).

Train holds every interaction with timestamp < the split boundary (default: the first day of the
school year after the earliest interaction's school year, so the first school year is train).
Later interactions go to validation or test by student: ``sha256(SPLIT_SALT + student_id)`` read
as a number in [0, 1) below ``validation_fraction`` means validation. All of a student's later
interactions land in one of the two.
"""

import calendar
import datetime
import hashlib

import apache_beam as beam
import numpy as np

from study.data import raw_schema
from study.data import row_format

TRAIN, VALIDATION, TEST = 0, 1, 2  # indices into row_format.SPLITS
SPLIT_SALT = "study-split-v1:"  # changing it reshuffles students between validation and test


def parse_split_date(text: str) -> int:
    """``YYYY-MM-DD`` (or an ISO datetime, naive = UTC) -> int epoch seconds."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--split_date={text!r} is not an ISO date; use YYYY-MM-DD.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp())


def default_split_timestamp(
    earliest_timestamp: int, start_month: int = raw_schema.SCHOOL_YEAR_START_MONTH
) -> int:
    """First second of the school year after the earliest interaction's school year (epoch s)."""
    next_year = raw_schema.school_year(earliest_timestamp, start_month) + 1
    return calendar.timegm((next_year, start_month, 1, 0, 0, 0))


def later_period_split(student_id: str, validation_fraction: float) -> int:
    """VALIDATION or TEST for a student's interactions after the boundary (deterministic)."""
    digest = hashlib.sha256((SPLIT_SALT + str(student_id)).encode("utf-8")).digest()
    unit = int.from_bytes(digest[:8], "big") / 2.0**64
    return VALIDATION if unit < validation_fraction else TEST


def assign_splits(history, boundary: int, validation_fraction: float):
    """StudentHistory -> the same with ``splits`` ``[n] int8`` set."""
    later = later_period_split(history.student_id, validation_fraction)
    splits = np.where(history.timestamps < boundary, TRAIN, later).astype(np.int8)
    return history._replace(splits=splits)


class SplitBoundary(beam.PTransform):
    """PCollection of ``student_sequences.HistoryBatch`` -> singleton PCollection of the boundary
    (epoch seconds)."""

    def __init__(self, split_timestamp: int | None, start_month: int):
        super().__init__()
        self._split_timestamp = split_timestamp
        self._start_month = start_month

    def expand(self, histories):
        if self._split_timestamp is not None:
            return histories.pipeline | "FixedBoundary" >> beam.Create([self._split_timestamp])
        start_month = self._start_month
        return (
            histories
            | "FirstTimestamp" >> beam.Map(lambda batch: int(batch.timestamps.min()))
            | "Earliest" >> beam.CombineGlobally(lambda values: min(values, default=0))
            | "NextSchoolYear" >> beam.Map(default_split_timestamp, start_month)
        )


SPLIT_NAMES = row_format.SPLITS
