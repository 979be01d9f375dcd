"""EduQate and the curriculum-bandit baselines (``study.tasks.curriculum_bandits``):
``--config=configs/eduqate.py:preset``.

    study train --config=configs/eduqate.py:paper --workdir=runs/eduqate/synthetic/eduqate \\
        --config.model.dataset=synthetic --config.model.policy=eduqate

Model fields:

* ``policy``: "eduqate" | "wiql" | "threshold_whittle" | "myopic" | "random" | "none"; ``replay``: EduQate's
  experience replay (False: the E.2 ablation).
* ``dataset``: "synthetic" | "junyi" | "oli"; ``junyi_dir``, ``oli_dir`` (empty: ``../shared/data`` beside
  the repository); ``num_arms`` (synthetic 50, real data 100), ``num_topics`` (synthetic only), ``sigma``
  (semi-active = sigma x active, real data).
* ``num_trials`` (seeds, all run at once), ``num_episodes``, ``episode_length``, ``episodes_per_update``
  (episodes per loop update; checkpoints fall between updates), ``arms_per_step`` (k).
* ``alpha``, ``gamma``, ``replay_size``, ``replay_batch``.

Presets: ``paper`` (= ``default``; the paper's protocol: 30 trials x 800 episodes x 50 steps, alpha 0.1,
gamma 0.95, replay 10,000 / 64) and ``smoke`` (3 trials, 20 episodes, 10 arms in 4 topics, a small replay:
seconds). Loop fields: ``configs/common.py``.
"""

import ml_collections

from configs import common

PRESETS = ("default", "paper", "smoke")


def get_config(preset: str = "default"):
    preset = preset or "default"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    config = common.base_config()
    config.task = "eduqate"
    config.name = "eduqate"
    config.dataset = ""  # reads no processed dataset (``data_dir`` stays empty)
    config.model = ml_collections.ConfigDict()
    model = config.model
    model.policy = "eduqate"
    model.replay = True
    model.dataset = "synthetic"
    model.junyi_dir = ""
    model.oli_dir = ""
    model.num_arms = 50
    model.num_topics = 20
    model.sigma = 0.8
    model.num_trials = 30
    model.num_episodes = 800
    model.episode_length = 50
    model.episodes_per_update = 10
    model.arms_per_step = 1
    model.alpha = 0.1
    model.gamma = 0.95
    model.replay_size = 10_000
    model.replay_batch = 64
    config.evals.policy_return = common.evaluation(every=0, max_batches=0)
    config.steps = -1  # until the episodes are done
    config.batch_size = 1  # one episode-count row per update
    config.checkpoint_every = 20
    config.keep_checkpoints = 1
    config.log_every = 10
    if preset == "smoke":
        model.num_arms, model.num_topics, model.num_trials = 10, 4, 3
        model.num_episodes, model.episodes_per_update = 20, 2
        model.replay_size, model.replay_batch = 200, 16
        config.checkpoint_every, config.keep_checkpoints, config.log_every = 3, 2, 2
    return config
