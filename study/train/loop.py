"""The one training loop of every model family: ``train(task, config, workdir)``.

The loop knows no family. It takes a :class:`study.train.task.Task` and owns:

* the device mesh (``config.mesh_shape``) and the logical-axis rules (``config.logical_axis_rules``, default
  ``study.train.sharding.LOGICAL_AXIS_RULES``); the state is laid out by the rules, batches split on "data";
* the update under ``jax.jit`` with named in/out shardings and a donated state (host tasks with
  ``jit_update = False`` run on NumPy state instead);
* orbax checkpoints (periodic + final, bounded retention) and exact resume: parameters or tables, optimizer
  state, step, RNG and the data position; a damaged newest checkpoint falls back to the newest intact one;
* ``config.init_from``: a new run starts from another run's checkpoint, all parameters or the subtrees whose
  paths match ``init_from.params`` (fine-tuning, a posterior as the next fit's prior);
* ``config.frozen``: parameter-path patterns that never change (``study.train.gradient_step``; for update
  tasks the loop copies the frozen leaves through every update);
* ``config.convergence``: stop when the mean training loss of the logging windows has stopped moving
  (``study.train.convergence``, the rule of Shi & Athey 2021);
* metrics (``metrics.jsonl`` + TensorBoard, a progress bar on terminals) and evaluation by the task's
  evaluators on the validation split: ``config.evals.<name>.every`` = N runs evaluator ``name`` every N
  updates and at the end (reading at most ``max_batches`` batches), 0 only at the end, -1 never (it then
  runs only in ``study eval``).

Randomness: ``init_key, run_key = split(key(config.seed))``; the task initialises from ``init_key`` and
update ``s`` (0-based) gets ``fold_in(run_key, s)``, so a resumed run draws exactly what it would have.
"""

import contextlib
import functools
import itertools
import os
import signal
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from study.train import checkpointing, gradient_step, schedules, sharding
from study.train.convergence import ConvergenceRule
from study.train.metrics_logging import MetricsLogger
from study.train.step_clock import StepClock
from study.train.task import GradientTask, Task, UpdateTask
from study.train.train_state import TrainState


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> None:
    """``jax.distributed.initialize`` when ``config.distributed.enabled``.

    Each of coordinator address, number of processes and process id comes from the config field when set,
    else from the environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
    ``JAX_PROCESS_ID`` when set, else from JAX's own cluster detection (Cloud TPU, SLURM, ...).
    """
    dist = config.get("distributed", None)
    if dist is None or not dist.enabled or jax.distributed.is_initialized():
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


def axis_rules(config) -> tuple:
    """The logical-axis rules of the run: ``config.logical_axis_rules`` (pairs ``[logical, mesh axis or
    None]``) when set, else ``study.train.sharding.LOGICAL_AXIS_RULES``."""
    rules = config.get("logical_axis_rules", None)
    if not rules:
        return sharding.LOGICAL_AXIS_RULES
    return tuple((str(name), None if axis in (None, "", "none") else str(axis)) for name, axis in rules)


@contextlib.contextmanager
def mesh_context(mesh, rules=sharding.LOGICAL_AXIS_RULES, activation_constraints: bool = False):
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
        stack.enter_context(nn.logical_axis_rules(rules))
        yield


class Program:
    """What the loop runs for one task: ``init(init_key, run_key) -> boxed state`` and a pure
    ``step(state, batch, rng) -> (state, metrics)``."""

    def __init__(self, task: Task, config):
        self.task = task
        self.jit = True
        if isinstance(task, GradientTask):
            schedule = schedules.make_schedule(config)
            tx, frozen = gradient_step.make_optimizer(config)
            self.init = functools.partial(gradient_step.init_state, task, tx)
            self.step = gradient_step.make_train_step(task, tx, schedule, config.get("grad_accum_steps", 1), frozen)
        elif isinstance(task, UpdateTask):
            self.jit = task.jit_update
            patterns = list(config.get("frozen", ()) or ())

            def init(init_key, run_key):
                return TrainState(step=jnp.zeros((), jnp.int32), params=task.init_state(init_key), opt_state=(),
                                  rng=jax.random.key_data(run_key))

            def step(state, batch, rng):
                table, metrics = task.update(state.params, batch, jax.random.wrap_key_data(rng))
                if patterns:
                    labels = gradient_step.frozen_labels(table, patterns)
                    table = jax.tree.map(lambda label, new, old: old if label == gradient_step.FROZEN else new,
                                         labels, table, state.params)
                return state.replace(step=state.step + 1, params=table), metrics

            self.init, self.step = init, step
        else:
            raise TypeError(f"{type(task).__name__} is neither a GradientTask nor an UpdateTask")


