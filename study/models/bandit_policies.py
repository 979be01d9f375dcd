"""The arithmetic of the curriculum-bandit policies: EduQate's network-aware index and Q-learning update, the
closed-form Whittle index of a two-state arm, the myopic gain and the exploration rate.

Conventions (``study.sims.networked_bandit``): an arm's reward for a step is its state after the step
(1 = learned), actions are 0 passive, 1 semi-active, 2 active, and ``q [N, 2 states, 3 actions]``.

Example::

    index = network_index(q, states, neighbours)         # eq. 1, [N]
    q = q_update(q, s[None], a[None], s2[None], 0.1, 0.95)  # eq. 11 on one step of every arm
"""

import functools

import jax.numpy as jnp

ALL_ACTIONS = (0, 1, 2)
ACTIVE_PASSIVE = (0, 2)  # WIQL's model: no semi-active action


def epsilon(step, num_arms: int):
    """Exploration rate ``N / (N + t)`` after ``t`` steps of a trial."""
    return num_arms / (num_arms + jnp.asarray(step, jnp.float32))


def gains(q, states):
    """``(active_gain, semi_gain)``, each ``[N]``: ``Q_i(s_i, 2) - Q_i(s_i, 0)`` and ``Q_i(s_i, 1) - Q_i(s_i, 0)``."""
    row = jnp.where(states[:, None] == 1, q[:, 1, :], q[:, 0, :])  # [N, 3]; a select, not a gather (CPU)
    return row[:, 2] - row[:, 0], row[:, 1] - row[:, 0]


def network_index(q, states, neighbours):
    """EduQate's index (eq. 1): ``lambda_i = [Q_i(s_i, 2) - Q_i(s_i, 0)] + sum_{j in groups of i, j != i}
    [Q_j(s_j, 1) - Q_j(s_j, 0)]``: the gain of pulling ``i`` plus the semi-active gain it gives its group-mates.

    Args:
      q: ``[N, 2, 3]``; states: ``[N]`` int; neighbours: ``[N, N]`` (1 where two distinct arms share a group).
    """
    active_gain, semi_gain = gains(q, states)
    return active_gain + neighbours @ semi_gain


def transition_code(states, actions, next_states):
    """One int per observed arm step: ``6 s + 2 a + s'`` in 0..11."""
    return 6 * states + 2 * actions + next_states


def packed_code_counts(codes):
    """``[3, ...]`` int32: the counts of the 12 codes along axis 0 of ``codes [B, ...]``, four codes to an
    int32 in 7-bit fields (sums of packed counts stay exact while every count is below 128)."""
    codes = jnp.asarray(codes, jnp.int32)
    field = jnp.left_shift(1, 7 * (codes & 3))
    word = codes >> 2
    return jnp.stack([jnp.sum(jnp.where(word == w, field, 0), axis=0) for w in range(3)])


def unpack_code_counts(packed):
    """``[..., 12]`` int32 counts from :func:`packed_code_counts`' ``[3, ...]``."""
    return jnp.stack([(packed[w] >> (7 * j)) & 127 for w in range(3) for j in range(4)], axis=-1)


def code_counts(codes):
    """``[..., 12]`` int32: how often each code occurs along axis 0 of ``codes [B, ...]`` (``B < 128``).

    Counts of four codes share one int32 in 7-bit fields, so a batch is summed with three integer
    reductions instead of twelve (the replay minibatch is the hot loop of the learner)."""
    if jnp.shape(codes)[0] >= 128:
        raise ValueError(f"code_counts packs counts into 7 bits: batch must be < 128, got {jnp.shape(codes)[0]}")
    return unpack_code_counts(packed_code_counts(codes))


