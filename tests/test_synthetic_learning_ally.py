"""The synthetic Learning Ally generator: calibration to the STUDY appendix, social signal, files."""

import datetime
import filecmp
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from study.data import raw_schema
from study.sims import synthetic_learning_ally as sla

NUM_STUDENTS = 20_000
DAY = 86_400

# Documented targets (docs/synthetic_data.md), written out here rather than read from the module.
GRADE_TARGETS = {"1": 0.03, "2": 0.06, "3": 0.10, "4": 0.12, "5": 0.13, "6": 0.12, "7": 0.11, "8": 0.10,
                 "9": 0.07, "10": 0.05, "11": 0.04, "12": 0.03, "Other": 0.04}
WEALTH_TARGETS = {"A": 0.12, "B": 0.17, "C": 0.22, "D": 0.22, "E": 0.17, "Unknown": 0.10}
PAPER_PERCENTILES = {5: 1, 25: 3, 50: 10, 75: 29, 95: 105}


@pytest.fixture(scope="module")
def data():
    return sla.generate(NUM_STUDENTS, seed=0)


@pytest.fixture(scope="module")
def small():
    return sla.generate(1_500, seed=3)


def _continuation_share(interactions):
    """Share of interactions whose title equals the same student's previous title."""
    ordered = interactions.sort_values(["student_id", "timestamp"], kind="stable")
    student, item = ordered["student_id"].to_numpy(), ordered["item_id"].to_numpy()
    return ((student[1:] == student[:-1]) & (item[1:] == item[:-1])).sum() / len(ordered)


# ----------------------------------------------------------------------------------------------
# Helpers, against hand-worked numbers and brute-force references.


def test_exact_shares_hand_worked():
    # 10 * (0.25, 0.25, 0.5) = 2.5, 2.5, 5 -> floors 2, 2, 5; one left goes to the first largest remainder.
    assert sla.exact_shares(10, np.array([0.25, 0.25, 0.5])).tolist() == [3, 2, 5]
    assert sla.exact_shares(7, np.array([1.0, 1.0])).sum() == 7


def test_segment_ranks_hand_worked():
    assert sla.segment_ranks(np.array([3, 1, 2])).tolist() == [0, 1, 2, 0, 0, 1]


def test_school_years_matches_scalar_reference():
    rng = np.random.default_rng(0)
    stamps = rng.integers(1_500_000_000, 1_700_000_000, 500)
    stamps = np.r_[stamps, 1_564_617_600 - 1, 1_564_617_600]  # 2019-07-31 23:59:59, 2019-08-01 00:00:00
    expected = [raw_schema.school_year(s) for s in stamps]
    assert sla.school_years(stamps).tolist() == expected
    assert expected[-2:] == [2018, 2019]


def _classmate_fraction_brute_force(student, item, timestamp, classroom, window_s):
    hits = 0
    for i in range(len(student)):
        hits += any(classroom[j] == classroom[i] and item[j] == item[i] and student[j] != student[i]
                    and timestamp[i] - window_s <= timestamp[j] < timestamp[i] for j in range(len(student)))
    return hits / len(student)


def test_classmate_fraction_hand_worked():
    # Rows: (student, item, t_days, classroom). Row 1: classmate 1 read "x" 3 days earlier -> hit.
    # Row 2: own earlier read only -> miss. Row 3: other classroom -> miss. Row 4: 20 days later -> miss.
    student = np.array([1, 2, 2, 3, 4])
    item = np.array(["x", "x", "x", "x", "x"])
    t = np.array([0, 3, 4, 5, 24]) * DAY
    classroom = np.array([0, 0, 0, 1, 0])
    assert sla.classmate_recent_read_fraction(student, item, t, classroom, 14 * DAY) == pytest.approx(2 / 5)