def _keys(seed: int):
    return jax.random.split(jax.random.key(seed))


def create_state(program: Program, mesh, rules, seed: int):
    """(state, shardings): the fresh state placed on ``mesh`` by the logical rules (host tasks: NumPy
    state, shardings None)."""
    init_key, run_key = _keys(seed)
    init = functools.partial(program.init, init_key, run_key)
    if not program.jit:
        return jax.tree.map(np.asarray, init()), None
    # No global mesh here: flax's DenseGeneral unboxes its flattened kernel at init, and a logical
    # constraint of the un-flattened rank would fail; the out_shardings place the result instead.
    with nn.logical_axis_rules(rules):
        boxed = jax.eval_shape(init)
        shardings = sharding.logical_shardings(boxed, mesh, rules)
        state = jax.jit(lambda: nn.unbox(init()), out_shardings=shardings)()
    return state, shardings


def jit_step(step, mesh, state_shardings, batch_shardings):
    """``step`` under ``jax.jit`` with the state donated; metrics replicated."""
    replicated = sharding.replicated(mesh)
    return jax.jit(step, in_shardings=(state_shardings, batch_shardings, replicated),
                   out_shardings=(state_shardings, replicated), donate_argnums=(0,))


def _restore(ckpt: checkpointing.Checkpointer, state, shardings, logger, step=None):
    abstract = None if shardings is None else checkpointing.abstract_with_shardings(state, shardings)
    restored, progress = ckpt.restore(abstract, step, log=logger.info)
    if shardings is None:
        restored = _as_train_state(restored)
    return restored, progress


def _as_train_state(tree) -> TrainState:
    if isinstance(tree, TrainState):
        return tree
    return TrainState(step=np.asarray(tree["step"]), params=jax.tree.map(np.asarray, tree["params"]),
                      opt_state=tree.get("opt_state") or (), rng=np.asarray(tree["rng"]))


def checkpoint_params(workdir: str, step: int | None = None, log=None) -> Any:
    """The parameters (NumPy) of the checkpoint of step ``step`` (default: the newest intact one) of the run
    in ``workdir``, as saved: no task or config needed."""
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), every_steps=1, async_save=False,
                                      create=False)
    try:
        other, _ = ckpt.restore(None, step, log=log or (lambda message: None))
    finally:
        ckpt.close()
    return _as_train_state(other).params


def initialize_from(state, shardings, init_from, logger):
    """``state`` with the parameter leaves matching ``init_from.params`` replaced by those of the
    checkpoint of the run in ``init_from.workdir`` (``init_from.step``, default its latest)."""
    import re

    step = None if init_from.get("step", -1) < 0 else int(init_from.step)
    other_params = checkpoint_params(init_from.workdir, step, log=logger.info)
    patterns = [re.compile(p) for p in (list(init_from.get("params", ())) or [".*"])]
    theirs = {gradient_step.path_name(path): leaf
              for path, leaf in jax.tree_util.tree_flatten_with_path(other_params)[0]}
    taken = []

    def take(path, mine, leaf_sharding=None):
        name = gradient_step.path_name(path)
        if not any(p.fullmatch(name) for p in patterns):
            return mine
        if name not in theirs:
            raise ValueError(f"init_from: parameter {name} is not in the checkpoint of {init_from.workdir}")
        value = np.asarray(theirs[name])
        if value.shape != tuple(mine.shape):
            raise ValueError(f"init_from: parameter {name} has shape {value.shape} in {init_from.workdir} "
                             f"but {tuple(mine.shape)} here")
        taken.append(name)
        value = value.astype(mine.dtype)
        return value if leaf_sharding is None else jax.device_put(value, leaf_sharding)

    if shardings is None:
        params = jax.tree_util.tree_map_with_path(take, state.params)
    else:
        params = jax.tree_util.tree_map_with_path(take, state.params, shardings.params)
    if not taken:
        raise ValueError(f"init_from.params {list(init_from.get('params', ()))} match no parameter")
    logger.info(f"initialized {len(taken)} parameter arrays from {init_from.workdir}")
    return state.replace(params=params)


