"""SR-GNN on Individual rows (``study.models.srgnn``): ``--config=configs/srgnn.py:preset``.

Model fields (SR-GNN's own): ``name = "srgnn"``, ``vocab_size`` (0 = from ``<data_dir>/vocab.json``),
``row_length``, ``emb_dim`` (the paper's d = 100), ``gnn_steps`` (propagation steps T = 1, the paper's
choice), ``dtype``, ``loss`` ("next_item": every click is a target; "session": every click but a student's
first, the SR-GNN paper's test cases), ``label_smoothing``. Presets:

* ``default``: d = 100, one step, Adam at the paper's learning rate 0.001 on the shared inverse-sqrt
  schedule (warm-up 1,000, 3,500 steps, batch 64).
* ``smoke``: a tiny model (d = 32) for a CPU in seconds, as the other configs' smoke preset.
* ``learning_ally``: the STUDY paper's SR-GNN baseline settings: peak lr 0.0001, warm-up 1,000, 3,500
  steps, batch 131,072 on 32 chips. Every row holds ``L`` prefix graphs of ``L`` nodes, so activations grow as
  ``rows * L^2 * d``; the global batch is therefore summed over 8 exact gradient-accumulation micro-batches
  (512 rows per chip at a time).

Evaluators: ``loss``, ``hits`` (as the transformers) and ``session`` (P@20 / MRR@20, in ``study eval``).
Other fields: ``configs/common.py``.
"""

import ml_collections

from configs import common


def model_config(preset: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.name = "srgnn"
    config.vocab_size = 0
    config.row_length = 65
    config.emb_dim = 32 if preset == "smoke" else 100
    config.gnn_steps = 1
    config.dtype = "bfloat16" if preset == "learning_ally" else "float32"
    config.loss = "next_item"
    config.label_smoothing = 0.0
    return config


def get_config(preset: str = "smoke"):
    preset = common.check_preset(preset or "smoke")
    config = common.optimizer_fields(common.base_config())
    config.task = "next_item"
    config.name = "srgnn"
    config.dataset = "individual"
    config.model = model_config(preset)
    config.optimizer.peak_lr = 0.001
    config.evals.loss = common.evaluation(every=500, max_batches=50)
    config.evals.hits = common.evaluation(every=-1, max_batches=0)
    config.evals.session = common.evaluation(every=-1, max_batches=0)
    config = common.apply_preset(config, preset)
    if preset == "learning_ally":
        config.optimizer.peak_lr = 0.0001
        config.grad_accum_steps = 8
    return config
