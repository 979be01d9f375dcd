"""Individual transformer (each student's own history only): ``--config=configs/individual.py:preset``.

Presets: ``default``, ``smoke``, ``learning_ally`` as in ``configs/study.py``. Fields: ``configs/common.py``.
"""

from configs import common


def get_config(preset: str = "smoke"):
    config = common.base_config()
    config.dataset = "individual"
    config.model.attention = "individual"
    return common.apply_preset(config, preset or "smoke")
