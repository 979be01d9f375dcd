"""SR-GNN on Individual rows (``study.models.srgnn``): ``--config=configs/srgnn.py:preset``.

Model fields: ``model_name = "srgnn"``, ``emb_dim`` (the paper's d = 100), ``gnn_steps`` (propagation steps
T = 1, the paper's choice), ``vocab_size``, ``dtype``; the transformer fields of the shared model config are
unused. Presets:

* ``default``: d = 100, one step, Adam at the paper's learning rate 0.001 on the shared inverse-sqrt
  schedule (warm-up 1,000, 3,500 steps, batch 64).
* ``smoke``: a tiny model (d = 32) for a CPU in seconds, as the other configs' smoke preset.
* ``learning_ally``: the STUDY paper's SR-GNN baseline settings: peak lr 0.0001, warm-up 1,000, 3,500
  steps, batch 131,072 on 32 chips. Every row holds ``L`` prefix graphs of ``L`` nodes, so activations grow as
  ``rows * L^2 * d``; the global batch is therefore summed over 8 exact gradient-accumulation micro-batches
  (512 rows per chip at a time).

Other fields: ``configs/common.py``.
"""

from configs import common


def get_config(preset: str = "smoke"):
    preset = preset or "smoke"
    config = common.base_config()
    config.name = "srgnn"  # the model's name in evaluation reports
    config.dataset = "individual"
    config.model.model_name = "srgnn"
    config.model.attention = "individual"  # not read by SR-GNN; tells serving it needs no classmates
    config.model.emb_dim = 100
    config.model.gnn_steps = 1
    config.optimizer.peak_lr = 0.001
    config = common.apply_preset(config, preset)
    if preset == "learning_ally":
        config.optimizer.peak_lr = 0.0001
        config.grad_accum_steps = 8
    return config