def test_classmate_fraction_matches_brute_force():
    rng = np.random.default_rng(7)
    n = 300
    student = rng.integers(0, 12, n)
    item = rng.choice(np.array(["a", "b", "c", "d", "e"]), n)
    timestamp = rng.permutation(60 * DAY)[:n]  # distinct seconds
    classroom = student % 3
    for window in (2 * DAY, 14 * DAY):
        fast = sla.classmate_recent_read_fraction(student, item, timestamp, classroom, window)
        assert fast == pytest.approx(_classmate_fraction_brute_force(student, item, timestamp, classroom, window))


# ----------------------------------------------------------------------------------------------
# Determinism and parameters.


def test_same_seed_same_data_and_bytes(small, tmp_path):
    again = sla.generate(1_500, seed=3)
    pd.testing.assert_frame_equal(small.interactions, again.interactions)
    pd.testing.assert_frame_equal(small.roster, again.roster)
    pd.testing.assert_frame_equal(small.items, again.items)
    for file_format in ("csv", "parquet"):
        first = sla.write(small, str(tmp_path / f"a_{file_format}"), file_format=file_format)
        second = sla.write(again, str(tmp_path / f"b_{file_format}"), file_format=file_format)
        assert first.keys() == second.keys() and len(first) == 6
        for key in first:
            assert filecmp.cmp(first[key], second[key], shallow=False), key


def test_different_seed_differs(small):
    other = sla.generate(1_500, seed=4)
    assert not small.interactions.equals(other.interactions)
    assert not small.roster["school_id"].equals(other.roster["school_id"])


def test_unknown_or_bad_params_are_rejected():
    with pytest.raises(TypeError, match="unknown generator parameter"):
        sla.generate(100, seed=0, num_student=5)
    with pytest.raises(ValueError, match="sum to 1"):
        sla.generate(100, seed=0, wealth_proportions={"A": 0.5, "B": 0.1, "C": 0.1, "D": 0.1, "E": 0.1,
                                                      "Unknown": 0.2})
    with pytest.raises(ValueError, match="num_students"):
        sla.generate(0)


def _classmate_fraction(data):
    inter = data.interactions
    return sla.classmate_recent_read_fraction(
        inter["student_id"].to_numpy(), inter["item_id"].to_numpy(), inter["timestamp"].to_numpy(),
        sla.classroom_keys(inter, data.roster))


def test_params_change_the_story():
    base = sla.generate(2_000, seed=1)
    no_assignments = sla.generate(2_000, seed=1, assigned_read_probability=0.0)
    assert len(base.assignments) > 0
    # Classroom co-reading comes from teachers' assignments: without them it falls to chance level.
    assert _classmate_fraction(base) > 3 * _classmate_fraction(no_assignments)
    # Longer reads: the same interactions per student (up to rare same-day merges), more continuations.
    longer_reads = sla.generate(2_000, seed=1, mean_sessions_per_read=3.0)
    assert abs(len(longer_reads.interactions) - len(base.interactions)) < 0.01 * len(base.interactions)
    assert _continuation_share(longer_reads.interactions) > _continuation_share(base.interactions) + 0.05


# ----------------------------------------------------------------------------------------------
# Calibration to the STUDY appendix.


def test_interactions_per_student_percentiles(data):
    per_student = data.interactions.groupby("student_id").size()
    assert len(per_student) == NUM_STUDENTS  # every rostered student reads
    for q, target in PAPER_PERCENTILES.items():
        value = np.percentile(per_student.to_numpy(), q)
        assert abs(value - target) <= 0.2 * target, (q, value, target)
    assert 19.0 < per_student.mean() < 27.0  # paper: 10.7M / 489k = 21.9


def test_yearly_sequences_mostly_shorter_than_65(data):
    years = sla.school_years(data.interactions["timestamp"].to_numpy())
    lengths = data.interactions.assign(year=years).groupby(["student_id", "year"]).size()
    assert (lengths < 65).mean() > 0.90
    assert set(np.unique(years)) == {2019, 2020}


def test_grade_and_wealth_proportions(data):
    grades = data.roster["grade"].value_counts(normalize=True).to_dict()
    assert set(grades) == set(GRADE_TARGETS)
    for grade, share in GRADE_TARGETS.items():
        assert abs(grades[grade] - share) < 0.005, grade
    wealth = data.roster["wealth_indicator"].value_counts(normalize=True).to_dict()
    assert set(wealth) == set(WEALTH_TARGETS)
    for band, share in WEALTH_TARGETS.items():
        assert abs(wealth[band] - share) < 0.02, band


