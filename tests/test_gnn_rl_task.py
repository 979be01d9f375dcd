"""GNN-RL on the one loop: the policy-gradient losses by hand, the checkpoint and fine-tuning from it."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import gnn_rl
from study import tasks
from study.models import policy_gradient as pg
from study.train import loop

CORPORA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "gnn_rl_corpora", "corpora",
                       "extracted_data")


def test_discounted_returns_stop_at_episode_end():
    rewards = jnp.array([[1.0], [0.0], [2.0], [5.0]])
    valid = jnp.array([[True], [True], [True], [False]])
    returns = pg.discounted_returns(rewards, valid, 0.5)
    np.testing.assert_allclose(np.asarray(returns)[:, 0], [1 + 0.5 * 0 + 0.25 * 2, 0 + 0.5 * 2, 2, 0])
    np.testing.assert_allclose(np.asarray(pg.discounted_returns(rewards, valid, 0.0))[:, 0], [1, 0, 2, 0])


def test_generalized_advantages_by_hand():
    rewards = jnp.array([[1.0], [2.0]])
    values = jnp.array([[0.5], [1.0]])
    valid = jnp.ones((2, 1), bool)
    adv = np.asarray(pg.generalized_advantages(rewards, values, valid, 0.9, 0.5))[:, 0]
    delta1 = 2.0 - 1.0  # last step: no value after it
    delta0 = 1.0 + 0.9 * 1.0 - 0.5
    np.testing.assert_allclose(adv, [delta0 + 0.9 * 0.5 * delta1, delta1], rtol=1e-6)


def test_imitation_and_reinforce_losses_by_hand():
    logits = jnp.array([[0.0, np.log(3.0), 7.0]])  # the third document is padding
    mask = jnp.array([[True, True, False]])
    oracle = jnp.array([[False, True, True]])
    loss, weight, aux = pg.imitation_loss(logits, mask, oracle, jnp.ones(1))
    np.testing.assert_allclose(float(loss), -np.log(0.75), rtol=1e-6)  # pi = (1/4, 3/4), padding ignored
    assert float(weight) == 1.0 and float(aux["oracle_hit"]) == 1.0
    # A row whose oracle set is empty carries no weight.
    _, weight, _ = pg.imitation_loss(logits, mask, jnp.zeros_like(oracle), jnp.ones(1))
    assert float(weight) == 0.0
    loss, _, aux = pg.reinforce_loss(logits, mask, jnp.array([0]), jnp.array([2.0]), jnp.ones(1), 0.1)
    entropy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(float(loss), -(np.log(0.25) * 2.0 + 0.1 * entropy), rtol=1e-6)
    # The gradient raises the chosen document's logit when its advantage is positive.
    grad = jax.grad(lambda l: pg.reinforce_loss(l, mask, jnp.array([0]), jnp.array([2.0]), jnp.ones(1), 0.0)[0])(logits)
    assert grad[0, 0] < 0 < grad[0, 1] and grad[0, 2] == 0


def smoke_config(**model):
    config = gnn_rl.get_config("smoke")
    config.model.corpora_dir = CORPORA
    config.model.courses = ["linear/new_corpora/ML_Zero_to_Hero", "linear/new_corpora/ML_Zero_to_Hero"]
    config.model.num_collects = 2
    config.evals.policy_return.every = -1  # no evaluation compile in this test
    config.model.update(model)
    return config


@pytest.mark.skipif(not os.path.isdir(CORPORA), reason="shared GNN-RL corpora not present")
def test_checkpoint_reloads_and_fine_tuning_starts_from_it(tmp_path):
    pre = smoke_config()
    result = loop.train(tasks.build_task(pre), pre, str(tmp_path / "pre"))
    assert result["step"] == 2 and np.isfinite(result["train"]["loss"])
    saved = loop.checkpoint_params(str(tmp_path / "pre"))
    task = tasks.build_task(pre)
    restored = loop.restore_state(task, pre, str(tmp_path / "pre"))
    jax.tree.map(np.testing.assert_array_equal, saved["policy"], jax.device_get(restored.params["policy"]))
    # Fine-tuning with a zero learning rate keeps exactly the pre-trained policy, taken by init_from.
    tune = smoke_config(num_collects=1)
    tune.optimizer.peak_lr = 0.0
    tune.init_from.workdir = str(tmp_path / "pre")
    loop.train(tasks.build_task(tune), tune, str(tmp_path / "tune"))
    tuned = loop.checkpoint_params(str(tmp_path / "tune"))
    jax.tree.map(np.testing.assert_array_equal, saved["policy"], tuned["policy"])
    # Without init_from a run starts from its own initialisation.
    fresh = task.init_state(jax.random.key(5))["policy"]
    assert not np.array_equal(np.asarray(fresh["score"]["kernel"]), saved["policy"]["score"]["kernel"])


def test_config_errors_name_the_field():
    config = smoke_config(algorithm="sarsa")
    with pytest.raises(ValueError, match="config.model.algorithm='sarsa'"):
        tasks.build_task(config)
    config = smoke_config(corpora_dir="/nonexistent/corpora")
    with pytest.raises(FileNotFoundError, match="model.corpora_dir"):
        tasks.build_task(config)
