"""The knowledge-tracing family on the one loop, on a hand-made release in a temporary folder: a run stopped
after 10 updates and continued to 20 ends bit-identical to a straight 20-update run; the trained model ranks
the easy questions above the hard ones on the test file (AUC well above chance); the table command's report
carries the folds it ran and the DKVMN paper's reference."""

import os

import jax
import numpy as np
import pytest

from configs import kt
from study.commands import kt_table
from study.tasks import build_task
from study.train import loop

PREFIX = "naive_c5_q50_s4000_v0"


def write_release(directory, seed=0):
    """Odd question ids are answered right 85% of the time, even ones 15%; 40 / 10 / 20 students."""
    rng = np.random.default_rng(seed)
    for name, students in (("train1", 40), ("valid1", 10), ("test", 20)):
        lines = []
        for _ in range(students):
            length = int(rng.integers(20, 50))
            questions = rng.integers(1, 51, length)
            answers = (rng.random(length) < np.where(questions % 2 == 1, 0.85, 0.15)).astype(int)
            lines += [str(length), ",".join(map(str, questions)) + ",", ",".join(map(str, answers)) + ","]
        (directory / f"{PREFIX}_{name}.csv").write_text("\n".join(lines) + "\n")
    return str(directory)


def config_for(data_dir, steps, model="dqkt"):
    config = kt.get_config(f"synthetic_{model}")
    config.data_dir = data_dir
    config.data.epochs = 0
    config.steps, config.batch_size, config.checkpoint_every, config.log_every = steps, 8, 10, 5
    config.optimizer.peak_lr = 0.05
    config.evals = {}  # the test evaluates once, after training
    return config


def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("kt_release"))


def test_continued_run_equals_straight_run_and_learns(release, tmp_path):
    straight = build_task(config_for(release, 20))
    loop.train(straight, straight.config, str(tmp_path / "straight"))
    first = build_task(config_for(release, 10))
    loop.train(first, first.config, str(tmp_path / "continued"))
    second = build_task(config_for(release, 20))
    loop.train(second, second.config, str(tmp_path / "continued"))  # resumes at update 10
    a = loop.restore_state(straight, straight.config, str(tmp_path / "straight"), checkpoint="latest")
    b = loop.restore_state(second, second.config, str(tmp_path / "continued"), checkpoint="latest")
    assert int(a.step) == int(b.step) == 20
    for x, y in zip(leaves(a), leaves(b)):
        np.testing.assert_array_equal(x, y)
    report = straight.evaluators()["correctness"].evaluate(a, "test")
    assert report.scalars["auc"] > 0.75  # odd vs even questions: 0.85 vs 0.15 correct


def test_bad_dataset_name_and_missing_files(tmp_path):
    config = config_for(str(tmp_path), 1)
    with pytest.raises(FileNotFoundError, match="naive_c5_q50_s4000_v0_train1.csv does not exist"):
        build_task(config)
    config.data.dataset = "assist2010"
    with pytest.raises(ValueError, match="unknown config.data.dataset 'assist2010'"):
        build_task(config)


def test_auc_table_lists_folds_and_reference():
    results = {"assist2009": {"dkvmn": {1: {"auc": 0.80}, 2: {"auc": 0.82}}, "dkt": {1: {"auc": 0.79}}}}
    text = kt_table.auc_markdown(results, epochs=2)
    assert "| dkvmn | 81.00 ± 1.41 (2) | 81.57 |" in text
    assert "| dkt | 79.00 ± 0.00 (1) | 80.53 |" in text
    assert "assist2009: dkvmn (81.00) > dkt (79.00)" in text


def test_task_reads_the_real_release_folds():
    directory = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "kt", "statics2011_dkvmn")
    if not os.path.isdir(directory):
        pytest.skip("statics2011 is not in ../shared/data")
    config = kt.get_config("statics2011_bkt")
    config.data_dir, config.data.fold = directory, 2
    task = build_task(config)
    # SOURCE.txt: train2 184 sequences (103,255 answers), valid2 45, test 104 (59,113 answers).
    assert int(task.windows["train"]["mask"].sum()) == 103_255
    assert int(task.windows["test"]["mask"].sum()) == 59_113
    assert task.model.num_skills == 98
