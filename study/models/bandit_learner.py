"""One trial of a curriculum-bandit policy in the networked bandit, as pure JAX: the learner's arrays and an
episode (``lax.scan`` over its steps) that acts, moves the student and learns.

Policies (``Settings.policy``):

==========================  =========================================================================
``eduqate``                 Q-learning over (state, passive / semi-active / active) per arm; pulls by the
                            network-aware index (eq. 1; greedy marginal gain for ``k > 1``); epsilon-greedy
                            with ``epsilon = N / (N + t)``; experience replay (``replay``: buffer of
                            ``replay_size`` steps, a uniform minibatch of ``replay_batch`` per step)
``wiql``                    Whittle-index Q-learning: per-arm Q over (state, passive / active) only, a
                            semi-active step is seen as passive; index ``Q(s, act) - Q(s, rest)``; same epsilon
``threshold_whittle``       closed-form Whittle index of the known active / passive transitions
``myopic``                  largest one-step gain of the known transitions, ``P^act_{s1} - P^pass_{s1}``
``random``                  ``k`` arms uniformly at random
``none``                    never pulls (the no-intervention reference of the Intervention Benefit)
==========================  =========================================================================

``t`` counts the steps of the trial over all its episodes. All randomness comes from the key of each call.
"""

import dataclasses

import jax
import jax.numpy as jnp

from study.models import bandit_policies as bp
from study.sims import networked_bandit as nb

