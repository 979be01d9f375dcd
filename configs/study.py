"""STUDY transformer (socially aware, temporally causal attention): ``--config=configs/study.py:preset``.

Presets: ``default`` (official defaults, CPU-sized batch), ``smoke`` (tiny, seconds on CPU),
``learning_ally`` (appendix Table 4). Fields: ``configs/common.py``.
"""

from configs import common


def get_config(preset: str = "smoke"):
    config = common.base_config()
    config.dataset = "study"
    config.model.attention = "study"
    return common.apply_preset(config, preset or "smoke")
