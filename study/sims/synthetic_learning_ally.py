"""Synthetic reading logs shaped like the Learning Ally data of the STUDY paper.

The real data (about 489k students, 10.7M audiobook interactions over two school years) is private.
This module generates data of the same shape and statistics, with real classroom structure, so the
whole pipeline (Beam job, Individual and STUDY models, evaluation) can be run and compared end to end:

* students in schools, schools in districts, a grade ("1".."12", "Other") per student and a school
  wealth indicator ("A".."E", "Unknown") per school;
* per-student interaction counts calibrated to the paper's percentiles (1/3/10/29/105);
* two school years (Aug 1 - Jul 31), activity concentrated in school months and on weekdays;
* a long-tailed catalogue of titles with reading levels, genres and series;
* teachers assigning titles to a classroom (school x grade x school year) that classmates read within
  days of each other, personal genre tastes that drift, series read in order, and titles continued
  over several consecutive sessions.

The generative story and every parameter, with the targets it is calibrated to, are written up in
``docs/synthetic_data.md``. Everything is vectorized NumPy driven by one seed: the same seed and
parameters give the same data and the same file bytes.

Python::

    data = generate(num_students=20_000, seed=0)
    write(data, "/tmp/la", formats=("canonical", "official"), file_format="csv")

Command line::

    python -m study.sims.synthetic_learning_ally --num_students=20000 --seed=0 --out_dir=/tmp/la
"""

import dataclasses
import os
import time
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from study.data import raw_schema

GRADES = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "Other")
WEALTH_INDICATORS = ("A", "B", "C", "D", "E", "Unknown")
NUM_LEVELS = 12  # reading levels 1..12, on the grade scale
NUM_SCHOOL_YEARS = 2
SECONDS_PER_DAY = 86_400

# School types and the grades they teach ("Other" is taught everywhere).
SCHOOL_TYPES = ("elementary", "middle", "high", "combined")
_SCHOOL_TYPE_GRADES = {
    "elementary": range(1, 6),
    "middle": range(6, 9),
    "high": range(9, 13),
    "combined": range(1, 13),
}

# Paper scale (STUDY appendix): students and interactions over two school years.
PAPER_NUM_STUDENTS = 489_000

CANONICAL = "canonical"
OFFICIAL = "official"
FILE_FORMATS = ("csv", "parquet")


@dataclasses.dataclass(frozen=True)
class GeneratorParams:
    """Every knob of the generative story; ``docs/synthetic_data.md`` explains each one.

    Proportions are tuples of ``(label, share)`` pairs (a dict is accepted by ``generate``).
    """

    # Calendar.
    first_school_year: int = 2019
    month_weights: tuple = (  # Aug, Sep, ..., Jul: relative daily activity in each month
        0.35, 1.0, 1.1, 1.0, 0.7, 1.0, 1.05, 1.05, 0.9, 0.8, 0.2, 0.1)
    weekend_weight: float = 0.35
    evening_fraction: float = 0.25

    # Population (grade shares are of students, wealth shares of students via their school).
    grade_proportions: tuple = (
        ("1", 0.03), ("2", 0.06), ("3", 0.10), ("4", 0.12), ("5", 0.13), ("6", 0.12), ("7", 0.11),
        ("8", 0.10), ("9", 0.07), ("10", 0.05), ("11", 0.04), ("12", 0.03), ("Other", 0.04))
    wealth_proportions: tuple = (
        ("A", 0.12), ("B", 0.17), ("C", 0.22), ("D", 0.22), ("E", 0.17), ("Unknown", 0.10))
    school_size_median: float = 100.0
    school_size_sigma: float = 0.6
    school_type_probabilities: tuple = (0.40, 0.28, 0.17, 0.15)  # SCHOOL_TYPES order
    district_size_mean: float = 4.0

    # Activity: interactions per student over both years = ceil(scale * Gamma(shape) ** (1 / power)).
    activity_gamma_shape: float = 0.81
    activity_power: float = 0.684
    activity_scale: float = 23.9
    both_years_probability: float = 0.45
    year_share_beta: float = 2.0
    window_half_width_min: float = 0.12
    window_half_width_max: float = 0.5

    # Reads: a read is one title over one or more consecutive sessions.
    mean_sessions_per_read: float = 2.2
    session_gap_days: float = 1.5

    # Classroom assignments.
    assignments_per_class_year: float = 6.0
    assigned_read_probability: float = 0.3
    assignment_lag_days: float = 2.0
    reading_list_size: int = 100

    # Personal taste.
    num_genres: int = 20
    genre_weight_exponent: float = 0.7
    favourite_genre_probabilities: tuple = (0.5, 0.25)  # first, second favourite; rest: any genre
    genre_drift_probability: float = 0.5
    series_next_probability: float = 0.35
    reading_level_offset: float = -1.0
    reading_level_sd: float = 1.0
    read_level_sd: float = 0.7
    level_growth_per_year: float = 0.5

    # Catalogue.
    items_at_paper_scale: int = 40_000
    items_scale_exponent: float = 0.5
    min_items: int = 5_000
    item_popularity_exponent: float = 1.4
    series_break_probability: float = 0.45

    # Listening time.
    duration_median_s: float = 600.0
    duration_sigma: float = 0.8
    duration_min_s: int = 30
    duration_max_s: int = 7_200


