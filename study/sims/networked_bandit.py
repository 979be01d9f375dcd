"""The networked restless bandit of curriculum choice (EdNetRMAB): items as two-state arms joined by topics.

Each of ``N`` arms (items) is unlearned (state 0) or learned (state 1). An arm belongs to one or more topic
groups. At every step the teacher pulls ``k`` arms: a pulled arm gets the *active* action (2), every other
arm that shares a group with a pulled arm gets the *semi-active* action (1), the rest the *passive* action
(0). An arm moves to state 1 with probability ``p_learn[arm, action, state]`` (the second column of its
2x2 transition matrix for that action), independently of the others. The reward of a step is the number of
arms in state 1 after it; an episode starts with every arm at 0 and lasts ``episode_length`` steps.

Transition matrices must obey the model's two structural constraints, for every arm:

* (i) acting helps: ``P^passive_{s,1} <= P^semi_{s,1} <= P^active_{s,1}`` for both states ``s``;
* (ii) learned is the better state: ``P^a_{0,1} <= P^a_{1,1}`` for every action ``a``;

and be probabilities (in [0, 1]). :func:`validate_transitions` checks them and names the arm and action
that breaks one.

Arrays (one student / trial; ``jax.vmap`` adds a leading seed axis):

* ``p_learn [N, 3, 2] float32``: P(next state = 1 | action, state);
* ``groups [N, G] bool``: membership; ``neighbours [N, N] float32``: 1 where two distinct arms share a group;
* ``states [N] int32`` in {0, 1}; ``actions [N] int32`` in {0, 1, 2}.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

PASSIVE, SEMI_ACTIVE, ACTIVE = 0, 1, 2
ACTION_NAMES = ("passive", "semi-active", "active")
EPISODE_LENGTH = 50


@dataclasses.dataclass(frozen=True)
class StudentModel:
    """One networked bandit (a simulated student over ``N`` items).

    Attributes:
      p_learn: ``[N, 3, 2]`` P(next = 1 | action, state); validated on construction.
      groups: ``[N, G]`` bool topic membership (every arm in at least one group).
      names: ``N`` item names (for errors and reports).
      provenance: JSON-able notes on how the numbers were derived.
    """

    p_learn: np.ndarray
    groups: np.ndarray
    names: tuple = ()
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        p_learn = np.asarray(self.p_learn, np.float64)
        groups = np.asarray(self.groups, bool)
        if p_learn.ndim != 3 or p_learn.shape[1:] != (3, 2):
            raise ValueError(f"p_learn must be [num_arms, 3 actions, 2 states], got shape {p_learn.shape}")
        if groups.ndim != 2 or groups.shape[0] != p_learn.shape[0]:
            raise ValueError(f"groups must be [num_arms={p_learn.shape[0]}, num_groups], got shape {groups.shape}")
        names = tuple(self.names) or tuple(f"arm {i}" for i in range(p_learn.shape[0]))
        validate_transitions(p_learn, names)
        lonely = np.flatnonzero(~groups.any(axis=1))
        if lonely.size:
            raise ValueError(f"arm {names[lonely[0]]!r} belongs to no topic group (every arm needs one)")
        object.__setattr__(self, "p_learn", p_learn)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "names", names)

    @property
    def num_arms(self) -> int:
        return self.p_learn.shape[0]

    @property
    def neighbours(self) -> np.ndarray:
        return neighbours_of(self.groups)


def validate_transitions(p_learn, names=None, atol: float = 1e-9) -> None:
    """Raises ``ValueError`` naming the first arm and action whose transitions break the constraints.

    Args:
      p_learn: ``[N, 3, 2]`` P(next = 1 | action, state) (the second column of each 2x2 matrix; the first
        is ``1 - p``, so rows sum to one by construction).
      names: optional arm names used in the message.
    """
    p = np.asarray(p_learn, np.float64)
    names = list(names) if names is not None else [f"arm {i}" for i in range(p.shape[0])]
    for arm in range(p.shape[0]):
        for action in range(3):
            for state in range(2):
                value = p[arm, action, state]
                if not (np.isfinite(value) and -atol <= value <= 1 + atol):
                    raise ValueError(f"{names[arm]!r}, {ACTION_NAMES[action]} action: P(learned | state {state}) = "
                                     f"{value} is not a probability in [0, 1]")
            if p[arm, action, 0] > p[arm, action, 1] + atol:
                raise ValueError(
                    f"{names[arm]!r}, {ACTION_NAMES[action]} action breaks constraint (ii): P(0 -> 1) = "
                    f"{p[arm, action, 0]:.4g} exceeds P(1 -> 1) = {p[arm, action, 1]:.4g} (a learned item must be "
                    "at least as likely to be learned next step as an unlearned one)")
        for state in range(2):
            for lower, upper in ((PASSIVE, SEMI_ACTIVE), (SEMI_ACTIVE, ACTIVE)):
                if p[arm, lower, state] > p[arm, upper, state] + atol:
                    raise ValueError(
                        f"{names[arm]!r}, {ACTION_NAMES[upper]} action breaks constraint (i): from state {state}, "
                        f"P(learned) = {p[arm, upper, state]:.4g} is below the {ACTION_NAMES[lower]} action's "
                        f"{p[arm, lower, state]:.4g} (a stronger action must help at least as much)")


def neighbours_of(groups) -> np.ndarray:
    """``[N, N]`` float32: 1 where arms ``i != j`` share at least one group."""
    groups = np.asarray(groups, np.float32)
    shared = (groups @ groups.T) > 0
    np.fill_diagonal(shared, False)
    return shared.astype(np.float32)


def actions_of(pulled, neighbours):
    """Per-arm actions ``[N] int32`` from the pulled arms ``[N] bool``: 2 if pulled, 1 if it shares a group
    with a pulled arm, else 0."""
    pulled = jnp.asarray(pulled, jnp.float32)
    touched = (neighbours @ pulled) > 0
    return jnp.where(pulled > 0, ACTIVE, jnp.where(touched, SEMI_ACTIVE, PASSIVE)).astype(jnp.int32)


def learn_probability(p_learn, states, actions):
    """``[N]`` P(next = 1) of every arm given its state and action (selects, not a gather: faster on a CPU)."""
    by_action = jnp.where(states[:, None] == 1, p_learn[:, :, 1], p_learn[:, :, 0])  # [N, 3]
    return jnp.where(actions == 2, by_action[:, 2], jnp.where(actions == 1, by_action[:, 1], by_action[:, 0]))


def step(p_learn, states, actions, key):
    """One transition of every arm: ``(next_states [N] int32, reward)``, reward = arms in state 1 after it."""
    uniform = jax.random.uniform(key, states.shape)
    next_states = (uniform < learn_probability(p_learn, states, actions)).astype(jnp.int32)
    return next_states, jnp.sum(next_states).astype(jnp.float32)


def greedy_pulls(active_gain, semi_gain, neighbours, k: int):
    """The ``k`` arms to pull, chosen greedily by marginal network gain (``[N] bool``).

    With ``k = 1`` this is the argmax of the network-aware index
    ``active_gain[i] + sum_j neighbours[i, j] * semi_gain[j]``. For ``k > 1`` the arms are picked one at a
    time; after each pick, the arms it covers (itself and its group-mates) are semi-active already, so a later
    candidate counts only the semi-active gain of arms not yet covered, and a covered candidate's own gain is
    ``active_gain - semi_gain`` (it would get the semi-active action anyway). Ties go to the lowest arm.

    Args:
      active_gain: ``[N]`` value of the active over the passive action for each arm in its current state.
      semi_gain: ``[N]`` value of the semi-active over the passive action.
      neighbours: ``[N, N]``; zeros give plain top-k of ``active_gain``.
      k: arms per step (``1 <= k <= N``).
    """
    num_arms = active_gain.shape[0]

    def pick(_, carry):
        chosen, covered = carry
        own = jnp.where(covered, active_gain - semi_gain, active_gain)
        spill = neighbours @ jnp.where(covered, 0.0, semi_gain)
        index = jnp.where(chosen, -jnp.inf, own + spill)
        best = jnp.arange(num_arms) == jnp.argmax(index)
        chosen = chosen | best
        covered = covered | chosen | ((best.astype(neighbours.dtype) @ neighbours) > 0)
        return chosen, covered

    start = (jnp.zeros(num_arms, bool), jnp.zeros(num_arms, bool))
    chosen, _ = jax.lax.fori_loop(0, k, pick, start)
    return chosen


def stack(models) -> dict:
    """Arrays of several student models of the same size, stacked on a leading trial axis:
    ``{"p_learn": [S, N, 3, 2] float32, "neighbours": [S, N, N] float32}``."""
    sizes = {m.num_arms for m in models}
    if len(sizes) != 1:
        raise ValueError(f"student models to stack must have the same number of arms, got {sorted(sizes)}")
    return {"p_learn": np.stack([m.p_learn for m in models]).astype(np.float32),
            "neighbours": np.stack([m.neighbours for m in models]).astype(np.float32)}
