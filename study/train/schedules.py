"""Learning-rate schedules and the optimizer of the trainer.

Step convention: ``s`` is the 1-based index of the optimizer update being applied (the first update
is ``s = 1``). ``lr(0) = 0`` is defined as the value "before training" (the warm-up line through the
origin); the trainer never applies an update with it. optax calls a schedule with its 0-based update
count, so :func:`make_optimizer` evaluates ``schedule(count + 1)``.

``inverse_sqrt`` (the default, the seed paper's formula, W = warm-up steps)::

    lr(s) = peak * s / W            for 0 < s <= W
    lr(s) = peak / sqrt(s - W)      for s > W

As stated the formula does not jump at ``s = W + 1`` (``peak / sqrt(1) = peak``), but it decays far faster
than the usual rsqrt decay: ``lr(W + 4) = peak / 2`` and ``lr(W + 100) = peak / 10``, whatever W is.

``official_rsqrt`` (the official STUDY code's)::

    lr(s) = peak * s / W            for 0 < s <= W
    lr(s) = peak * sqrt(W / s)      for s > W

which is continuous at ``s = W`` and halves the rate only at ``s = 4 W``.
"""

from typing import Callable

import jax.numpy as jnp
import ml_collections
import optax

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def _warmup(peak: float, warmup_steps: int, step):
    return peak * step / warmup_steps


def inverse_sqrt_schedule(peak: float, warmup_steps: int) -> Schedule:
    """``lr(s) = peak*s/W`` for ``s <= W``, ``peak/sqrt(s - W)`` after; ``lr(0) = 0``.

    Args:
      peak: peak learning rate, reached at ``s = W`` (and again at ``s = W + 1``).
      warmup_steps: W >= 1.

    Returns:
      ``schedule(step) -> float32 learning rate``, ``step`` a scalar int (1-based update index).
    """
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        decay = peak / jnp.sqrt(jnp.maximum(step - warmup_steps, 1.0))
        return jnp.where(step <= warmup_steps, _warmup(peak, warmup_steps, step), decay)

    return schedule


def official_rsqrt_schedule(peak: float, warmup_steps: int) -> Schedule:
    """``lr(s) = peak*s/W`` for ``s <= W``, ``peak*sqrt(W/s)`` after; ``lr(0) = 0``."""
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        decay = peak * jnp.sqrt(warmup_steps / jnp.maximum(step, float(warmup_steps)))
        return jnp.where(step <= warmup_steps, _warmup(peak, warmup_steps, step), decay)

    return schedule


SCHEDULES = {"inverse_sqrt": inverse_sqrt_schedule, "official_rsqrt": official_rsqrt_schedule}


def make_schedule(config: ml_collections.ConfigDict) -> Schedule:
    """The schedule named by ``config.schedule`` with ``config.optimizer.peak_lr`` and ``warmup_steps``."""
    if config.schedule not in SCHEDULES:
        raise ValueError(
            f"unknown schedule {config.schedule!r} (config field `schedule`); choose one of {sorted(SCHEDULES)}"
        )
    return SCHEDULES[config.schedule](config.optimizer.peak_lr, config.optimizer.warmup_steps)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam (``config.optimizer.b1/b2/eps``) on the named schedule, after optional global-norm clipping.

    Clipping is applied when ``config.clip_norm > 0``. Gradient accumulation is done by the train step
    itself (exact summation over micro-batches), so this optimizer always sees one gradient per step.
    """
    schedule = make_schedule(config)
    adam = optax.adam(
        learning_rate=lambda count: schedule(count + 1),
        b1=config.optimizer.b1,
        b2=config.optimizer.b2,
        eps=config.optimizer.eps,
    )
    if config.clip_norm and config.clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(config.clip_norm), adam)
    return adam