def evaluate(evaluators: dict, state, split: str, *, max_batches=None, num_bootstrap=0) -> dict:
    """``{evaluator name: Report}`` of ``state`` on ``split``."""
    return {name: evaluator.evaluate(state, split, max_batches=max_batches, num_bootstrap=num_bootstrap)
            for name, evaluator in evaluators.items()}


def train(task: Task, config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) ``task`` to ``config.steps`` updates (``<= 0``: until its data ends); returns
    ``{"step", "train": last logged train metrics, "validation": last periodic evaluation scalars}``.

    Writes ``<workdir>/checkpoints/<step>/``, ``<workdir>/metrics.jsonl``, TensorBoard events under
    ``<workdir>/tensorboard`` and ``<workdir>/config.json``.
    """
    maybe_initialize_distributed(config)
    rules = axis_rules(config)
    mesh = task.mesh
    process_count = jax.process_count()
    accumulation = config.get("grad_accum_steps", 1)
    if config.batch_size % (process_count * accumulation):
        raise ValueError(
            f"config.batch_size={config.batch_size} must be divisible by processes ({process_count}) x "
            f"grad_accum_steps ({accumulation})")

    program = Program(task, config)
    state, state_shardings = create_state(program, mesh, rules, config.seed)
    if program.jit:
        example = task.example_batch(config.batch_size)
        global_example = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in example.items()}
        step_fn = jit_step(program.step, mesh, state_shardings, sharding.batch_shardings(global_example, mesh))
    else:
        step_fn = program.step

    logger = MetricsLogger(workdir, enabled=jax.process_index() == 0)
    every = config.checkpoint_every if config.checkpoint_every > 0 else 1 << 62  # <= 0: only the final one
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), every, config.keep_checkpoints,
                                      async_save=program.jit)
    stopping = EarlyStopping(config.get("early_stopping", None))
    convergence = ConvergenceRule(config.get("convergence", None))
    best_ckpt = (checkpointing.Checkpointer(os.path.join(workdir, BEST_DIR), 1, 1, async_save=False)
                 if stopping.enabled else None)
    progress = {"step": 0, "batches_consumed": 0, "seed": config.seed}
    if ckpt.latest_step() is not None:
        state, progress = _restore(ckpt, state, state_shardings, logger)
        logger.truncate_after(progress["step"])
        stopping.load(progress.get("early_stopping"))
        convergence.load(progress.get("convergence"))
        logger.info(f"resumed from step {progress['step']} ({progress['batches_consumed']} batches consumed)")
    else:
        init_from = config.get("init_from", None)
        if init_from is not None and init_from.get("workdir", ""):
            state = initialize_from(state, state_shardings, init_from, logger)
        logger.write_config(config)

    evaluators = task.evaluators()
    evals = config.get("evals", ml_collections.ConfigDict())
    unknown = sorted(set(evals) - set(evaluators))
    if unknown:
        raise ValueError(f"config.evals names {unknown}, which the {task.family} family does not have; "
                         f"its evaluators are {sorted(evaluators)}")
    during_training = {name: evaluators[name] for name in evals if evals[name].get("every", -1) >= 0}
    stopping.check_metric(during_training)

    def run_validation(step, final=False):
        """``{"<evaluator>/<scalar>": value}`` of the evaluators due at ``step``."""
        scalars = {}
        for name, evaluator in during_training.items():
            every = evals[name].every
            if not final and (every == 0 or step % every):
                continue
            max_batches = evals[name].get("max_batches", 0) or None
            try:
                report = evaluator.evaluate(state, "validation", max_batches=max_batches, num_bootstrap=0)
            except FileNotFoundError as missing:  # a dataset without a validation split
                logger.info(f"evaluator {name} skipped: {missing}")
                continue
            logger.log(step, "validation", report.scalars)
            scalars.update({f"{name}/{key}": value for key, value in report.scalars.items()})
        return scalars

    def progress_of(step):
        progress = {"step": step, "batches_consumed": step, "seed": config.seed, "early_stopping": stopping.state()}
        if convergence.enabled:
            progress["convergence"] = convergence.state()
        return progress

    def observe(step, scalars):
        if stopping.observe(step, scalars):
            best_ckpt.save(step, state, progress_of(step), force=True)
            logger.info(f"best {stopping.metric} so far: {stopping.best_value:.6g} at step {step}")

    batches = task.train_batches(progress["batches_consumed"])
    run_key = jax.random.wrap_key_data(jnp.asarray(jax.device_get(state.rng)))
    start_step = int(jax.device_get(state.step))
    total = config.steps if config.steps > 0 else None  # None: until the task's data ends
    kill_at = config.get("kill_at_step", -1)
    train_metrics, validation = {}, {}
    window, clock = [], StepClock()
    done, evaluated_at = start_step, None
    with mesh_context(mesh, rules, config.get("activation_constraints", False)), \
            logger.progress_bar(start_step, total) as bar:
        for step in itertools.count(start_step) if total is None else range(start_step, total):
            if stopping.should_stop() or convergence.converged:
                break
            local = next(batches, None)
            if local is None:  # a finite data source (one pass) ends the run
                break
            step_rng = np.asarray(jax.random.key_data(jax.random.fold_in(run_key, step)))
            batch = sharding.to_global_batch(task.device_batch(local), mesh) if program.jit else local
            state, metrics = step_fn(state, batch, step_rng)
            window.append(metrics)
            done = step + 1
            bar.update(1)
            if step == start_step:  # the process's first step compiles: timed apart from the others
                logger.info(f"first step (with compilation) took {clock.first_step_done(metrics):.2f} s")
            if done % config.log_every == 0 or done == total:
                train_metrics = _window_metrics(window, clock, config.batch_size)
                logger.log(done, "train", train_metrics)
                window = []
                clock.restart()
                if "loss" in train_metrics and convergence.observe(done, train_metrics["loss"]):
                    logger.info(f"converged at step {done} (config.convergence)")
            due = done % every == 0 or (done != total and any(
                evals[name].every > 0 and done % evals[name].every == 0 for name in during_training))
            with clock.paused(state, due):  # evaluation and checkpoints are not step time
                if done != total:
                    scalars = run_validation(done)
                    if scalars:
                        validation, evaluated_at = scalars, done
                        observe(done, scalars)
                ckpt.maybe_save(done, state, progress_of(done))
            if done == kill_at:  # preemption drill for tests: die without any cleanup
                os.kill(os.getpid(), signal.SIGKILL)
        if window:
            train_metrics = _window_metrics(window, clock, config.batch_size)
            logger.log(done, "train", train_metrics)
        final_step = int(jax.device_get(state.step))
        if evaluated_at != final_step:
            scalars = run_validation(final_step, final=True)
            if scalars:
                validation = scalars
                observe(final_step, scalars)
        ckpt.save(final_step, state, progress_of(final_step), force=True)
    ckpt.close()
    if best_ckpt is not None:
        best_ckpt.close()
    logger.close()
    result = {"step": final_step, "train": train_metrics,
              "validation": {key.split("/", 1)[1]: value for key, value in validation.items()}}
    if stopping.enabled:
        result["early_stopping"] = dict(stopping.state(), stopped=stopping.should_stop())
    if convergence.enabled:
        result["converged_at"] = convergence.converged_at
    return result


BEST_DIR = "best"  # <workdir>/best/: the checkpoint of the best early-stopping metric


class EarlyStopping:
    """Tracks ``config.early_stopping``: the best value of one periodic-evaluation scalar and how many
    evaluations have passed without improving it. Its state is saved in every checkpoint's progress."""

    def __init__(self, settings):
        settings = settings or {}
        self.metric = settings.get("metric", "") or ""
        self.mode = settings.get("mode", "min")
        self.patience = int(settings.get("patience", 0) or 0)
        if self.mode not in ("min", "max"):
            raise ValueError(f"early_stopping.mode must be 'min' or 'max', got {self.mode!r}")
        self.enabled = bool(self.metric)
        self.best_value, self.best_step, self.since_best = None, None, 0

    def check_metric(self, evaluators: dict) -> None:
        if not self.enabled:
            return
        name = self.metric.split("/", 1)[0]
        if "/" not in self.metric or name not in evaluators:
            raise ValueError(
                f"early_stopping.metric {self.metric!r} must be '<evaluator>/<scalar>' of an evaluator that runs "
                f"during training (config.evals.<name>.every > 0); those are {sorted(evaluators)}")

    def observe(self, step: int, scalars: dict) -> bool:
        """Records an evaluation; True when it is the best so far."""
        if not self.enabled or self.metric not in scalars:
            return False
        value = float(scalars[self.metric])
        better = self.best_value is None or (value < self.best_value if self.mode == "min" else value > self.best_value)
        if better:
            self.best_value, self.best_step, self.since_best = value, step, 0
        else:
            self.since_best += 1
        return better

    def should_stop(self) -> bool:
        return self.enabled and self.patience > 0 and self.since_best >= self.patience

    def state(self) -> dict:
        return {"metric": self.metric, "best_value": self.best_value, "best_step": self.best_step,
                "evaluations_since_best": self.since_best}

    def load(self, saved) -> None:
        if saved and saved.get("metric") == self.metric:
            self.best_value, self.best_step = saved["best_value"], saved["best_step"]
            self.since_best = int(saved["evaluations_since_best"])


