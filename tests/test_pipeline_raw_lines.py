"""Dead letters name the file's physical line (header = line 1), blank lines are skipped and
counted, bytes that are not UTF-8 reject their line only, and every bad row is one dead letter."""

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline as beam_test_pipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from data_pipeline import file_ranges
from data_pipeline import read_raw
from data_pipeline import statistics
from tests.pipeline_inputs import dead_letters
from tests.pipeline_inputs import letter_keys
from tests.pipeline_inputs import run_job

# Physical line numbers written by hand on the right (not part of the file).
INTERACTION_LINES = [
    b"student_id,item_id,timestamp",  # 1 header
    b"s1,a,2020-09-01",  # 2 kept
    b"",  # 3 blank
    b"",  # 4 blank
    b"s1,b,yesterday",  # 5 unparseable_timestamp
    b"s1,c,2020-09-03",  # 6 kept
    b"",  # 7 blank
    b",,2020-09-04",  # 8 neither student nor item: one dead letter
    b"\xff\xfes2,d,2020-09-05",  # 9 not UTF-8
    b"s2,e,2020-09-06,extra",  # 10 malformed_line
    b"s2,f,2020-09-07",  # 11 kept
    b"s9,g,2020-09-08",  # 12 student_not_in_roster
    b"s1,h,2021-09-01",  # 13 kept (later period)
    b"",  # 14 blank, then the file ends
]
ROSTER_LINES = [
    b"student_id,school_id,grade",  # 1 header
    b"s1,sch,3",  # 2
    b"",  # 3 blank
    b"s2,sch,3",  # 4
    b"s2,sch,3",  # 5 duplicate_roster_entry
]
EXPECTED_LETTERS = [
    ("interactions.csv", 5, "unparseable_timestamp"),
    ("interactions.csv", 8, "missing_student_id"),
    ("interactions.csv", 9, "invalid_utf8"),
    ("interactions.csv", 10, "malformed_line"),
    ("interactions.csv", 12, "student_not_in_roster"),
    ("roster.csv", 5, "duplicate_roster_entry"),
]


