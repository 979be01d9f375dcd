"""Bad input: rejected rows become dead letters with a reason; unusable files are one clear error."""

import json
import subprocess
import sys

import pytest

from data_pipeline import build_dataset
from data_pipeline import read_raw

ROSTER = """student_id,school_id,grade
s1,sch,3
s2,sch,3
s3,sch,4
s3,sch,4
s4,,4
"""
# Physical lines (the header is line 1), with what is wrong.
INTERACTIONS = """student_id,item_id,timestamp
s1,a,2020-09-01
s1,b,2020-09-02,extra
s1,c,yesterday
,d,2020-09-03
s2,,2020-09-04
s2,a,2020-09-05
s2,a,2020-09-05
s9,a,2020-09-06
s3,a,2020-09-07
s1,a,1599350400
s4,a,2020-09-08
"""
EXPECTED_DEAD = {
    ("interactions.csv", 3, "malformed_line"),
    ("interactions.csv", 4, "unparseable_timestamp"),
    ("interactions.csv", 5, "missing_student_id"),
    ("interactions.csv", 6, "missing_item_id"),
    ("interactions.csv", 8, "duplicate_event"),
    ("interactions.csv", 9, "student_not_in_roster"),
    ("interactions.csv", 12, "student_not_in_roster"),  # s4's roster row has no school
    ("roster.csv", 5, "duplicate_roster_entry"),
    ("roster.csv", 6, "missing_school_id"),
}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_input")
    (folder / "interactions.csv").write_text(INTERACTIONS)
    (folder / "roster.csv").write_text(ROSTER)
    out = folder / "out"
    config = build_dataset.PipelineConfig(
        interactions=str(folder / "interactions.csv"),
        roster=str(folder / "roster.csv"),
        output_dir=str(out),
        row_length=4,
        segment_length=2,
        num_packings=1,
        allow_empty_split=True,  # every interaction is in the first school year: no later period
    )
    return out, build_dataset.build_dataset(config)


def test_each_bad_row_is_a_dead_letter_with_its_reason(bad_run):
    out, _ = bad_run
    letters = [
        json.loads(line)
        for path in (out / "dead_letter").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    got = {(l["source"].rsplit("/", 1)[-1], l["line"], l["reason"]) for l in letters}
    assert got == EXPECTED_DEAD
    by_reason = {l["reason"]: l for l in letters}
    assert by_reason["unparseable_timestamp"]["record"]["timestamp"] == "yesterday"
    assert by_reason["malformed_line"]["record"]["text"] == "s1,b,2020-09-02,extra"


def test_counts_add_up(bad_run):
    _, stats = bad_run
    interactions = stats["inputs"]["interactions"]
    assert interactions["rows_in"] == 11
    # Kept: s1 a (line 2), s2 a (line 7), s3 a (line 10), s1 a (line 11: 2020-09-06, not a duplicate).
    assert interactions["rows_kept"] == 4
    assert interactions["rows_dead_lettered"] == 7
    assert interactions["dead_letter_reasons"] == {
        "duplicate_event": 1,
        "malformed_line": 1,
        "missing_item_id": 1,
        "missing_student_id": 1,
        "student_not_in_roster": 2,
        "unparseable_timestamp": 1,
    }
    roster = stats["inputs"]["roster"]
    assert (roster["rows_in"], roster["rows_kept"], roster["rows_dead_lettered"]) == (5, 3, 2)
    assert stats["splits"]["train"]["interactions"] == 4


def write(path, text):
    path.write_text(text)
    return str(path)


def config_for(tmp_path, interactions, roster=None, schools=None):
    roster = roster or write(tmp_path / "roster.csv", "student_id,school_id,grade\ns1,x,1\n")
    return build_dataset.PipelineConfig(
        interactions=interactions, roster=roster, schools=schools, output_dir=str(tmp_path / "o")
    )


def test_missing_file_is_one_clear_error(tmp_path):
    config = config_for(tmp_path, str(tmp_path / "nope_*.csv"))
    with pytest.raises(read_raw.InputError, match=r"interactions input .*nope_\*\.csv.*no file matches"):
        build_dataset.build_dataset(config)


def test_missing_column_names_the_file_and_the_column(tmp_path):
    path = write(tmp_path / "events.csv", "student_id,timestamp\ns1,2020-01-01\n")
    with pytest.raises(read_raw.InputError, match=r"events\.csv.*item_id \(or SHLF_NUM\)"):
        build_dataset.build_dataset(config_for(tmp_path, path))
    roster = write(tmp_path / "r.csv", "student_id,grade\ns1,3\n")
    good = write(tmp_path / "ok.csv", "student_id,item_id,timestamp\ns1,a,2020-01-01\n")
    with pytest.raises(read_raw.InputError, match=r"roster file .*r\.csv.*school_id"):
        build_dataset.build_dataset(config_for(tmp_path, good, roster=roster))


def test_empty_interactions_is_a_clear_error(tmp_path):
    path = write(tmp_path / "empty.csv", "student_id,item_id,timestamp\n")
    with pytest.raises(read_raw.InputError, match="no data rows"):
        build_dataset.build_dataset(config_for(tmp_path, path))


def test_unknown_format_is_a_clear_error(tmp_path):
    path = write(tmp_path / "events.json", "{}")
    with pytest.raises(read_raw.InputError, match="unknown format"):
        build_dataset.build_dataset(config_for(tmp_path, path))


def test_unreadable_parquet_is_a_clear_error(tmp_path):
    path = write(tmp_path / "events.parquet", "this is not parquet")
    with pytest.raises(read_raw.InputError, match=r"events\.parquet.*cannot be read"):
        build_dataset.build_dataset(config_for(tmp_path, path))


def test_bad_options_are_rejected(tmp_path):
    good = write(tmp_path / "ok.csv", "student_id,item_id,timestamp\ns1,a,2020-01-01\n")
    config = config_for(tmp_path, good)
    with pytest.raises(ValueError, match="segment_length"):
        build_dataset.build_dataset(
            build_dataset.PipelineConfig(**{**config.__dict__, "segment_length": 9, "row_length": 4})
        )
    with pytest.raises(ValueError, match="split_date"):
        build_dataset.build_dataset(
            build_dataset.PipelineConfig(**{**config.__dict__, "split_date": "next year"})
        )


def test_command_line_prints_the_error_without_a_stack_trace(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_pipeline.build_dataset",
            f"--interactions={tmp_path}/missing.csv",
            f"--roster={tmp_path}/missing_roster.csv",
            f"--output_dir={tmp_path}/out",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "error: interactions input" in result.stderr and "no file matches" in result.stderr
    assert "Traceback" not in result.stderr
