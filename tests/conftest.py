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
    options = json.loads((GOLDEN / "expected.json").read_text())["options"]
    config = build_dataset.PipelineConfig(
        interactions=f"{GOLDEN}/interactions_*.csv",
        roster=str(GOLDEN / "roster.csv"),
        schools=str(GOLDEN / "schools.csv"),
        output_dir=str(out),
        **options,
    )
    stats = build_dataset.build_dataset(config)
    return out, stats
