"""Two-stream STUDY (query / content streams: classmates without the official design's one-interaction lag):
``--config=configs/study_two_stream.py:preset``.

Presets: ``default``, ``smoke``, ``learning_ally`` as in ``configs/study.py``.
"""

from configs import study


def get_config(preset: str = "smoke"):
    return study.transformer_config("study_two_stream", "study", preset or "smoke")