def q_update_from_counts(q, counts, alpha: float, gamma: float, actions_used=ALL_ACTIONS):
    """Q-learning (eq. 11) of every arm from the code counts of a batch of its transitions:
    ``Q(s, a) <- (1 - alpha) Q(s, a) + alpha [r + gamma max_a' Q(s', a')]`` with ``r = s'``.

    Targets use the table before the batch; a cell hit by several transitions moves towards their mean
    target (one transition: exactly eq. 11); cells not hit are unchanged.

    Args:
      q: ``[..., N, 2, 3]``; counts: ``[..., N, 12]`` from :func:`code_counts`.
      actions_used: the actions the learner knows; the max runs over them (WIQL: passive and active).
    """
    def best(state):  # [..., N]: max over the known actions of Q(state, .)
        values = [q[..., state, action] for action in actions_used]
        return functools.reduce(jnp.maximum, values)

    counts = counts.astype(q.dtype)
    target_of_next = (gamma * best(0), 1.0 + gamma * best(1))
    # Cell by cell on [..., N] slices: a reshape of the 12 counts to (2, 3, 2) is ~20x slower on XLA:CPU.
    rows = []
    for state in range(2):
        cells = []
        for action in range(3):
            to_0, to_1 = counts[..., 6 * state + 2 * action], counts[..., 6 * state + 2 * action + 1]
            hits = to_0 + to_1
            mean_target = (to_0 * target_of_next[0] + to_1 * target_of_next[1]) / jnp.maximum(hits, 1.0)
            old = q[..., state, action]
            cells.append(jnp.where(hits > 0, (1.0 - alpha) * old + alpha * mean_target, old))
        rows.append(jnp.stack(cells, axis=-1))
    return jnp.stack(rows, axis=-2)


def q_update(q, states, actions, next_states, alpha: float, gamma: float, actions_used=ALL_ACTIONS):
    """:func:`q_update_from_counts` on a batch of ``B`` observed steps (``states``, ``actions``,
    ``next_states``: ``[B, N]`` int) of the arms of ``q [N, 2, 3]``."""
    counts = code_counts(transition_code(states, actions, next_states))
    return q_update_from_counts(q, counts, alpha, gamma, actions_used)


def whittle_index(p_passive, p_active, gamma: float):
    """Closed-form Whittle index of two-state arms with known transitions (reward = next state, discount
    ``gamma``): ``[..., 2]`` for states 0 and 1.

    The index of state ``s`` is the passive subsidy ``lambda`` at which acting and resting in ``s`` are worth
    the same: ``lambda = g_s (1 + gamma (V(1) - V(0)))`` with ``g_s = P^act_{s1} - P^pass_{s1}``. Solving the
    two-state Bellman equations, with the other state resting (``D = D_pass``) or acting (``D = D_act``), gives
    ``lambda_s = g_s / D`` where ``D_a = 1 - gamma (P^a_{11} - P^a_{01})``. If state 0 ranks first,
    ``lambda_0 = g_0 / D_pass`` and ``lambda_1 = g_1 / D_act``; otherwise ``lambda_0 = g_0 / D_act`` and
    ``lambda_1 = g_1 / D_pass``; the first pair is taken when it is consistent (``lambda_1 <= lambda_0``).

    Args:
      p_passive, p_active: ``[..., 2]`` P(next = 1 | state) under rest and under action.
    """
    p_passive, p_active = jnp.asarray(p_passive), jnp.asarray(p_active)
    g0, g1 = p_active[..., 0] - p_passive[..., 0], p_active[..., 1] - p_passive[..., 1]
    d_pass = 1.0 - gamma * (p_passive[..., 1] - p_passive[..., 0])
    d_act = 1.0 - gamma * (p_active[..., 1] - p_active[..., 0])
    zero_first = jnp.stack([g0 / d_pass, g1 / d_act], axis=-1)
    one_first = jnp.stack([g0 / d_act, g1 / d_pass], axis=-1)
    consistent = zero_first[..., 1] <= zero_first[..., 0]
    return jnp.where(consistent[..., None], zero_first, one_first)


def myopic_gain(p_learn):
    """``[N, 2]`` one-step gain of acting over resting, ``P^act_{s1} - P^pass_{s1}`` (the arm alone)."""
    return p_learn[:, 2, :] - p_learn[:, 0, :]
