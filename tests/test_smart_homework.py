"""Smart Homework on hand-made posteriors: ordering by closeness to 0.7, attempted questions excluded, at most
top 10, extra weighted factors, and the `study homework` command and the posterior export of a fitted run."""

import json

import jax
import numpy as np
import pytest

from configs import irt as irt_config
from study import cli
from study.commands import homework as homework_command
from study.models import irt
from study.serve import smart_homework
from study.tasks import build_task
from study.train import loop
from tests.test_cli import error_line, study


def test_ranks_by_closeness_to_the_target_and_skips_attempted():
    p = np.array([0.70, 0.95, 0.62, 0.20, 0.75, 0.69, 0.40])
    attempted = np.array([True, False, False, False, False, False, False])
    picks = smart_homework.rank_questions(p, attempted, top_k=4)
    # |p - 0.7|: q5 0.01, q4 0.05, q2 0.08, q1 0.25, q6 0.30, q3 0.50 (q0, exactly 0.7, was attempted).
    assert [pick["question"] for pick in picks] == [5, 4, 2, 1]
    assert picks[0]["score"] == pytest.approx(-0.01)
    assert picks[0]["probability"] == pytest.approx(0.69)


def test_top_10_of_many_with_ties_broken_by_index():
    p = np.full(15, 0.5)
    p[[3, 8]] = 0.7
    picks = smart_homework.rank_questions(p, np.zeros(15, bool))
    assert len(picks) == 10
    assert [pick["question"] for pick in picks] == [3, 8, 0, 1, 2, 4, 5, 6, 7, 9]
    assert len(smart_homework.rank_questions(p, np.arange(15) < 12)) == 3  # only three left unattempted


def test_extra_factors_and_weights_change_the_order():
    p = np.array([0.7, 0.6, 0.9])
    unit = np.array([0.0, 1.0, 0.0])
    # scores: q0 = 0; q1 = -0.1 + 0.5 * 1 = 0.4; q2 = -0.2.
    picks = smart_homework.rank_questions(p, np.zeros(3, bool), weights={"unit": 0.5}, factors={"unit": unit})
    assert [pick["question"] for pick in picks] == [1, 0, 2]
    assert picks[0]["score"] == pytest.approx(0.4) and picks[0]["unit"] == 1.0
    # Closeness weighted 10x: q1 = -1 + 0.5 = -0.5 falls behind q0 = 0, ahead of q2 = -2.
    picks = smart_homework.rank_questions(p, np.zeros(3, bool), weights={"unit": 0.5, "closeness": 10.0},
                                          factors={"unit": unit})
    assert [pick["question"] for pick in picks] == [0, 1, 2]
    with pytest.raises(ValueError, match="not given"):
        smart_homework.rank_questions(p, np.zeros(3, bool), weights={"typo": 1.0})


def test_homework_from_a_hand_made_2pl_posterior():
    # theta = 0, alpha = 1: P(correct) = sigmoid(-beta); difficulties chosen for p = 0.9, 0.7, 0.45, 0.72, 0.1.
    wanted = np.array([0.9, 0.7, 0.45, 0.72, 0.1])
    beta = np.log(1 / wanted - 1)
    params = {"theta": {"loc": np.zeros(2), "log_scale": np.zeros(2)},
              "alpha": {"loc": np.ones(5), "log_scale": np.zeros(5)},
              "beta": {"loc": beta, "log_scale": np.zeros(5)}}
    dims = irt.Dims("2pl", 2, 5)
    attempted = np.array([False, True, False, False, False])
    picks = smart_homework.homework_for_student(params, dims, 1, attempted, top_k=3)
    assert [pick["question"] for pick in picks] == [3, 0, 2]  # 0.72, 0.9 (0.2 off), 0.45 (0.25 off); q1 attempted
    np.testing.assert_allclose([pick["probability"] for pick in picks], [0.72, 0.9, 0.45], rtol=1e-5)


def test_homework_command_on_a_fitted_run(tmp_path):
    config = irt_config.get_config("smoke")
    config.steps, config.checkpoint_every = 20, 0
    task = build_task(config)
    workdir = str(tmp_path / "run")
    loop.train(task, task.config, workdir)
    picks = homework_command.homework(config, workdir, [3], top_k=10)
    state = loop.restore_state(task, task.config, workdir)
    expected = smart_homework.rank_questions(
        np.asarray(irt.student_probabilities(jax.device_get(state.params), task.dims, 3)), task.attempted(3))
    assert picks["3"] == expected
    # The smoke data is dense: student 3 answered every question, so nothing is left to assign.
    assert picks["3"] == [] and task.attempted(3).all()
    # The exported posterior (the next fit's prior) holds the guide's means and standard deviations.
    task.export(state, str(tmp_path / "posterior"))
    with np.load(tmp_path / "posterior" / "posterior.npz") as posterior:
        np.testing.assert_array_equal(posterior["beta/loc"], np.asarray(state.params["beta"]["loc"]))
        np.testing.assert_allclose(posterior["theta/scale"], np.exp(np.asarray(state.params["theta"]["log_scale"])))
    result = study("homework", "--config=configs/irt.py:smoke", f"--workdir={workdir}", "--students=x")
    assert "--students" in error_line(result)
    (tmp_path / "f.json").write_text(json.dumps([1, 2]))
    with pytest.raises(cli.InputError, match="--factors"):
        homework_command.read_factors(str(tmp_path / "f.json"))
    with pytest.raises(cli.InputError, match="--weights"):
        homework_command.parse_weights(["closeness"])