@dataclasses.dataclass
class SyntheticData:
    """A generated data set; DataFrame columns use the canonical names of ``raw_schema``.

    interactions: student_id int64, item_id str, timestamp int64 (seconds since epoch, UTC),
        duration_s int64 (seconds listened); sorted by (timestamp, student_id).
    roster: student_id int64, school_id int64, grade str ("1".."12", "Other"), district_id int64,
        wealth_indicator str ("A".."E", "Unknown"); one row per student, sorted by student_id.
    schools: school_id int64, district_id int64, wealth_indicator str.
    items: item_id str, level int64 (1..12), genre int64, series_id int64, series_position int64
        (0-based), popularity float64 (relative weight).
    assignments: ground truth of the classroom assignments: school_id, grade, school_year (starting
        calendar year), item_id, timestamp (when the teacher assigned it). Not written to files.
    params: the parameters used.
    """

    interactions: pd.DataFrame
    roster: pd.DataFrame
    schools: pd.DataFrame
    items: pd.DataFrame
    assignments: pd.DataFrame
    params: GeneratorParams


def make_params(**overrides) -> GeneratorParams:
    """``GeneratorParams`` with ``overrides``; unknown names raise a ``TypeError`` listing the valid ones."""
    valid = {field.name for field in dataclasses.fields(GeneratorParams)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise TypeError(
            f"unknown generator parameter(s) {unknown}; valid parameters: {sorted(valid)}")
    normalized = {}
    for name, value in overrides.items():
        if isinstance(value, dict):
            value = tuple(value.items())
        elif isinstance(value, list):
            value = tuple(value)
        normalized[name] = value
    params = GeneratorParams(**normalized)
    _check_proportions("grade_proportions", params.grade_proportions, GRADES)
    _check_proportions("wealth_proportions", params.wealth_proportions, WEALTH_INDICATORS)
    if len(params.month_weights) != 12:
        raise ValueError(f"month_weights needs 12 values (Aug..Jul), got {len(params.month_weights)}")
    if len(params.school_type_probabilities) != len(SCHOOL_TYPES):
        raise ValueError(f"school_type_probabilities needs one value per type {SCHOOL_TYPES}")
    if params.mean_sessions_per_read < 1.0:
        raise ValueError("mean_sessions_per_read must be >= 1 (a read has at least one session)")
    return params


def _check_proportions(name: str, pairs: tuple, labels: tuple) -> None:
    given = dict(pairs)
    if set(given) != set(labels):
        raise ValueError(f"{name} must give a share for exactly {list(labels)}, got {list(given)}")
    shares = np.array([given[label] for label in labels], dtype=np.float64)
    if np.any(shares < 0) or not np.isclose(shares.sum(), 1.0, atol=1e-6):
        raise ValueError(f"{name} shares must be >= 0 and sum to 1, got sum {shares.sum():.6f}")


def num_items_for(num_students: int, params: GeneratorParams) -> int:
    """Catalogue size: grows as ``num_students ** items_scale_exponent``, never below ``min_items``."""
    scaled = params.items_at_paper_scale * (num_students / PAPER_NUM_STUDENTS) ** params.items_scale_exponent
    return int(max(params.min_items, round(scaled)))


# ----------------------------------------------------------------------------------------------
# Pure sampling helpers.


def exact_shares(total: int, shares: np.ndarray) -> np.ndarray:
    """Integer counts summing to ``total`` closest to ``total * shares`` (largest remainder)."""
    raw = total * np.asarray(shares, dtype=np.float64) / np.sum(shares)
    counts = np.floor(raw).astype(np.int64)
    remainder_order = np.argsort(-(raw - counts), kind="stable")
    counts[remainder_order[: total - counts.sum()]] += 1
    return counts


def interaction_counts(rng: np.random.Generator, size: int, params: GeneratorParams) -> np.ndarray:
    """``[size] int64`` interactions per student over both years (generalized gamma, >= 1)."""
    gamma = rng.standard_gamma(params.activity_gamma_shape, size)
    counts = np.ceil(params.activity_scale * gamma ** (1.0 / params.activity_power))
    return np.maximum(counts, 1).astype(np.int64)


def segment_ranks(group_sizes: np.ndarray) -> np.ndarray:
    """``[sum(group_sizes)] int64`` 0-based index of each element within its consecutive group."""
    group_sizes = np.asarray(group_sizes, dtype=np.int64)
    starts = np.cumsum(group_sizes) - group_sizes
    return np.arange(group_sizes.sum(), dtype=np.int64) - np.repeat(starts, group_sizes)


def _calendar(params: GeneratorParams):
    """Days of both school years: ``(day_epoch [D] int64, cdf [D] float64, year_first_day [3] int64)``.

    ``cdf`` runs from 0 to 1 over the first school year and from 1 to 2 over the second, so a
    uniform draw in ``[y + a, y + b)`` lands in school year ``y`` between activity quantiles a and b.
    """
    start_month = raw_schema.SCHOOL_YEAR_START_MONTH
    first = np.datetime64(f"{params.first_school_year:04d}-{start_month:02d}-01", "D")
    end = np.datetime64(f"{params.first_school_year + NUM_SCHOOL_YEARS:04d}-{start_month:02d}-01", "D")
    days = np.arange(first, end, dtype="datetime64[D]")
    months = days.astype("datetime64[M]").astype(np.int64) % 12  # 0 = January
    month_index = (months - (start_month - 1)) % 12  # 0 = the school year's first month
    weekday = (days.astype(np.int64) + 3) % 7  # 0 = Monday (1970-01-01 was a Thursday)
    weights = np.asarray(params.month_weights)[month_index] * np.where(weekday >= 5, params.weekend_weight, 1.0)
    year_first_day = np.array(
        [np.searchsorted(days, np.datetime64(f"{params.first_school_year + y:04d}-{start_month:02d}-01", "D"))
         for y in range(NUM_SCHOOL_YEARS + 1)], dtype=np.int64)
    cdf = np.empty(len(days), dtype=np.float64)
    for year in range(NUM_SCHOOL_YEARS):
        lo, hi = year_first_day[year], year_first_day[year + 1]
        cdf[lo:hi] = year + np.cumsum(weights[lo:hi]) / weights[lo:hi].sum()
    day_epoch = days.astype("datetime64[s]").astype(np.int64)
    return day_epoch, cdf, year_first_day


def _days_at(cdf: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Day indices whose calendar quantile interval holds each ``quantiles`` value."""
    return np.minimum(np.searchsorted(cdf, quantiles, side="right"), len(cdf) - 1)


def _time_of_day(rng: np.random.Generator, size: int, evening_fraction: float) -> np.ndarray:
    """``[size] int64`` seconds after midnight: school hours 08:00-15:30, else evening 16:00-21:30."""
    evening = rng.random(size) < evening_fraction
    start = np.where(evening, 16 * 3600, 8 * 3600)
    return (start + rng.random(size) * 7.5 * 3600 * np.where(evening, 5.5 / 7.5, 1.0)).astype(np.int64)


class _Catalogue:
    """Items sorted by (genre, level) bucket with a popularity CDF, for vectorized bucket sampling."""

    def __init__(self, genre, level, popularity_rank, popularity, next_in_series, num_genres):
        self.genre, self.level, self.popularity_rank = genre, level, popularity_rank
        self.next_in_series = next_in_series
        self.cumulative = np.cumsum(popularity)
        bucket = genre * NUM_LEVELS + (level - 1)
        num_buckets = num_genres * NUM_LEVELS
        if np.any(np.diff(bucket) < 0):
            raise ValueError("catalogue items must be sorted by (genre, level)")
        self.bucket_end = np.searchsorted(bucket, np.arange(num_buckets), side="right")
        self.bucket_start = np.searchsorted(bucket, np.arange(num_buckets), side="left")

    def reading_lists(self, size: int) -> tuple:
        """Per level, its ``size`` most popular titles of any genre.

        Returns ``([12, size] int64 item indices, [12] int64 list lengths)``; short lists repeat their last title.
        """
        by_level_then_rank = np.lexsort((self.popularity_rank, self.level))
        level_sorted = self.level[by_level_then_rank]
        first = np.searchsorted(level_sorted, np.arange(1, NUM_LEVELS + 1), side="left")
        lengths = np.minimum(np.searchsorted(level_sorted, np.arange(1, NUM_LEVELS + 1), side="right") - first, size)
        columns = np.minimum(np.arange(size)[None, :], lengths[:, None] - 1)
        return by_level_then_rank[first[:, None] + columns], lengths

    def sample(self, rng: np.random.Generator, genre: np.ndarray, level: np.ndarray) -> np.ndarray:
        """``[n] int64`` item indices drawn by popularity within each ``(genre, level)`` bucket (all non-empty)."""
        cumulative = self.cumulative
        bucket = genre * NUM_LEVELS + (level - 1)
        start, end = self.bucket_start[bucket], self.bucket_end[bucket]
        low = np.where(start > 0, cumulative[np.maximum(start - 1, 0)], 0.0)
        high = cumulative[end - 1]
        draw = low + rng.random(len(bucket)) * (high - low)
        return np.clip(np.searchsorted(cumulative, draw, side="right"), start, end - 1)


# ----------------------------------------------------------------------------------------------
# Stages of the generative story; each takes its own random generator.


def _labels(values: np.ndarray, codes: np.ndarray) -> pd.Series:
    """``values[codes]`` as a pandas string column, gathered in Arrow (no Python objects per row)."""
    taken = pa.array(values, type=pa.string()).take(pa.array(np.asarray(codes, dtype=np.int64)))
    return pd.Series(pd.arrays.ArrowStringArray(taken))


def _make_items(rng: np.random.Generator, num_items: int, params: GeneratorParams):
    """The catalogue, sorted by (genre, level); every (genre, level) bucket holds at least one title."""
    num_buckets = params.num_genres * NUM_LEVELS
    if num_items < num_buckets:
        raise ValueError(f"need at least {num_buckets} items (num_genres x {NUM_LEVELS} levels), got {num_items}")
    genre_weights = 1.0 / np.arange(1, params.num_genres + 1) ** params.genre_weight_exponent
    grade_shares = np.array([dict(params.grade_proportions)[str(g)] for g in range(1, NUM_LEVELS + 1)])
    level_weights = 0.5 * grade_shares / grade_shares.sum() + 0.5 / NUM_LEVELS
    extra = num_items - num_buckets
    genre = np.concatenate([np.repeat(np.arange(params.num_genres), NUM_LEVELS),
                            rng.choice(params.num_genres, extra, p=genre_weights / genre_weights.sum())])
    level = np.concatenate([np.tile(np.arange(1, NUM_LEVELS + 1), params.num_genres),
                            rng.choice(np.arange(1, NUM_LEVELS + 1), extra, p=level_weights)])
    popularity_rank = rng.permutation(num_items)
    popularity = 1.0 / (1.0 + popularity_rank) ** params.item_popularity_exponent
    order = np.lexsort((rng.random(num_items), level, genre))
    genre, level, popularity_rank, popularity = genre[order], level[order], popularity_rank[order], popularity[order]
    # Series: runs of titles within one (genre, level) bucket.
    bucket = genre * NUM_LEVELS + level
    new_series = np.ones(num_items, dtype=bool)
    new_series[1:] = (bucket[1:] != bucket[:-1]) | (rng.random(num_items - 1) < params.series_break_probability)
    series_id = np.cumsum(new_series) - 1
    series_position = segment_ranks(np.bincount(series_id))
    next_in_series = np.full(num_items, -1, dtype=np.int64)
    has_next = np.flatnonzero(~new_series[1:])
    next_in_series[has_next] = has_next + 1
    shelf_numbers = rng.permutation(num_items)
    item_ids = [f"B{number:06d}" for number in shelf_numbers]
    items = pd.DataFrame({
        "item_id": _labels(item_ids, np.arange(num_items)),
        "level": level.astype(np.int64),
        "genre": genre.astype(np.int64),
        "series_id": series_id.astype(np.int64),
        "series_position": series_position.astype(np.int64),
        "popularity": popularity,
    })
    return items, _Catalogue(genre, level, popularity_rank, popularity, next_in_series, params.num_genres)


def _make_population(rng: np.random.Generator, num_students: int, params: GeneratorParams):
    """Students' grades and schools, schools' districts and wealth indicators.

    Returns ``(student_grade [N] int64 index into GRADES, student_school [N] int64,
    school_district [S] int64, school_wealth [S] int64 index into WEALTH_INDICATORS)``.
    """
    grade_shares = np.array([dict(params.grade_proportions)[g] for g in GRADES])
    student_grade = rng.permutation(np.repeat(np.arange(len(GRADES)), exact_shares(num_students, grade_shares)))
    mean_school_size = params.school_size_median * np.exp(params.school_size_sigma ** 2 / 2)  # log-normal mean
    num_schools = max(1, int(round(num_students / mean_school_size)))
    school_type = rng.choice(len(SCHOOL_TYPES), num_schools, p=np.asarray(params.school_type_probabilities))
    school_type[0] = SCHOOL_TYPES.index("combined")  # every grade has at least one school
    capacity = np.exp(np.log(params.school_size_median) + params.school_size_sigma * rng.standard_normal(num_schools))
    student_school = np.empty(num_students, dtype=np.int64)
    for grade_index, grade in enumerate(GRADES):
        students = np.flatnonzero(student_grade == grade_index)
        if grade == "Other":
            eligible = np.arange(num_schools)
        else:
            eligible = np.flatnonzero([int(grade) in _SCHOOL_TYPE_GRADES[SCHOOL_TYPES[t]] for t in school_type])
        cumulative = np.cumsum(capacity[eligible])
        picks = np.searchsorted(cumulative, rng.random(len(students)) * cumulative[-1], side="right")
        student_school[students] = eligible[np.minimum(picks, len(eligible) - 1)]
    # Keep schools that have students, renumbered in a random order.
    used = np.flatnonzero(np.bincount(student_school, minlength=num_schools) > 0)
    new_index = np.full(num_schools, -1, dtype=np.int64)
    new_index[used[rng.permutation(len(used))]] = np.arange(len(used))
    student_school = new_index[student_school]
    num_schools = len(used)
    # Districts: consecutive runs of schools (schools are already in random order).
    sizes = 1 + rng.geometric(1.0 / params.district_size_mean, num_schools) - 1
    school_district = np.repeat(np.arange(num_schools), sizes)[:num_schools]
    school_district = np.cumsum(np.r_[True, np.diff(school_district) != 0]) - 1
    # Wealth: walk districts in random order; a school's share of students picks its band.
    district_order = rng.permutation(school_district.max() + 1)
    school_order = np.lexsort((np.arange(num_schools), np.argsort(district_order)[school_district]))
    students_per_school = np.bincount(student_school, minlength=num_schools)[school_order]
    midpoint = (np.cumsum(students_per_school) - students_per_school / 2.0) / num_students
    wealth_shares = np.array([dict(params.wealth_proportions)[w] for w in WEALTH_INDICATORS])
    band = np.minimum(np.searchsorted(np.cumsum(wealth_shares), midpoint, side="right"), len(WEALTH_INDICATORS) - 1)
    school_wealth = np.empty(num_schools, dtype=np.int64)
    school_wealth[school_order] = band
    return student_grade, student_school, school_district, school_wealth


def _grade_levels(rng, student_grade, params):
    """``[N] float64`` base reading level per student: below grade for graded students, any level for Other."""
    grade_number = student_grade + 1.0
    other = student_grade == GRADES.index("Other")
    spread = params.reading_level_sd * rng.standard_normal(len(student_grade))
    base = grade_number + params.reading_level_offset + spread
    base = np.where(other, rng.uniform(1, NUM_LEVELS, len(student_grade)), base)
    return np.clip(base, 1, NUM_LEVELS)


def _noisy_levels(rng, mean_level: np.ndarray, sd: float) -> np.ndarray:
    """``[n] int64`` reading levels: ``mean_level`` plus normal noise, rounded and clipped to 1..12."""
    noisy = mean_level + sd * rng.standard_normal(len(mean_level))
    return np.clip(np.rint(noisy), 1, NUM_LEVELS).astype(np.int64)


def generate(num_students: int, seed: int = 0, **params) -> SyntheticData:
    """Generates ``num_students`` students and about 24 interactions per student over two school years.

    Args:
        num_students: students (all of them read at least one title); 489_000 is paper scale.
        seed: every random draw derives from it; same seed and params give identical data.
        **params: overrides of ``GeneratorParams`` fields (see docs/synthetic_data.md).

    Returns:
        ``SyntheticData`` with canonical-column DataFrames.
    """
    if num_students < 1:
        raise ValueError(f"num_students must be >= 1, got {num_students}")
    p = make_params(**params)
    (rng_items, rng_people, rng_activity, rng_class, rng_reads, rng_taste, rng_sessions) = [
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]

    items, catalogue = _make_items(rng_items, num_items_for(num_students, p), p)
    student_grade, student_school, school_district, school_wealth = _make_population(rng_people, num_students, p)
    day_epoch, cdf, year_first_day = _calendar(p)

    # Activity: total interactions, active school years, per-year split, activity window.
    total = interaction_counts(rng_activity, num_students, p)
    both = (total >= 2) & (rng_activity.random(num_students) < p.both_years_probability)
    only_year = (rng_activity.random(num_students) < 0.5).astype(np.int64)
    share = rng_activity.beta(p.year_share_beta, p.year_share_beta, num_students)
    first_year_count = np.where(both, 1 + rng_activity.binomial(np.maximum(total - 2, 0), share),
                                np.where(only_year == 0, total, 0))
    year_counts = np.stack([first_year_count, total - first_year_count], axis=1)  # [N, 2]
    sy_student, sy_year = np.nonzero(year_counts > 0)  # student-years, sorted by student then year
    sy_count = year_counts[sy_student, sy_year]
    num_sy = len(sy_student)
    half_width = np.minimum(p.window_half_width_min + (p.window_half_width_max - p.window_half_width_min)
                            * rng_activity.random(num_sy) * np.minimum(1.0, np.log1p(sy_count) / np.log(65.0)), 0.5)
    # Windows wrap around the school year's end (into its summer start), so every day is equally likely.
    window_low = rng_activity.random(num_sy)

    # Classrooms (school x grade x school year) and their teachers' assignments.
    class_key = (student_school[sy_student] * len(GRADES) + student_grade[sy_student]) * NUM_SCHOOL_YEARS + sy_year
    class_keys, sy_class = np.unique(class_key, return_inverse=True)
    num_classes = len(class_keys)
    class_year = class_keys % NUM_SCHOOL_YEARS
    class_grade = (class_keys // NUM_SCHOOL_YEARS) % len(GRADES)
    class_school = class_keys // (NUM_SCHOOL_YEARS * len(GRADES))
    num_assignments = rng_class.poisson(p.assignments_per_class_year, num_classes)
    assignment_class = np.repeat(np.arange(num_classes), num_assignments)
    assignment_day = _days_at(cdf, class_year[assignment_class] + rng_class.random(len(assignment_class)))
    order = np.lexsort((assignment_day, assignment_class))  # chronological within class
    assignment_class, assignment_day = assignment_class[order], assignment_day[order]
    assignment_time = day_epoch[assignment_day] + _time_of_day(rng_class, len(assignment_day), 0.0)
    class_level = _grade_levels(rng_class, class_grade, p)  # the teacher's pick of level for the class
    assignment_level = _noisy_levels(rng_class, class_level[assignment_class], p.read_level_sd)
    # Teachers pick uniformly from the level's reading list (its most popular titles, any genre).
    reading_list, list_length = catalogue.reading_lists(p.reading_list_size)
    pick = np.floor(rng_class.random(len(assignment_class)) * list_length[assignment_level - 1]).astype(np.int64)
    assignment_item = reading_list[assignment_level - 1, pick]
    assignment_start = np.cumsum(num_assignments) - num_assignments

    # Reads: runs of consecutive sessions on one title, cut from each student-year's interactions.
    num_interactions = int(sy_count.sum())
    position = segment_ranks(sy_count)
    starts_read = (position == 0) | (rng_reads.random(num_interactions) < 1.0 / p.mean_sessions_per_read)
    read_of_interaction = np.cumsum(starts_read) - 1
    read_sy = np.repeat(np.arange(num_sy), sy_count)[starts_read]
    read_sessions = np.bincount(read_of_interaction)
    num_reads = len(read_sy)
    read_class = sy_class[read_sy]
    class_assignments = num_assignments[read_class]
    assigned = (rng_reads.random(num_reads) < p.assigned_read_probability) & (class_assignments > 0)
    # The k-th assigned read of a student-year takes the class's (offset + k)-th assignment (cyclic).
    assigned_before = np.cumsum(assigned) - assigned
    reads_per_sy = np.bincount(read_sy, minlength=num_sy)
    sy_first_read = np.cumsum(reads_per_sy) - reads_per_sy
    k = assigned_before - assigned_before[sy_first_read][read_sy]
    assigned &= k < class_assignments
    offset = np.floor(rng_reads.random(num_sy) * np.maximum(num_assignments[sy_class], 1)).astype(np.int64)
    local = (offset[read_sy] + k) % np.maximum(class_assignments, 1)
    read_assignment = np.where(assigned, assignment_start[read_class] + local, -1)
    # Start times: assigned reads a few days after the assignment, others in the student's window.
    read_year = sy_year[read_sy]
    in_window = (window_low[read_sy] + 2.0 * half_width[read_sy] * rng_reads.random(num_reads)) % 1.0
    free_day = _days_at(cdf, read_year + in_window)
    lag_days = np.floor(rng_reads.exponential(p.assignment_lag_days, num_reads)).astype(np.int64)
    assigned_day = np.minimum(assignment_day[np.maximum(read_assignment, 0)] + lag_days,
                              year_first_day[read_year + 1] - 1)
    read_day = np.where(assigned, assigned_day, free_day)
    read_start = day_epoch[read_day] + _time_of_day(rng_reads, num_reads, p.evening_fraction)
    read_student = sy_student[read_sy]

    # Order every student's reads in time, over both years.
    order = np.lexsort((read_start, read_student))
    read_student, read_year, read_start = read_student[order], read_year[order], read_start[order]
    read_sessions, assigned, read_assignment = read_sessions[order], assigned[order], read_assignment[order]

    # Titles: assigned reads take the assignment; others follow the student's drifting taste.
    first_epoch, last_epoch = day_epoch[0], day_epoch[-1] + SECONDS_PER_DAY
    progress = (read_start - first_epoch) / float(last_epoch - first_epoch)  # 0..1 over both years
    genre_weights = 1.0 / np.arange(1, p.num_genres + 1) ** p.genre_weight_exponent
    genre_weights /= genre_weights.sum()
    favourites_start = rng_taste.choice(p.num_genres, (num_students, 2), p=genre_weights)
    redraw = rng_taste.random((num_students, 2)) < p.genre_drift_probability
    favourites_end = np.where(redraw, rng_taste.choice(p.num_genres, (num_students, 2), p=genre_weights),
                              favourites_start)
    late = rng_taste.random(num_reads) < progress
    favourites = np.where(late[:, None], favourites_end[read_student], favourites_start[read_student])
    which = np.searchsorted(np.cumsum(p.favourite_genre_probabilities), rng_taste.random(num_reads), side="right")
    any_genre = rng_taste.choice(p.num_genres, num_reads, p=genre_weights)
    read_genre = np.where(which == 0, favourites[:, 0], np.where(which == 1, favourites[:, 1], any_genre))
    base_level = _grade_levels(rng_taste, student_grade, p)
    years_elapsed = progress * NUM_SCHOOL_YEARS
    read_level = _noisy_levels(rng_taste, base_level[read_student] + p.level_growth_per_year * years_elapsed,
                               p.read_level_sd)
    read_item = catalogue.sample(rng_taste, read_genre, read_level)
    read_item = np.where(assigned, assignment_item[np.maximum(read_assignment, 0)], read_item)
    # Series read in order: a free read after a title with a sequel is often the sequel.
    follow = (~assigned) & (rng_taste.random(num_reads) < p.series_next_probability)
    reads_per_student = np.bincount(read_student, minlength=num_students)
    rank = segment_ranks(reads_per_student)
    by_rank = np.argsort(rank, kind="stable")
    rank_bounds = np.cumsum(np.bincount(rank))
    for r in range(1, len(rank_bounds)):
        current = by_rank[rank_bounds[r - 1]:rank_bounds[r]]
        sequel = catalogue.next_in_series[read_item[current - 1]]
        take = follow[current] & (sequel >= 0)
        read_item[current[take]] = sequel[take]

    # Sessions: a title at most once a day per student (the official files have day resolution). The
    # first session is the read's start, later ones 1 + floor(Exponential(session_gap_days)) days apart,
    # squeezed (keeping distinct days) to end before the student's next read and the school year's end.
    session_read = np.repeat(np.arange(num_reads), read_sessions)
    session_rank = segment_ranks(read_sessions)
    gap_days = np.where(session_rank == 0, 0,
                        1 + np.floor(rng_sessions.exponential(p.session_gap_days, len(session_read))).astype(np.int64))
    cumulative_gap = np.cumsum(gap_days)
    read_first_session = np.cumsum(read_sessions) - read_sessions
    offset_days = cumulative_gap - np.repeat(cumulative_gap[read_first_session], read_sessions)
    start_day = (read_start - day_epoch[0]) // SECONDS_PER_DAY
    same_student_next = np.r_[read_student[1:] == read_student[:-1], False]
    next_day = np.where(same_student_next, np.r_[start_day[1:], 0], len(day_epoch))
    last_day = np.minimum(next_day - 1, year_first_day[read_year + 1] - 1)
    spare = np.maximum(last_day - start_day - (read_sessions - 1), 0)  # free days beyond one per session
    extra = offset_days - session_rank  # days beyond one per session, non-decreasing within a read
    extra_span = extra[read_first_session + read_sessions - 1]
    squeeze = np.where(extra_span > spare, spare / np.maximum(extra_span, 1), 1.0)
    session_day = start_day[session_read] + session_rank + np.floor(extra * squeeze[session_read]).astype(np.int64)
    session_day = np.minimum(session_day, year_first_day[read_year[session_read] + 1] - 1)
    later_time = day_epoch[session_day] + _time_of_day(rng_sessions, len(session_read), p.evening_fraction)
    timestamp = np.where(session_rank == 0, read_start[session_read], later_time)
    log_duration = np.log(p.duration_median_s) + p.duration_sigma * rng_sessions.standard_normal(len(session_read))
    duration = np.clip(np.rint(np.exp(log_duration)), p.duration_min_s, p.duration_max_s).astype(np.int64)
    # Rare same-day repeats left (a read overflowing into the next one, the year's last day) become one
    # row: the day's first time, its total listening time.
    session_student, session_item = read_student[session_read], read_item[session_read]
    day_of = timestamp // SECONDS_PER_DAY
    order = np.lexsort((timestamp, day_of, session_item, session_student))
    first = np.r_[True, (np.diff(session_student[order]) != 0) | (np.diff(session_item[order]) != 0)
                  | (np.diff(day_of[order]) != 0)]
    duration = np.bincount(np.cumsum(first) - 1, weights=duration[order]).astype(np.int64)
    kept = order[first]
    session_student, session_item, timestamp = session_student[kept], session_item[kept], timestamp[kept]

    # Assemble the tables.
    student_ids = rng_people.permutation(num_students).astype(np.int64) + 100_001
    school_ids = np.arange(len(school_district), dtype=np.int64) + 1_001
    district_ids = np.arange(school_district.max() + 1, dtype=np.int64) + 1
    order = np.lexsort((session_student, timestamp))
    item_ids = items["item_id"].to_list()
    interactions = pd.DataFrame({
        "student_id": student_ids[session_student[order]],
        "item_id": _labels(item_ids, session_item[order]),
        "timestamp": timestamp[order].astype(np.int64),
        "duration_s": duration[order],
    })
    grades, wealth = list(GRADES), list(WEALTH_INDICATORS)
    roster = pd.DataFrame({
        "student_id": student_ids,
        "school_id": school_ids[student_school],
        "grade": _labels(grades, student_grade),
        "district_id": district_ids[school_district[student_school]],
        "wealth_indicator": _labels(wealth, school_wealth[student_school]),
    }).sort_values("student_id", kind="stable").reset_index(drop=True)
    schools = pd.DataFrame({
        "school_id": school_ids,
        "district_id": district_ids[school_district],
        "wealth_indicator": _labels(wealth, school_wealth),
    })
    assignments = pd.DataFrame({
        "school_id": school_ids[class_school[assignment_class]],
        "grade": _labels(grades, class_grade[assignment_class]),
        "school_year": (p.first_school_year + class_year[assignment_class]).astype(np.int64),
        "item_id": _labels(item_ids, assignment_item),
        "timestamp": assignment_time.astype(np.int64),
    })
    return SyntheticData(interactions, roster, schools, items, assignments, p)


# ----------------------------------------------------------------------------------------------
# Files.


def _official_tables(data: SyntheticData) -> dict:
    """The three tables in the official STUDY release's columns (``raw_schema`` aliases)."""
    timestamps = pa.array(data.interactions["timestamp"].to_numpy(), type=pa.int64())
    dates = timestamps.cast(pa.timestamp("s", tz="UTC")).cast(pa.date32()).cast(pa.string())
    interactions = pa.table({
        "StudentID": pa.array(data.interactions["student_id"].to_numpy(), type=pa.int64()),
        "SHLF_NUM": pa.array(data.interactions["item_id"], type=pa.string()),
        "Date": dates,
        "Seconds Read": pa.array(data.interactions["duration_s"].to_numpy(), type=pa.int64()),
    })
    roster = pa.table({
        "StudentID": pa.array(data.roster["student_id"].to_numpy(), type=pa.int64()),
        "OrgnID": pa.array(data.roster["school_id"].to_numpy(), type=pa.int64()),
        "GRADE_LVL_NBR": pa.array(data.roster["grade"], type=pa.string()),
    })
    schools = pa.table({
        "OrgnID": pa.array(data.schools["school_id"].to_numpy(), type=pa.int64()),
        "Parent_Building_ID": pa.array(data.schools["district_id"].to_numpy(), type=pa.int64()),
    })
    for table, aliases in ((interactions, raw_schema.INTERACTION_ALIASES), (roster, raw_schema.ROSTER_ALIASES),
                           (schools, raw_schema.SCHOOL_ALIASES)):
        unknown = set(table.column_names) - set(aliases)
        assert not unknown, f"official columns {unknown} are not in raw_schema aliases"
    return {"interactions": interactions, "roster": roster, "schools": schools}


def _canonical_tables(data: SyntheticData) -> dict:
    def table(frame, columns):
        return pa.Table.from_pandas(frame[list(columns)], preserve_index=False)

    interaction_columns = raw_schema.INTERACTION_COLUMNS + ("duration_s",)
    roster_columns = raw_schema.ROSTER_COLUMNS + ("district_id", "wealth_indicator")
    school_columns = raw_schema.SCHOOL_COLUMNS + raw_schema.SCHOOL_OPTIONAL
    return {"interactions": table(data.interactions, interaction_columns),
            "roster": table(data.roster, roster_columns),
            "schools": table(data.schools, school_columns)}


def _write_table(table: pa.Table, path: str, file_format: str) -> None:
    # Plain string columns (no dictionary or large_string types) keep CSV and Parquet readers simple.
    columns = [column.cast(pa.string()) if pa.types.is_large_string(column.type) or pa.types.is_string(column.type)
               or pa.types.is_dictionary(column.type) else column for column in table.columns]
    table = pa.table(columns, names=table.column_names)
    if file_format == "csv":
        pa_csv.write_csv(table, path)
    else:
        pa_parquet.write_table(table, path)


def write(data: SyntheticData, out_dir: str, formats: Sequence[str] = (CANONICAL, OFFICIAL),
          file_format: str = "csv") -> dict:
    """Writes ``data`` under ``out_dir``; returns ``{"canonical/interactions": path, ...}``.

    canonical: ``interactions``, ``roster``, ``schools`` (raw_schema canonical columns) in out_dir.
    official: the same rows with the official release's columns in ``out_dir/official/``; ``Date`` is
    the UTC date (YYYY-MM-DD) of the timestamp.
    ``file_format`` "csv" or "parquet" picks the file type (``.csv`` / ``.parquet``).
    """
    unknown = set(formats) - {CANONICAL, OFFICIAL}
    if unknown:
        raise ValueError(f"unknown formats {sorted(unknown)}; choose from {CANONICAL!r}, {OFFICIAL!r}")
    if file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
    written = {}
    for kind in formats:
        directory = out_dir if kind == CANONICAL else os.path.join(out_dir, "official")
        os.makedirs(directory, exist_ok=True)
        tables = _canonical_tables(data) if kind == CANONICAL else _official_tables(data)
        for name, table in tables.items():
            path = os.path.join(directory, f"{name}.{file_format}")
            _write_table(table, path, file_format)
            written[f"{kind}/{name}"] = path
    return written


def summary(data: SyntheticData) -> dict:
    """Headline statistics of a data set (counts, per-student percentiles, continuation share)."""
    inter = data.interactions
    per_student = inter.groupby("student_id").size().to_numpy()
    ordered = inter.sort_values(["student_id", "timestamp"], kind="stable")
    same_student = ordered["student_id"].to_numpy()[1:] == ordered["student_id"].to_numpy()[:-1]
    same_item = ordered["item_id"].to_numpy()[1:] == ordered["item_id"].to_numpy()[:-1]
    roster = data.roster
    class_sizes = (inter[["student_id", "timestamp"]]
                   .assign(year=school_years(inter["timestamp"].to_numpy()))
                   .drop_duplicates(["student_id", "year"])
                   .merge(roster[["student_id", "school_id", "grade"]], on="student_id")
                   .groupby(["school_id", "grade", "year"]).size().to_numpy())
    return {
        "students": int(len(roster)),
        "interactions": int(len(inter)),
        "items": int(inter["item_id"].nunique()),
        "catalogue": int(len(data.items)),
        "schools": int(len(data.schools)),
        "districts": int(data.schools["district_id"].nunique()),
        "classrooms": int(len(class_sizes)),
        "classroom_size_p10_p50_p90": [float(v) for v in np.percentile(class_sizes, [10, 50, 90])],
        "interactions_per_student_p5_p25_p50_p75_p95": [
            float(v) for v in np.percentile(per_student, [5, 25, 50, 75, 95])],
        "mean_interactions_per_student": float(per_student.mean()),
        # Share of all interactions that repeat the student's previous title (rows' is_continuation).
        "continuation_fraction": float((same_item & same_student).sum() / max(1, len(inter))),
    }


def classroom_keys(interactions: pd.DataFrame, roster: pd.DataFrame) -> np.ndarray:
    """``[n] int64`` classroom (school x grade x school year) index of each interaction row."""
    merged = interactions[["student_id", "timestamp"]].merge(
        roster[["student_id", "school_id", "grade"]], on="student_id", how="left", validate="many_to_one")
    year = school_years(merged["timestamp"].to_numpy())
    keys = pd.MultiIndex.from_arrays([merged["school_id"].to_numpy(), merged["grade"].to_numpy(), year])
    return pd.factorize(keys)[0].astype(np.int64)


def classmate_recent_read_fraction(student: np.ndarray, item: np.ndarray, timestamp: np.ndarray,
                                   classroom: np.ndarray, window_s: int = 14 * SECONDS_PER_DAY) -> float:
    """Share of interactions whose item another student of the same classroom read in the window before.

    An interaction (u, i, t, c) counts when some (v, i, t', c) has v != u and t - window_s <= t' < t.
    All arguments are ``[n]`` arrays (timestamps in seconds); items may be strings. A classmate's read
    in the very same second as the latest one before the current student's run is not looked behind.
    """
    item_code = pd.factorize(np.asarray(item))[0]
    order = np.lexsort((np.asarray(student), np.asarray(timestamp), item_code, np.asarray(classroom)))
    s, t = np.asarray(student)[order], np.asarray(timestamp)[order]
    group = np.asarray(classroom)[order].astype(np.int64) * (item_code.max() + 1) + item_code[order]
    n = len(order)
    # Latest earlier time in the group by a different student: walk back over the student's own run.
    new_group = np.r_[True, group[1:] != group[:-1]]
    new_run = new_group | np.r_[True, s[1:] != s[:-1]]
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    previous = run_start - 1
    valid = (previous >= 0) & ~new_group[run_start]
    previous_time = np.where(valid, t[np.maximum(previous, 0)], np.iinfo(np.int64).min)
    hit = valid & (previous_time < t) & (t - previous_time <= window_s)
    return float(hit.mean()) if n else 0.0


def school_years(timestamps: np.ndarray, start_month: int = raw_schema.SCHOOL_YEAR_START_MONTH) -> np.ndarray:
    """``[n] int64`` school year (its starting calendar year) of each UTC epoch-seconds timestamp.

    Vectorized form of ``raw_schema.school_year``.
    """
    months = np.asarray(timestamps, dtype=np.int64).astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    year, month = months // 12 + 1970, months % 12 + 1
    return np.where(month >= start_month, year, year - 1).astype(np.int64)


def main(argv):
    del argv
    from absl import flags

    started = time.time()
    options = flags.FLAGS
    data = generate(options.num_students, seed=options.seed)
    write(data, options.out_dir, formats=tuple(options.formats), file_format=options.file_format)
    num_interactions = len(data.interactions)
    print(f"wrote {num_interactions} interactions ({num_interactions / len(data.roster):.1f} per student) of "
          f"{len(data.roster)} students, {len(data.schools)} schools, {data.schools['district_id'].nunique()} "
          f"districts, {len(data.items)} items as {','.join(options.formats)} {options.file_format} "
          f"to {options.out_dir} in {time.time() - started:.1f}s")


def _define_flags():
    from absl import flags

    flags.DEFINE_integer("num_students", 20_000, "Number of students (489000 = paper scale).", lower_bound=1)
    flags.DEFINE_integer("seed", 0, "Random seed; same seed, same bytes.")
    flags.DEFINE_string("out_dir", None, "Output directory.", required=True)
    flags.DEFINE_list("formats", [CANONICAL, OFFICIAL], "Comma-separated: canonical, official.")
    flags.DEFINE_enum("file_format", "csv", list(FILE_FORMATS), "File type of the tables.")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
