"""SAMN baseline (``study.models.samn``) on STUDY classroom rows: ``--config=configs/samn.py:preset``.

Presets: ``default`` (CPU-sized batch), ``smoke`` (tiny, seconds on CPU), ``learning_ally`` (peak lr
0.0128, warm-up 350, 3,500 steps, batch 524,288 as 8 accumulated micro-batches). Loop and optimizer fields
and their preset values come from ``configs/common.py``; the model config is SAMN's own:

* ``name`` "samn" (``study.models.registry``); ``vocab_size`` (0 = from ``<data_dir>/vocab.json``); ``row_length``;
* ``emb_dim`` (user/friend/item vectors), ``memory_slots`` (N of the key and memory matrices),
  ``attention_dim`` (hidden width of the friend-level attention);
* ``max_students``: friend slots per row (0 = ``(row_length + 1) // 2``, every student a row can hold);
* ``num_negatives``: sampled negatives per target in the BPR loss (1 as in the original).
"""

import ml_collections

from configs import common


def model_config(preset: str) -> ml_collections.ConfigDict:
    """SAMN's model fields for ``preset``."""
    config = ml_collections.ConfigDict()
    config.name = "samn"
    config.vocab_size = 0
    config.row_length = 65
    config.emb_dim = 64
    config.memory_slots = 8
    config.attention_dim = 32
    config.max_students = 0
    config.num_negatives = 1
    if preset == "smoke":
        config.emb_dim = 16
        config.memory_slots = 4
        config.attention_dim = 8
    return config


def get_config(preset: str = "smoke"):
    preset = common.check_preset(preset or "smoke")
    config = common.optimizer_fields(common.base_config())
    config.task = "next_item"
    config.name = "samn"
    config.dataset = "study"
    config.model = model_config(preset)
    config.evals.loss = common.evaluation(every=500, max_batches=50)
    config.evals.hits = common.evaluation(every=-1, max_batches=0)
    config = common.apply_preset(config, preset)
    if preset == "default":
        config.optimizer.peak_lr = 0.0128
        config.optimizer.warmup_steps = 350
    if preset == "learning_ally":
        config.optimizer.peak_lr = 0.0128
        config.optimizer.warmup_steps = 350
        config.steps = 3500
        config.batch_size = 524_288
        # 2,048 rows per chip and micro-batch on the preset's 32 chips: each [rows, 65, 33, 64] float32 friend
        # tensor is then 1.1 GB (16,384 rows at once would be 9 GB each).
        config.grad_accum_steps = 8
    return config
