"""Two families that are not sequence models run through the one loop: a gradient family (logistic
regression on generated responses, one parameter group frozen) and a rule-updated table (an incremental
mean of bandit rewards). Each is killed mid-run and resumed to the uninterrupted final state; ``init_from``
starts a run from another's checkpoint; the evaluators of correctness and policy return judge them."""

import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import common
from study.eval import evaluators
from study.train import loop, sharding
from study.train.task import GradientTask, UpdateTask
from tests.test_trainer import REPO, checkpoint_leaves, progress_at

STUDENTS, QUESTIONS, BATCH = 12, 6, 16
ARMS = 4
ARM_MEANS = np.array([0.1, 0.5, 0.9, 0.3])


def responses(index: int, seed: int = 0) -> dict:
    """Batch ``index`` of generated responses: a deterministic function of (seed, index), so any batch
    position can be restarted. Correct with probability sigmoid(ability - difficulty)."""
    rng = np.random.default_rng([seed, index])
    ability = np.linspace(-1.5, 1.5, STUDENTS)
    difficulty = np.linspace(-1.0, 1.0, QUESTIONS)
    student = rng.integers(0, STUDENTS, BATCH)
    question = rng.integers(0, QUESTIONS, BATCH)
    p = 1 / (1 + np.exp(-(ability[student] - difficulty[question])))
    return {"student": student.astype(np.int32), "question": question.astype(np.int32),
            "correct": (rng.random(BATCH) < p).astype(np.float32)}


class LogisticResponses(GradientTask):
    """P(correct) = sigmoid(ability[student] - difficulty[question] + bias)."""

    family = "toy_logistic"

    def init_params(self, rng):
        a, d = jax.random.split(rng)
        return {"ability": 0.1 * jax.random.normal(a, (STUDENTS,)),
                "difficulty": 0.1 * jax.random.normal(d, (QUESTIONS,)), "bias": jnp.zeros(())}

    def _logits(self, params, batch):
        return params["ability"][batch["student"]] - params["difficulty"][batch["question"]] + params["bias"]

    def loss(self, params, batch, rng):
        del rng
        logits = self._logits(params, batch)
        losses = optax.sigmoid_binary_cross_entropy(logits, batch["correct"])
        return jnp.sum(losses), jnp.asarray(float(BATCH)), {}

    def train_batches(self, start_batch):
        index = start_batch
        while True:
            yield responses(index, self.config.seed)
            index += 1

    def eval_batches(self, split, max_batches=None):
        offset = {"validation": 10_000, "test": 20_000}[split]
        return (responses(offset + i, self.config.seed) for i in range(max_batches or 4))

    def example_batch(self, batch_size):
        return {k: v[:batch_size] for k, v in responses(0).items()}

    def evaluators(self):
        def predictor(state):
            return lambda batch: jax.nn.sigmoid(self._logits(state.params, batch))

        return {"correctness": evaluators.CorrectnessEvaluator(predictor, self.eval_batches)}


class RewardMeans(UpdateTask):
    """A bandit's value table: every arm's running mean reward, ``q += (r - q) / n``, updated by rule."""

    family = "toy_bandit_means"

    def init_state(self, rng):
        del rng
        return {"q": jnp.zeros((ARMS,)), "n": jnp.zeros((ARMS,))}

    def update(self, state, batch, rng):
        del rng
        q, n = state["q"], state["n"]
        for arm, reward in zip(batch["arm"], batch["reward"]):  # [BATCH] pulls, applied in order
            n = n.at[arm].add(1.0)
            q = q.at[arm].add((reward - q[arm]) / n[arm])
        return {"q": q, "n": n}, {"mean_reward": jnp.mean(batch["reward"])}

    def train_batches(self, start_batch):
        index = start_batch
        while True:
            rng = np.random.default_rng([self.config.seed, index])
            arm = rng.integers(0, ARMS, 8).astype(np.int32)
            yield {"arm": arm, "reward": (rng.random(8) < ARM_MEANS[arm]).astype(np.float32)}
            index += 1

    def example_batch(self, batch_size):
        return {"arm": np.zeros((8,), np.int32), "reward": np.zeros((8,), np.float32)}

    def evaluators(self):
        def rollout(state, seeds):  # greedy arm, 50 pulls per seed
            arm = int(np.argmax(np.asarray(state.params["q"])))
            return np.array([np.random.default_rng(s).random(50).__lt__(ARM_MEANS[arm]).sum() for s in seeds])

        return {"policy_return": evaluators.PolicyReturnEvaluator(rollout, {"validation": range(5), "test": range(5, 25)})}


TASKS = {"logistic": LogisticResponses, "bandit": RewardMeans}


def toy_config(family: str, **fields) -> ml_collections.ConfigDict:
    config = common.base_config()
    config.task = family
    if family == "logistic":
        common.optimizer_fields(config)
        config.optimizer.peak_lr = 0.3
        config.optimizer.warmup_steps = 2
        config.schedule = "official_rsqrt"
        config.frozen = ["difficulty"]
        config.evals.correctness = common.evaluation(every=4, max_batches=2)
    else:
        config.evals.policy_return = common.evaluation(every=0, max_batches=0)
    config.steps, config.batch_size, config.checkpoint_every, config.keep_checkpoints = 12, BATCH, 3, 10
    config.log_every = 4
    config.update_from_flattened_dict(fields)
    return config


