"""A straightforward per-step Python loop of the curriculum-bandit policies: one trial, one step at a time,
NumPy arrays within a step (all arms and the replayed batch at once), a Python list as the replay buffer. The speed reference of ``benchmarks/eduqate_protocol.py``,
and an independent implementation that ``tests/test_eduqate_policies.py`` checks the vectorised learner
(``study.models.bandit_learner``) against, draw for draw.

``draws`` of an episode (one trial): ``move [L, N]``, ``explore [L]``, ``pick [L, 1]`` (``k = 1``),
``replay [L, B]`` uniforms, the same roles as ``study.models.bandit_learner.episode_draws``.
"""

import numpy as np


def whittle(p_passive, p_active, gamma):
    """Whittle index of each arm in each state, by the same closed form as ``bandit_policies.whittle_index``."""
    g = p_active - p_passive
    d_pass = 1 - gamma * (p_passive[:, 1] - p_passive[:, 0])
    d_act = 1 - gamma * (p_active[:, 1] - p_active[:, 0])
    first = np.stack([g[:, 0] / d_pass, g[:, 1] / d_act], axis=1)
    second = np.stack([g[:, 0] / d_act, g[:, 1] / d_pass], axis=1)
    return np.where((first[:, 1] <= first[:, 0])[:, None], first, second)


class PythonLoopTrial:
    """One trial of ``policy`` on one student (``p_learn [N, 3, 2]``, ``neighbours [N, N]``), ``k = 1``."""

    def __init__(self, policy, p_learn, neighbours, *, replay=True, alpha=0.1, gamma=0.95, replay_size=10_000,
                 replay_batch=64, dtype=np.float32):
        self.policy, self.replay = policy, replay and policy == "eduqate"
        self.p = np.asarray(p_learn, dtype)
        self.neighbours = np.asarray(neighbours, dtype)
        self.alpha, self.gamma = dtype(alpha), dtype(gamma)
        self.replay_size, self.replay_batch = replay_size, replay_batch
        self.num_arms = self.p.shape[0]
        self.q = np.zeros((self.num_arms, 2, 3), dtype)
        self.buffer = []  # (states, actions, next_states) per step, oldest first, at most replay_size
        self.slot = 0
        self.steps = 0
        self.dtype = dtype

    def choose(self, states, explore_draw, pick_draw):
        n = self.num_arms
        arms = np.arange(n)
        if self.policy == "none":
            return None
        random_arm = min(int(np.floor(pick_draw * n)), n - 1)
        if self.policy == "random":
            return random_arm
        if self.policy == "myopic":
            return int(np.argmax(self.p[arms, 2, states] - self.p[arms, 0, states]))
        if self.policy == "threshold_whittle":
            return int(np.argmax(whittle(self.p[:, 0], self.p[:, 2], self.gamma)[arms, states]))
        if explore_draw < n / (n + self.dtype(self.steps)):
            return random_arm
        row = self.q[arms, states]
        active_gain, semi_gain = row[:, 2] - row[:, 0], row[:, 1] - row[:, 0]
        if self.policy == "eduqate":
            return int(np.argmax(active_gain + self.neighbours @ semi_gain))
        return int(np.argmax(active_gain))  # wiql

    def learn(self, batch):
        """Eq. 11 with the batch-mean target per (arm, state, action) cell, targets from the table before."""
        used = [0, 1, 2] if self.policy == "eduqate" else [0, 2]
        best = self.q[:, :, used].max(axis=2)  # [N, 2]
        states, actions, next_states = (np.stack(column) for column in zip(*batch))  # [B, N] each
        arms = np.broadcast_to(np.arange(self.num_arms), states.shape)
        targets = next_states + self.gamma * best[arms, next_states]
        sums = np.zeros_like(self.q)
        hits = np.zeros_like(self.q)
        np.add.at(sums, (arms, states, actions), targets)
        np.add.at(hits, (arms, states, actions), 1)
        touched = hits > 0
        self.q[touched] = (1 - self.alpha) * self.q[touched] + self.alpha * sums[touched] / hits[touched]

    def episode(self, draws, length=50):
        """Runs one episode; returns the rewards of its steps (learned arms after each)."""
        states = np.zeros(self.num_arms, np.int64)
        rewards = []
        for i in range(length):
            pulled = self.choose(states, draws["explore"][i] if len(draws["explore"]) else 1.0,
                                 draws["pick"][i][0] if draws["pick"].shape[-1] else 0.0)
            actions = np.zeros(self.num_arms, np.int64)
            if pulled is not None:
                actions[self.neighbours[pulled] > 0] = 1
                actions[pulled] = 2
            learn_p = self.p[np.arange(self.num_arms), actions, states]
            next_states = (draws["move"][i] < learn_p).astype(np.int64)
            if self.policy in ("eduqate", "wiql"):
                seen = actions if self.policy == "eduqate" else np.where(actions == 2, 2, 0)
                step = (states, seen, next_states)
                if self.replay:
                    if len(self.buffer) < self.replay_size:
                        self.buffer.append(step)
                    else:
                        self.buffer[self.slot] = step
                    self.slot = (self.slot + 1) % self.replay_size
                    filled = len(self.buffer)
                    picked = np.minimum(np.floor(draws["replay"][i] * np.float32(filled)).astype(int), filled - 1)
                    self.learn([self.buffer[j] for j in picked])
                else:
                    self.learn([step])
            self.steps += 1
            states = next_states
            rewards.append(int(states.sum()))
        return rewards


def numpy_draws(rng, num_arms, length=50, replay_batch=64):
    """Uniforms of one episode of one trial from a NumPy generator (for timing)."""
    return {"move": rng.random((length, num_arms), np.float32), "explore": rng.random(length, np.float32),
            "pick": rng.random((length, 1), np.float32), "replay": rng.random((length, replay_batch), np.float32)}
