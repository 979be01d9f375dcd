"""The generic sharded trainer: ``train(config, workdir)`` and its pure steps.

The trainer knows nothing about a particular model: it takes a flax module with the call
``module.apply({"params": p}, batch, train=bool, rngs={"dropout": key}) -> [B, L, vocab] logits`` and a loss
``loss_fn(logits, batch) -> (loss_sum, weight_sum)`` (by default ``build_model(config.model)`` and
``loss_for(config.model)`` of ``study.models.registry``); a loss with the attribute ``needs_rng = True`` is
called as ``loss_fn(logits, batch, rng=key)``.

Layout: one ``Mesh`` ("data", "model") from ``config.mesh_shape``; parameter and optimizer-state shardings
come from the model's logical axis annotations through ``study.train.sharding.LOGICAL_AXIS_RULES``;
batches are split on "data". ``train_step`` is one ``jax.jit`` with in/out shardings and a donated state.
The same code runs on one CPU, on N simulated devices and on a multi-host TPU pod (each process reads
its own share of the data and contributes its rows to the global batch).

Usage::

    python -m study.train.trainer --config=configs/study.py:smoke --workdir=/tmp/run \
        --config.data_dir=/path/to/processed
"""

import contextlib
import functools
import json
import os
import signal
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from study.data import input_pipeline, reserved_ids
from study.train import checkpointing, schedules, sharding
from study.train.metrics_logging import MetricsLogger
from study.train.train_state import TrainState

LossFn = Callable[[jnp.ndarray, dict], tuple[jnp.ndarray, jnp.ndarray]]


def top1_accuracy(logits, batch):
    """Next-item accuracy@1: ``(correct_sum, weight_sum)`` float32 scalars.

    The prediction is the best-scored vocabulary item (reserved ids PAD/OOV/SEP are never predicted);
    targets are the item positions of valid rows, so an OOV target is always a miss.
    """
    targets = batch["item_ids"]
    weights = reserved_ids.is_item(targets)
    if "row_valid" in batch:
        weights &= batch["row_valid"][:, None] > 0
    scores = jnp.asarray(logits, jnp.float32).at[..., : reserved_ids.FIRST_ITEM_ID].set(-jnp.inf)
    correct = (jnp.argmax(scores, axis=-1) == targets) & weights
    return jnp.sum(correct, dtype=jnp.float32), jnp.sum(weights, dtype=jnp.float32)


def init_train_state(model: nn.Module, tx: optax.GradientTransformation, example_batch: dict, seed: int):
    """A fresh TrainState (params still boxed with their logical axis names). Use under ``jax.eval_shape``
    to get shapes and shardings, or jit it with out_shardings (then unbox)."""
    base_key = jax.random.key(seed)
    init_key, run_key = jax.random.split(base_key)
    variables = model.init({"params": init_key, "dropout": init_key}, example_batch, train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=jax.random.key_data(run_key)
    )


def create_train_state(model, tx, mesh, example_batch: dict, seed: int):
    """(state placed on ``mesh`` by the logical rules, its shardings pytree)."""
    init = functools.partial(init_train_state, model, tx, example_batch, seed)
    # No global mesh here: flax's DenseGeneral unboxes its flattened kernel at init, and a logical
    # constraint of the un-flattened rank would fail; the out_shardings place the result instead.
    with nn.logical_axis_rules(sharding.LOGICAL_AXIS_RULES):
        boxed = jax.eval_shape(init)
        shardings = sharding.logical_shardings(boxed, mesh)
        state = jax.jit(lambda: nn.unbox(init()), out_shardings=shardings)()
    return state, shardings


@contextlib.contextmanager
def mesh_context(mesh, activation_constraints: bool = False):
    """The logical axis rules (and, with ``activation_constraints``, the global mesh) that the models'
    sharding annotations resolve against.

    Without a global mesh flax's ``with_logical_constraint`` on activations is a no-op and XLA propagates
    the parameter and batch shardings by itself. With it, every activation annotation becomes a
    ``with_sharding_constraint``; this needs models whose annotated parameters keep their rank through
    init (flax's ``DenseGeneral`` with multi-axis features re-runs a flattened, rank-mismatched init
    under ``apply`` and fails), hence off by default (``config.activation_constraints``).
    """
    with contextlib.ExitStack() as stack:
        if activation_constraints:
            stack.enter_context(jax.set_mesh(mesh))
        stack.enter_context(nn.logical_axis_rules(sharding.LOGICAL_AXIS_RULES))
        yield