POLICIES = ("eduqate", "wiql", "threshold_whittle", "myopic", "random", "none")
LEARNING = ("eduqate", "wiql")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a trial runs (static under ``jax.jit``)."""

    policy: str = "eduqate"
    replay: bool = True
    arms_per_step: int = 1
    episode_length: int = nb.EPISODE_LENGTH
    num_episodes: int = 800
    alpha: float = 0.1
    gamma: float = 0.95
    replay_size: int = 10_000
    replay_batch: int = 64

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"unknown bandit policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        for name in ("arms_per_step", "episode_length", "num_episodes", "replay_size", "replay_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.uses_replay and self.replay_size % self.episode_length:
            raise ValueError(f"replay_size ({self.replay_size}) must be a multiple of episode_length "
                             f"({self.episode_length}): the replay ring stores whole episodes")
        if self.replay_batch >= 128:
            raise ValueError(f"replay_batch must be below 128 (counts are packed in 7 bits), got {self.replay_batch}")

    @property
    def uses_replay(self) -> bool:
        return self.policy == "eduqate" and self.replay


def init_learner(settings: Settings, num_trials: int, num_arms: int) -> dict:
    """The arrays of ``num_trials`` trials before their first episode. Trials run in lockstep, so the
    counters are shared scalars.

    Per trial: ``q [S, N, 2, 3] float32``; ``replay [R, S, N] int8`` (step codes ``6 s + 2 a + s'``;
    ``R = 1`` without replay); per episode ``mean_reward [S, E]`` (mean over its steps of the learned arms)
    and ``final_reward [S, E]`` (learned arms after its last step). Shared int32 scalars: ``steps`` (``t``),
    ``episodes``, ``replay_count``.
    """
    rows = settings.replay_size if settings.uses_replay else 1
    return {
        "q": jnp.zeros((num_trials, num_arms, 2, 3), jnp.float32),
        "replay": jnp.zeros((rows, num_trials, num_arms), jnp.int8),
        "replay_count": jnp.zeros((), jnp.int32),
        "steps": jnp.zeros((), jnp.int32),
        "episodes": jnp.zeros((), jnp.int32),
        "mean_reward": jnp.zeros((num_trials, settings.num_episodes), jnp.float32),
        "final_reward": jnp.zeros((num_trials, settings.num_episodes), jnp.float32),
    }


def random_pulls(draws, num_arms: int, k: int):
    """``[N] bool``: ``k`` distinct arms uniformly at random from ``draws`` (``[1]`` uniform when ``k = 1``,
    else ``[N]`` uniforms whose ``k`` largest win)."""
    if k == 1:
        return jnp.arange(num_arms) == jnp.minimum(jnp.floor(draws[0] * num_arms), num_arms - 1).astype(jnp.int32)
    zeros = jnp.zeros((num_arms,), jnp.float32)
    return nb.greedy_pulls(draws, zeros, jnp.zeros((num_arms, num_arms), jnp.float32), k)


def choose_pulls(settings: Settings, env: dict, q, steps, states, explore_draw, pick_draws):
    """``[N] bool``: the arms the policy pulls in ``states`` (one trial; ``q [N, 2, 3]``, ``steps`` = t;
    ``explore_draw`` a uniform for epsilon-greedy, ``pick_draws`` the uniforms of :func:`random_pulls`)."""
    p_learn, neighbours = env["p_learn"], env["neighbours"]
    num_arms = p_learn.shape[0]
    k = min(settings.arms_per_step, num_arms)
    none = jnp.zeros((num_arms, num_arms), jnp.float32)
    zeros = jnp.zeros((num_arms,), jnp.float32)
    if settings.policy == "none":
        return jnp.zeros((num_arms,), bool)
    if settings.policy == "random":
        return random_pulls(pick_draws, num_arms, k)
    def in_state(table):  # [N, 2] -> [N], the entry of each arm's state
        return jnp.where(states == 1, table[:, 1], table[:, 0])

    if settings.policy == "threshold_whittle":
        index = in_state(bp.whittle_index(p_learn[:, 0, :], p_learn[:, 2, :], settings.gamma))
        return nb.greedy_pulls(index, zeros, none, k)
    if settings.policy == "myopic":
        return nb.greedy_pulls(in_state(bp.myopic_gain(p_learn)), zeros, none, k)
    active_gain, semi_gain = bp.gains(q, states)
    if settings.policy == "eduqate":
        greedy = nb.greedy_pulls(active_gain, semi_gain, neighbours, k)
    else:  # wiql
        greedy = nb.greedy_pulls(active_gain, zeros, none, k)
    explore = explore_draw < bp.epsilon(steps, num_arms)
    return jnp.where(explore, random_pulls(pick_draws, num_arms, k), greedy)


def learn(settings: Settings, q, memory: dict, step: int, states, actions, next_states, replay_draws):
    """``(q, memory)`` after one observed step of every arm of every trial (``[S, N]`` arrays); ``q``
    unchanged for policies that do not learn.

    ``memory`` (replay only): ``replay [R, S, N]`` int8, the ring buffer as it was when the episode began
    (read-only during the episode), ``episode [L, S, N]`` int8, this episode's steps so far, ``start`` its
    first slot in the ring and ``steps`` the trial's steps before this one. ``step``: index of this step in
    the episode; ``replay_draws [B]`` uniforms choose the replayed steps.
    """
    if settings.policy not in LEARNING:
        return q, memory
    used = bp.ALL_ACTIONS
    if settings.policy == "wiql":
        actions, used = jnp.where(actions == nb.ACTIVE, nb.ACTIVE, nb.PASSIVE), bp.ACTIVE_PASSIVE
    code = bp.transition_code(states, actions, next_states)
    if not settings.uses_replay:
        return bp.q_update_from_counts(q, bp.code_counts(code[None]), settings.alpha, settings.gamma, used), memory
    rows = memory["replay"].shape[0]
    episode_rows = jax.lax.dynamic_update_index_in_dim(memory["episode"], code.astype(jnp.int8), step, axis=0)
    filled = jnp.minimum(memory["steps"] + 1, rows)
    # Uniform positions among the filled slots of the ring, this step's included. A slot written during this
    # episode is read from the episode's rows, any other from the ring as the episode found it: the ring is
    # then read-only in the step loop (writing and gathering one carried buffer makes XLA:CPU copy all of it
    # every step). The positions are shared by the trials (each reads its own rows there), so a read is one
    # contiguous [S, N] slice.
    picked = jnp.minimum(jnp.floor(replay_draws * filled.astype(jnp.float32)).astype(jnp.int32), filled - 1)
    offset = (picked - memory["start"]) % rows
    from_episode = jnp.take(episode_rows, jnp.minimum(offset, episode_rows.shape[0] - 1), axis=0)
    from_ring = jnp.take(memory["replay"], picked, axis=0)
    replayed = jnp.where((offset <= step)[:, None, None], from_episode, from_ring)
    q = bp.q_update_from_counts(q, bp.code_counts(replayed), settings.alpha, settings.gamma, used)
    return q, dict(memory, episode=episode_rows)


def episode_draws(settings: Settings, key, num_trials: int, num_arms: int) -> dict:
    """Every uniform an episode uses, drawn at once (``[L, ...]``; bulk draws are much cheaper than per-step
    ones on a CPU): moves ``[L, S, N]``, exploration ``[L, S]``, random picks ``[L, S, 1 or N]``, replayed
    steps ``[L, B]`` (only what the policy needs; the others are ``[L, S, 0]``)."""
    length = settings.episode_length
    keys = jax.random.split(key, 4)
    learning = settings.policy in LEARNING
    picks = 1 if settings.arms_per_step == 1 else num_arms
    picks = picks if settings.policy in ("random",) + LEARNING else 0
    return {
        "move": jax.random.uniform(keys[0], (length, num_trials, num_arms)),
        "explore": jax.random.uniform(keys[1], (length, num_trials) if learning else (length, num_trials, 0)),
        "pick": jax.random.uniform(keys[2], (length, num_trials, picks)),
        "replay": jax.random.uniform(keys[3], (length, settings.replay_batch if settings.uses_replay else 0)),
    }


def run_episode(settings: Settings, envs: dict, learner: dict, key) -> tuple[dict, jnp.ndarray]:
    """One episode of every trial from all arms unlearned: ``(learner, rewards [S, episode_length])``.

    ``envs``: ``{"p_learn": [S, N, 3, 2], "neighbours": [S, N, N]}``, the trials' students.
    """
    num_trials, num_arms = envs["p_learn"].shape[:2]
    length = settings.episode_length
    choose = jax.vmap(lambda env, q, states, explore, picks, steps:
                      choose_pulls(settings, env, q, steps, states, explore, picks), in_axes=(0, 0, 0, 0, 0, None))
    actions_of = jax.vmap(nb.actions_of)
    learn_probability = jax.vmap(nb.learn_probability)
    rows = learner["replay"].shape[0]
    first_step = learner["steps"]
    memory = {"replay": learner["replay"], "start": first_step % rows,
              "episode": jnp.zeros((length if settings.uses_replay else 1, num_trials, num_arms), jnp.int8)}

    def one_step(carry, inputs):
        q, memory, states = carry
        step, draws = inputs
        steps = first_step + step
        explore = draws["explore"] if draws["explore"].ndim == 1 else jnp.ones((num_trials,))
        pulls = choose(envs, q, states, explore, draws["pick"], steps)
        actions = actions_of(pulls, envs["neighbours"])
        next_states = (draws["move"] < learn_probability(envs["p_learn"], states, actions)).astype(jnp.int32)
        q, memory = learn(settings, q, dict(memory, steps=steps), step, states, actions, next_states, draws["replay"])
        return (q, {k: v for k, v in memory.items() if k != "steps"}, next_states), \
            jnp.sum(next_states, axis=1).astype(jnp.float32)

    start = jnp.zeros((num_trials, num_arms), jnp.int32)
    draws = episode_draws(settings, key, num_trials, num_arms)
    (q, memory, _), rewards = jax.lax.scan(one_step, (learner["q"], memory, start), (jnp.arange(length), draws))
    replay = learner["replay"]
    if settings.uses_replay:  # the ring holds whole episodes (replay_size is a multiple of episode_length)
        replay = jax.lax.dynamic_update_slice_in_dim(replay, memory["episode"], memory["start"], axis=0)
    rewards = rewards.T  # [S, L]
    episode = learner["episodes"]
    learner = dict(learner, q=q, replay=replay, steps=first_step + length, episodes=episode + 1,
                   replay_count=learner["replay_count"] + (length if settings.uses_replay else 0),
                   mean_reward=learner["mean_reward"].at[:, episode].set(jnp.mean(rewards, axis=1)),
                   final_reward=learner["final_reward"].at[:, episode].set(rewards[:, -1]))
    return learner, rewards


def run_episodes(settings: Settings, envs: dict, learner: dict, key, num_episodes: int) -> tuple[dict, jnp.ndarray]:
    """``num_episodes`` consecutive episodes of every trial: ``(learner, rewards [num_episodes, S, L])``;
    episode ``e`` of the block uses ``fold_in(key, e)``."""
    def one_episode(learner, episode):
        return run_episode(settings, envs, learner, jax.random.fold_in(key, episode))

    return jax.lax.scan(one_episode, learner, jnp.arange(num_episodes))
