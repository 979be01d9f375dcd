"""The curriculum-bandit policies: EduQate's index (eq. 1) and Q-learning update (eq. 11) on hand-worked
numbers, the closed-form Whittle index against brute-force value iteration, and the vectorised learner
against a per-step Python loop fed the same random draws."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.eduqate_python_loop import PythonLoopTrial
from study.models import bandit_learner as bl
from study.models import bandit_policies as bp
from study.sims import networked_bandit as nb
from study.sims import student_models as sm


def test_network_index_of_equation_1_on_hand_set_q_tables():
    # Arms 0-1 share a group, 1-2 share another. States: arm 0 unlearned, arms 1 and 2 learned.
    q = np.zeros((3, 2, 3), np.float32)
    q[0, 0] = [1.0, 1.5, 3.0]  # arm 0 in state 0: active gain 2.0, semi gain 0.5
    q[1, 1] = [2.0, 2.25, 2.5]  # arm 1 in state 1: active gain 0.5, semi gain 0.25
    q[2, 1] = [0.0, 1.0, 0.2]  # arm 2 in state 1: active gain 0.2, semi gain 1.0
    q[1, 0] = [9.0, 0.0, 0.0]  # entries of the states the arms are not in must not matter
    neighbours = jnp.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], jnp.float32)
    index = bp.network_index(jnp.asarray(q), jnp.array([0, 1, 1]), neighbours)
    # arm 0: 2.0 + 0.25 (arm 1); arm 1: 0.5 + 0.5 (arm 0) + 1.0 (arm 2); arm 2: 0.2 + 0.25 (arm 1)
    np.testing.assert_allclose(np.asarray(index), [2.25, 2.0, 0.45], rtol=1e-6)
    # k = 1 greedy selection picks the index's argmax
    active_gain, semi_gain = bp.gains(jnp.asarray(q), jnp.array([0, 1, 1]))
    np.testing.assert_array_equal(np.asarray(nb.greedy_pulls(active_gain, semi_gain, neighbours, 1)),
                                  [True, False, False])


def test_q_learning_update_of_equation_11_on_a_hand_worked_step():
    q = np.zeros((2, 2, 3), np.float32)
    q[0, 0] = [0.2, 0.5, 1.0]
    q[0, 1] = [2.0, 3.0, 4.0]
    q[1, 1] = [1.0, 0.5, 0.0]
    # Arm 0: state 0, active, learned. Target 1 + 0.95 * max(2, 3, 4) = 4.8; Q <- 0.9 * 1.0 + 0.1 * 4.8.
    # Arm 1: state 1, passive, forgot. Target 0 + 0.95 * max Q(0, .) = 0; Q <- 0.9 * 1.0.
    new = bp.q_update(jnp.asarray(q), jnp.array([[0, 1]]), jnp.array([[2, 0]]), jnp.array([[1, 0]]), 0.1, 0.95)
    expected = q.copy()
    expected[0, 0, 2] = 0.9 * 1.0 + 0.1 * 4.8
    expected[1, 1, 0] = 0.9
    np.testing.assert_allclose(np.asarray(new), expected, rtol=1e-6)
    # WIQL knows passive and active only: the max over Q(1, .) skips the semi-active 3.0 ... and 4.0 is active.
    q[0, 1] = [2.0, 3.0, 1.5]
    new = bp.q_update(jnp.asarray(q), jnp.array([[0, 1]]), jnp.array([[2, 0]]), jnp.array([[1, 0]]), 0.1, 0.95,
                      actions_used=bp.ACTIVE_PASSIVE)
    assert float(new[0, 0, 2]) == pytest.approx(0.9 * 1.0 + 0.1 * (1 + 0.95 * 2.0), rel=1e-6)


def test_a_cell_hit_twice_in_a_batch_moves_towards_the_mean_target():
    q = np.zeros((1, 2, 3), np.float32)
    q[0, 1] = [1.0, 0.0, 2.0]
    batch = dict(states=jnp.array([[0], [0], [1]]), actions=jnp.array([[2], [2], [1]]),
                 next_states=jnp.array([[1], [0], [1]]))
    new = bp.q_update(jnp.asarray(q), batch["states"], batch["actions"], batch["next_states"], 0.5, 0.9)
    # Q(0, 2): targets 1 + 0.9 * 2 = 2.8 and 0 + 0.9 * 0 = 0, mean 1.4 -> 0.5 * 0 + 0.5 * 1.4
    # Q(1, 1): target 2.8 -> 0.5 * 0 + 0.5 * 2.8
    assert float(new[0, 0, 2]) == pytest.approx(0.7) and float(new[0, 1, 1]) == pytest.approx(1.4)
    assert float(new[0, 1, 0]) == 1.0 and float(new[0, 1, 2]) == 2.0  # cells not hit stay


def test_exploration_rate_is_n_over_n_plus_t():
    np.testing.assert_allclose(np.asarray(bp.epsilon(jnp.array([0, 50, 950]), 50)), [1.0, 0.5, 0.05])


def brute_force_whittle(p_passive, p_active, gamma, state):
    """The subsidy at which acting and resting in ``state`` are worth the same (reward = next state): the
    optimal values are the best of the four deterministic policies, each evaluated by a linear solve, and the
    sign change of act - rest in the subsidy is found by bisection."""
    def advantage(subsidy):
        values = []
        for acts in ((0, 0), (0, 1), (1, 0), (1, 1)):  # act in state 0?, act in state 1?
            p = np.where(acts, p_active, p_passive)
            reward = p + subsidy * (1 - np.array(acts))
            transition = np.stack([1 - p, p], axis=1)
            values.append(np.linalg.solve(np.eye(2) - gamma * transition, reward))
        v = np.max(values, axis=0)
        rest = subsidy + p_passive + gamma * (p_passive * v[1] + (1 - p_passive) * v[0])
        act = p_active + gamma * (p_active * v[1] + (1 - p_active) * v[0])
        return act[state] - rest[state]

    low, high = -5.0, 5.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if advantage(mid) > 0 else (low, mid)
    return (low + high) / 2


@pytest.mark.parametrize("seed", range(4))
def test_closed_form_whittle_index_matches_value_iteration(seed):
    model = sm.synthetic(num_arms=1, num_topics=1, seed=seed)
    p_passive, p_active = model.p_learn[0, 0], model.p_learn[0, 2]
    closed = np.asarray(bp.whittle_index(jnp.asarray(p_passive[None]), jnp.asarray(p_active[None]), 0.95))[0]
    for state in range(2):
        assert closed[state] == pytest.approx(brute_force_whittle(p_passive, p_active, 0.95, state), abs=1e-5)


def test_whittle_index_when_the_learned_state_ranks_first():
    # Acting barely helps an unlearned arm but keeps a learned one: state 1 has the higher index.
    p_passive, p_active = np.array([0.0, 0.2]), np.array([0.05, 0.95])
    closed = np.asarray(bp.whittle_index(jnp.asarray(p_passive[None]), jnp.asarray(p_active[None]), 0.95))[0]
    assert closed[1] > closed[0]
    for state in range(2):
        assert closed[state] == pytest.approx(brute_force_whittle(p_passive, p_active, 0.95, state), abs=1e-5)


@pytest.mark.parametrize("policy, replay", [("eduqate", True)] + [
    pytest.param(policy, replay, marks=pytest.mark.slow) for policy, replay in (
        ("eduqate", False), ("wiql", False), ("threshold_whittle", False), ("myopic", False), ("random", False))])
def test_vectorised_learner_equals_a_per_step_python_loop(policy, replay):
    """Same students, same uniforms: the same pulls, rewards and Q tables as the plain loop."""
    students = [sm.synthetic(num_arms=12, num_topics=4, seed=s) for s in (1, 2)]
    envs = {k: jnp.asarray(v) for k, v in nb.stack(students).items()}
    settings = bl.Settings(policy=policy, replay=replay, num_episodes=3, replay_size=100, replay_batch=8)
    learner = bl.init_learner(settings, 2, 12)
    key = jax.random.key(7)
    learner, rewards = bl.run_episodes(settings, envs, learner, key, 3)
    for trial, student in enumerate(students):
        loop = PythonLoopTrial(policy, student.p_learn, student.neighbours, replay=replay, replay_size=100,
                               replay_batch=8)
        for episode in range(3):
            draws = bl.episode_draws(settings, jax.random.fold_in(key, episode), 2, 12)
            mine = {name: np.asarray(value[:, trial]) if name != "replay" else np.asarray(value)
                    for name, value in draws.items()}
            expected = loop.episode(mine)
            np.testing.assert_array_equal(np.asarray(rewards[episode, trial]), expected)
        np.testing.assert_allclose(np.asarray(learner["q"][trial]), loop.q, rtol=1e-5, atol=1e-6)
def test_episodes_start_unlearned_last_fifty_steps_and_reset():
    p = np.zeros((4, 3, 2))
    p[:, :, 1] = 1.0  # learned stays learned; nothing is learned without a pull
    p[:, 2, 0] = 1.0  # a pull teaches for sure
    envs = nb.stack([nb.StudentModel(p, np.eye(4, dtype=bool))])
    envs = {k: jnp.asarray(v) for k, v in envs.items()}
    settings = bl.Settings(policy="myopic", num_episodes=2)
    learner = bl.init_learner(settings, 1, 4)
    learner, rewards = bl.run_episodes(settings, envs, learner, jax.random.key(0), 2)
    assert rewards.shape == (2, 1, 50)
    # One new arm per step until all four are learned, in both episodes (each starts from all unlearned).
    for episode in range(2):
        np.testing.assert_array_equal(np.asarray(rewards[episode, 0, :6]), [1, 2, 3, 4, 4, 4])
    np.testing.assert_allclose(np.asarray(learner["final_reward"]), [[4.0, 4.0]])
    np.testing.assert_allclose(np.asarray(learner["mean_reward"]), [[(1 + 2 + 3 + 4 * 47) / 50] * 2])
    assert int(learner["steps"]) == 100 and int(learner["episodes"]) == 2