def _split_micro_batches(batch: dict, num_micro: int) -> dict:
    """``[B, ...] -> [num_micro, B / num_micro, ...]``; micro-batch i holds rows ``i, i + k, i + 2k ...`` so
    that each device's rows stay on that device."""

    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"batch of {x.shape[0]} rows is not divisible by grad_accum_steps={num_micro}")
        x = x.reshape((x.shape[0] // num_micro, num_micro) + x.shape[1:])
        return jnp.moveaxis(x, 1, 0)

    return jax.tree.map(split, batch)


def make_train_step(
    model: nn.Module,
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    schedule: schedules.Schedule,
    grad_accum_steps: int = 1,
):
    """``train_step(state, batch, rng) -> (state, metrics)``, pure (jit it with :func:`jit_train_step`).

    ``batch``: dict of ``[B, ...]`` arrays; ``rng``: ``[2] uint32`` key data of this update's dropout key.
    The gradient is ``d(sum of losses) / d params / (number of targets)`` over the WHOLE batch, also with
    ``grad_accum_steps = k > 1`` (the k micro-batch gradient sums are added before dividing, so the update
    equals the one-shot update up to float summation order). ``metrics``: ``loss`` (mean per target),
    ``targets``, ``grad_norm``, ``learning_rate`` of the applied update.
    """

    def micro_loss_and_grad(params, micro_batch, key):
        def loss_sum_of(p):
            logits = model.apply({"params": p}, micro_batch, train=True, rngs={"dropout": key})
            if getattr(loss_fn, "needs_rng", False):  # e.g. BPR's negative sampling
                return loss_fn(logits, micro_batch, rng=jax.random.fold_in(key, 1))
            return loss_fn(logits, micro_batch)

        (loss_sum, weight_sum), grads = jax.value_and_grad(loss_sum_of, has_aux=True)(params)
        return loss_sum, weight_sum, grads

    def train_step(state: TrainState, batch: dict, rng):
        key = jax.random.wrap_key_data(rng)
        if grad_accum_steps == 1:
            loss_sum, weight_sum, grad_sum = micro_loss_and_grad(state.params, batch, key)
        else:
            micro_batches = _split_micro_batches(batch, grad_accum_steps)
            zeros = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32),
                     jax.tree.map(jnp.zeros_like, state.params))

            def accumulate(totals, inputs):
                micro_batch, index = inputs
                result = micro_loss_and_grad(state.params, micro_batch, jax.random.fold_in(key, index))
                return jax.tree.map(jnp.add, totals, result), None

            (loss_sum, weight_sum, grad_sum), _ = jax.lax.scan(
                accumulate, zeros, (micro_batches, jnp.arange(grad_accum_steps))
            )
        denominator = jnp.maximum(weight_sum, 1.0)
        grads = jax.tree.map(lambda g: g / denominator, grad_sum)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss_sum / denominator,
            "targets": weight_sum,
            "grad_norm": optax.global_norm(grads),
            "learning_rate": schedule(state.step + 1),
        }
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step


def jit_train_step(train_step, mesh, state_shardings, batch_shardings):
    """``train_step`` under ``jax.jit`` with the state donated; metrics replicated."""
    replicated = sharding.replicated(mesh)
    return jax.jit(
        train_step,
        in_shardings=(state_shardings, batch_shardings, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,),
    )


def make_eval_step(model: nn.Module, loss_fn: LossFn, metric_fn=top1_accuracy):
    """``eval_step(params, batch) -> {loss_sum, loss_weight, correct, accuracy_weight}`` (sums, float32)."""

    def eval_step(params, batch):
        logits = model.apply({"params": params}, batch, train=False)
        if getattr(loss_fn, "needs_rng", False):  # a fixed key: the same validation loss at every evaluation
            loss_sum, loss_weight = loss_fn(logits, batch, rng=jax.random.key(0))
        else:
            loss_sum, loss_weight = loss_fn(logits, batch)
        correct, accuracy_weight = metric_fn(logits, batch)
        return {"loss_sum": loss_sum, "loss_weight": loss_weight, "correct": correct,
                "accuracy_weight": accuracy_weight}

    return eval_step


