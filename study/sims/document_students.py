"""Simulated students reading recommended documents (Vassoyan et al. 2024, section 2 and appendix A), pure JAX.

A student is ``knowledge [C] bool`` (the KCs it has) and ``requires [C, C] bool`` (its requirement edges:
the course's prerequisites plus each preference edge kept with probability ``preference_p``). The
requirements of document ``d`` are the KCs required by one of its KCs, outside ``d``. Recommending ``d``
gives one feedback (one step, equations of section 2):

* **too easy** (``TOO_EASY``): the student knows every KC of ``d``; nothing changes, reward 0;
* **right level** (``RIGHT_LEVEL``): some KC of ``d`` is new and every requirement of ``d`` is known; the
  student acquires all KCs of ``d``; reward = total value of the newly acquired KCs;
* **too hard** (``TOO_HARD``): some KC is new but a requirement is missing; nothing changes, reward 0.

The observation is each document's last feedback (``NOT_SEEN`` before its first recommendation).

Prior knowledge (``scenario``): background KCs are known each with probability ``background_p``; the
course's KCs are ordered topologically under the student's requirements (Kahn's rule, lowest KC index first),
the order is cut before the first unknown background KC, and the student knows the first ``n`` regular KCs
of what is left (``m`` of them), with ``n``: 0 ("none"), uniform on ``{0..m}`` ("uniform"), or
``P(n) ∝ exp(-lam n)`` on ``{0..m-1}`` ("decreasing_exponential", lam = 0.3).

Arrays are those of ``study.sims.course_corpora.padded``; everything here is jit-able and vmaps over students.
"""

import jax
import jax.numpy as jnp

TOO_HARD, RIGHT_LEVEL, TOO_EASY, NOT_SEEN = 0, 1, 2, 3
NUM_FEEDBACKS = 4
FEEDBACK_NAMES = ("too hard", "right level", "too easy", "not seen")
SCENARIOS = ("none", "decreasing_exponential", "uniform")
DECREASING_LAMBDA = 0.3


def as_arrays(course: dict) -> dict:
    """The course's arrays as JAX arrays (NumPy ones cannot be indexed by traced values)."""
    return {name: jnp.asarray(value) for name, value in course.items()}


def topological_order(requires, kc_mask):
    """``[C] int32``: KC indices in Kahn's order taking the lowest available index first (padding KCs,
    ``kc_mask`` False, last). ``requires[a, b]``: ``a`` before ``b``; must be acyclic."""
    num = requires.shape[0]
    index = jnp.arange(num)

    def place(i, carry):
        placed, order = carry
        blocked = jnp.any(requires & ~placed[:, None], axis=0)
        available = ~placed & ~blocked
        rank = jnp.where(available, index + jnp.where(kc_mask, 0, num), 2 * num + index)
        pick = jnp.argmin(rank)
        return placed.at[pick].set(True), order.at[i].set(pick)

    _, order = jax.lax.fori_loop(0, num, place, (jnp.zeros(num, bool), jnp.zeros(num, jnp.int32)))
    return order


def _known_count(key, eligible: jnp.ndarray, scenario: str):
    """The number of regular KCs known among ``eligible`` (a count, int32 scalar)."""
    if scenario == "none":
        return jnp.zeros((), jnp.int32)
    if scenario == "uniform":
        return jax.random.randint(key, (), 0, eligible + 1)
    if scenario == "decreasing_exponential":
        support = jnp.arange(64)
        logits = jnp.where(support < jnp.maximum(eligible, 1), -DECREASING_LAMBDA * support, -jnp.inf)
        return jax.random.categorical(key, logits).astype(jnp.int32)
    raise ValueError(f"prior-knowledge scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")


