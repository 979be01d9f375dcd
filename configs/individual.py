"""Individual transformer (each student's own history only): ``--config=configs/individual.py:preset``.

Presets: ``default``, ``smoke``, ``learning_ally`` as in ``configs/study.py``.
"""

from configs import study


def get_config(preset: str = "smoke"):
    return study.transformer_config("individual", "individual", preset or "smoke")