def evaluate(jitted_eval_step, params, batches, mesh) -> dict:
    """Mean validation ``loss`` and ``accuracy@1`` over ``batches`` (local NumPy batches)."""
    totals = {}
    for batch in batches:
        sums = jitted_eval_step(params, sharding.to_global_batch(input_pipeline.device_batch(batch), mesh))
        for name, value in jax.device_get(sums).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    if not totals:
        return {}
    return {
        "loss": totals["loss_sum"] / max(totals["loss_weight"], 1.0),
        "accuracy_at_1": totals["correct"] / max(totals["accuracy_weight"], 1.0),
        "targets": totals["loss_weight"],
    }


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """``jax.distributed.initialize`` when ``config.distributed.enabled``.

    Each of coordinator address, number of processes and process id comes from the config field when set,
    else from the environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
    ``JAX_PROCESS_ID`` when set, else from JAX's own cluster detection (Cloud TPU, SLURM, ...).
    """
    dist = config.distributed
    if not dist.enabled or jax.distributed.is_initialized():
        return
    kwargs = {}
    address = dist.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    if address:
        kwargs["coordinator_address"] = address
    num_processes = dist.num_processes if dist.num_processes >= 0 else int(os.environ.get("JAX_NUM_PROCESSES", -1))
    if num_processes >= 0:
        kwargs["num_processes"] = num_processes
    process_id = dist.process_id if dist.process_id >= 0 else int(os.environ.get("JAX_PROCESS_ID", -1))
    if process_id >= 0:
        kwargs["process_id"] = process_id
    jax.distributed.initialize(**kwargs)


