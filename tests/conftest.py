"""Fixtures shared by several test modules."""

import json
import pathlib

import pytest

GOLDEN = pathlib.Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def golden_output(tmp_path_factory):
    """The Beam job's output on the hand-worked golden data set (tests/golden) with the options of
    tests/golden/expected.json: ``(output folder, stats)``. Built once per test session."""
    from data_pipeline import build_dataset

    out = tmp_path_factory.mktemp("golden_out")
    stats = build_dataset.build_dataset(golden_config(out))
    return out, stats


def golden_config(out, **overrides):
    """The job's config on the golden data set with the options of tests/golden/expected.json
    (``overrides`` replace some), writing to ``out``."""
    from data_pipeline import build_dataset

    options = json.loads((GOLDEN / "expected.json").read_text())["options"]
    return build_dataset.PipelineConfig(
        interactions=f"{GOLDEN}/interactions_*.csv",
        roster=str(GOLDEN / "roster.csv"),
        schools=str(GOLDEN / "schools.csv"),
        output_dir=str(out),
        **{**options, **overrides},
    )
