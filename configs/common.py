"""The fields the training loop reads, shared by every family's config (``configs/<model>.py``).

A family's config file adds ``config.task`` (which family: ``study.tasks.TASKS``), its own ``config.model``
(``config.model.name`` chooses the model inside the family) and, for gradient families,
:func:`optimizer_fields`. Loop fields:

* ``name``: the run's name in reports (default: the model's).
* ``data_dir``: processed dataset folder (holds ``vocab.json`` and ``<dataset>/`` TFRecords); ``dataset``:
  which rows ("study" or "individual").
* ``steps``: updates (a family whose data ends earlier, e.g. one pass, stops there). ``batch_size``: GLOBAL
  rows per update; with ``grad_accum_steps = k`` the update sums exact gradients of ``k`` micro-batches.
* ``checkpoint_every``, ``keep_checkpoints``; ``log_every``; ``seed``.
* ``evals``: ``{evaluator name: {"every": N, "max_batches": M}}``; the family's evaluators to run, every N
  updates and at the end of training on the validation split (0: only at the end, -1: only in
  ``study eval``), reading at most M batches during training (0 = all). ``study eval`` runs them all on a
  whole split.
* ``early_stopping``: ``metric`` an evaluator scalar named ``"<evaluator>/<scalar>"`` (e.g. ``"loss/loss"``,
  ``"hits/hits@20_macro"``) of the periodic evaluation, ``mode`` "min" | "max", ``patience``: evaluations
  without improvement before the run stops (0 = never stops early). The best state is kept in
  ``<workdir>/best/``; ``study eval`` and ``study export`` use it when it exists.
* ``convergence``: ``fraction`` > 0 stops the run when the mean change of the window-mean training loss over
  the last ``window`` logging windows falls below ``fraction`` times the change between the first two windows
  (``study.train.convergence``; 0 = off).
* ``init_from``: ``workdir`` of another run whose checkpoint (``step``, -1 = latest) initialises this one;
  ``params``: path patterns of the parameters taken (empty = all).
* ``frozen``: regular expressions of parameter paths that never change (e.g. ``"embed/.*"``).
* ``mesh_shape``: {"data": d, "model": m}, -1 = all remaining devices. ``logical_axis_rules``: pairs
  ``(logical axis, mesh axis or "none")`` replacing ``study.train.sharding.LOGICAL_AXIS_RULES`` (empty =
  those). ``data_sharding``: "file" | "row" (``study.data.input_pipeline``). ``shuffle_buffer``: rows.
  ``activation_constraints``: apply the models' activation sharding annotations under the global mesh
  (``study.train.loop.mesh_context``).
* ``distributed``: ``enabled`` calls ``jax.distributed.initialize`` with ``coordinator_address``,
  ``num_processes``, ``process_id`` (empty / -1 = from the environment, as on Cloud TPU).
* ``kill_at_step``: for preemption tests only; the run SIGKILLs itself after that update.

Optimizer fields (:func:`optimizer_fields`): ``optimizer``: ``name`` "adam" | "adamw", ``b1, b2, eps``,
``peak_lr``, ``warmup_steps``, ``weight_decay`` (Adam: L2 on the gradient; AdamW: decoupled),
``decay_steps`` / ``decay_rate`` (the step_decay schedule); ``schedule``: "inverse_sqrt" | "official_rsqrt" |
"constant" | "step_decay" (``study.train.schedules``); ``clip_norm`` (global-norm clipping, 0 = off);
``grad_accum_steps``.
"""

import ml_collections

PRESETS = ("default", "smoke", "small", "learning_ally")


