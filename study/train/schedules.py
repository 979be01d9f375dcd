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

``constant``: ``lr(s) = peak * s / W`` for ``s <= W`` (no warm-up when ``W = 0``), ``peak`` after.

``step_decay``: the warm-up, then ``lr(s) = peak * gamma ** floor((s - W - 1) / D)`` for ``s > W``
(``gamma = optimizer.decay_rate``, ``D = optimizer.decay_steps``), e.g. the SR-GNN paper's decay of 0.1
every 3 epochs.

Weight decay (``optimizer.weight_decay``): with ``optimizer.name = "adam"`` it is an L2 penalty added to the
gradient before Adam (``wd * params``, as PyTorch's ``Adam(weight_decay=...)``); with ``"adamw"`` it is
decoupled from the gradient statistics (``optax.adamw``).
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


def constant_schedule(peak: float, warmup_steps: int) -> Schedule:
    """``lr(s) = peak*s/W`` for ``s <= W``, ``peak`` after (``W = 0``: ``peak`` from the first update)."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        if warmup_steps == 0:
            return jnp.where(step > 0, peak, 0.0).astype(jnp.float32)
        return jnp.where(step <= warmup_steps, _warmup(peak, warmup_steps, step), peak)

    return schedule


def step_decay_schedule(peak: float, warmup_steps: int, decay_steps: int, decay_rate: float) -> Schedule:
    """The warm-up, then ``peak * decay_rate ** floor((s - W - 1) / decay_steps)``."""
    if decay_steps < 1:
        raise ValueError(f"decay_steps must be >= 1 for the step_decay schedule, got {decay_steps}")
    warm = constant_schedule(peak, warmup_steps)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        drops = jnp.floor(jnp.maximum(step - warmup_steps - 1, 0.0) / decay_steps)
        return jnp.where(step <= warmup_steps, warm(step), peak * decay_rate ** drops)

    return schedule


SCHEDULES = {"inverse_sqrt": inverse_sqrt_schedule, "official_rsqrt": official_rsqrt_schedule,
             "constant": constant_schedule, "step_decay": step_decay_schedule}
OPTIMIZERS = ("adam", "adamw")


def make_schedule(config: ml_collections.ConfigDict) -> Schedule:
    """The schedule named by ``config.schedule`` with ``config.optimizer.peak_lr`` and ``warmup_steps``."""
    if config.schedule not in SCHEDULES:
        raise ValueError(
            f"unknown schedule {config.schedule!r} (config field `schedule`); choose one of {sorted(SCHEDULES)}"
        )
    if config.schedule == "step_decay":
        return step_decay_schedule(config.optimizer.peak_lr, config.optimizer.warmup_steps,
                                   config.optimizer.get("decay_steps", 0), config.optimizer.get("decay_rate", 0.1))
    return SCHEDULES[config.schedule](config.optimizer.peak_lr, config.optimizer.warmup_steps)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam or AdamW (``config.optimizer.name``; ``b1/b2/eps``, ``weight_decay``) on the named schedule,
    after optional global-norm clipping (``config.clip_norm > 0``).

    Gradient accumulation is done by the train step itself (exact summation over micro-batches), so this
    optimizer always sees one gradient per step.
    """
    schedule = make_schedule(config)
    opt = config.optimizer
    name = opt.get("name", "adam")
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r} (config field optimizer.name); choose one of {OPTIMIZERS}")
    learning_rate = lambda count: schedule(count + 1)  # noqa: E731  (optax counts from 0)
    weight_decay = float(opt.get("weight_decay", 0.0))
    parts = [optax.clip_by_global_norm(config.clip_norm)] if config.clip_norm and config.clip_norm > 0 else []
    if name == "adamw":
        parts.append(optax.adamw(learning_rate, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=weight_decay))
    else:
        if weight_decay:
            parts.append(optax.add_decayed_weights(weight_decay))
        parts.append(optax.adam(learning_rate, b1=opt.b1, b2=opt.b2, eps=opt.eps))
    return parts[0] if len(parts) == 1 else optax.chain(*parts)
