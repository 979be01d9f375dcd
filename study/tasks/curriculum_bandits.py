"""EduQate and its baselines on the networked restless bandit, as a task of the one loop.

``config.task = "eduqate"``; ``config.model.policy`` picks the policy (``study.models.bandit_learner``) and
``config.model.dataset`` the student model (``study.sims.student_models``): "synthetic" (a new random student
per trial), "junyi" or "oli" (one student derived from the shared data, the same in every trial).

State: the learners of all ``num_trials`` trials at once (Q tables, replay ring, per-episode rewards, shared
step counters), pure arrays; an update runs ``episodes_per_update`` episodes of every trial (``vmap`` over
trials, ``lax.scan`` over episodes and steps) with the loop's per-update key, so checkpoints and exact resume
are the loop's. The data is the episode count: update ``u`` runs episodes ``u * E .. (u + 1) * E - 1``, and
the run ends after ``num_episodes``.

Evaluator ``policy_return``: per trial, the learned items at the end of each episode so far (the online
learning curve; its summary is the last episode's), over all trials for both splits: the trials are the
students the policy learns on, there is no held-out student.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from study.eval import evaluators as evaluators_lib
from study.models import bandit_learner as bl
from study.sims import networked_bandit as nb
from study.sims import student_models as sm
from study.train.task import UpdateTask

DATASETS = ("synthetic", "junyi", "oli")
SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")


def data_dir(model, dataset: str) -> str:
    """The folder of a real dataset: ``model.<dataset>_dir`` or the shared data beside the repository."""
    given = model.get(f"{dataset}_dir", "")
    if given:
        return given
    return os.path.normpath(os.path.join(SHARED_DATA, {"junyi": "junyi_exercise_table",
                                                       "oli": os.path.join("kt", "statics2011_dkvmn")}[dataset]))


def student_models(model, seed: int) -> list:
    """The ``model.num_trials`` students of a run (``model``: ``config.model``)."""
    if model.dataset not in DATASETS:
        raise ValueError(f"config.model.dataset={model.dataset!r}: choose one of {', '.join(DATASETS)}")
    if model.dataset == "synthetic":
        return [sm.synthetic(model.num_arms, model.num_topics, seed=[seed, trial])
                for trial in range(model.num_trials)]
    path = data_dir(model, model.dataset)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"config.model.{model.dataset}_dir={path}: no such folder; pass the folder of the "
                                f"{model.dataset} data (see ../shared/data)")
    student = (sm.junyi(path, model.num_arms, model.sigma) if model.dataset == "junyi"
               else sm.oli(path, model.num_arms, model.sigma))
    return [student] * model.num_trials


def settings_of(model) -> bl.Settings:
    return bl.Settings(policy=model.policy, replay=model.replay, arms_per_step=model.arms_per_step,
                       episode_length=model.episode_length, num_episodes=model.num_episodes, alpha=model.alpha,
                       gamma=model.gamma, replay_size=model.replay_size, replay_batch=model.replay_batch)


class CurriculumBanditTask(UpdateTask):
    family = "eduqate"

    def __init__(self, config, mesh=None):
        super().__init__(config, mesh)
        model = config.model
        self.settings = settings_of(model)
        if model.num_episodes % model.episodes_per_update:
            raise ValueError(f"config.model.num_episodes ({model.num_episodes}) must be a multiple of "
                             f"episodes_per_update ({model.episodes_per_update})")
        self.num_updates = model.num_episodes // model.episodes_per_update
        self.students = student_models(model, config.seed)
        self.envs = nb.stack(self.students)

    @property
    def num_trials(self) -> int:
        return len(self.students)

    def train_batches(self, start_batch):
        for update in range(start_batch, self.num_updates):
            yield {"episode": np.full((1,), update * self.config.model.episodes_per_update, np.int32)}

    def example_batch(self, batch_size):
        return {"episode": np.zeros((batch_size,), np.int32)}

    def init_state(self, rng):
        del rng  # the learners start from zeros; randomness comes with each update
        return bl.init_learner(self.settings, self.num_trials, self.students[0].num_arms)

    def update(self, state, batch, rng):
        del batch  # the position is the state's episode counter
        envs = {name: jnp.asarray(value) for name, value in self.envs.items()}
        state, rewards = bl.run_episodes(self.settings, envs, state, rng, self.config.model.episodes_per_update)
        return state, {"mean_reward": jnp.mean(rewards), "final_reward": jnp.mean(rewards[:, :, -1])}

    def curves(self, state, name: str = "final_reward") -> np.ndarray:
        """``[trials, episodes run]`` of ``state`` (a loop train state or the learner dict)."""
        learner = getattr(state, "params", state)
        done = int(jax.device_get(learner["episodes"]))
        return np.asarray(jax.device_get(learner[name]))[:, :done]

    def evaluators(self):
        def rollout(state, seeds):
            return self.curves(state)[np.asarray(seeds)]

        trials = range(self.num_trials)
        return {"policy_return": evaluators_lib.PolicyReturnEvaluator(rollout, {"validation": trials,
                                                                                "test": trials})}

