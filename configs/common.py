"""Defaults shared by the transformer configs (``configs/study.py``, ``configs/individual.py``).

Every field the trainer reads is set here; presets override a few. Fields:

* ``data_dir``: processed dataset folder (holds ``vocab.json`` and ``<dataset>/`` TFRecords).
* ``dataset``: "study" or "individual" (the rows to train on).
* ``model``: the model config (``study.models.registry.default_model_config()``); ``model.vocab_size``
  0 means "read ``vocab_size`` from ``<data_dir>/vocab.json`` at run time".
* ``optimizer``: Adam ``b1, b2, eps``, ``peak_lr``, ``warmup_steps``. ``schedule``: "inverse_sqrt" |
  "official_rsqrt" (``study.train.schedules``).
* ``steps``: optimizer updates. ``batch_size``: GLOBAL rows per update; with ``grad_accum_steps = k`` the
  update sums exact gradients of ``k`` micro-batches of ``batch_size / k`` rows. ``clip_norm``: global-norm
  clipping (0 = off).
* ``checkpoint_every``, ``keep_checkpoints``; ``eval_every`` (0 = only at the end), ``eval_batches``
  (bound on validation batches); ``log_every``; ``seed``.
* ``mesh_shape``: {"data": d, "model": m}, -1 = all remaining devices. ``data_sharding``: "file" | "row"
  (``study.data.input_pipeline``). ``shuffle_buffer``: rows. ``activation_constraints``: apply the models'
  activation sharding annotations under the global mesh (``study.train.trainer.mesh_context``).
* ``distributed``: ``enabled`` calls ``jax.distributed.initialize`` with ``coordinator_address``,
  ``num_processes``, ``process_id`` (empty / -1 = from the environment, as on Cloud TPU).
* ``kill_at_step``: for preemption tests only; the run SIGKILLs itself after that update.
"""

import ml_collections

from study.models.registry import default_model_config


def base_config() -> ml_collections.ConfigDict:
    """The official STUDY defaults at a size that runs on a CPU."""
    config = ml_collections.ConfigDict()
    config.data_dir = ""
    config.dataset = "study"
    config.model = default_model_config()
    config.model.vocab_size = 0  # 0: from <data_dir>/vocab.json

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adam"
    config.optimizer.peak_lr = 0.1024
    config.optimizer.warmup_steps = 1000
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.98
    config.optimizer.eps = 1e-9
    config.schedule = "inverse_sqrt"

    config.steps = 3500
    config.batch_size = 64
    config.grad_accum_steps = 1
    config.clip_norm = 0.0

    config.checkpoint_every = 500
    config.keep_checkpoints = 3
    config.eval_every = 500
    config.eval_batches = 50
    config.log_every = 50
    config.seed = 0

    config.mesh_shape = ml_collections.ConfigDict({"data": -1, "model": 1})
    config.data_sharding = "file"
    config.activation_constraints = False  # see study.train.trainer.mesh_context
    config.shuffle_buffer = 16_384

    config.distributed = ml_collections.ConfigDict()
    config.distributed.enabled = False
    config.distributed.coordinator_address = ""
    config.distributed.num_processes = -1
    config.distributed.process_id = -1

    config.kill_at_step = -1  # preemption drill: the process SIGKILLs itself after this update (-1 = never)
    return config


def apply_preset(config: ml_collections.ConfigDict, preset: str) -> ml_collections.ConfigDict:
    """Overrides of the named preset: "default", "smoke" or "learning_ally"."""
    if preset == "default":
        return config
    if preset == "smoke":
        # A tiny model for a CPU in seconds.
        config.model.num_layers = 2
        config.model.emb_dim = 32
        config.model.num_heads = 2
        config.model.mlp_dim = 64
        config.optimizer.peak_lr = 1e-2  # the inverse-sqrt decay brings it to 1e-3 by step 105
        config.optimizer.warmup_steps = 5
        config.steps = 300
        config.batch_size = 16
        config.checkpoint_every = 100
        config.keep_checkpoints = 2
        config.eval_every = 100
        config.eval_batches = 4
        config.log_every = 50
        config.shuffle_buffer = 1024
        return config
    if preset == "learning_ally":
        # Appendix Table 4: peak lr 0.1024, warm-up 1000, 3,500 steps, batch 131,072 on 32 TPU chips.
        config.optimizer.peak_lr = 0.1024
        config.optimizer.warmup_steps = 1000
        config.steps = 3500
        config.batch_size = 131_072
        config.mesh_shape = ml_collections.ConfigDict({"data": 32, "model": 1})
        config.model.dtype = "bfloat16"
        config.checkpoint_every = 250
        config.eval_every = 250
        config.eval_batches = 8
        config.distributed.enabled = True
        return config
    raise ValueError(f"unknown preset {preset!r}; choose one of default, smoke, learning_ally")
