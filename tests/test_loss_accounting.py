"""Pins three easy-to-make accounting mistakes, each against an expectation computed independently here:

(a) the bootstrap interval at the wrong tail level (a 90% interval labelled 95%);
(c) accuracy@1 counting the positions of rows with ``row_valid = 0`` (padding rows of the last batch);
(d) the train loss (and its gradient) divided by every position instead of by the number of targets.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from study.data import reserved_ids
from study.eval import bootstrap
from study.models import losses
from study.tasks import build_task, next_item
from study.train import gradient_step
from study.train.train_state import TrainState
from tests.test_trainer import VOCAB_SIZE, random_device_batch, tiny_config


# (a) ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("confidence", [0.95, 0.90, 0.80])
def test_percentile_interval_ends_are_the_quantiles_of_the_resampled_statistic(confidence):
    rng = np.random.default_rng(7)
    values = rng.lognormal(0.0, 1.5, size=60)  # skewed: the 90% and 95% ends are far apart
    recorded = []

    def weighted_mean(weights):
        statistic = float(np.sum(weights * values) / np.sum(weights))
        recorded.append(statistic)
        return statistic

    low, high = bootstrap.percentile_interval(weighted_mean, len(values), num_resamples=400, seed=3,
                                              confidence=confidence)
    resampled = np.asarray(recorded[1:])  # the first call is the point estimate (all weights 1)
    assert recorded[0] == pytest.approx(values.mean()) and len(resampled) == 400
    tail = (1 - confidence) / 2
    expected_low, expected_high = np.quantile(resampled, [tail, 1 - tail])
    assert float(low) == pytest.approx(expected_low, rel=1e-12)
    assert float(high) == pytest.approx(expected_high, rel=1e-12)
    # The test can tell levels apart: the ends one level narrower are clearly different.
    narrower_low, narrower_high = np.quantile(resampled, [tail + 0.025, 1 - tail - 0.025])
    assert high - low > 1.05 * (narrower_high - narrower_low)


# (c) ----------------------------------------------------------------------------------------------------------
def test_top1_correct_ignores_rows_that_are_not_valid():
    vocab = 8
    item_ids = np.array([[3, 5, 2, 0],    # valid row: targets 3 (hit), 5 (miss); SEP and PAD are no targets
                         [4, 6, 0, 0],    # row_valid = 0: would be two hits
                         [1, 7, 0, 0]],   # valid row: OOV target (a miss even though OOV scores highest), 7 (hit)
                        np.int32)
    logits = np.full((3, 4, vocab), -1.0, np.float32)
    logits[0, 0, 3] = logits[0, 1, 4] = 5.0
    logits[1, 0, 4] = logits[1, 1, 6] = 5.0
    logits[2, 0, reserved_ids.OOV] = 9.0
    logits[2, 0, 6] = logits[2, 1, 7] = 5.0
    logits[:, 2:, reserved_ids.SEP] = 9.0  # SEP/PAD positions: whatever scores highest there, not counted
    batch = {"item_ids": item_ids, "row_valid": np.array([1, 0, 1], np.int32)}
    assert float(next_item.top1_correct(jnp.asarray(logits), batch)) == 2.0  # by hand: (0, 0) and (2, 1)
    batch["row_valid"] = np.array([1, 1, 1], np.int32)
    assert float(next_item.top1_correct(jnp.asarray(logits), batch)) == 4.0


# (d) ----------------------------------------------------------------------------------------------------------
def _mean_cross_entropy(model, params, batch):
    """Mean softmax cross-entropy over the target positions (items and OOV, not PAD or SEP), written here."""
    logits = model.apply({"params": params}, batch, train=False).astype(jnp.float32)
    targets = batch["item_ids"]
    mask = (targets != reserved_ids.PAD) & (targets != reserved_ids.SEP)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    return -jnp.sum(jnp.where(mask, picked, 0.0)) / jnp.sum(mask)


def test_train_step_loss_is_per_target_and_sgd_moves_by_its_gradient(tmp_path):
    config = tiny_config(tmp_path)
    config.model.vocab_size = VOCAB_SIZE
    config.model.dropout_rate = 0.0
    task = build_task(config)
    tx = optax.sgd(1.0)
    params = nn.unbox(jax.jit(task.init_params)(jax.random.key(0)))
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                       rng=jax.random.key_data(jax.random.key(1)))
    batch = {name: jnp.asarray(value) for name, value in random_device_batch(4, seed=5).items()}
    ids = np.asarray(batch["item_ids"])
    num_targets = int(np.sum((ids != reserved_ids.PAD) & (ids != reserved_ids.SEP)))
    assert (ids == reserved_ids.SEP).any() and (ids == reserved_ids.PAD).any()
    assert 0 < num_targets < ids.size  # the two possible denominators differ

    step = jax.jit(gradient_step.make_train_step(task, tx, schedule=lambda count: 1.0))
    new_state, metrics = step(state, batch, jax.random.key_data(jax.random.key(1)))

    logits = jax.jit(lambda p: task.model.apply({"params": p}, batch, train=False))(state.params)
    loss_sum, weight_sum = losses.next_item_loss(logits, batch)
    assert float(metrics["targets"]) == num_targets == float(weight_sum)
    assert float(metrics["loss"]) == pytest.approx(float(loss_sum) / num_targets, rel=1e-5)
    mean, grads = jax.jit(jax.value_and_grad(lambda p: _mean_cross_entropy(task.model, p, batch)))(state.params)
    assert float(metrics["loss"]) == pytest.approx(float(mean), rel=1e-5)
    expected = jax.tree.map(lambda p, g: p - g, state.params, grads)
    for (path, got), want in zip(jax.tree_util.tree_flatten_with_path(new_state.params)[0],
                                 jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))
