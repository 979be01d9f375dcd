"""The EduQate family on the one loop: ``study train`` with ``configs/eduqate.py:smoke``, killed mid-run and
resumed to the uninterrupted state, and its evaluator's learning curve."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import eduqate as eduqate_config
from study.commands import train as train_command
from study.tasks import build_task
from study.train import loop
from tests.test_trainer import REPO, checkpoint_leaves, progress_at


@pytest.mark.slow
def test_killed_bandit_run_resumes_to_the_uninterrupted_state(tmp_path):
    killed_dir, straight_dir = str(tmp_path / "killed"), str(tmp_path / "straight")
    command = [sys.executable, "-m", "study.commands.train", "--config=configs/eduqate.py:smoke",
               f"--workdir={killed_dir}"]
    killed = subprocess.Popen(command + ["--config.kill_at_step=7"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    straight = train_command.train(eduqate_config.get_config("smoke"), straight_dir)
    _, stderr = killed.communicate(timeout=300)
    assert killed.returncode == -9, stderr[-3000:]
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step 3" in resumed.stderr or "resumed from step 6" in resumed.stderr, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["step"] == straight["step"] == 10  # 20 episodes, 2 per update
    expected, _ = checkpoint_leaves(straight_dir)
    got, progress = checkpoint_leaves(killed_dir)
    assert progress == progress_at(10)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert got["['params']['episodes']"] == 20 and got["['params']['steps']"] == 20 * 50
    # Every episode of every trial was recorded once: all 20 have learned items at their end.
    assert got["['params']['final_reward']"].shape == (3, 20) and (got["['params']['final_reward']"] > 0).all()
    assert json.loads(resumed.stdout)["validation"] == straight["validation"]



def test_bandit_family_trains_on_the_loop_and_reports_its_learning_curve(tmp_path):
    config = eduqate_config.get_config("smoke")
    config.model.num_episodes = 6
    workdir = str(tmp_path / "run")
    result = train_command.train(config, workdir)
    assert result["step"] == 3  # 6 episodes, 2 per update
    task = build_task(config)
    state = loop.restore_state(task, task.config, workdir)
    report = task.evaluators()["policy_return"].evaluate(state, "test")
    final, _ = checkpoint_leaves(workdir)
    final = final["['params']['final_reward']"]
    assert final.shape == (3, 6) and (final > 0).all()
    # The summary is the last episode's learned items over the trials, the curve one point per episode.
    assert report.scalars["return_mean"] == pytest.approx(np.mean(final[:, -1]))
    np.testing.assert_allclose(report.metrics["learning_curve"]["mean"], final.mean(axis=0))
    assert result["validation"]["return_mean"] == pytest.approx(report.scalars["return_mean"])
