"""The update of gradient families: optimizer with frozen parameters, the pure train step, the loss evaluator.

A :class:`study.train.task.GradientTask` gives ``loss(params, batch, rng) -> (loss_sum, weight_sum, aux)``.
The step differentiates ``loss_sum`` and divides the gradient by ``weight_sum`` of the WHOLE batch, also with
``grad_accum_steps = k > 1`` (the micro-batch sums are added before dividing, so the update equals the
one-shot update up to float summation order).

Frozen parameters: ``config.frozen`` lists regular expressions matched (``re.fullmatch``) against parameter
paths written ``"layer_0/attention/query_kernel"``. Matching leaves get no optimizer state
(``optax.multi_transform`` with ``optax.set_to_zero``) and keep their exact values: the step copies them
through instead of adding a zero update (which would turn ``-0.0`` into ``0.0``).
"""

import re
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax

from study.train import schedules, sharding
from study.train.task import Evaluator, GradientTask, Report
from study.train.train_state import TrainState

TRAINABLE, FROZEN = "trainable", "frozen"


def path_name(path) -> str:
    """A pytree key path as ``"a/b/c"`` (dict keys, attribute names and sequence indices)."""
    parts = []
    for key in path:
        for attribute in ("key", "name", "idx"):
            if hasattr(key, attribute):
                parts.append(str(getattr(key, attribute)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts)


def _is_boxed(x) -> bool:
    import flax.linen as nn

    return isinstance(x, nn.Partitioned)


def frozen_labels(params: Any, patterns: Sequence[str]) -> Any:
    """A pytree like ``params`` holding ``"frozen"`` where a pattern fully matches the leaf's path, else
    ``"trainable"``. Raises ``ValueError`` for a pattern that matches no parameter (a typo would otherwise
    silently train everything)."""
    compiled = [(pattern, re.compile(pattern)) for pattern in patterns]
    used = set()

    def label(path, _):
        name = path_name(path)
        for pattern, regex in compiled:
            if regex.fullmatch(name):
                used.add(pattern)
                return FROZEN
        return TRAINABLE

    labels = jax.tree_util.tree_map_with_path(label, params, is_leaf=_is_boxed)
    unused = [pattern for pattern, _ in compiled if pattern not in used]
    if unused:
        names = [path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_boxed)[0]]
        raise ValueError(f"config.frozen patterns {unused} match no parameter; parameter paths are e.g. "
                         f"{names[:8]}")
    return labels


def make_optimizer(config) -> tuple[optax.GradientTransformation, Any]:
    """``(tx, labels)``: the optimizer of ``config`` (``study.train.schedules.make_optimizer``) with the
    leaves named by ``config.frozen`` set to a zero update and no optimizer state, and the function
    ``params -> labels`` (:func:`frozen_labels`; None when nothing is frozen)."""
    tx = schedules.make_optimizer(config)
    patterns = list(config.get("frozen", ()) or ())
    if not patterns:
        return tx, None

    def labels(params):
        return frozen_labels(params, patterns)

    return optax.multi_transform({TRAINABLE: tx, FROZEN: optax.set_to_zero()}, labels), labels


def init_state(task: GradientTask, tx: optax.GradientTransformation, init_key, run_key) -> TrainState:
    """A fresh train state: the task's parameters and ``tx``'s state, both still boxed with the logical axis
    names the model gave them (``study.train.sharding.logical_shardings`` reads them)."""
    params = task.init_params(init_key)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=jax.random.key_data(run_key))


def _split_micro_batches(batch: dict, num_micro: int) -> dict:
    """``[B, ...] -> [num_micro, B / num_micro, ...]``; micro-batch i holds rows ``i, i + k, i + 2k ...`` so
    that each device's rows stay on that device."""

    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"batch of {x.shape[0]} rows is not divisible by grad_accum_steps={num_micro}")
        x = x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:])
        return jnp.moveaxis(x, 1, 0)

    return jax.tree.map(split, batch)


