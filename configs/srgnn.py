"""SR-GNN on Individual rows (``study.models.srgnn``): ``--config=configs/srgnn.py:preset``.

Model fields (SR-GNN's own): ``name = "srgnn"``, ``vocab_size`` (0 = from ``<data_dir>/vocab.json``),
``row_length``, ``emb_dim`` (the paper's d = 100), ``gnn_steps`` (propagation steps T = 1, the paper's
choice), ``dtype``, ``init`` (parameter initialiser: "uniform_0.1" = U(-0.1, 0.1), the official code's and
RecBole's ``U(+-1/sqrt(d))`` at d = 100; "normal_0.1" = N(0, 0.1^2), the paper's text),
``click_budget`` / ``node_budget`` (click and node slots of a batch's packed prefix graphs,
``study.models.srgnn``; 0 = the worst case of the batch shape, ``B * L`` / ``B * L * (L - 1) / 2``; a batch
that needs more runs at the worst case, so they change speed, never results),
``loss`` ("next_item": every click is a target; "session": every click but a student's first, the SR-GNN
paper's test cases), ``label_smoothing``. Presets:

* ``default``: the reference settings (the SR-GNN paper, its official code, RecBole 1.2.1's SRGNN): d = 100,
  one step, U(-0.1, 0.1) initialisation, Adam (PyTorch's b2 = 0.999, eps = 1e-8) at a constant 0.001 with no
  weight decay, as RecBole (its trainer has no learning-rate schedule and ``weight_decay: 0.0``; the official
  code's decay of 0.1 every 3 epochs and L2 1e-5 are ``schedule = "step_decay"``, ``optimizer.decay_steps``
  = 3 epochs of updates, ``optimizer.weight_decay = 1e-5``); validation P@20 / MRR@20 every 500 updates with
  early stopping on MRR@20 after 11 evaluations without a better value (RecBole's default ``stopping_step: 10``
  stops at the 11th) and the best state kept.
  3,500 updates of 64 rows at most.
* ``smoke``: a tiny model (d = 32) for a CPU in seconds, as the other configs' smoke preset.
* ``small``: the shared small-data preset (AdamW, early stopping on the validation loss).
* ``learning_ally``: the STUDY paper's SR-GNN baseline settings: peak lr 0.0001, warm-up 1,000, 3,500
  steps, batch 131,072 on 32 chips, summed over 8 exact gradient-accumulation micro-batches (512 rows per
  chip at a time: a row of ``L`` clicks holds up to ``L (L - 1) / 2`` prefix-graph nodes).

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
    config.init = "uniform_0.1"
    config.click_budget = 0
    config.node_budget = 0
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
    if preset == "default":
        config.schedule = "constant"
        config.optimizer.warmup_steps = 0
        config.optimizer.b2 = 0.999
        config.optimizer.eps = 1e-8
        config.evals.session = common.evaluation(every=500, max_batches=50)
        config.early_stopping.metric = "session/MRR@20"
        config.early_stopping.mode = "max"
        config.early_stopping.patience = 11
    if preset == "learning_ally":
        config.optimizer.peak_lr = 0.0001
        config.grad_accum_steps = 8
    return config
