"""STUDY transformer (socially aware, temporally causal attention): ``--config=configs/study.py:preset``.

Presets: ``default`` (official defaults, CPU-sized batch), ``smoke`` (tiny, seconds on CPU), ``small`` (data
sets of 5k-100k interactions: narrow model, AdamW, early stopping on the validation loss with the best state
kept), ``learning_ally`` (appendix Table 4). Loop and optimizer fields: ``configs/common.py``; model fields:
``study.models.sequence_transformer.default_config``. Evaluators: ``loss`` (validation loss and accuracy@1,
every 500 updates), ``hits`` (hits@n reports, in ``study eval``).
"""

from configs import common
from study.models import sequence_transformer


def transformer_config(attention: str, dataset: str, preset: str):
    """The config of the transformer with attention policy ``attention`` on ``dataset`` rows."""
    preset = common.check_preset(preset)
    config = common.optimizer_fields(common.base_config())
    config.task = "next_item"
    config.dataset = dataset
    config.model = sequence_transformer.default_config()
    config.model.vocab_size = 0  # 0: from <data_dir>/vocab.json
    config.model.attention = attention
    config.evals.loss = common.evaluation(every=500, max_batches=50)
    config.evals.hits = common.evaluation(every=-1, max_batches=0)
    if preset == "smoke":
        config.model.num_layers = 2
        config.model.emb_dim = 32
        config.model.num_heads = 2
        config.model.mlp_dim = 64
    if preset == "small":  # 5k-100k interactions: a narrow model with more dropout (configs/common.py)
        config.model.num_layers = 2
        config.model.emb_dim = 64
        config.model.num_heads = 4
        config.model.mlp_dim = 256
        config.model.dropout_rate = 0.2
    if preset == "learning_ally":
        config.model.dtype = "bfloat16"
    return common.apply_preset(config, preset)


def get_config(preset: str = "smoke"):
    return transformer_config("study", "study", preset or "smoke")
