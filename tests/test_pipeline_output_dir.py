"""The output folder: a rerun leaves no stale shard, a foreign folder is refused unless --overwrite,
and a failed run leaves the previous output as it was."""

import pytest

from data_pipeline import build_dataset
from data_pipeline import output_folder
from tests.pipeline_inputs import job_config
from tests.pipeline_inputs import run_command
from tests.pipeline_inputs import run_job

# Two school years: s1 and s2 read in 2020-21 (train) and in 2021-22 (later period). With
# validation_fraction=1 every later interaction is validation; no test split is asked for.
INTERACTIONS = """student_id,item_id,timestamp
s1,a,2020-09-01
s1,b,2020-09-02
s1,c,2020-09-03
s1,d,2020-09-04
s2,a,2020-09-05
s2,b,2020-09-06
s2,c,2020-09-07
s1,e,2021-09-01
s2,e,2021-09-02
"""
OPTIONS = {"validation_fraction": 1.0}


def shard_names(out, dataset, split):
    """The files the trainer and the evaluator read (study.data.input_pipeline)."""
    from study.data import input_pipeline

    return [p.rsplit("/", 1)[-1] for p in input_pipeline.dataset_files(str(out), dataset, split)]


def test_rerun_with_fewer_shards_leaves_no_stale_shard(tmp_path):
    out, _ = run_job(tmp_path, INTERACTIONS, rows_per_shard=1, **OPTIONS)
    # 7 training interactions in rows of 4 items: several Individual rows, one shard each.
    assert len(shard_names(out, "individual", "train")) > 1
    run_job(tmp_path, INTERACTIONS, rows_per_shard=1000, **OPTIONS)
    for dataset in ("individual", "study"):
        for split in ("train", "validation"):
            assert shard_names(out, dataset, split) == [
                f"{dataset}-{split}.tfrecord-00000-of-00001"
            ], (dataset, split)
    # Nothing of the job's own is left beside the output folder either.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interactions.csv", "out", "roster.csv"]


def test_a_folder_holding_other_files_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(output_folder.OutputDirError, match=r"out.*notes\.txt.*--overwrite"):
        build_dataset.build_dataset(job_config(tmp_path, INTERACTIONS, **OPTIONS))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_overwrite_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    (out / "individual").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "individual" / "individual-train.tfrecord-00003-of-00009").write_bytes(b"old")
    run_job(tmp_path, INTERACTIONS, overwrite=True, **OPTIONS)
    assert not (out / "notes.txt").exists()
    assert shard_names(out, "individual", "train") == ["individual-train.tfrecord-00000-of-00001"]


def test_a_failed_run_leaves_the_previous_output_untouched(tmp_path):
    out, stats = run_job(tmp_path, INTERACTIONS, **OPTIONS)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    # Every row of this input is rejected: the job fails after its pipeline ran.
    with pytest.raises(build_dataset.EmptySplitError):
        run_job(tmp_path, "student_id,item_id,timestamp\ns1,a,someday\n", **OPTIONS)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["interactions.csv", "out", "roster.csv"]


def test_command_line_refuses_a_foreign_folder(tmp_path):
    config = job_config(tmp_path, INTERACTIONS)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "data.csv").write_text("x")
    result = run_command(
        f"--interactions={config.interactions}",
        f"--roster={config.roster}",
        f"--output_dir={config.output_dir}",
    )
    assert result.returncode == 1
    assert "error: --output_dir" in result.stderr and "--overwrite" in result.stderr
    assert "Traceback" not in result.stderr