def run(family: str, workdir: str, fields_json: str = "{}") -> dict:
    """Trains a toy family in ``workdir`` (also the entry point of the killed subprocess)."""
    config = toy_config(family, **json.loads(fields_json))
    task = TASKS[family](config, sharding.make_mesh({"data": -1, "model": 1}))
    return loop.train(task, config, workdir)


def initial_params(family: str) -> dict:
    """The parameters the loop starts a run from (its jitted init), as NumPy arrays."""
    config = toy_config(family)
    task = TASKS[family](config, sharding.make_mesh({"data": -1, "model": 1}))
    state, _ = loop.create_state(loop.Program(task, config), task.mesh, sharding.LOGICAL_AXIS_RULES, config.seed)
    return jax.tree.map(np.asarray, state.params)


@pytest.fixture(scope="module")
def killed_and_straight(tmp_path_factory):
    """Per family: an uninterrupted run, and a run SIGKILLed after update 7 then resumed. The killed
    processes of both families run at the same time as the uninterrupted runs (this process)."""
    root = tmp_path_factory.mktemp("toy_runs")
    killed = {}
    for family in sorted(TASKS):
        workdir = str(root / f"{family}_killed")
        code = f"from tests.test_task_loop import run; run({family!r}, {workdir!r}, '{{\"kill_at_step\": 7}}')"
        killed[family] = (workdir, subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, JAX_PLATFORMS="cpu")))
    runs = {family: {"straight_dir": str(root / f"{family}_straight")} for family in TASKS}
    for family, entry in runs.items():
        entry["straight"] = run(family, entry["straight_dir"])
    for family, (workdir, proc) in killed.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == -9, stderr[-3000:]
        runs[family].update(killed_dir=workdir, resumed=run(family, workdir))
    return runs


@pytest.mark.parametrize("family", sorted(TASKS))
def test_killed_toy_run_resumes_to_the_uninterrupted_state(family, killed_and_straight):
    entry = killed_and_straight[family]
    straight, resumed = entry["straight"], entry["resumed"]
    assert straight["step"] == resumed["step"] == 12
    expected, _ = checkpoint_leaves(entry["straight_dir"])
    got, progress = checkpoint_leaves(entry["killed_dir"])
    assert progress == progress_at(12)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    with open(os.path.join(entry["killed_dir"], "metrics.jsonl")) as handle:
        train_steps = [r["step"] for r in map(json.loads, handle) if r["split"] == "train"]
    assert train_steps == [4, 8, 12]  # the resumed run truncated what it logs again
    assert straight["validation"] == resumed["validation"] and straight["validation"]


def test_frozen_parameters_stay_bit_identical_and_the_rest_learns(killed_and_straight):
    final, _ = checkpoint_leaves(killed_and_straight["logistic"]["straight_dir"])
    initial = initial_params("logistic")
    np.testing.assert_array_equal(final["['params']['difficulty']"], np.asarray(initial["difficulty"]))
    assert np.abs(final["['params']['ability']"] - np.asarray(initial["ability"])).max() > 0.05
    # No optimizer state is kept for the frozen group: Adam moments exist for ability and bias only.
    moment_leaves = [name for name in final if name.startswith(".opt_state") and "difficulty" in name]
    assert not moment_leaves, moment_leaves
    # Abilities learned the generating order (sigmoid(ability - difficulty)): the correlation is high.
    assert np.corrcoef(final["['params']['ability']"], np.linspace(-1.5, 1.5, STUDENTS))[0, 1] > 0.6


def test_frozen_patterns_must_match_a_parameter(tmp_path):
    with pytest.raises(ValueError, match="match no parameter"):
        run("logistic", str(tmp_path / "run"), json.dumps({"frozen": ["dificulty"]}))


def test_frozen_table_entries_of_a_rule_update_stay_put(tmp_path):
    run("bandit", str(tmp_path / "run"), json.dumps({"frozen": ["n"]}))
    final, _ = checkpoint_leaves(str(tmp_path / "run"))
    np.testing.assert_array_equal(final["['params']['n']"], np.zeros(ARMS))


def test_rule_update_table_equals_the_hand_computed_means(killed_and_straight):
    result = killed_and_straight["bandit"]["straight"]
    final, _ = checkpoint_leaves(killed_and_straight["bandit"]["straight_dir"])
    all_arms, all_rewards = [], []
    batches = RewardMeans(toy_config("bandit")).train_batches(0)
    for _ in range(12):
        batch = next(batches)
        all_arms.append(batch["arm"])
        all_rewards.append(batch["reward"])
    all_arms, all_rewards = np.concatenate(all_arms), np.concatenate(all_rewards)
    for arm in range(ARMS):  # the running mean of an arm is the plain mean of its rewards
        np.testing.assert_allclose(final["['params']['q']"][arm], all_rewards[all_arms == arm].mean(), rtol=1e-6)
        assert final["['params']['n']"][arm] == (all_arms == arm).sum()
    # The greedy arm is the best one (0.9), so the return over 50 pulls is near 45.
    assert result["validation"]["return_mean"] == pytest.approx(45, abs=5)


