"""Smart Homework: the next questions for a student from a fitted IRT posterior (Shi & Athey 2021).

For one student: the predicted probability of a correct answer to every question, the questions already
attempted removed, the rest ranked by a weighted sum of factors whose main one is the closeness of the
predicted probability to a target (0.7: hard enough to learn from, easy enough not to discourage)::

    score_j = - w_closeness * |p_j - target| + sum_f w_f * factor_f[j]

Extra factors (``factors``: ``{name: [Q] values}``, e.g. a question's relevance to this week's unit) and their
weights are the caller's; the top ``top_k`` (10) are returned best first, ties broken by the lower question
index.

Python::

    picks = rank_questions(probabilities, attempted, target=0.7, top_k=10)
    picks = homework_for_student(params, dims, student=12, attempted=seen)   # from a posterior

Command line: ``study homework`` (``study.commands.homework``).
"""

import numpy as np

from study.models import irt

DEFAULT_TARGET = 0.7
DEFAULT_TOP_K = 10


def rank_questions(probabilities, attempted, *, target: float = DEFAULT_TARGET, weights: dict | None = None,
                   factors: dict | None = None, top_k: int = DEFAULT_TOP_K) -> list[dict]:
    """``[{"question", "probability", "score", <factor>: value ...}]`` of the best ``top_k`` unattempted
    questions, best first.

    Args:
      probabilities: ``[Q]`` predicted P(correct) of the student on every question.
      attempted: ``[Q] bool``, True for questions the student already answered (never recommended).
      target: the probability the main factor wants to be close to.
      weights: ``{factor: weight}``; ``"closeness"`` (default 1) weighs ``-|p - target|``, the others the
        ``factors`` of the same name (a factor without a weight counts with weight 1).
      factors: ``{name: [Q] values}`` added to the score.
      top_k: at most this many questions (fewer when fewer are unattempted).
    """
    probabilities = np.asarray(probabilities, np.float64)
    attempted = np.asarray(attempted, bool)
    if probabilities.ndim != 1 or attempted.shape != probabilities.shape:
        raise ValueError(f"probabilities and attempted must be [Q] vectors of one length, got {probabilities.shape} "
                         f"and {attempted.shape}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    weights = dict(weights or {})
    factors = {name: np.asarray(values, np.float64) for name, values in (factors or {}).items()}
    unknown = sorted(set(weights) - set(factors) - {"closeness"})
    if unknown:
        raise ValueError(f"weights name factors {unknown} that are not given; factors: {sorted(factors)}")
    for name, values in factors.items():
        if values.shape != probabilities.shape:
            raise ValueError(f"factor {name!r} has shape {values.shape}, expected {probabilities.shape}")
    score = -weights.get("closeness", 1.0) * np.abs(probabilities - target)
    for name, values in factors.items():
        score = score + weights.get(name, 1.0) * values
    candidates = np.flatnonzero(~attempted)
    order = candidates[np.lexsort((candidates, -score[candidates]))][:top_k]
    return [{"question": int(j), "probability": float(probabilities[j]), "score": float(score[j]),
             **{name: float(values[j]) for name, values in factors.items()}} for j in order]


def homework_for_student(params: dict, dims: irt.Dims, student: int, attempted, covariates=None,
                         **ranking) -> list[dict]:
    """:func:`rank_questions` of ``student`` with probabilities at the posterior means of ``params`` (the
    guide's pytree of ``study.models.irt``); ``ranking``: the keyword arguments of :func:`rank_questions`."""
    if not 0 <= student < dims.num_students:
        raise ValueError(f"student {student} is out of range 0..{dims.num_students - 1}")
    probabilities = np.asarray(irt.student_probabilities(params, dims, student, covariates))
    return rank_questions(probabilities, attempted, **ranking)
