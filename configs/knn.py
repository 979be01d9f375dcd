"""KNN baseline (nearest training contexts, ``study.models.knn``): ``--config=configs/knn.py:preset``.

Nothing is trained: ``study eval --config=configs/knn.py:smoke --workdir=runs/knn
--config.data_dir=<processed>`` fits the index from the train split of ``<data_dir>/individual`` (or
loads ``<workdir>/knn_index/``) and evaluates it like every other model. Built on
``configs/common.py: base_config()`` so the shared fields exist (the optimizer / trainer fields are
unused). KNN fields:

* ``knn.context_size``: K, earlier interactions of the student in a context (2, the paper's appendix).
* ``knn.top_k``: length of each ranked list; at least the largest n of hits@n (20).
* ``knn.cache_size``: distinct queries whose ranked lists are kept for reuse across batches.
* ``batch_size``: evaluation rows per batch (all positions of a batch are ranked together).

Presets: ``default``, ``smoke`` (smaller batches), ``learning_ally`` (the paper's setting: K = 2).
"""

import ml_collections

from configs import common

PRESETS = ("default", "smoke", "learning_ally")


def get_config(preset: str = "default"):
    preset = preset or "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    config = common.base_config()
    config.name = "knn"
    config.dataset = "individual"
    config.model.model_name = "knn"
    config.knn = ml_collections.ConfigDict()
    config.knn.context_size = 2
    config.knn.top_k = 20
    config.knn.cache_size = 1 << 20
    config.batch_size = 1024
    if preset == "smoke":
        config.batch_size = 256
    return config
