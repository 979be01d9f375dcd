"""Learning-rate schedules equal the stated formulas (hand-computed values) and the optimizer uses them."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs import study as study_config
from study.train import schedules


@pytest.mark.parametrize(
    "step,expected",
    [
        (0, 0.0),
        (1, 0.1024 / 1000),  # warm-up line: peak * s / W
        (500, 0.0512),
        (1000, 0.1024),  # s = W: peak
        (1001, 0.1024),  # peak / sqrt(1): continuous
        (1002, 0.1024 / 2**0.5),
        (1004, 0.0512),  # peak / sqrt(4)
        (1100, 0.01024),  # peak / sqrt(100)
        (3500, 0.1024 / 50.0),  # peak / sqrt(2500)
    ],
)
def test_inverse_sqrt_matches_the_formula(step, expected):
    schedule = schedules.inverse_sqrt_schedule(0.1024, 1000)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize(
    "step,expected",
    [(0, 0.0), (250, 0.0256), (1000, 0.1024), (4000, 0.0512), (2000, 0.1024 / 2**0.5), (16000, 0.0256)],
)
def test_official_rsqrt_matches_the_formula(step, expected):
    schedule = schedules.official_rsqrt_schedule(0.1024, 1000)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_schedules_are_jittable_and_vectorized():
    schedule = schedules.inverse_sqrt_schedule(2.0, 4)
    values = jax.jit(jax.vmap(schedule))(jnp.arange(1, 9))
    np.testing.assert_allclose(values, [0.5, 1.0, 1.5, 2.0, 2.0, 2 / 2**0.5, 2 / 3**0.5, 1.0], rtol=1e-6)


def test_schedule_is_chosen_by_name_and_unknown_names_are_rejected():
    config = study_config.get_config("learning_ally")
    config.schedule = "official_rsqrt"
    assert float(schedules.make_schedule(config)(4000)) == pytest.approx(0.0512, rel=1e-6)
    config.schedule = "cosine"
    with pytest.raises(ValueError, match="schedule"):
        schedules.make_schedule(config)


def _config(clip_norm=0.0):
    config = ml_collections.ConfigDict()
    config.schedule = "inverse_sqrt"
    config.optimizer = ml_collections.ConfigDict(dict(peak_lr=0.5, warmup_steps=2, b1=0.9, b2=0.98, eps=1e-9))
    config.clip_norm = clip_norm
    return config


def test_optimizer_applies_lr_of_the_one_based_update_index():
    # Adam's first update is -lr * g / (|g| + eps) = -lr * sign(g); update s uses lr(s).
    tx = schedules.make_optimizer(_config())
    params = {"w": jnp.array([1.0, -2.0])}
    state = tx.init(params)
    grads = {"w": jnp.array([3.0, -0.5])}
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], [-0.25, 0.25], rtol=1e-6)  # lr(1) = 0.5 * 1/2


def test_global_norm_clipping_is_applied_before_adam():
    tx = schedules.make_optimizer(_config(clip_norm=1.0))
    assert isinstance(tx, optax.GradientTransformation)
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    grads = {"w": jnp.array([30.0, 40.0])}  # norm 50 -> clipped to [0.6, 0.8]
    _, state = tx.update(grads, state, params)
    mu = state[1][0].mu["w"]  # Adam first moment after clipping: (1 - b1) * clipped grad
    np.testing.assert_allclose(mu, [0.1 * 0.6, 0.1 * 0.8], rtol=1e-5)


@pytest.mark.parametrize("step,expected", [(0, 0.0), (1, 0.0005), (2, 0.001), (3, 0.001), (500, 0.001)])
def test_constant_after_warmup(step, expected):
    assert float(schedules.constant_schedule(0.001, 2)(step)) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    if step:
        assert float(schedules.constant_schedule(0.001, 0)(step)) == pytest.approx(0.001, rel=1e-6)


@pytest.mark.parametrize("step,expected", [
    (1, 0.5), (2, 1.0),  # warm-up over W = 2
    (3, 1.0), (5, 1.0),  # updates 3..5: the first D = 3 after warm-up, no drop yet
    (6, 0.1), (8, 0.1), (9, 0.01), (12, 0.001),
])
def test_step_decay_drops_by_the_rate_every_interval(step, expected):
    schedule = schedules.step_decay_schedule(1.0, 2, decay_steps=3, decay_rate=0.1)
    assert float(schedule(step)) == pytest.approx(expected, rel=1e-5)


def _one_update(name, weight_decay):
    config = study_config.get_config("smoke")
    config.schedule = "constant"
    config.optimizer.update(name=name, peak_lr=0.1, warmup_steps=0, weight_decay=weight_decay, b1=0.0, b2=0.0,
                            eps=1e-12)
    tx = schedules.make_optimizer(config)
    params = {"w": jnp.array([2.0, -4.0])}
    updates, _ = tx.update({"w": jnp.array([1.0, 1.0])}, tx.init(params), params)
    return np.asarray(updates["w"])


def test_weight_decay_is_l2_for_adam_and_decoupled_for_adamw():
    # b1 = b2 = 0: Adam's step is lr * g / |g| = lr * sign(g).
    # Adam + L2: g' = g + wd * w = (1 + 0.5 * 2, 1 - 0.5 * 4) = (2, -1) -> -lr * sign(g') = (-0.1, +0.1).
    np.testing.assert_allclose(_one_update("adam", 0.5), [-0.1, 0.1], rtol=1e-5)
    # AdamW: -lr * (sign(g) + wd * w) = -0.1 * (1 + 1, 1 - 2) = (-0.2, +0.1).
    np.testing.assert_allclose(_one_update("adamw", 0.5), [-0.2, 0.1], rtol=1e-5)
    np.testing.assert_allclose(_one_update("adam", 0.0), [-0.1, -0.1], rtol=1e-5)
    with pytest.raises(ValueError, match="optimizer.name"):
        _one_update("sgd", 0.0)
