"""Roster columns: grade is optional when classrooms are given (the row's grade is then 0, the row
format's unknown grade)."""

import csv

import pytest

from data_pipeline import build_dataset
from data_pipeline import read_raw
from tests.pipeline_inputs import job_config
from tests.pipeline_inputs import letter_keys
from tests.pipeline_inputs import run_job

INTERACTIONS = """student_id,item_id,timestamp
s1,a,2020-09-01
s2,b,2020-09-02
s3,c,2020-09-03
s4,d,2020-09-04
s1,e,2021-09-01
"""
ROSTER_WITHOUT_GRADE = """student_id,school_id,classroom_id
s1,sch,room1
s2,sch,room1
s3,sch,room2
s4,sch,
"""


def load_rows(dataset_dir, split):
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(dataset_dir))
    return list(tfds.as_numpy(builder.as_dataset(split=split)))


def test_grade_is_optional_when_classrooms_are_given(tmp_path):
    out, stats = run_job(
        tmp_path, INTERACTIONS, roster=ROSTER_WITHOUT_GRADE, validation_fraction=1.0
    )
    # s4 has neither a classroom nor a grade: no classroom key can be made for it.
    assert letter_keys(out) == [
        ("interactions.csv", 5, "student_not_in_roster"),
        ("roster.csv", 5, "missing_classroom_id"),
    ]
    assert stats["splits"]["train"]["classrooms"] == 2
    rows = load_rows(out / "individual", "train")
    assert sorted((r["classroom"], int(r["grade"])) for r in rows) == [
        (b"room1", 0),
        (b"room1", 0),
        (b"room2", 0),
    ]
    with open(out / "students.csv", newline="") as handle:
        students = {r["student_id"]: r for r in csv.DictReader(handle)}
    assert {s: r["classrooms"] for s, r in students.items()} == {
        "s1": "room1",
        "s2": "room1",
        "s3": "room2",
    }


def test_grade_is_required_without_classrooms(tmp_path):
    roster = "student_id,school_id\ns1,sch\n"
    with pytest.raises(read_raw.InputError, match=r"roster.*grade \(or GRADE_LVL_NBR\).*classroom_id"):
        build_dataset.build_dataset(job_config(tmp_path, INTERACTIONS, roster=roster))