def sample_student(course: dict, key, scenario: str, preference_p: float = 0.3, background_p: float = 0.5) -> dict:
    """One student: ``{"knowledge": [C] bool, "requires": [C, C] bool}`` (see the module docstring)."""
    course = as_arrays(course)
    if course["kc_mask"].shape[0] > 64:
        raise ValueError("courses of more than 64 KCs need a wider support in _known_count")
    pref_key, background_key, count_key = jax.random.split(key, 3)
    kept = jax.random.bernoulli(pref_key, preference_p, course["preference"].shape)
    requires = course["prerequisite"] | (course["preference"] & kept)
    background_known = course["background"] & jax.random.bernoulli(background_key, background_p,
                                                                   course["background"].shape)
    order = topological_order(requires, course["kc_mask"])
    is_background = course["background"][order]
    before_gap = jnp.cumsum(is_background & ~background_known[order]) == 0
    regular = before_gap & ~is_background & course["kc_mask"][order]
    n = _known_count(count_key, jnp.sum(regular), scenario)
    known_in_order = regular & (jnp.cumsum(regular) <= n)
    knowledge = jnp.zeros_like(course["kc_mask"]).at[order].set(known_in_order) | background_known
    return {"knowledge": knowledge, "requires": requires}


def doc_requirements(doc_kc, requires):
    """``[D, C] bool``: KCs required by some KC of each document, outside the document."""
    needed = jnp.einsum("db,ab->da", doc_kc.astype(jnp.float32), requires.astype(jnp.float32)) > 0
    return needed & ~doc_kc


def outcomes(course: dict, student: dict):
    """What recommending each document would do now: ``(feedback [D] int32, reward [D] float32, learns
    [D, C] bool)`` (the look-ahead the oracle reads)."""
    course = as_arrays(course)
    doc_kc, knowledge = course["doc_kc"], student["knowledge"]
    new = doc_kc & ~knowledge[None, :]
    ready = jnp.all(~doc_requirements(doc_kc, student["requires"]) | knowledge[None, :], axis=1)
    too_easy = ~jnp.any(new, axis=1)
    feedback = jnp.where(too_easy, TOO_EASY, jnp.where(ready, RIGHT_LEVEL, TOO_HARD)).astype(jnp.int32)
    learns = new & (feedback == RIGHT_LEVEL)[:, None]
    reward = jnp.sum(jnp.where(learns, course["kc_value"][None, :], 0.0), axis=1)
    return feedback, reward, learns


def step(course: dict, student: dict, doc):
    """Recommends ``doc`` (int32 scalar): ``(student after, feedback int32, reward float32)``."""
    feedback, reward, learns = outcomes(course, student)
    student = dict(student, knowledge=student["knowledge"] | learns[doc])
    return student, feedback[doc], reward[doc]


def rollout(course: dict, policy, key, num_students: int, episode_length: int, scenario: str,
            preference_p: float = 0.3, background_p: float = 0.5) -> dict:
    """Episodes of ``num_students`` new students on one course.

    ``policy(observation [S, D] int32, step int32, key) -> logits [S, D]`` (padding documents are masked
    here). Returns ``observations [T, S, D] int32`` (last feedback per document before each step),
    ``actions [T, S] int32``, ``feedback [T, S] int32``, ``rewards [T, S] float32``, ``oracle [T, S, D]``
    bool (documents at the right level before each step) and ``doc_mask [D]``.
    """
    course = as_arrays(course)
    student_key, episode_key = jax.random.split(key)
    students = jax.vmap(lambda k: sample_student(course, k, scenario, preference_p, background_p))(
        jax.random.split(student_key, num_students))
    num_docs = course["doc_mask"].shape[0]
    observation = jnp.full((num_students, num_docs), NOT_SEEN, jnp.int32)

    def one_step(carry, t):
        students, observation = carry
        policy_key, sample_key = jax.random.split(jax.random.fold_in(episode_key, t))
        logits = jnp.where(course["doc_mask"][None, :], policy(observation, t, policy_key), -jnp.inf)
        actions = jax.random.categorical(sample_key, logits, axis=-1).astype(jnp.int32)
        oracle = jax.vmap(lambda s: outcomes(course, s)[0] == RIGHT_LEVEL)(students) & course["doc_mask"][None, :]
        students, feedback, rewards = jax.vmap(lambda s, a: step(course, s, a))(students, actions)
        record = {"observations": observation, "actions": actions, "feedback": feedback, "rewards": rewards,
                  "oracle": oracle}
        observation = observation.at[jnp.arange(num_students), actions].set(feedback)
        return (students, observation), record

    _, records = jax.lax.scan(one_step, (students, observation), jnp.arange(episode_length))
    records["doc_mask"] = course["doc_mask"]
    return records


def uniform_policy(observation, t, key):
    """Random recommendations (logits 0)."""
    del t, key
    return jnp.zeros(observation.shape, jnp.float32)

