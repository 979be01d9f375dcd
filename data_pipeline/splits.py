"""Train / validation / test splits (STUDY appendix A).

Train holds every interaction with timestamp < the split boundary: a given time (``--split_date``,
or ``--split_time`` in the unit of the timestamps, for clocks that are not dates), the earliest time
before which a given share of the kept interactions falls (``--split_quantile``), or by default the
first day of the school year after the earliest interaction's school year (so the first school year
is train).
Later interactions go to validation or test by student: ``sha256(SPLIT_SALT + student_id)`` read
as a number in [0, 1) below ``validation_fraction`` means validation. All of a student's later
interactions land in one of the two.
"""

import calendar
import datetime
import fractions
import hashlib
import math

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
        hint = ""
        if text.strip().lstrip("+-").isdigit():
            hint = (
                f" For timestamps that are numbers (epoch seconds, an event counter) give the split "
                f"point as --split_time={text.strip()}, or --split_quantile=0.8 for the time before "
                "which 80% of the kept interactions fall."
            )
        raise ValueError(f"--split_date={text!r} is not an ISO date; use YYYY-MM-DD.{hint}") from None
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


def _merge_counts(pairs: list) -> tuple:
    """``[(distinct values, counts)]`` -> one ``(distinct values ascending, counts)`` pair."""
    values, inverse = np.unique(np.concatenate([v for v, _ in pairs]), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate([c for _, c in pairs]), minlength=len(values))
    return values, counts.astype(np.int64)


class TimestampCounts(beam.CombineFn):
    """HistoryBatch elements -> ``(distinct timestamps ascending, count of each)``, ``[k] int64``
    arrays: exact, and as large as the number of distinct timestamps, not of interactions."""

    _COMPACT_EVERY = 64  # batches collected before they are merged

    def create_accumulator(self):
        return [(np.zeros(0, np.int64), np.zeros(0, np.int64))]

    def add_input(self, pairs, batch):
        pairs.append(np.unique(np.asarray(batch.timestamps, dtype=np.int64), return_counts=True))
        if len(pairs) > self._COMPACT_EVERY:
            pairs[:] = [_merge_counts(pairs)]
        return pairs

    def merge_accumulators(self, accumulators):
        return [_merge_counts([pair for pairs in accumulators for pair in pairs])]

    def extract_output(self, pairs):
        return _merge_counts(pairs)


def quantile_timestamp(timestamp_counts: tuple, quantile: float) -> int:
    """The earliest whole time ``t`` such that at least ``quantile`` of the interactions are earlier
    than ``t`` (``timestamp < t``), from ``TimestampCounts``; 0 when there is no interaction."""
    values, counts = timestamp_counts
    total = int(counts.sum())
    if not total:
        return 0
    # Exact decimal arithmetic: 0.7 of 10 interactions is 7, not 7.000000000000001 -> 8.
    needed = max(1, math.ceil(fractions.Fraction(str(quantile)) * total))
    index = int(np.searchsorted(np.cumsum(counts), needed))
    return int(values[index]) + 1


class SplitBoundary(beam.PTransform):
    """PCollection of ``student_sequences.HistoryBatch`` -> singleton PCollection of the boundary
    (epoch seconds, or the unit of the timestamps).

    ``split_timestamp`` when given; else the ``quantile_timestamp`` of the kept interactions when
    ``quantile`` is given; else the start of the second school year (``default_split_timestamp``).
    """

    def __init__(self, split_timestamp: int | None, start_month: int, quantile: float | None = None):
        super().__init__()
        self._split_timestamp = split_timestamp
        self._start_month = start_month
        self._quantile = quantile

    def expand(self, histories):
        if self._split_timestamp is not None:
            return histories.pipeline | "FixedBoundary" >> beam.Create([self._split_timestamp])
        if self._quantile is not None:
            return (
                histories
                | "TimestampCounts" >> beam.CombineGlobally(TimestampCounts())
                | "Quantile" >> beam.Map(quantile_timestamp, self._quantile)
            )
        start_month = self._start_month
        return (
            histories
            | "FirstTimestamp" >> beam.Map(lambda batch: int(batch.timestamps.min()))
            | "Earliest" >> beam.CombineGlobally(lambda values: min(values, default=0))
            | "NextSchoolYear" >> beam.Map(default_split_timestamp, start_month)
        )


SPLIT_NAMES = row_format.SPLITS
