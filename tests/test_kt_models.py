"""Knowledge-tracing models: the erase/add write on a hand-worked step, DQKT's prediction as equations 3-4,
causality by perturbation for every model (no answer or question at or after step t changes the prediction
at t, except step t's own question), BKT's filter against a hand-worked two-step example, and padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from study.models import bkt as bkt_lib
from study.models.bkt import BKT
from study.models.dkt import DKT
from study.models.kt_memory import KeyValueMemory, erase_add, memory_reads
from study.models.sparsemax import sparsemax

Q = 6


def test_erase_add_hand_worked_step():
    memory = jnp.array([[[1.0, 2.0], [3.0, -1.0]]])  # B 1, C 2, d 2
    weights = jnp.array([[0.25, 0.75]])
    erase = jnp.array([[0.5, 1.0]])
    add = jnp.array([[0.2, -0.4]])
    # Slot 0: [1 * (1 - .125) + .05, 2 * (1 - .25) - .1] = [0.925, 1.4]
    # Slot 1: [3 * (1 - .375) + .15, -1 * (1 - .75) - .3] = [2.025, -0.55]
    expected = [[[0.925, 1.4], [2.025, -0.55]]]
    np.testing.assert_allclose(np.asarray(erase_add(memory, weights, erase, add)), expected, atol=1e-6)
    kept = erase_add(memory, weights, erase, add, keep=jnp.array([False]))
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(memory))


def test_memory_read_at_each_step_is_the_state_before_the_write():
    initial = jnp.array([[1.0], [2.0]])
    weights = jnp.array([[[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]])
    erase = jnp.full((1, 3, 1), 0.5)
    add = jnp.ones((1, 3, 1))
    keep = jnp.array([[True, False, True]])
    reads, knowledge = memory_reads(initial, weights, erase, add, keep)
    # step 0 sees [1, 2]; writes slot 0: 1 * .5 + 1 = 1.5; step 1 is padding (no write); step 2 sees [1.5, 2].
    np.testing.assert_allclose(np.asarray(knowledge)[0], [[1.0, 2.0], [1.5, 2.0], [1.5, 2.0]])
    np.testing.assert_allclose(np.asarray(reads)[0, :, 0], [1.0, 2.0, 0.5 * 1.5 + 0.5 * 2.0])


def models():
    return {"dkvmn": KeyValueMemory(Q, memory_size=3, key_dim=4, value_dim=5, summary_dim=4, kind="dkvmn"),
            "dqkt": KeyValueMemory(Q, memory_size=3, key_dim=4, value_dim=5, kind="dqkt", init_std=0.5),
            "dkt": DKT(Q, hidden_dim=8, embed_dim=8),
            "bkt": BKT(tuple([0, 0, 0, 1, 1, 2, 2]), 3)}


def random_sequences(seed, batch=3, length=9):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.integers(1, Q + 1, (batch, length)), jnp.int32),
            jnp.asarray(rng.integers(0, 2, (batch, length)), jnp.int32))


@pytest.mark.parametrize("name", ["dkvmn", "dqkt", "dkt", "bkt"])
def test_no_future_response_changes_an_earlier_prediction(name):
    model = models()[name]
    question, answer = random_sequences(0)
    params = model.init(jax.random.key(1), question, answer)
    if name == "bkt":  # away from the initial values, so every parameter matters
        params = jax.tree.map(lambda x: x + jax.random.normal(jax.random.key(2), x.shape), params)
    apply = jax.jit(model.apply)  # one compilation for every perturbation
    base = np.asarray(apply(params, question, answer))
    for t in range(question.shape[1]):
        future_q = question.at[:, t + 1:].set((question[:, t + 1:] % Q) + 1)
        flipped = answer.at[:, t:].set(1 - answer[:, t:])  # step t's own answer and all later ones
        got = np.asarray(apply(params, future_q, flipped))
        np.testing.assert_allclose(got[:, :t + 1], base[:, :t + 1], atol=1e-6, err_msg=f"{name}, step {t}")
        if t + 1 < question.shape[1]:  # the past does matter: some later prediction moved
            assert np.abs(got[:, t + 1:] - base[:, t + 1:]).max() > 1e-6


def test_dqkt_predicts_sigmoid_of_knowledge_dot_sparse_weights():
    model = models()["dqkt"]
    question, answer = random_sequences(3, batch=2, length=5)
    params = model.init(jax.random.key(0), question, answer)
    logits = np.asarray(model.apply(params, question, answer))
    p = params["params"]
    keys = np.asarray(p["question_embedding"]["embedding"])[np.asarray(question)]
    weights = np.asarray(sparsemax(jnp.asarray(keys @ np.asarray(p["key_memory"]).T)))
    # Step 0 reads the initial value memory: k_0 = M_v^0 summed over its features (equations 3-4).
    knowledge0 = np.asarray(p["initial_value"]).sum(axis=1)
    np.testing.assert_allclose(logits[:, 0], weights[:, 0] @ knowledge0, rtol=1e-5, atol=1e-6)
    q_matrix = np.asarray(model.apply(params, method=KeyValueMemory.q_matrix))
    np.testing.assert_allclose(q_matrix.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(q_matrix[np.asarray(question[0, 0]) - 1], weights[0, 0], atol=1e-6)


def test_bkt_filter_hand_worked():
    prior, learn, guess, slip = (jnp.array([v]) for v in (0.4, 0.2, 0.1, 0.2))
    skill = jnp.zeros((1, 2), jnp.int32)
    correct, final = bkt_lib.bkt_filter(prior, learn, guess, slip, skill, jnp.array([[1, 0]]),
                                        jnp.array([[True, True]]))
    p0 = 0.4 * 0.8 + 0.6 * 0.1  # 0.38
    post = 0.4 * 0.8 / p0
    p1_known = post + (1 - post) * 0.2
    p1 = p1_known * 0.8 + (1 - p1_known) * 0.1
    post1 = p1_known * 0.2 / (1 - p1)
    np.testing.assert_allclose(np.asarray(correct)[0], [p0, p1], rtol=1e-6)
    np.testing.assert_allclose(float(final[0, 0]), post1 + (1 - post1) * 0.2, rtol=1e-6)


@pytest.mark.parametrize("name", ["dkvmn", "dkt", "bkt"])
def test_padding_does_not_change_real_predictions(name):
    # A padded row (question 0 after the real steps) beside the unpadded one, in one jitted call.
    model = models()[name]
    question, answer = random_sequences(5, batch=1, length=9)
    params = model.init(jax.random.key(0), question, answer)
    padded_q = jnp.concatenate([question, question.at[:, 6:].set(0)])
    padded_a = jnp.concatenate([answer, answer.at[:, 6:].set(1)])
    got = np.asarray(jax.jit(model.apply)(params, padded_q, padded_a))
    np.testing.assert_allclose(got[1, :6], got[0, :6], atol=1e-6)