# Counters of reading INTERACTION_LINES (before the roster join).
READER_STATS = {
    "interactions/rows_in": 9,
    "interactions/blank_lines": 4,
    "interactions/dead/unparseable_timestamp": 1,
    "interactions/dead/missing_student_id": 1,
    "interactions/dead/invalid_utf8": 1,
    "interactions/dead/malformed_line": 1,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw_lines")
    return run_job(
        folder,
        b"\n".join(INTERACTION_LINES) + b"\n",
        roster=b"\n".join(ROSTER_LINES) + b"\n",
        validation_fraction=1.0,
    )


def test_dead_letters_name_physical_lines(run):
    out, _ = run
    assert letter_keys(out) == EXPECTED_LETTERS


def test_blank_lines_are_counted_not_lost(run):
    _, stats = run
    interactions = stats["inputs"]["interactions"]
    # Lines 2..14 minus the blank 3, 4, 7 and 14: 9 rows; kept 2, 6, 11, 13.
    assert (interactions["rows_in"], interactions["rows_kept"], interactions["rows_dead_lettered"]) == (
        9,
        4,
        5,
    )
    roster = stats["inputs"]["roster"]
    assert (roster["rows_in"], roster["rows_kept"], roster["rows_dead_lettered"]) == (3, 2, 1)
    assert stats["blank_lines"] == {"interactions": 4, "roster": 1}


def test_bytes_that_are_not_utf8_reject_their_line_only(run):
    out, stats = run
    (letter,) = [l for l in dead_letters(out) if l["reason"] == "invalid_utf8"]
    assert letter["record"]["text"] == "\\xff\\xfes2,d,2020-09-05"
    assert stats["splits"]["train"]["interactions"] == 3
    assert not [p for p in out.parent.rglob("beam-temp-*")]


def test_a_row_missing_student_and_item_is_one_dead_letter(run):
    out, stats = run
    at_line_8 = [l for l in dead_letters(out) if l["line"] == 8]
    assert len(at_line_8) == 1
    assert stats["inputs"]["interactions"]["dead_letter_reasons"]["missing_student_id"] == 1
    assert "missing_item_id" not in stats["inputs"]["interactions"]["dead_letter_reasons"]


@pytest.mark.parametrize("chunk_bytes", [40, 64, 1 << 20])  # the header fits in 40 bytes
def test_reader_keeps_physical_lines_across_chunks(tmp_path, chunk_bytes):
    # CRLF line ends: a line holding only "\r" is blank as well.
    path = tmp_path / "events.csv"
    path.write_bytes(b"\r\n".join(INTERACTION_LINES) + b"\r\n")
    (input_file,) = read_raw.inspect_inputs(str(path), read_raw.INTERACTIONS)
    with beam_test_pipeline.TestPipeline() as pipeline:
        outputs = pipeline | read_raw.ReadRawFiles([input_file], read_raw.INTERACTIONS, chunk_bytes)
        kept = outputs.good | beam.FlatMap(
            lambda kv: (read_raw.order_to_file_line(o)[1] for o in kv[1].orders)
        )
        assert_that(kept, equal_to([2, 6, 11, 12, 13]), label="kept")
        assert_that(
            outputs.dead_letter | beam.Map(lambda l: (l["line"], l["reason"])),
            equal_to(
                [(5, "unparseable_timestamp"), (8, "missing_student_id"), (9, "invalid_utf8"),
                 (10, "malformed_line")]
            ),
            label="dead",
        )
        assert_that(
            outputs.stats | beam.CombineGlobally(statistics.MergeCounters()),
            equal_to([READER_STATS]),
            label="stats",
        )


def test_a_header_that_is_not_utf8_or_not_on_line_1_is_a_clear_error(tmp_path):
    for name, content, message in [
        ("latin1.csv", b"student_id,item_id,tim\xe9stamp\ns1,a,1\n", r"latin1\.csv: line 1 \(the header\)"),
        ("late.csv", b"\nstudent_id,item_id,timestamp\ns1,a,1\n", r"late\.csv: line 1 is blank"),
    ]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(read_raw.InputError, match=message):
            read_raw.inspect_inputs(str(tmp_path / name), read_raw.INTERACTIONS)


@pytest.mark.parametrize("split_bytes", [1, 7, 23])
def test_ranges_read_apart_keep_the_lines_of_the_whole_file(tmp_path, split_bytes):
    # The file is cut into byte ranges read as separate elements; cuts fall inside lines, on line
    # breaks, in CRLF pairs, in blank lines and in the bytes that are not UTF-8.
    path = tmp_path / "events.csv"
    path.write_bytes(b"\r\n".join(INTERACTION_LINES) + b"\r\n")
    (input_file,) = read_raw.inspect_inputs(str(path), read_raw.INTERACTIONS)
    ranges = file_ranges.plan_ranges(input_file, split_bytes)
    assert len(ranges) == -(-path.stat().st_size // split_bytes)
    with beam_test_pipeline.TestPipeline() as pipeline:
        outputs = pipeline | read_raw.ReadRawFiles(
            [input_file], read_raw.INTERACTIONS, chunk_bytes=32, num_buckets=2, split_bytes=split_bytes
        )
        kept = outputs.good | beam.FlatMap(
            lambda kv: (read_raw.order_to_file_line(o)[1] for o in kv[1].orders)
        )
        assert_that(kept, equal_to([2, 6, 11, 12, 13]), label="kept")
        assert_that(
            outputs.dead_letter | beam.Map(lambda l: (l["line"], l["reason"], l["record"])),
            equal_to(
                [(5, "unparseable_timestamp", {"student_id": "s1", "item_id": "b", "timestamp": "yesterday"}),
                 (8, "missing_student_id", {"student_id": "", "item_id": "", "timestamp": "2020-09-04"}),
                 (9, "invalid_utf8", {"text": "\\xff\\xfes2,d,2020-09-05"}),
                 (10, "malformed_line", {"text": "s2,e,2020-09-06,extra"})]
            ),
            label="dead",
        )
        assert_that(
            outputs.stats | beam.CombineGlobally(statistics.MergeCounters()),
            equal_to([READER_STATS]),
            label="stats",
        )


def test_line_counts_number_the_ranges():
    # 3 ranges of 10 bytes over lines of 4 bytes: line breaks at 3, 7, 11, ..., 27.
    input_file = read_raw.InputFile(0, "unused.csv", "csv", {})
    counted = [
        file_ranges.FileRange(input_file, i, 10 * i, 10 * i + 10, lines=n)
        for i, n in ((2, 3), (0, 2), (1, 2))
    ]
    numbered = file_ranges.number_ranges((0, counted))
    assert [(r.index, r.first_line) for r in numbered] == [(0, 1), (1, 3), (2, 5)]
    assert file_ranges.bucket_count(100_001, 50_000) == 3 and file_ranges.bucket_count(0, 5) == 1


def test_parquet_row_groups_are_ranges(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {"student_id": ["s1", "s2", "", "s1", "s2"], "item_id": list("abcde"), "timestamp": [1, 2, 3, 4, 5]}
    )
    path = tmp_path / "events.parquet"
    frame.to_parquet(path, row_group_size=2)
    (input_file,) = read_raw.inspect_inputs(str(path), read_raw.INTERACTIONS)
    ranges = file_ranges.plan_ranges(input_file, 1)
    assert [(r.start, r.end, r.first_line, r.lines) for r in ranges] == [(0, 1, 1, 2), (1, 2, 3, 2), (2, 3, 5, 1)]
    with beam_test_pipeline.TestPipeline() as pipeline:
        outputs = pipeline | read_raw.ReadRawFiles([input_file], read_raw.INTERACTIONS, split_bytes=1)
        kept = outputs.good | beam.FlatMap(
            lambda kv: zip(kv[1].items.tolist(), (read_raw.order_to_file_line(o)[1] for o in kv[1].orders))
        )
        assert_that(kept, equal_to([("a", 1), ("b", 2), ("d", 4), ("e", 5)]), label="kept")
        assert_that(
            outputs.dead_letter | beam.Map(lambda l: (l["line"], l["reason"])),
            equal_to([(3, "missing_student_id")]),
            label="dead",
        )