def make_train_step(task: GradientTask, tx: optax.GradientTransformation, schedule, grad_accum_steps: int = 1,
                    frozen: Any = None):
    """``train_step(state, batch, rng) -> (state, metrics)``, pure.

    ``rng``: ``[2] uint32`` key data of this update. ``frozen``: the ``params -> labels`` function of
    :func:`make_optimizer` (or None). ``metrics``: ``loss`` (per unit of weight), ``targets`` (the weight), ``grad_norm``,
    ``learning_rate`` and every aux sum divided by the weight.
    """

    def micro_loss_and_grad(params, micro_batch, key):
        def loss_sum_of(p):
            loss_sum, weight_sum, aux = task.loss(p, micro_batch, key)
            return loss_sum, (weight_sum, aux)

        (loss_sum, (weight_sum, aux)), grads = jax.value_and_grad(loss_sum_of, has_aux=True)(params)
        return loss_sum, weight_sum, aux, grads

    def train_step(state: TrainState, batch: dict, rng):
        key = jax.random.wrap_key_data(rng)
        if grad_accum_steps == 1:
            loss_sum, weight_sum, aux, grad_sum = micro_loss_and_grad(state.params, batch, key)
        else:
            micro_batches = _split_micro_batches(batch, grad_accum_steps)
            first = jax.eval_shape(micro_loss_and_grad, state.params,
                                   jax.tree.map(lambda x: x[0], micro_batches), key)
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), first)

            def accumulate(totals, inputs):
                micro_batch, index = inputs
                result = micro_loss_and_grad(state.params, micro_batch, jax.random.fold_in(key, index))
                return jax.tree.map(jnp.add, totals, result), None

            (loss_sum, weight_sum, aux, grad_sum), _ = jax.lax.scan(
                accumulate, zeros, (micro_batches, jnp.arange(grad_accum_steps)))
        denominator = jnp.maximum(weight_sum, 1.0)
        grads = jax.tree.map(lambda g: g / denominator, grad_sum)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if frozen is not None:
            params = jax.tree.map(lambda label, new, old: old if label == FROZEN else new,
                                  frozen(params), params, state.params)
        metrics = {"loss": loss_sum / denominator, "targets": weight_sum, "grad_norm": optax.global_norm(grads),
                   "learning_rate": schedule(state.step + 1)}
        metrics.update({name: value / denominator for name, value in aux.items()})
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return train_step


class LossEvaluator(Evaluator):
    """Mean evaluation loss (and every aux sum per unit of weight) of a gradient task over a split.

    Runs on the task's mesh with the batches of ``task.eval_batches(split, max_batches)``; sums are
    reduced on the devices, so it works on any number of processes.
    """

    name = "loss"

    def __init__(self, task: GradientTask):
        self.task = task
        self._step = None

    def _jitted(self):
        if self._step is None:
            def sums(params, batch):
                loss_sum, weight_sum, aux = self.task.eval_loss(params, batch)
                return {"loss": loss_sum, "weight": weight_sum, **aux}

            self._step = jax.jit(sums, out_shardings=sharding.replicated(self.task.mesh))
        return self._step

    def evaluate(self, state, split, *, max_batches=None, num_bootstrap=0) -> Report:
        del num_bootstrap
        totals = {}
        for batch in self.task.eval_batches(split, max_batches):
            device = sharding.to_global_batch(self.task.device_batch(batch), self.task.mesh)
            for name, value in jax.device_get(self._jitted()(state.params, device)).items():
                totals[name] = totals.get(name, 0.0) + float(value)
        if not totals:
            return Report(self.name, {}, {})
        weight = max(totals.pop("weight"), 1.0)
        scalars = {name: value / weight for name, value in totals.items()}
        scalars["targets"] = weight
        return Report(self.name, scalars, {"split": split, **scalars},
                      markdown=f"# Loss on {split}\n\n" + "\n".join(f"- {k}: {v:.6g}" for k, v in scalars.items()))
