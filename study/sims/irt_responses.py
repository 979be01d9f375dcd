"""Simulated student-question responses with known parameters, for the IRT family (``study.tasks.irt``).

Settings (each returns a :class:`Simulation`: the log and the true parameters):

* :func:`dense`: every one of ``num_students`` students answers every one of ``num_questions`` questions
  once (the parameter-retrieval setting of 50 x 30);
* :func:`two_groups`: two groups of students; questions shared by both groups (difficulty ~ N(0, 1)) and
  questions only one group sees (difficulty ~ N(0.5, 0.7), standard deviation 0.7); each student answers
  every question open to their group;
* :func:`sparse_log`: a large sparse log shaped like 17Zuoye's (the default density is 0.16% of all
  student x question pairs): heavy-tailed counts per student (log-normal), question popularity log-normal,
  pairs drawn independently (a student may meet a question more than once, as in a real log).

The true model is 2PL, ``P(correct) = sigmoid(alpha_j (theta_i - beta_j))``, with ``theta ~ N(0, 1)``,
``beta ~ N(0, 1)`` (unless stated) and discriminations ``alpha ~ LogNormal(0, 0.3)`` (median 1, 95% within
0.55-1.8: positive, as calibrated items are), or with ``kind="factorization"`` ``sigmoid(theta_i . alpha_j -
beta_j)`` with every entry of ``theta [S, k]`` and ``alpha [Q, k]`` ~ N(0, k^(-1/4)) (standard deviation), so the
dot product has unit variance. Everything is drawn from one ``numpy`` generator seeded by ``seed``.
"""

import dataclasses

import numpy as np

from study.data.responses import ResponseLog


@dataclasses.dataclass
class Simulation:
    """``log``: the responses; ``truth``: ``{"theta": [S] or [S, k], "alpha": [Q] or [Q, k], "beta": [Q]}``."""

    log: ResponseLog
    truth: dict


def _discriminations(rng, count: int) -> np.ndarray:
    return np.exp(rng.normal(0.0, 0.3, count))


def _answers(rng, truth: dict, student: np.ndarray, question: np.ndarray) -> np.ndarray:
    theta, alpha, beta = truth["theta"], truth["alpha"], truth["beta"]
    if theta.ndim == 1:
        logits = alpha[question] * (theta[student] - beta[question])
    else:
        logits = np.einsum("nk,nk->n", theta[student], alpha[question]) - beta[question]
    return (rng.random(len(student)) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int8)


def dense(num_students: int = 50, num_questions: int = 30, seed: int = 0) -> Simulation:
    """Every student answers every question once; 2PL truth."""
    rng = np.random.default_rng(seed)
    truth = {"theta": rng.normal(size=num_students), "alpha": _discriminations(rng, num_questions),
             "beta": rng.normal(size=num_questions)}
    student, question = np.divmod(np.arange(num_students * num_questions), num_questions)
    log = ResponseLog(student, question, _answers(rng, truth, student, question), num_students, num_questions)
    return Simulation(log, truth)


def two_groups(students_per_group: int = 50, shared_questions: int = 10, group_only_questions: int = 10,
               seed: int = 0) -> Simulation:
    """Groups A (students ``0..n-1``) and B (``n..2n-1``); questions: shared ones first, then A-only, then
    B-only. ``truth["group"] [S]`` and ``truth["question_group"] [Q]`` (0 shared, 1 A-only, 2 B-only)."""
    rng = np.random.default_rng(seed)
    n, shared, only = students_per_group, shared_questions, group_only_questions
    num_questions = shared + 2 * only
    beta = np.concatenate([rng.normal(size=shared), rng.normal(0.5, 0.7, size=2 * only)])
    truth = {"theta": rng.normal(size=2 * n), "alpha": _discriminations(rng, num_questions), "beta": beta,
             "group": np.repeat([0, 1], n), "question_group": np.repeat([0, 1, 2], [shared, only, only])}
    students, questions = [], []
    for group in (0, 1):
        open_questions = np.concatenate([np.arange(shared), shared + group * only + np.arange(only)])
        s, q = np.meshgrid(group * n + np.arange(n), open_questions, indexing="ij")
        students.append(s.ravel())
        questions.append(q.ravel())
    student, question = np.concatenate(students), np.concatenate(questions)
    log = ResponseLog(student, question, _answers(rng, truth, student, question), 2 * n, num_questions)
    return Simulation(log, truth)


def sparse_log(num_students: int, num_questions: int, density: float = 0.0016, kind: str = "2pl", k: int = 10,
               seed: int = 0) -> Simulation:
    """About ``density * num_students * num_questions`` responses (at least one per student), 17Zuoye-like.

    ``kind``: "2pl" or "factorization" (latent length ``k``)."""
    rng = np.random.default_rng(seed)
    if kind == "2pl":
        truth = {"theta": rng.normal(size=num_students), "alpha": _discriminations(rng, num_questions),
                 "beta": rng.normal(size=num_questions)}
    elif kind == "factorization":
        scale = 1.0 / np.sqrt(np.sqrt(k))
        truth = {"theta": rng.normal(0.0, scale, (num_students, k)),
                 "alpha": rng.normal(0.0, scale, (num_questions, k)), "beta": rng.normal(size=num_questions)}
    else:
        raise ValueError(f"kind must be '2pl' or 'factorization', got {kind!r}")
    target = density * num_students * num_questions
    activity = np.exp(rng.normal(0.0, 1.0, num_students))
    counts = np.maximum(1, np.round(activity / activity.sum() * target)).astype(np.int64)
    student = np.repeat(np.arange(num_students, dtype=np.int32), counts)
    popularity = np.cumsum(np.exp(rng.normal(0.0, 1.0, num_questions)))
    question = np.searchsorted(popularity, rng.random(len(student)) * popularity[-1], side="right")
    question = np.minimum(question, num_questions - 1).astype(np.int32)
    log = ResponseLog(student, question, _answers(rng, truth, student, question), num_students, num_questions)
    return Simulation(log, truth)
