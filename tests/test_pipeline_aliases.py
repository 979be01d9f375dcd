"""The official STUDY release's columns (as Parquet) give the same dataset as canonical CSV input."""

import pathlib

import pandas as pd
import pytest

from data_pipeline import build_dataset
from study.data import raw_schema
from study.sims import synthetic_learning_ally


def canonical_copy(official_dir: pathlib.Path, out_dir: pathlib.Path) -> None:
    """Rewrites the official Parquet files as canonical CSV files with pandas (same values)."""
    out_dir.mkdir()
    renames = {
        "interactions": raw_schema.INTERACTION_ALIASES,
        "roster": raw_schema.ROSTER_ALIASES,
        "schools": raw_schema.SCHOOL_ALIASES,
    }
    for name, aliases in renames.items():
        frame = pd.read_parquet(official_dir / f"{name}.parquet").astype(str)
        frame.rename(columns=aliases).to_csv(out_dir / f"{name}.csv", index=False)


def run(folder: pathlib.Path, extension: str, out: pathlib.Path) -> dict:
    config = build_dataset.PipelineConfig(
        interactions=str(folder / f"interactions.{extension}"),
        roster=str(folder / f"roster.{extension}"),
        schools=str(folder / f"schools.{extension}"),
        output_dir=str(out),
        vocab_size=200,
        row_length=16,
        segment_length=8,
        num_packings=2,
    )
    return build_dataset.build_dataset(config)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("aliases")
    data = synthetic_learning_ally.generate(300, seed=5)
    synthetic_learning_ally.write(data, str(root), formats=("official",), file_format="parquet")
    canonical_copy(root / "official", root / "canonical")
    official_stats = run(root / "official", "parquet", root / "out_official")
    canonical_stats = run(root / "canonical", "csv", root / "out_canonical")
    return root, official_stats, canonical_stats


def test_same_rows_vocab_and_students(two_runs):
    root, official_stats, canonical_stats = two_runs
    official, canonical = root / "out_official", root / "out_canonical"
    record_files = sorted(p.relative_to(official) for p in official.glob("*/*.tfrecord-*"))
    assert record_files
    assert record_files == sorted(p.relative_to(canonical) for p in canonical.glob("*/*.tfrecord-*"))
    for relative in record_files:
        assert (official / relative).read_bytes() == (canonical / relative).read_bytes(), relative
    assert (official / "vocab.json").read_text() == (canonical / "vocab.json").read_text()
    lines = lambda p: sorted((p / "students.csv").read_text().splitlines())
    assert lines(official) == lines(canonical)
    assert official_stats["splits"] == canonical_stats["splits"]
    assert official_stats["splits"]["train"]["districts"] > 0  # district from Parent_Building_ID
    kept = official_stats["inputs"]["interactions"]["rows_kept"]
    assert kept == canonical_stats["inputs"]["interactions"]["rows_kept"] > 0