def test_schools_districts_and_classroom_sizes(data):
    roster, schools = data.roster, data.schools
    assert roster["student_id"].is_unique and schools["school_id"].is_unique
    joined = roster.merge(schools, on="school_id", suffixes=("", "_school"), validate="many_to_one")
    assert len(joined) == len(roster)
    assert (joined["district_id"] == joined["district_id_school"]).all()
    assert (joined["wealth_indicator"] == joined["wealth_indicator_school"]).all()
    assert schools.groupby("district_id").size().max() > 1  # districts group several schools
    years = sla.school_years(data.interactions["timestamp"].to_numpy())
    active = (data.interactions[["student_id"]].assign(year=years).drop_duplicates()
              .merge(roster, on="student_id"))
    sizes = active.groupby(["school_id", "grade", "year"]).size()
    assert 5 <= sizes.median() <= 40
    assert 0.5 < ((sizes >= 5) & (sizes <= 40)).mean()


def test_calendar_two_school_years_mostly_in_school_months(data):
    stamps = data.interactions["timestamp"]
    assert stamps.dtype == np.int64
    first = datetime.datetime(2019, 8, 1, tzinfo=datetime.timezone.utc).timestamp()
    end = datetime.datetime(2021, 8, 1, tzinfo=datetime.timezone.utc).timestamp()
    assert stamps.min() >= first and stamps.max() < end
    months = pd.to_datetime(stamps, unit="s").dt.month
    assert months.isin([6, 7]).mean() < 0.08  # summer
    assert months.isin([9, 10, 11, 1, 2, 3]).mean() > 0.55
    weekday = pd.to_datetime(stamps, unit="s").dt.dayofweek
    assert (weekday >= 5).mean() < 0.25  # uniform days would give 2/7 = 0.286


def test_catalogue_long_tail(data):
    counts = data.interactions["item_id"].value_counts()
    assert len(data.items) >= 5_000 and len(counts) > 2_000
    top_share = counts.iloc[:2_000].sum() / counts.sum()
    assert 0.70 < top_share < 1.0
    assert counts.iloc[0] > 50 * counts.median()


def test_students_read_around_their_grade_level(data):
    levels = data.items.set_index("item_id")["level"]
    read = data.interactions.merge(data.roster[["student_id", "grade"]], on="student_id")
    read = read[read["grade"] != "Other"]
    gap = levels.loc[read["item_id"]].to_numpy() - read["grade"].astype(int).to_numpy()
    assert -2.0 < np.median(gap) < 1.0
    assert np.mean(np.abs(gap) <= 3) > 0.85


def test_continuations_within_band(data):
    assert 0.30 <= _continuation_share(data.interactions) <= 0.50


def test_a_title_at_most_once_a_day_per_student(data):
    # The official files have day resolution: two rows of one student, title and date would be duplicates.
    day = data.interactions["timestamp"] // DAY
    assert not data.interactions.assign(day=day).duplicated(["student_id", "item_id", "day"]).any()


def test_classmates_read_assigned_titles_within_days(data):
    inter, roster = data.interactions, data.roster
    args = (inter["student_id"].to_numpy(), inter["item_id"].to_numpy(), inter["timestamp"].to_numpy())
    real = _classmate_fraction(data)
    # Control: students shuffled across schools within their grade, class sizes kept.
    rng = np.random.default_rng(0)
    shuffled = roster.copy()
    for _, index in shuffled.groupby("grade").indices.items():
        shuffled.iloc[index, shuffled.columns.get_loc("school_id")] = rng.permutation(
            shuffled["school_id"].to_numpy()[index])
    control = sla.classmate_recent_read_fraction(*args, sla.classroom_keys(inter, shuffled))
    assert real > 0.12
    assert real > 3 * control, (real, control)


