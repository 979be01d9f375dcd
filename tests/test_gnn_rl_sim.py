"""The document-reading student simulator and the course loader, on hand-made tiny courses and intro_to_ml."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from study.sims import course_corpora as cc
from study.sims import document_students as ds

CORPORA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "gnn_rl_corpora", "corpora",
                       "extracted_data")
needs_corpora = pytest.mark.skipif(not os.path.isdir(CORPORA), reason="shared GNN-RL corpora not present")


def tiny_course():
    """KCs 0 -> 1 -> 2 (prerequisites), a preference edge 0 -> 2, background KC 3 required by KC 2.
    Documents: d0 = {0}, d1 = {1}, d2 = {1, 2}, d3 = padding."""
    doc_kc = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], bool)
    prerequisite = np.zeros((4, 4), bool)
    prerequisite[0, 1] = prerequisite[1, 2] = prerequisite[3, 2] = True
    preference = np.zeros((4, 4), bool)
    preference[0, 2] = True
    return {"doc_kc": doc_kc, "prerequisite": prerequisite, "preference": preference,
            "kc_value": np.array([1.0, 2.0, 3.0, 0.0], np.float32), "background": np.array([0, 0, 0, 1], bool),
            "kc_mask": np.ones(4, bool), "doc_mask": np.array([1, 1, 1, 0], bool)}


def student(knowledge, requires):
    return {"knowledge": jnp.asarray(knowledge, bool), "requires": jnp.asarray(requires, bool)}


def test_feedback_and_rewards_follow_the_three_rules():
    course = tiny_course()
    requires = course["prerequisite"]
    s = student([0, 0, 0, 1], requires)
    feedback, reward, _ = ds.outcomes(course, s)
    # d0: new KC 0, no requirement -> right level (value 1); d1 needs 0 -> too hard; d2 needs 0 (1 is inside).
    assert feedback[:3].tolist() == [ds.RIGHT_LEVEL, ds.TOO_HARD, ds.TOO_HARD]
    assert reward[:3].tolist() == [1.0, 0.0, 0.0]
    s, fb, r = ds.step(course, s, 0)
    assert (int(fb), float(r)) == (ds.RIGHT_LEVEL, 1.0)
    assert s["knowledge"].tolist() == [True, False, False, True]
    # d2 now: requirements of {1, 2} outside the document are {0, 3}, both known -> learns 1 and 2 (2 + 3).
    s, fb, r = ds.step(course, s, 2)
    assert (int(fb), float(r)) == (ds.RIGHT_LEVEL, 5.0)
    s, fb, r = ds.step(course, s, 1)
    assert (int(fb), float(r)) == (ds.TOO_EASY, 0.0)
    assert s["knowledge"].tolist() == [True, True, True, True]


def test_too_hard_changes_nothing_and_background_gates():
    course = tiny_course()
    s = student([1, 0, 0, 0], course["prerequisite"])  # no background KC 3
    s2, fb, r = ds.step(course, s, 2)
    assert (int(fb), float(r)) == (ds.TOO_HARD, 0.0)
    assert s2["knowledge"].tolist() == s["knowledge"].tolist()
    _, fb, _ = ds.step(course, s, 1)
    assert int(fb) == ds.RIGHT_LEVEL


def test_preference_edge_is_a_requirement_when_kept():
    course = tiny_course()
    course["doc_kc"][1] = [0, 0, 1, 0]  # d1 now teaches KC 2 alone
    requires = course["prerequisite"] | course["preference"]
    # Knows 1 and 3 but not 0: KC 2 prefers 0 first -> too hard only with the edge kept.
    assert int(ds.step(course, student([0, 1, 0, 1], requires), 1)[1]) == ds.TOO_HARD
    assert int(ds.step(course, student([0, 1, 0, 1], course["prerequisite"]), 1)[1]) == ds.RIGHT_LEVEL


@pytest.mark.parametrize("p", [0.3, 1.0])
def test_preference_edges_drawn_per_student_with_p(p):
    course = tiny_course()
    keys = jax.random.split(jax.random.key(1), 2000)
    students = jax.jit(jax.vmap(lambda k: ds.sample_student(course, k, "none", preference_p=p)))(keys)
    kept = np.asarray(students["requires"][:, 0, 2])
    assert np.all(np.asarray(students["requires"][:, 0, 1]))  # prerequisites always
    assert abs(kept.mean() - p) <= 4 * np.sqrt(p * (1 - p) / 2000) + 1e-9


def test_topological_order_lowest_index_first():
    requires = np.zeros((5, 5), bool)
    requires[3, 0] = requires[0, 1] = True  # 3 before 0 before 1; 2 free; 4 is padding
    order = ds.topological_order(jnp.asarray(requires), jnp.array([1, 1, 1, 1, 0], bool))
    assert order.tolist() == [2, 3, 0, 1, 4]


def chain_course(m):
    prerequisite = np.eye(m, k=1, dtype=bool)
    return {"doc_kc": np.eye(m, dtype=bool), "prerequisite": prerequisite, "preference": np.zeros((m, m), bool),
            "kc_value": np.ones(m, np.float32), "background": np.zeros(m, bool), "kc_mask": np.ones(m, bool),
            "doc_mask": np.ones(m, bool)}


def known_counts(course, scenario, n=3000):
    keys = jax.random.split(jax.random.key(7), n)
    knowledge = np.asarray(jax.jit(jax.vmap(lambda k: ds.sample_student(course, k, scenario)["knowledge"]))(keys))
    counts = knowledge.sum(1)
    # Prior knowledge on a chain is always a prefix of the chain.
    assert np.all(knowledge == (np.arange(knowledge.shape[1])[None, :] < counts[:, None]))
    return counts


def test_scenario_distributions_on_a_chain():
    m, n = 5, 3000
    course = chain_course(m)
    assert np.all(known_counts(course, "none", 200) == 0)
    freq = np.bincount(known_counts(course, "uniform", n), minlength=m + 1) / n
    expected = np.full(m + 1, 1 / (m + 1))
    assert np.all(np.abs(freq - expected) < 4 * np.sqrt(expected * (1 - expected) / n))
    freq = np.bincount(known_counts(course, "decreasing_exponential", n), minlength=m + 1) / n
    weights = np.exp(-0.3 * np.arange(m))
    expected = np.append(weights / weights.sum(), 0.0)  # support {0..m-1}
    assert np.all(np.abs(freq - expected) < 4 * np.sqrt(expected * (1 - expected) / n) + 1e-9)
    with pytest.raises(ValueError, match="scenario 'often'"):
        ds.sample_student(course, jax.random.key(0), "often")


def test_rollout_records_consistent_episodes():
    course = chain_course(4)
    records = jax.jit(lambda k: ds.rollout(course, ds.uniform_policy, k, 64, 6, "none"))(jax.random.key(3))
    obs, actions, feedback, rewards = (np.asarray(records[k]) for k in ("observations", "actions", "feedback",
                                                                          "rewards"))
    assert obs.shape == (6, 64, 4) and np.all(obs[0] == ds.NOT_SEEN)
    for t in range(1, 6):  # the observation carries each document's last feedback
        changed = obs[t - 1].copy()
        changed[np.arange(64), actions[t - 1]] = feedback[t - 1]
        np.testing.assert_array_equal(obs[t], changed)
    np.testing.assert_array_equal(rewards, (feedback == ds.RIGHT_LEVEL).astype(np.float32))
    # The oracle's set is exactly the next KC of the chain (one document at the right level) until all are known.
    oracle = np.asarray(records["oracle"])
    learned = np.cumsum(rewards, axis=0) - rewards
    for t in range(6):
        for s in range(64):
            expected = np.zeros(4, bool)
            if learned[t, s] < 4:
                expected[int(learned[t, s])] = True
            np.testing.assert_array_equal(oracle[t, s], expected)


@needs_corpora
def test_intro_to_ml_grid_structure():
    course = cc.load_course(os.path.join(CORPORA, cc.INTRO_TO_ML))
    index = {name: i for i, name in enumerate(course.kc_names)}
    assert (course.num_docs, course.num_kcs, course.num_keywords, course.episode_length) == (22, 34, 121, 11)
    assert course.kc_names[-1] == "background_2" and course.background.sum() == 1
    # Horizontal prerequisites on rows 1 and 2 (10 each) + background -> 0_2; vertical preferences 2 per column.
    assert course.prerequisite.sum() == 21 and course.preference.sum() == 22
    assert course.prerequisite[index["3_1"], index["4_1"]] and course.prerequisite[index["3_2"], index["4_2"]]
    assert not course.prerequisite[index["3_0"], index["4_0"]]
    assert course.prerequisite[index["background_2"], index["0_2"]]
    assert course.preference[index["5_0"], index["5_1"]] and course.preference[index["5_1"], index["5_2"]]
    assert [course.kc_value[index[f"7_{s}"]] for s in range(3)] == [1.0, 2.0, 3.0]
    assert course.kc_value[index["background_2"]] == 0.0
    d = course.doc_names.index("4_1")
    assert set(np.flatnonzero(course.doc_kc[d])) == {index["4_1"], index["4_2"]}


@needs_corpora
def test_intro_to_ml_background_gates_the_bottom_row():
    course = cc.load_course(os.path.join(CORPORA, cc.INTRO_TO_ML))
    arrays = cc.padded(course, cc.common_dims([course]))
    bottom = np.array([name.endswith("_2") for name in course.kc_names])
    keys = jax.random.split(jax.random.key(0), 1500)
    students = jax.jit(jax.vmap(lambda k: ds.sample_student(arrays, k, "uniform")))(keys)
    knowledge = np.asarray(students["knowledge"])
    has_background = knowledge[:, -1]
    assert abs(has_background.mean() - 0.5) < 4 * np.sqrt(0.25 / 1500)
    assert not knowledge[~has_background][:, bottom].any()  # bottom row out of reach without the background
    assert knowledge[~has_background].sum(1).max() == 22  # uniform on {0..22} over the two upper rows
    assert knowledge[has_background][:, bottom].any()
    # Without the background, every document teaching a bottom-row KC is too hard even with all else known.
    full = np.asarray(course.prerequisite | course.preference)
    s = student(~bottom & ~np.asarray(course.background), full)
    feedback, _, _ = ds.outcomes(arrays, s)
    teaches_bottom = course.doc_kc[:, bottom].any(1)
    assert np.all(np.asarray(feedback)[:22][teaches_bottom] == ds.TOO_HARD)


@needs_corpora
def test_sequential_courses_load_as_chains():
    for name in cc.SEQUENTIAL_CORPORA:
        course = cc.load_course(os.path.join(CORPORA, name))
        c = course.num_kcs
        assert course.num_docs == c and course.episode_length == c
        np.testing.assert_array_equal(course.prerequisite, np.eye(c, k=1, dtype=bool))
        assert not course.preference.any() and np.all(course.kc_value == 1.0)
        np.testing.assert_array_equal(course.doc_kc, np.eye(c, dtype=bool))


def test_bad_course_files_name_the_file(tmp_path):
    (tmp_path / "doc2kw.json").write_text('{"0": ["a"]}')
    with pytest.raises(FileNotFoundError, match="doc2kc.json"):
        cc.load_course(str(tmp_path))
    (tmp_path / "doc2kc.json").write_text('{"0": ["0"]}')
    emb = tmp_path / "embedding" / "standard1"
    emb.mkdir(parents=True)
    (emb / "embeddings_keywords.json").write_text('["b"]')
    np.save(emb / "embeddings_matrix.npy", np.zeros((1, 100), np.float32))
    with pytest.raises(ValueError, match="keyword 'a' of document '0'"):
        cc.load_course(str(tmp_path))