def _window_metrics(window, clock: StepClock, batch_size: int) -> dict:
    values = jax.device_get(window)
    elapsed = clock.seconds()
    metrics = {name: float(np.mean([v[name] for v in values])) for name in values[0]}
    timed = len(values) - clock.untimed_steps
    if clock.untimed_steps:
        metrics["first_step_seconds"] = clock.first_step_seconds
    if timed > 0:  # a window holding only the compiling step has no step rate
        metrics["steps_per_second"] = timed / elapsed
        metrics["rows_per_second"] = timed * batch_size / elapsed
    return metrics


def restore_state(task: Task, config, workdir: str, step: int | None = None, checkpoint: str = "auto",
                  log=None) -> Any:
    """The train state of the run in ``workdir``, laid out on ``task.mesh`` as training lays it out.

    ``checkpoint``: "latest" (the newest intact periodic checkpoint, or ``step``), "best" (the early-stopping
    best, ``<workdir>/best/``) or "auto" (best when the run kept one, else latest).
    """
    program = Program(task, config)
    rules = axis_rules(config)
    state, shardings = create_state(program, task.mesh, rules, config.seed)
    if checkpoint not in ("auto", "latest", "best"):
        raise ValueError(f"checkpoint must be 'auto', 'latest' or 'best', got {checkpoint!r}")
    best = os.path.join(workdir, BEST_DIR)
    use_best = step is None and (checkpoint == "best" or (checkpoint == "auto" and os.path.isdir(best)))
    directory = best if use_best else os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no {'best ' if use_best else ''}checkpoint in {workdir}: train the run first "
                                "(study train ...)")
    (log or (lambda message: None))(f"restoring {'the best' if use_best else 'the latest'} checkpoint of {workdir}")
    ckpt = checkpointing.Checkpointer(directory, every_steps=1, async_save=False, create=False)
    try:
        abstract = None if shardings is None else checkpointing.abstract_with_shardings(state, shardings)
        restored, _ = ckpt.restore(abstract, step)
    finally:
        ckpt.close()
    return restored if shardings is not None else _as_train_state(restored)