def test_assigned_titles_are_shared_by_the_classroom(data):
    # Each assignment is read by several classmates within three weeks of being assigned.
    inter = data.interactions.merge(data.roster[["student_id", "school_id", "grade"]], on="student_id")
    inter = inter.assign(school_year=sla.school_years(inter["timestamp"].to_numpy()))
    joined = data.assignments.rename(columns={"timestamp": "assigned_at"}).merge(
        inter, on=["school_id", "grade", "school_year", "item_id"])
    delay = joined["timestamp"] - joined["assigned_at"]
    soon = joined[(delay >= 0) & (delay < 21 * DAY)]
    readers = soon.groupby(["school_id", "grade", "school_year", "item_id", "assigned_at"])["student_id"].nunique()
    assert readers.median() >= 2
    assert len(readers) > 0.5 * len(data.assignments)


# ----------------------------------------------------------------------------------------------
# Files.


def test_official_and_canonical_files_agree(small, tmp_path):
    for file_format in ("csv", "parquet"):
        out = tmp_path / file_format
        sla.write(small, str(out), file_format=file_format)
        read = pd.read_csv if file_format == "csv" else pd.read_parquet

        def load(path, _read=read, _format=file_format):
            if _format == "parquet":
                return _read(str(path))
            return _read(str(path), dtype={"grade": str, "GRADE_LVL_NBR": str})

        canonical = load(out / f"interactions.{file_format}")
        official = load(out / "official" / f"interactions.{file_format}")
        assert list(canonical.columns) == ["student_id", "item_id", "timestamp", "duration_s"]
        assert list(official.columns) == ["StudentID", "SHLF_NUM", "Date", "Seconds Read"]
        assert canonical["timestamp"].dtype == np.int64
        renamed = official.rename(columns=raw_schema.INTERACTION_ALIASES)
        assert len(renamed) == len(canonical) == len(small.interactions)
        np.testing.assert_array_equal(renamed["student_id"], canonical["student_id"])
        np.testing.assert_array_equal(renamed["item_id"].astype(str), canonical["item_id"].astype(str))
        np.testing.assert_array_equal(renamed["duration_s"], canonical["duration_s"])
        dates = [datetime.datetime.fromtimestamp(int(t), tz=datetime.timezone.utc).strftime("%Y-%m-%d")
                 for t in canonical["timestamp"]]
        assert renamed["timestamp"].astype(str).tolist() == dates
        np.testing.assert_array_equal(canonical["timestamp"], small.interactions["timestamp"])

        roster = load(out / f"roster.{file_format}")
        official_roster = load(out / "official" / f"roster.{file_format}").rename(columns=raw_schema.ROSTER_ALIASES)
        assert list(roster.columns) == ["student_id", "school_id", "grade", "district_id", "wealth_indicator"]
        pd.testing.assert_frame_equal(official_roster.astype(str),
                                      roster[["student_id", "school_id", "grade"]].astype(str))
        schools = load(out / f"schools.{file_format}")
        official_schools = load(out / "official" / f"schools.{file_format}").rename(columns=raw_schema.SCHOOL_ALIASES)
        pd.testing.assert_frame_equal(official_schools, schools[["school_id", "district_id"]])


def test_write_rejects_unknown_format(small, tmp_path):
    with pytest.raises(ValueError, match="unknown formats"):
        sla.write(small, str(tmp_path), formats=("canonical", "tsv"))
    with pytest.raises(ValueError, match="file_format"):
        sla.write(small, str(tmp_path), file_format="json")


def test_command_line(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "study.sims.synthetic_learning_ally", "--num_students=300", "--seed=2",
         f"--out_dir={out}", "--formats=canonical", "--file_format=parquet"],
        capture_output=True, text=True, check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "300 students" in lines[0]
    assert sorted(os.listdir(out)) == ["interactions.parquet", "roster.parquet", "schools.parquet"]
    written = pd.read_parquet(out / "interactions.parquet")
    expected = sla.generate(300, seed=2).interactions
    np.testing.assert_array_equal(written["timestamp"].to_numpy(), expected["timestamp"].to_numpy())