def test_init_from_starts_a_run_from_selected_parameters_of_another(killed_and_straight, tmp_path):
    first = killed_and_straight["logistic"]["straight_dir"]
    donor, _ = checkpoint_leaves(first)
    # A new run (nothing frozen) that takes only the abilities; zero updates: its state is the start.
    fields = {"init_from.workdir": first, "init_from.params": ["ability"], "frozen": [], "steps": 1,
              "optimizer.peak_lr": 0.0}
    run("logistic", str(tmp_path / "second"), json.dumps(fields))
    second, _ = checkpoint_leaves(str(tmp_path / "second"))
    fresh = initial_params("logistic")
    np.testing.assert_array_equal(second["['params']['ability']"], donor["['params']['ability']"])
    np.testing.assert_array_equal(second["['params']['difficulty']"], np.asarray(fresh["difficulty"]))
    with pytest.raises(ValueError, match="match no parameter"):
        run("logistic", str(tmp_path / "third"), json.dumps({**fields, "init_from.params": ["nothing"]}))


class ScriptedValidation(LogisticResponses):
    """The logistic family plus an evaluator whose validation value is a fixed function of the step."""

    SCRIPT = {2: 5.0, 4: 3.0, 6: 4.0, 8: 3.5, 10: 6.0, 12: 1.0}

    def evaluators(self):
        script = self.SCRIPT

        class Scripted(evaluators.Evaluator):
            name = "scripted"

            def evaluate(self, state, split, *, max_batches=None, num_bootstrap=0):
                value = script[int(jax.device_get(state.step))]
                return evaluators.Report(self.name, {"value": value}, {"value": value})

        return {**super().evaluators(), "scripted": Scripted()}


def test_early_stopping_stops_after_patience_and_keeps_the_best_state(tmp_path):
    config = toy_config("logistic", **{"early_stopping.metric": "scripted/value", "early_stopping.patience": 2})
    config.evals.scripted = common.evaluation(every=2, max_batches=0)
    workdir = str(tmp_path / "run")
    task = ScriptedValidation(config, sharding.make_mesh({"data": -1, "model": 1}))
    # Values 5, 3 (best, step 4), 4, 3.5: two evaluations without improvement -> stop after step 8.
    result = loop.train(task, config, workdir)
    assert result["step"] == 8
    assert result["early_stopping"] == {"metric": "scripted/value", "best_value": 3.0, "best_step": 4,
                                        "evaluations_since_best": 2, "stopped": True}
    best = loop.restore_state(task, config, workdir)  # "auto": the best state when the run kept one
    assert int(best.step) == 4
    assert int(loop.restore_state(task, config, workdir, checkpoint="latest").step) == 8
    # Started again, the stopped run does not train further (its progress holds the early-stopping state).
    assert loop.train(task, config, workdir)["step"] == 8


class SlowValidation(LogisticResponses):
    """The logistic family plus an evaluator that takes a second of host time per call."""

    def evaluators(self):
        class Sleeper(evaluators.Evaluator):
            name = "sleeper"

            def evaluate(self, state, split, *, max_batches=None, num_bootstrap=0):
                time.sleep(1.0)
                return evaluators.Report(self.name, {"value": 0.0}, {"value": 0.0})

        return {**super().evaluators(), "sleeper": Sleeper()}


def test_logged_step_rate_leaves_out_compilation_evaluation_and_checkpoints(tmp_path):
    # 8 steps logged every 4, a 1 s evaluation every 2 steps and a checkpoint every 3: a rate computed over
    # wall time would be below 4 steps / 2 s. The toy step itself takes about a millisecond.
    config = toy_config("logistic", steps=8, log_every=4, checkpoint_every=3)
    config.evals.sleeper = common.evaluation(every=2, max_batches=0)
    workdir = str(tmp_path / "run")
    loop.train(SlowValidation(config, sharding.make_mesh({"data": -1, "model": 1})), config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        train = [r for r in map(json.loads, f) if r["split"] == "train"]
    assert [r["step"] for r in train] == [4, 8]
    for record in train:
        assert record["steps_per_second"] > 20, record
        assert record["rows_per_second"] == pytest.approx(record["steps_per_second"] * BATCH)


def test_a_window_holding_only_the_compiling_step_reports_no_rate(tmp_path):
    config = toy_config("logistic", steps=2, log_every=1, checkpoint_every=0)
    workdir = str(tmp_path / "run")
    loop.train(LogisticResponses(config, sharding.make_mesh({"data": -1, "model": 1})), config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        train = [r for r in map(json.loads, f) if r["split"] == "train"]
    assert "steps_per_second" not in train[0] and "loss" in train[0]
    assert train[0]["first_step_seconds"] > 0
    assert train[1]["steps_per_second"] > 0 and "first_step_seconds" not in train[1]
