"""KNN baseline (nearest training contexts, ``study.models.knn``): ``--config=configs/knn.py:preset``.

Fitted, not trained: ``study train --config=configs/knn.py:smoke --workdir=runs/knn
--config.data_dir=<processed>`` reads every Individual row of the train split once (one update per batch
adds its occurrences to the index; the run ends when the split does), then ``study eval`` evaluates it like
every other model. Model fields (KNN's own):

* ``name``: "knn".
* ``context_size``: K, earlier interactions of the student in a context (2, the paper's appendix).
* ``top_k``: length of each ranked list; at least the largest n of hits@n (20).
* ``cache_size``: distinct queries whose ranked lists are kept for reuse across batches.
* ``vocab_size``: 0 = from ``<data_dir>/vocab.json``; ``row_length``.

``batch_size``: rows per fitting and evaluation batch. Presets: ``default``, ``smoke`` (smaller batches),
``learning_ally`` (the paper's setting: K = 2). Loop fields: ``configs/common.py``.
"""

import ml_collections

from configs import common


def get_config(preset: str = "default"):
    preset = common.check_preset(preset)
    config = common.base_config()
    config.task = "knn"
    config.name = "knn"
    config.dataset = "individual"
    config.model = ml_collections.ConfigDict()
    config.model.name = "knn"
    config.model.vocab_size = 0
    config.model.row_length = 65
    config.model.context_size = 2
    config.model.top_k = 20
    config.model.cache_size = 1 << 20
    config.evals.hits = common.evaluation(every=-1, max_batches=0)
    config.steps = -1  # one pass: the run ends with the train split
    config.batch_size = 256 if preset == "smoke" else 1024
    config.checkpoint_every = 0  # only the final checkpoint
    config.log_every = 100
    return config
