"""The official STUDY release's column names, written out here by hand, are read as the README says."""

import csv
import pathlib

from tests.pipeline_inputs import run_job

README = pathlib.Path(__file__).parent.parent / "README.md"
# The official release's files and columns.
OFFICIAL_COLUMNS = {
    "interactions": ("StudentID", "SHLF_NUM", "Date", "Seconds Read"),
    "roster": ("StudentID", "OrgnID", "GRADE_LVL_NBR"),
    "schools": ("OrgnID", "Parent_Building_ID"),
}
INTERACTIONS = """StudentID,SHLF_NUM,Date,Seconds Read
101,B1,2020-09-01,30
101,B2,2020-09-02,40
102,B1,2020-09-03,50
101,B3,2021-09-01,60
"""
ROSTER = """StudentID,OrgnID,GRADE_LVL_NBR
101,900,4
102,900,5
"""
SCHOOLS = """OrgnID,Parent_Building_ID
900,77
"""


def test_official_columns_are_read(tmp_path):
    out, stats = run_job(
        tmp_path, INTERACTIONS, roster=ROSTER, schools=SCHOOLS, validation_fraction=1.0
    )
    assert stats["inputs"]["interactions"]["rows_kept"] == 4
    assert stats["splits"]["train"]["interactions"] == 3
    assert stats["splits"]["train"]["districts"] == 1
    with open(out / "students.csv", newline="") as handle:
        students = {r["student_id"]: r for r in csv.DictReader(handle)}
    assert students["101"]["classrooms"] == "900|4|2020;900|4|2021"
    assert students["102"]["classrooms"] == "900|5|2020"
    assert students["101"]["district_id"] == "77"


def test_readme_names_the_official_columns():
    text = README.read_text()
    for kind, columns in OFFICIAL_COLUMNS.items():
        listed = ", ".join(columns)
        assert f"`{listed}`" in text, (kind, listed)
    for wrong in ("BookID", "SchoolID"):
        assert wrong not in text
