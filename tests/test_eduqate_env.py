"""The networked restless bandit (EdNetRMAB) and its student models, against hand-worked examples."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from study.sims import networked_bandit as nb
from study.sims import student_models as sm

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
JUNYI = os.path.join(DATA, "junyi_exercise_table")
OLI = os.path.join(DATA, "kt", "statics2011_dkvmn")

# Arms 0, 1 share topic A; arms 1, 2 share topic B; arm 3 is alone in topic C.
GROUPS = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], bool)


def valid_p(num_arms=4):
    """P(next = 1 | action, state) obeying both constraints."""
    one = np.array([[0.1, 0.5], [0.2, 0.6], [0.4, 0.9]])
    return np.repeat(one[None], num_arms, axis=0)


def test_neighbours_are_arms_sharing_a_group_not_themselves():
    expected = np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(nb.neighbours_of(GROUPS), expected)


@pytest.mark.parametrize("pulled, expected", [
    ([1, 0, 0, 0], [2, 1, 0, 0]),  # group-mate 1 semi-active; 2 shares a group with 1 only, not with 0
    ([0, 1, 0, 0], [1, 2, 1, 0]),  # arm 1 is in two groups: both neighbours move
    ([0, 0, 0, 1], [0, 0, 0, 2]),  # a lone arm touches no one
    ([1, 0, 1, 0], [2, 1, 2, 0]),  # k = 2: the shared neighbour is semi-active once; pulled arms stay active
])
def test_semi_active_reaches_group_members_only(pulled, expected):
    actions = nb.actions_of(jnp.array(pulled, bool), jnp.asarray(nb.neighbours_of(GROUPS)))
    np.testing.assert_array_equal(np.asarray(actions), expected)


def test_transition_uses_the_probability_of_each_arms_action_and_state():
    p = np.zeros((4, 3, 2), np.float32)
    p[0, 2, 0] = 1.0  # arm 0 learns only when pulled from state 0
    p[1, 1, 1] = 1.0  # arm 1 stays learned only under the semi-active action
    p[2, 0, 1] = 1.0  # arm 2 stays learned only when left alone
    p[3] = 1.0  # arm 3 always ends learned
    states = jnp.array([0, 1, 1, 0])
    actions = jnp.array([2, 1, 0, 0])
    next_states, reward = nb.step(jnp.asarray(p), states, actions, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(next_states), [1, 1, 1, 1])
    assert float(reward) == 4.0  # reward = arms in state 1 after the step
    next_states, reward = nb.step(jnp.asarray(p), states, jnp.array([0, 2, 1, 2]), jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(next_states), [0, 0, 0, 1])
    assert float(reward) == 1.0


def test_transition_frequencies_match_the_probabilities():
    p = jnp.asarray(valid_p(4), jnp.float32)
    states, actions = jnp.array([0, 1, 0, 1]), jnp.array([0, 1, 2, 2])
    keys = jax.random.split(jax.random.key(1), 20_000)
    moved = jax.vmap(lambda k: nb.step(p, states, actions, k)[0])(keys)
    expected = np.array([0.1, 0.6, 0.4, 0.9])
    sigma = np.sqrt(expected * (1 - expected) / 20_000)
    assert np.all(np.abs(np.asarray(moved).mean(axis=0) - expected) < 5 * sigma)


@pytest.mark.parametrize("arm, action, state, value, message", [
    (2, 1, 0, 0.05, r"'arm 2', semi-active action breaks constraint \(i\)"),  # semi below passive
    (1, 2, 1, 0.55, r"'arm 1', active action breaks constraint \(i\)"),  # active below semi-active
    (3, 0, 0, 0.7, r"'arm 3', passive action breaks constraint \(ii\)"),  # 0 -> 1 above 1 -> 1
    (0, 2, 1, 1.3, r"'arm 0', active action: .* not a probability"),
])
def test_broken_constraints_are_named_by_arm_and_action(arm, action, state, value, message):
    p = valid_p()
    p[arm, action, state] = value
    with pytest.raises(ValueError, match=message):
        nb.StudentModel(p, GROUPS)


def test_an_arm_without_a_group_is_refused():
    groups = GROUPS.copy()
    groups[3] = False
    with pytest.raises(ValueError, match="'item x' belongs to no topic group"):
        nb.StudentModel(valid_p(), groups, names=("a", "b", "c", "item x"))


def test_greedy_k2_selection_counts_only_uncovered_group_mates():
    # Arms 0 and 1 share a group; 2 and 3 are alone. Eq. 1 ranks 0 (1.0 + 0.6) then 1 (0.9 + 0.6). After
    # pulling 0, arm 1 is semi-active already: pulling it too adds only 0.9 - 0.6 = 0.3 < 0.5 of arm 2.
    groups = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], bool)
    neighbours = jnp.asarray(nb.neighbours_of(groups))
    active_gain = jnp.array([1.0, 0.9, 0.5, 0.4])
    semi_gain = jnp.array([0.6, 0.6, 0.0, 0.0])
    chosen = nb.greedy_pulls(active_gain, semi_gain, neighbours, 2)
    np.testing.assert_array_equal(np.asarray(chosen), [True, False, True, False])
    np.testing.assert_array_equal(np.asarray(nb.greedy_pulls(active_gain, semi_gain, neighbours, 1)),
                                  [True, False, False, False])
    chosen3 = nb.greedy_pulls(active_gain, semi_gain, neighbours, 3)  # then 3 (0.4) beats covered 1 (0.3)
    np.testing.assert_array_equal(np.asarray(chosen3), [True, False, True, True])


def test_synthetic_students_obey_the_constraints_and_differ_per_trial():
    first, again, other = sm.synthetic(seed=4), sm.synthetic(seed=4), sm.synthetic(seed=5)
    assert first.p_learn.shape == (50, 3, 2) and first.groups.shape == (50, 20)
    np.testing.assert_array_equal(first.p_learn, again.p_learn)
    assert not np.array_equal(first.p_learn, other.p_learn)
    memberships = first.groups.sum(axis=1)
    assert memberships.min() >= 1 and memberships.max() <= 3 and (memberships > 1).any()
    nb.validate_transitions(first.p_learn)  # (the constructor validated too)


@pytest.mark.skipif(not os.path.isdir(OLI), reason="shared OLI data not present")
def test_oli_student_derivation():
    model = sm.oli(OLI)
    assert model.num_arms == 100 and model.groups.shape[1] == len(model.provenance["skills"])
    responses = np.asarray(model.provenance["responses_per_item"])
    assert np.all(np.diff(responses) <= 0)  # the most answered questions first
    p = model.p_learn
    np.testing.assert_allclose(p[:, 1], 0.8 * p[:, 2])  # semi-active = sigma x active
    difficulty = np.asarray(model.provenance["difficulty"])
    np.testing.assert_allclose(p[:, 0], (1 - difficulty)[:, None] * p[:, 1])  # passive by difficulty
    assert (model.groups.sum(axis=1) == 1).all()  # the Statics Q-matrix gives one skill per question


@pytest.mark.skipif(not os.path.isdir(JUNYI), reason="shared Junyi data not present")
def test_junyi_student_derivation():
    model = sm.junyi(JUNYI)
    assert model.num_arms == 100
    topics = model.provenance["topics"]
    assert model.groups.shape == (100, len(topics))
    assert (model.groups.sum(axis=1) >= 1).all() and (model.groups.sum(axis=1) > 1).any()  # multi-membership
    difficulty = np.asarray(model.provenance["difficulty"])
    np.testing.assert_allclose(model.p_learn[:, 2, 0], 0.1 + 0.5 * (1 - difficulty))
    assert difficulty.min() == 0.0 and difficulty.max() == 1.0