def base_config() -> ml_collections.ConfigDict:
    """The loop's fields at CPU-sized defaults (no model, no optimizer)."""
    config = ml_collections.ConfigDict()
    config.task = ""
    config.name = ""
    config.data_dir = ""
    config.dataset = "study"

    config.steps = 3500
    config.batch_size = 64
    config.checkpoint_every = 500
    config.keep_checkpoints = 3
    config.log_every = 50
    config.seed = 0
    config.evals = ml_collections.ConfigDict()

    config.early_stopping = ml_collections.ConfigDict({"metric": "", "mode": "min", "patience": 0})
    config.convergence = ml_collections.ConfigDict({"fraction": 0.0, "window": 5})
    config.init_from = ml_collections.ConfigDict({"workdir": "", "step": -1, "params": []})
    config.frozen = []

    config.mesh_shape = ml_collections.ConfigDict({"data": -1, "model": 1})
    config.logical_axis_rules = []
    config.data_sharding = "file"
    config.activation_constraints = False  # see study.train.loop.mesh_context
    config.shuffle_buffer = 16_384

    config.distributed = ml_collections.ConfigDict()
    config.distributed.enabled = False
    config.distributed.coordinator_address = ""
    config.distributed.num_processes = -1
    config.distributed.process_id = -1

    config.kill_at_step = -1  # preemption drill: the process SIGKILLs itself after this update (-1 = never)
    return config


def optimizer_fields(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Adds the optimizer fields of gradient families (the official STUDY settings) to ``config``."""
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.peak_lr = 0.1024
    config.optimizer.warmup_steps = 1000
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.98
    config.optimizer.eps = 1e-9
    config.optimizer.weight_decay = 0.0
    config.optimizer.decay_steps = 0  # the step_decay schedule's interval
    config.optimizer.decay_rate = 0.1
    config.schedule = "inverse_sqrt"
    config.clip_norm = 0.0
    config.grad_accum_steps = 1
    return config


def evaluation(every: int, max_batches: int) -> ml_collections.ConfigDict:
    """One entry of ``config.evals``."""
    return ml_collections.ConfigDict({"every": every, "max_batches": max_batches})


def check_preset(preset: str) -> str:
    preset = preset or "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


def apply_preset(config: ml_collections.ConfigDict, preset: str) -> ml_collections.ConfigDict:
    """Loop and optimizer overrides of the named preset: "default", "smoke", "small" or "learning_ally".

    ``small`` is for data sets of 5k-100k interactions (a few hundred to a few thousand students): AdamW with
    weight decay on a constant rate after a short warm-up, validation every 50 updates on the whole split,
    early stopping on the validation loss (patience 6 evaluations) with the best state kept for evaluation and
    export, up to 4,000 updates of 32 rows.
    """
    preset = check_preset(preset)
    if preset == "smoke":
        # Seconds on a CPU.
        if "optimizer" in config:
            config.optimizer.peak_lr = 1e-2  # the inverse-sqrt decay brings it to 1e-3 by step 105
            config.optimizer.warmup_steps = 5
        config.steps = 300
        config.batch_size = 16
        config.checkpoint_every = 100
        config.keep_checkpoints = 2
        config.log_every = 50
        config.shuffle_buffer = 1024
        for entry in config.evals.values():
            if entry.every > 0:
                entry.every, entry.max_batches = 100, 4
    if preset == "small":
        if "optimizer" in config:
            config.optimizer.name = "adamw"
            config.optimizer.weight_decay = 0.01
            config.optimizer.peak_lr = 2e-3
            config.optimizer.warmup_steps = 100
            config.schedule = "constant"
        config.steps = 4000
        config.batch_size = 32
        config.checkpoint_every = 250
        config.keep_checkpoints = 2
        config.log_every = 50
        config.shuffle_buffer = 4096
        for entry in config.evals.values():
            if entry.every > 0:
                entry.every, entry.max_batches = 50, 0
        if "loss" in config.evals:
            config.early_stopping.metric = "loss/loss"
            config.early_stopping.mode = "min"
            config.early_stopping.patience = 6
    if preset == "learning_ally":
        # Appendix Table 4: peak lr 0.1024, warm-up 1000, 3,500 steps, batch 131,072 on 32 TPU chips.
        if "optimizer" in config:
            config.optimizer.peak_lr = 0.1024
            config.optimizer.warmup_steps = 1000
        config.steps = 3500
        config.batch_size = 131_072
        config.mesh_shape = ml_collections.ConfigDict({"data": 32, "model": 1})
        config.checkpoint_every = 250
        for entry in config.evals.values():
            if entry.every > 0:
                entry.every, entry.max_batches = 250, 8
        config.distributed.enabled = True
    return config
