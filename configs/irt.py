"""Bayesian IRT by SVI (``study.tasks.irt``): ``--config=configs/irt.py:preset``.

    study train --config=configs/irt.py:statics_2pl --workdir=runs/irt_2pl \\
        --config.data_dir=../shared/data/kt/statics2011_dkvmn
    study eval  --config=configs/irt.py:statics_2pl --workdir=runs/irt_2pl \\
        --config.data_dir=../shared/data/kt/statics2011_dkvmn --split=test

Model fields (the family's own):

* ``model.name``: "2pl", "factorization" or "hierarchical" (``study.models.irt``); ``model.k``: latent length
  of the factorizations (3, 5, 10, 20 in the paper);
* ``model.blocks``: hierarchical only, ``{covariate group: latent block width}``; each named group of the data's
  question covariates (statics2011: "label", the unit of the question; "skill", the Q-matrix skills) maps to
  its own block of ``theta`` (the zero pattern of ``H_alpha``); groups not named are not used;
* ``model.prior_from``: a fitted run whose posterior is this run's prior (batch update; "" = N(0, 1)).

Data fields: ``data.source`` ("statics2011", "csv", "npz", "dense", "two_groups", "sparse"; see the task),
``data_dir``, ``data.split`` (fractions of train / validation / test responses), ``data.split_seed``,
``data.group_by`` ("skill", "question" or a covariate group such as "label": the groups of the correctness
report), ``data.sim.*`` (the simulations' sizes and seed). ``batch_size``: responses per update; ``eval_batch_size``.

Presets: ``statics_2pl`` (= ``default``), ``statics_factorization`` (k = 10), ``statics_hierarchical`` (k = 10
plus blocks of 5 for labels and skills), ``dense`` (the 50 x 30 retrieval setting), ``overlap`` (two groups),
``sparse`` (a 17Zuoye-like log), ``smoke`` (a tiny dense run in seconds). The optimizer is Adam on the warm-up
/ inverse-sqrt schedule; ``convergence.fraction`` = 0.001 stops at the paper's rule (``0.0005`` for the stricter
one). Loop fields: ``configs/common.py``.
"""

import ml_collections

from configs import common

PRESETS = ("default", "statics_2pl", "statics_factorization", "statics_hierarchical", "dense", "overlap", "sparse",
           "smoke")


def get_config(preset: str = "default"):
    preset = preset or "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    config = common.base_config()
    common.optimizer_fields(config)
    config.task = "irt"
    config.dataset = ""  # no processed dataset: the response log is read directly
    config.model = ml_collections.ConfigDict({"name": "2pl", "k": 10, "blocks": {"label": 5, "skill": 5},
                                              "prior_from": ""})
    config.data = ml_collections.ConfigDict({
        "source": "statics2011", "split": [0.8, 0.1, 0.1], "split_seed": 0, "group_by": "skill",
        "sim": {"num_students": 50, "num_questions": 30, "students_per_group": 50, "shared_questions": 10,
                "group_only_questions": 10, "density": 0.0016, "kind": "2pl", "k": 10, "seed": 0}})
    config.eval_batch_size = 8192
    config.optimizer.peak_lr = 0.05
    config.optimizer.warmup_steps = 20
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.schedule = "official_rsqrt"
    config.convergence.fraction = 0.0
    config.evals.correctness = common.evaluation(every=0, max_batches=0)
    config.evals.loss = common.evaluation(every=0, max_batches=0)
    config.batch_size = 4096
    config.steps = 3000
    config.checkpoint_every = 500
    config.log_every = 50

    if preset in ("default", "statics_2pl", "statics_factorization", "statics_hierarchical"):
        config.data_dir = "../shared/data/kt/statics2011_dkvmn"
        config.model.name = {"statics_factorization": "factorization",
                             "statics_hierarchical": "hierarchical"}.get(preset, "2pl")
    if preset in ("dense", "overlap", "smoke"):
        config.data.source = "dense" if preset != "overlap" else "two_groups"
        config.data.split = [1.0, 0.0, 0.0]  # retrieval: every response is evidence
        config.evals = ml_collections.ConfigDict({"retrieval": common.evaluation(every=0, max_batches=0)})
        config.batch_size = 500 if preset == "dense" else 1000
        config.steps = 2000 if preset != "smoke" else 200
        config.log_every = 20
        config.checkpoint_every = 0 if preset != "smoke" else 100
    if preset == "sparse":
        config.data.source = "sparse"
        config.data.sim.num_students, config.data.sim.num_questions = 60_000, 104_000  # ~10M responses
        config.data.split = [0.98, 0.01, 0.01]
        config.batch_size = 65_536
        config.eval_batch_size = 65_536
        config.steps = 2000
        config.log_every = 10
        config.checkpoint_every = 0
        config.convergence.fraction = 0.001
    return config
