"""GNN-RL baselines: linear Thompson sampling, PPO's loss, and the comparison command's pieces."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common, gnn_rl
from study import tasks
from study.commands import gnn_rl_protocol
from study.models import linear_thompson as lts
from study.models import policy_gradient as pg
from study.train import loop

CORPORA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "gnn_rl_corpora", "corpora",
                       "extracted_data")


def test_thompson_posterior_by_hand():
    posterior = lts.init(2)
    x = lts.contexts(jnp.array([0.0, 2.0]), jnp.array([0.0, 1.0]))
    np.testing.assert_array_equal(np.asarray(x), [[1, 0, 0], [1, 2, 1]])
    for _ in range(3):
        posterior = lts.observe(posterior, x, 0, 2.0)
    # A_0 = I + 3 e1 e1^T, b_0 = 6 e1: the posterior mean of theta_0 . [1, 0, 0] is 6 / 4.
    np.testing.assert_allclose(np.asarray(posterior["A"][0]), np.diag([4.0, 1.0, 1.0]))
    scores = lts.sample_scores(posterior, x, jax.random.key(0), scale=0.0)
    np.testing.assert_allclose(np.asarray(scores), [1.5, 0.0], atol=1e-6)
    # Sampled scores spread with the posterior variance: x A^-1 x = 1/4 for document 0.
    sample = jax.jit(jax.vmap(lambda k: lts.sample_scores(posterior, x, k)))
    draws = sample(jax.random.split(jax.random.key(1), 4000))
    assert abs(float(jnp.var(draws[:, 0])) - 0.25) < 0.03


def test_ppo_clipping_by_hand():
    logits = jnp.zeros((1, 2))
    mask = jnp.ones((1, 2), bool)
    old = jnp.log(jnp.array([0.25]))  # new probability 0.5: ratio 2, clipped at 1.2 for a positive advantage
    loss, _, _ = pg.ppo_loss(logits, jnp.zeros(1), mask, jnp.array([0]), old, jnp.array([1.0]), jnp.zeros(1),
                             jnp.ones(1), 0.2, 0.5, 0.0)
    np.testing.assert_allclose(float(loss), -1.2, rtol=1e-6)
    grad = jax.grad(lambda l: pg.ppo_loss(l, jnp.zeros(1), mask, jnp.array([0]), old, jnp.array([1.0]),
                                          jnp.zeros(1), jnp.ones(1), 0.2, 0.5, 0.0)[0])(logits)
    np.testing.assert_array_equal(np.asarray(grad), 0.0)  # clipped: no push further
    loss, _, aux = pg.ppo_loss(logits, jnp.array([1.0]), mask, jnp.array([0]), old, jnp.array([-1.0]),
                               jnp.array([3.0]), jnp.ones(1), 0.2, 0.5, 0.0)
    np.testing.assert_allclose(float(loss), 2.0 + 0.5 * 4.0, rtol=1e-6)  # min(2 * -1, 1.2 * -1) = -2
    assert float(aux["value_error"]) == 4.0


@pytest.mark.skipif(not os.path.isdir(CORPORA), reason="shared GNN-RL corpora not present")
def test_thompson_bandit_counts_every_recommendation_on_the_loop(tmp_path):
    config = gnn_rl.get_config("finetune")
    config.model.corpora_dir = CORPORA
    config.model.policy = "linear_ts"
    config.model.num_collects = 2
    config.evals.policy_return = common.evaluation(every=-1, max_batches=0)
    loop.train(tasks.build_task(config), config, str(tmp_path))
    posterior = loop.checkpoint_params(str(tmp_path))["policy"]
    # Each recommendation adds its context [1, ., .] to one document: the A[:, 0, 0] - 1 sum to the count.
    assert np.sum(posterior["A"][:, 0, 0] - 1.0) == 2 * 5 * 11
    assert np.all(posterior["A"][22:] == np.eye(3))  # the padding document is never recommended
    assert posterior["b"][:, 0].sum() > 0  # some recommendation taught something


def test_protocol_configs_and_learning_curve(tmp_path):
    pre = gnn_rl_protocol.run_config("pretrained", "uniform", 3, "/runs/pre")
    assert (pre.init_from.workdir, pre.seed, pre.model.scenario, pre.model.policy) == ("/runs/pre", 3, "uniform",
                                                                                        "graph")
    assert pre.init_from.params == ["policy/.*"] and pre.model.courses == ["intro_to_ml"]
    scratch = gnn_rl_protocol.run_config("scratch", "none", 0, "/runs/pre")
    assert scratch.init_from.workdir == "" and scratch.to_dict()["model"] == {**pre.to_dict()["model"],
                                                                                "scenario": "none"}
    assert gnn_rl_protocol.run_config("ppo", "none", 0, "").model.algorithm == "ppo"
    assert gnn_rl_protocol.run_config("linear_ts", "none", 0, "").model.policy == "linear_ts"
    records = [{"step": 2, "split": "validation", "return_mean": 5.0}, {"step": 2, "split": "train", "loss": 1.0},
               {"step": 1, "split": "validation", "return_mean": 3.0}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert gnn_rl_protocol.learning_curve(str(tmp_path)) == [3.0, 5.0]
