"""Knowledge tracing (``study.tasks.knowledge_tracing``): ``--config=configs/kt.py:<dataset>_<model>``.

    study train --config=configs/kt.py:assist2009_dkvmn --workdir=runs/kt/assist2009_dkvmn_f1 --config.data.fold=1
    study eval  --config=configs/kt.py:assist2009_dkvmn --workdir=runs/kt/assist2009_dkvmn_f1 --split=test

Presets: ``<dataset>_<model>`` for dataset in assist2009, statics2011, synthetic and model in dkvmn, dqkt, dkt,
bkt (``default`` = ``assist2009_dkvmn``), and ``smoke`` (DQKT on the synthetic release, one short epoch).

Model fields (the family's own): ``model.name``; key-value memory (DKVMN / DQKT): ``memory_size`` (C),
``key_dim`` (d_k), ``value_dim`` (d_v), ``summary_dim`` (DKVMN's final layer), ``init_std``, set per data set
as the DKVMN release does (ASSIST2009: C 20, d_k 50, d_v 200, batch 32; Statics2011: C 50, d_k 50, d_v 100,
batch 10; synthetic: C 5, d_k 10, d_v 10, window 50); DKT: ``hidden_dim``, ``embed_dim``; BKT: ``skills``
("question" or "qmatrix"). Data fields: ``data.dataset``, ``data.fold`` (1-5; synthetic: 1), ``data.window``
(answers per window, DKVMN's seqlen 200), ``data.epochs`` (the run ends after that many passes over the
training windows; ``steps`` is -1). The optimizer is Adam at a constant rate (the DKVMN release uses SGD with
momentum and 50 epochs; we train fewer epochs with Adam, see the README), global-norm clipping at 50 as the
release's ``maxgradnorm``. Loop fields: ``configs/common.py``.
"""

import ml_collections

from configs import common

DATASETS = ("assist2009", "statics2011", "synthetic")
MODELS = ("dkvmn", "dqkt", "dkt", "bkt")
PRESETS = ("default", "smoke") + tuple(f"{d}_{m}" for d in DATASETS for m in MODELS)
SIZES = {  # (memory_size, key_dim, value_dim, batch_size, window), the DKVMN release's settings
    "assist2009": (20, 50, 200, 32, 200),
    "statics2011": (50, 50, 100, 10, 200),
    "synthetic": (5, 10, 10, 32, 50),
}
LEARNING_RATES = {"dkvmn": 1e-2, "dqkt": 1e-2, "dkt": 3e-3, "bkt": 5e-2}


def get_config(preset: str = "default"):
    preset = preset or "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    dataset, model_name = {"default": ("assist2009", "dkvmn"), "smoke": ("synthetic", "dqkt")}.get(
        preset, tuple(preset.split("_")) if preset.count("_") == 1 else (None, None))
    config = common.base_config()
    common.optimizer_fields(config)
    config.task = "knowledge_tracing"
    config.name = f"{dataset}_{model_name}"
    config.dataset = ""  # no processed dataset: the DKVMN files are read directly
    memory_size, key_dim, value_dim, batch_size, window = SIZES[dataset]
    config.model = ml_collections.ConfigDict({
        "name": model_name, "memory_size": memory_size, "key_dim": key_dim, "value_dim": value_dim,
        "summary_dim": 50, "init_std": 0.1, "hidden_dim": 100, "embed_dim": 100,
        "skills": "qmatrix" if dataset == "statics2011" else "question"})
    config.data = ml_collections.ConfigDict({"dataset": dataset, "fold": 1, "window": window, "epochs": 10})
    config.batch_size = batch_size
    config.eval_batch_size = 64
    config.steps = -1  # the data's epochs end the run
    config.optimizer.peak_lr = LEARNING_RATES[model_name]
    config.optimizer.warmup_steps = 0
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.schedule = "constant"
    config.clip_norm = 50.0
    config.evals.correctness = common.evaluation(every=0, max_batches=0)
    config.evals.loss = common.evaluation(every=0, max_batches=0)
    config.checkpoint_every = 500
    config.keep_checkpoints = 2
    config.log_every = 20
    if preset == "smoke":
        config.data.epochs = 1
        config.log_every = 10
    return config
