"""Split options (--split_date, --split_time, --split_quantile) and empty splits, which are errors
unless --allow_empty_split."""

from types import SimpleNamespace

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing import test_pipeline as beam_test_pipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from data_pipeline import build_dataset
from data_pipeline import splits
from tests.pipeline_inputs import error_lines
from tests.pipeline_inputs import job_config
from tests.pipeline_inputs import run_command
from tests.pipeline_inputs import run_job

# A clock that counts events (1, 2, 3, ...), not seconds since 1970. s9 is not in the roster and a
# duplicate event of s1 at 3: neither is a kept interaction.
COUNTER_CLOCK = """student_id,item_id,timestamp
s1,a,1
s1,b,2
s1,c,3
s1,c,3
s2,a,4
s2,b,5
s9,a,5
s9,b,5
s9,c,5
s1,d,6
s2,c,7
s1,e,8
s2,d,9
s1,f,10
"""
ONE_SIDE = {"validation_fraction": 1.0}  # every later interaction is validation; no test split


def test_split_time_on_a_counter_clock(tmp_path):
    _, stats = run_job(tmp_path, COUNTER_CLOCK, split_time=7, **ONE_SIDE)
    assert stats["split_timestamp"] == 7
    # Kept: times 1, 2, 3, 4, 5, 6 before 7; 7, 8, 9, 10 after.
    assert stats["splits"]["train"]["interactions"] == 6
    assert stats["splits"]["validation"]["interactions"] == 4


def test_split_quantile_counts_kept_interactions(tmp_path):
    # 10 kept interactions at 1..10: 60% of them (6) are earlier than 7.
    _, stats = run_job(tmp_path, COUNTER_CLOCK, split_quantile=0.6, **ONE_SIDE)
    assert stats["split_timestamp"] == 7
    assert stats["splits"]["train"]["interactions"] == 6


def histories(*timestamp_lists):
    return [SimpleNamespace(timestamps=np.array(t, dtype=np.int64)) for t in timestamp_lists]


@pytest.mark.parametrize(
    "timestamps, quantile, expected",
    [
        # 10 interactions: 60% = 6 must be earlier; the 6th smallest is 600, so 601.
        ([[100, 200, 300], [400, 500, 600, 700], [800, 900, 1000]], 0.6, 601),
        # 0.7 of 10 is 7 (not 8 by float rounding): the 7th smallest is 700.
        ([[100, 200, 300], [400, 500, 600, 700], [800, 900, 1000]], 0.7, 701),
        # Ties: <= 200 holds 5 (< 60%), <= 300 holds 8, so 301 is the first time with 6 earlier.
        ([[100, 100, 100, 200], [200, 300, 300, 300], [400, 500]], 0.6, 301),
        # 1 interaction of 3 is 33% < 50%; 2 of 3 is 67% >= 50%.
        ([[5], [9, 7]], 0.5, 8),
    ],
)
def test_split_boundary_at_a_quantile(timestamps, quantile, expected):
    with beam_test_pipeline.TestPipeline() as pipeline:
        batches = pipeline | beam.Create(histories(*timestamps))
        assert_that(batches | splits.SplitBoundary(None, 8, quantile), equal_to([expected]))


def test_split_date_refuses_a_number_and_points_to_split_time(tmp_path):
    config = job_config(tmp_path, COUNTER_CLOCK, split_date="35311636")
    with pytest.raises(ValueError, match=r"35311636.*--split_time"):
        build_dataset.build_dataset(config)
    with pytest.raises(ValueError, match="at most one"):
        build_dataset.build_dataset(job_config(tmp_path, COUNTER_CLOCK, split_time=3, split_quantile=0.5))
    with pytest.raises(ValueError, match="split_quantile"):
        build_dataset.build_dataset(job_config(tmp_path, COUNTER_CLOCK, split_quantile=1.0))


def test_default_boundary_with_everything_on_one_side_is_an_error(tmp_path):
    # The default boundary is 1970-08-01, the second school year of time 1: every event is before.
    with pytest.raises(build_dataset.EmptySplitError) as error:
        run_job(tmp_path, COUNTER_CLOCK)
    message = str(error.value)
    assert "validation" in message and "test" in message
    assert "Every kept interaction (10) is before the default split boundary" in message
    assert "--split_time" in message and "--split_quantile" in message


def test_header_only_roster_names_the_split_and_the_reasons(tmp_path):
    with pytest.raises(build_dataset.EmptySplitError) as error:
        run_job(tmp_path, COUNTER_CLOCK, roster="student_id,school_id,grade\n", split_time=7)
    message = str(error.value)
    assert "train" in message and "student_not_in_roster: 14" in message


def test_every_row_rejected_names_the_reasons(tmp_path):
    interactions = "student_id,item_id,timestamp\ns1,a,someday\ns2,b,\ns1,,2020-01-01\n"
    with pytest.raises(build_dataset.EmptySplitError) as error:
        run_job(tmp_path, interactions)
    message = str(error.value)
    assert "train, validation, test" in message
    assert "unparseable_timestamp: 2" in message and "missing_item_id: 1" in message
    # The most frequent reason comes first.
    assert message.index("unparseable_timestamp") < message.index("missing_item_id")


def test_allow_empty_split_writes_the_output(tmp_path):
    out, stats = run_job(tmp_path, COUNTER_CLOCK, allow_empty_split=True)
    assert stats["splits"]["train"]["interactions"] == 10
    assert stats["splits"]["test"]["interactions"] == 0
    assert (out / "stats.json").exists()


def test_command_line_exits_non_zero_on_an_empty_split(tmp_path):
    config = job_config(tmp_path, COUNTER_CLOCK)
    inputs = [f"--interactions={config.interactions}", f"--roster={config.roster}"]
    result = run_command(*inputs, f"--output_dir={config.output_dir}")
    assert result.returncode == 1, result.stderr
    (line,) = error_lines(result)
    assert "split" in line and "--allow_empty_split" in result.stderr
    assert "Traceback" not in result.stderr
    refused = run_command(*inputs, f"--output_dir={config.output_dir}", "--split_date=35311636")
    assert refused.returncode == 1 and "--split_time" in refused.stderr
    quantile = run_command(
        *inputs, f"--output_dir={config.output_dir}", "--split_quantile=0.6", "--validation_fraction=1"
    )
    assert quantile.returncode == 0, quantile.stderr
