"""GNN-RL document sequencing (``study.tasks.document_sequencing``): ``--config=configs/gnn_rl.py:preset``.

    study train --config=configs/gnn_rl.py:imitation --workdir=runs/gnn_rl/imitation
    study train --config=configs/gnn_rl.py:pretrain --workdir=runs/gnn_rl/pretrain \\
        --config.init_from.workdir=runs/gnn_rl/imitation
    study train --config=configs/gnn_rl.py:finetune --workdir=runs/gnn_rl/finetune/none/seed0 \\
        --config.init_from.workdir=runs/gnn_rl/pretrain --config.model.scenario=none --config.seed=0

Model fields:

* ``courses``: "sequential" (the 14 sequential courses), "intro_to_ml", or folders under ``corpora_dir``
  (empty: ``../shared/data/gnn_rl_corpora/corpora/extracted_data``); ``episode_length`` (0: 11 on the grid,
  the number of documents on a chain).
* ``scenario``: prior knowledge "none" | "decreasing_exponential" | "uniform"; ``preference_p`` (0.3),
  ``background_p`` (0.5).
* ``policy``: "graph" | "mlp"; ``hidden`` (128), ``heads`` (4), ``mlp_layers``.
* ``algorithm``: "imitation" | "reinforce" | "ppo"; ``discount``, ``entropy_coef``, ``normalize_returns``,
  ``ppo_clip``, ``value_coef``, ``gae_lambda``.
* ``num_collects`` (loop updates), ``graphs_per_collect`` x ``students_per_collect`` episodes per collect,
  then ``updates_per_collect`` optimizer steps on minibatches of ``minibatch_size`` collected decisions. The
  paper's "15 updates per collect" are read as 15 optimizer steps (the authors' code makes 15 passes, 4x the
  steps on the fine-tuning collect of 55 decisions; too slow for the 2-core CPU of the comparison).
* ``test_episodes``: test students per evaluation.

Presets:

* ``imitation``: stage 1, imitation of the oracle on the sequential courses (no prior knowledge).
* ``pretrain`` (= ``default``): stage 2, REINFORCE on the sequential courses (discount 0.7, lr 1e-4, entropy
  0.01, 8 graphs per collect, minibatches of 8 decisions, 128 steps per collect: about one pass over the
  paper's 1,024 decisions per collect, here 8 courses x 4 students x their lengths); start it from the
  imitation run with ``init_from.workdir``.
* ``finetune``: REINFORCE on ``intro_to_ml`` (lr 5e-4, minibatch 16, 15 steps, 5 students per collect,
  discount 0, 10 collects, 20 test students after each); ``init_from.params`` takes the policy of the run in
  ``init_from.workdir`` (empty: the non-pre-trained twin).
* ``ppo``: the PPO actor-critic MLP on ``intro_to_ml`` with the fine-tuning protocol.
* ``smoke``: a few collects on two small courses (seconds).
"""

import ml_collections

from configs import common

PRESETS = ("default", "imitation", "pretrain", "finetune", "ppo", "smoke")


def get_config(preset: str = "default"):
    preset = preset or "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    config = common.optimizer_fields(common.base_config())
    config.task = "gnn_rl"
    config.name = "gnn_rl"
    config.dataset = ""  # reads no processed dataset
    config.model = ml_collections.ConfigDict()
    model = config.model
    model.courses = ["sequential"]
    model.corpora_dir = ""
    model.episode_length = 0
    model.scenario = "none"
    model.preference_p = 0.3
    model.background_p = 0.5
    model.policy = "graph"
    model.hidden = 128
    model.heads = 4
    model.mlp_layers = 2
    model.algorithm = "reinforce"
    model.discount = 0.7
    model.entropy_coef = 0.01
    model.normalize_returns = False  # rewards are >= 0: plain returns keep the surrogate bounded over many steps
    model.ppo_clip = 0.2
    model.value_coef = 0.5
    model.gae_lambda = 0.95
    model.num_collects = 25
    model.graphs_per_collect = 8
    model.students_per_collect = 4
    model.updates_per_collect = 128
    model.minibatch_size = 8
    model.test_episodes = 28  # two students per sequential course
    config.optimizer.name = "adam"
    config.optimizer.peak_lr = 1e-4
    config.optimizer.warmup_steps = 0
    config.optimizer.b2 = 0.999
    config.optimizer.eps = 1e-8
    config.schedule = "constant"
    config.evals.policy_return = common.evaluation(every=5, max_batches=0)
    config.steps = -1  # until num_collects
    config.batch_size = 1  # one collect index per update
    config.checkpoint_every = 5
    config.keep_checkpoints = 2
    config.log_every = 1
    config.init_from.params = ["policy/.*"]  # the optimizer state starts fresh
    if preset == "imitation":
        model.algorithm = "imitation"
        model.num_collects = 10
        config.optimizer.peak_lr = 1e-3
    if preset in ("finetune", "ppo"):
        model.courses = ["intro_to_ml"]
        model.discount = 0.0
        model.num_collects = 10
        model.updates_per_collect = 15
        model.graphs_per_collect = 1
        model.students_per_collect = 5
        model.minibatch_size = 16
        model.test_episodes = 20
        config.optimizer.peak_lr = 5e-4
        config.evals.policy_return = common.evaluation(every=1, max_batches=0)
        config.checkpoint_every = 10
        config.keep_checkpoints = 1
    if preset == "ppo":
        model.policy, model.algorithm = "mlp", "ppo"
        model.hidden = 64
        model.discount = 0.99
        config.optimizer.peak_lr = 1e-3
    if preset == "smoke":
        model.courses = ["linear/hand_made/corpus2", "linear/new_corpora/ML_Zero_to_Hero"]
        model.hidden, model.heads = 16, 2
        model.num_collects = 4
        model.graphs_per_collect = 2
        model.students_per_collect = 3
        model.updates_per_collect = 2
        model.test_episodes = 4
        config.optimizer.peak_lr = 3e-3
        config.evals.policy_return = common.evaluation(every=2, max_batches=0)
        config.checkpoint_every = 2
    return config