def resolve_vocab_size(config: ml_collections.ConfigDict) -> None:
    """Sets ``config.model.vocab_size`` from ``<data_dir>/vocab.json`` when it is 0."""
    if config.model.vocab_size:
        return
    path = os.path.join(config.data_dir, "vocab.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"config.model.vocab_size is 0 and {path} does not exist; set --config.model.vocab_size or "
            "--config.data_dir to a processed dataset"
        )
    with open(path) as f:
        vocab = json.load(f)
    if "vocab_size" not in vocab:
        raise KeyError(f"{path} has no 'vocab_size' key; re-run the data pipeline")
    config.model.vocab_size = int(vocab["vocab_size"])


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    model: nn.Module | None = None,
    loss_fn: LossFn | None = None,
) -> dict:
    """Trains (or resumes) to ``config.steps`` updates; returns the final train and validation metrics.

    Writes ``<workdir>/checkpoints/<step>/``, ``<workdir>/metrics.jsonl``, TensorBoard events under
    ``<workdir>/tensorboard`` and ``<workdir>/config.json``. ``model`` / ``loss_fn`` default to the registry's
    ``build_model(config.model)`` and ``loss_for(config.model)``.
    """
    config = ml_collections.ConfigDict(config.to_dict())  # never mutate the caller's config
    maybe_initialize_distributed(config)
    resolve_vocab_size(config)
    if model is None or loss_fn is None:
        from study.models import registry

        model = model or registry.build_model(config.model)
        loss_fn = loss_fn or registry.loss_for(config.model)
    mesh = sharding.make_mesh(config.mesh_shape.to_dict())
    row_length = config.model.row_length
    process_count = jax.process_count()
    if config.batch_size % (process_count * config.grad_accum_steps):
        raise ValueError(
            f"config.batch_size={config.batch_size} must be divisible by processes ({process_count}) x "
            f"grad_accum_steps ({config.grad_accum_steps})"
        )

    schedule = schedules.make_schedule(config)
    tx = schedules.make_optimizer(config)
    example = input_pipeline.device_batch(input_pipeline.empty_batch(2, row_length))
    state, state_shardings = create_train_state(model, tx, mesh, example, config.seed)
    global_example = {k: jax.ShapeDtypeStruct((config.batch_size,) + v.shape[1:], v.dtype)
                      for k, v in example.items()}
    p_train_step = jit_train_step(
        make_train_step(model, loss_fn, tx, schedule, config.grad_accum_steps),
        mesh, state_shardings, sharding.batch_shardings(global_example, mesh),
    )
    p_eval_step = jax.jit(make_eval_step(model, loss_fn), out_shardings=sharding.replicated(mesh))

    logger = MetricsLogger(workdir, enabled=jax.process_index() == 0)
    ckpt = checkpointing.Checkpointer(
        os.path.join(workdir, "checkpoints"), config.checkpoint_every, config.keep_checkpoints
    )
    progress = {"step": 0, "batches_consumed": 0, "seed": config.seed}
    if ckpt.latest_step() is not None:
        abstract = checkpointing.abstract_with_shardings(state, state_shardings)
        state, progress = ckpt.restore(abstract)
        logger.info(f"resumed from step {progress['step']} ({progress['batches_consumed']} batches consumed)")
    else:
        logger.write_config(config)

    data_files = input_pipeline.dataset_files(config.data_dir, config.dataset, "train")
    batches = input_pipeline.train_batches(
        data_files, config.batch_size, row_length=row_length, seed=config.seed,
        start_batch=progress["batches_consumed"], shard_by=config.data_sharding,
        shuffle_buffer=config.shuffle_buffer,
    )
    try:
        validation_files = input_pipeline.dataset_files(config.data_dir, config.dataset, "validation")
    except FileNotFoundError:
        validation_files = []

    def run_validation(step):
        if not validation_files:
            return {}
        result = evaluate(p_eval_step, state.params, input_pipeline.eval_batches(
            validation_files, config.batch_size, row_length=row_length, max_batches=config.eval_batches,
            shard_by=config.data_sharding), mesh)
        logger.log(step, "validation", result)
        return result

    run_key = jax.random.wrap_key_data(jnp.asarray(jax.device_get(state.rng)))
    start_step = int(jax.device_get(state.step))
    kill_at = config.get("kill_at_step", -1)
    train_metrics, validation_metrics = {}, {}
    window, window_start = [], time.perf_counter()
    constraints = config.get("activation_constraints", False)
    with mesh_context(mesh, constraints), logger.progress_bar(start_step, config.steps) as bar:
        for step in range(start_step, config.steps):
            local = next(batches)
            global_batch = sharding.to_global_batch(input_pipeline.device_batch(local), mesh)
            step_rng = np.asarray(jax.random.key_data(jax.random.fold_in(run_key, step)))
            state, metrics = p_train_step(state, global_batch, step_rng)
            window.append(metrics)
            done = step + 1
            bar.update(1)
            if done % config.log_every == 0 or done == config.steps:
                values = jax.device_get(window)
                elapsed = time.perf_counter() - window_start
                train_metrics = {name: float(np.mean([v[name] for v in values])) for name in values[0]}
                train_metrics["steps_per_second"] = len(values) / elapsed
                train_metrics["rows_per_second"] = len(values) * config.batch_size / elapsed
                logger.log(done, "train", train_metrics)
                window, window_start = [], time.perf_counter()
            progress = {"step": done, "batches_consumed": done, "seed": config.seed}
            ckpt.maybe_save(done, state, progress)
            if config.eval_every and done % config.eval_every == 0 and done != config.steps:
                validation_metrics = run_validation(done)
            if done == kill_at:  # preemption drill for tests: die without any cleanup
                os.kill(os.getpid(), signal.SIGKILL)
        final_step = int(jax.device_get(state.step))
        ckpt.save(final_step, state, {"step": final_step, "batches_consumed": final_step, "seed": config.seed},
                  force=True)
        validation_metrics = run_validation(final_step) or validation_metrics
    ckpt.close()
    logger.close()
    return {"step": final_step, "train": train_metrics, "validation": validation_metrics}


def main(argv):
    from absl import flags

    del argv
    config = flags.FLAGS.config
    result = train(config, flags.FLAGS.workdir)
    if jax.process_index() == 0:
        print(json.dumps(result, indent=1, sort_keys=True))


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "config file, e.g. configs/study.py:smoke", lock_config=False)
    flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, TensorBoard)")
    flags.mark_flags_as_required(["config", "workdir"])


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
