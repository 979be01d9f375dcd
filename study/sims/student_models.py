"""Student models for the networked bandit (``study.sims.networked_bandit``): synthetic, Junyi-based, OLI-based.

Each builder returns a :class:`~study.sims.networked_bandit.StudentModel` whose ``provenance`` records how
every number was derived.

* :func:`synthetic`: ``N`` arms, ``G`` topics; every arm joins 1 to 3 distinct random topics (uniform count);
  transitions drawn per trial: six uniforms per arm in a ``[3 actions, 2 states]`` grid made monotone by a
  running maximum over actions, then over states, which is exactly what constraints (i) and (ii) ask.
* :func:`oli`: OLI Engineering Statics 2011 (the DKVMN release: response sequences and a question -> skill
  Q-matrix). The ``N`` questions with the most responses; one group per skill (knowledge component) of the
  Q-matrix. Active transitions: the least-squares fit of "correct on the student's next response to the same
  skill" on "correct on this question" (a binary regressor, so the fit is the two conditional means; each with
  one added correct and one added wrong pseudo-response), giving P(0 -> 1) and P(1 -> 1); where the fit has
  P(0 -> 1) > P(1 -> 1) the first is lowered to the second. Semi-active = ``sigma`` x active. Passive: difficulty
  ``d = 1 - correct rate`` of the question, passive = ``(1 - d)`` x semi-active (easy items drift towards
  learned and are kept without practice; hard ones are forgotten).
* :func:`junyi`: Junyi Academy exercise table (names, topics, prerequisites, seconds per fast problem; no
  responses, and the similarity / difficulty ratings the paper used are not in this release). The ``N`` live
  exercises with the most prerequisite links among live exercises (ties by name). Groups: one per topic; an
  exercise belongs to its own topic and to the topics of its selected prerequisites. Difficulty ``d`` in [0, 1]:
  the rank (0 = easiest) of the mean of two ranks among the selected exercises, the seconds a fast student
  needs per problem and the depth of the exercise in the prerequisite graph (longest chain of prerequisites).
  With no response data the active transition is a stated assumption: P(0 -> 1) = ``0.1 + 0.5 (1 - d)``,
  P(1 -> 1) = ``0.95``; semi-active and passive as for OLI.
"""

import collections
import csv
import os

import numpy as np

from study.sims.networked_bandit import StudentModel

JUNYI_FILE = "junyi_Exercise_table.csv"
OLI_FILES = ("STATICS_train.csv", "STATICS_test.csv")
OLI_QMATRIX = "Qmatrix.csv"
SEMI_ACTIVE_SCALE = 0.8  # sigma: semi-active = sigma x active (the paper's appendix D)
JUNYI_ACTIVE = {"learn_base": 0.1, "learn_easy": 0.5, "retain": 0.95}


def synthetic(num_arms: int = 50, num_topics: int = 20, seed: int = 0, max_topics_per_arm: int = 3) -> StudentModel:
    """A random student of ``num_arms`` items in ``num_topics`` topics (deterministic in ``seed``)."""
    rng = np.random.default_rng(seed)
    groups = np.zeros((num_arms, num_topics), bool)
    for arm in range(num_arms):
        count = rng.integers(1, min(max_topics_per_arm, num_topics) + 1)
        groups[arm, rng.choice(num_topics, size=count, replace=False)] = True
    grid = rng.random((num_arms, 3, 2))
    grid = np.maximum.accumulate(grid, axis=1)  # passive <= semi-active <= active, per state
    grid = np.maximum.accumulate(grid, axis=2)  # P(0 -> 1) <= P(1 -> 1), per action
    provenance = {"kind": "synthetic", "seed": seed, "num_topics": num_topics,
                  "rule": "uniform grid, running max over actions then states; 1-3 random topics per arm"}
    return StudentModel(grid, groups, tuple(f"item {i}" for i in range(num_arms)), provenance)


def transitions_from_active(active, difficulty, sigma: float = SEMI_ACTIVE_SCALE) -> np.ndarray:
    """``[N, 3, 2]`` from active ``[N, 2]`` (P(0->1), P(1->1)) and difficulty ``[N]`` in [0, 1]:
    semi-active = ``sigma`` x active, passive = ``(1 - difficulty)`` x semi-active."""
    active = np.asarray(active, np.float64)
    semi = sigma * active
    passive = (1.0 - np.asarray(difficulty, np.float64))[:, None] * semi
    return np.stack([passive, semi, active], axis=1)


def _ranks01(values) -> np.ndarray:
    """Ranks scaled to [0, 1] (average rank for ties)."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks / max(len(values) - 1, 1)


def read_oli_sequences(data_dir: str) -> list:
    """The response sequences of the DKVMN STATICS files: ``[(question ids [T], correct [T])]`` (ids from 1)."""
    sequences = []
    for name in OLI_FILES:
        path = os.path.join(data_dir, name)
        with open(path, encoding="utf-8") as handle:
            lines = [line.strip().rstrip(",") for line in handle if line.strip()]
        if len(lines) % 3:
            raise ValueError(f"{path}: expected 3 lines per student (length, question ids, responses), "
                             f"got {len(lines)} lines")
        for row in range(0, len(lines), 3):
            questions = np.array(lines[row + 1].split(","), np.int64)
            correct = np.array(lines[row + 2].split(","), np.int64)
            if len(questions) != int(lines[row]) or len(correct) != len(questions):
                raise ValueError(f"{path}, line {row + 1}: length {lines[row]} does not match "
                                 f"{len(questions)} questions and {len(correct)} responses")
            sequences.append((questions, correct))
    return sequences


def oli(data_dir: str, num_arms: int = 100, sigma: float = SEMI_ACTIVE_SCALE) -> StudentModel:
    """The OLI-based student of the ``num_arms`` most answered Statics questions (see the module docstring)."""
    sequences = read_oli_sequences(data_dir)
    qmatrix = np.loadtxt(os.path.join(data_dir, OLI_QMATRIX), delimiter=",", dtype=np.int64) > 0
    counts = collections.Counter(int(q) for questions, _ in sequences for q in questions)
    items = [q for q, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:num_arms]]
    column = {q: i for i, q in enumerate(items)}
    skill_of = {q: np.flatnonzero(qmatrix[q - 1]) for q in range(1, qmatrix.shape[0] + 1)}
    right, total = np.zeros(num_arms), np.zeros(num_arms)
    pairs = np.ones((num_arms, 2, 2))  # [item, correct now, correct next]: one pseudo-response of each kind
    for questions, correct in sequences:
        last_on_skill = {}  # skill -> (item column, correct) of the latest response awaiting its successor
        for q, c in zip(questions.tolist(), correct.tolist()):
            for skill in skill_of[q].tolist():
                if skill in last_on_skill:
                    item, before = last_on_skill.pop(skill)
                    pairs[item, before, c] += 1
            if q in column:
                right[column[q]] += c
                total[column[q]] += 1
                for skill in skill_of[q].tolist():
                    last_on_skill[skill] = (column[q], c)
    fitted = pairs[:, :, 1] / pairs.sum(axis=2)  # [item, correct now] -> P(correct next)
    lowered = int(np.sum(fitted[:, 0] > fitted[:, 1]))
    active = np.stack([np.minimum(fitted[:, 0], fitted[:, 1]), fitted[:, 1]], axis=1)
    difficulty = 1.0 - right / total
    used_skills = sorted({int(s) for q in items for s in skill_of[q]})
    groups = np.array([[s in skill_of[q] for s in used_skills] for q in items], bool)
    provenance = {
        "kind": "oli", "data_dir": data_dir, "num_students": len(sequences), "items": items,
        "skills": [s + 1 for s in used_skills], "responses_per_item": total.tolist(),
        "regression_pairs_per_item": (pairs.sum(axis=(1, 2)) - 4).tolist(), "lowered_p01": lowered, "sigma": sigma,
        "difficulty": difficulty.tolist(),
    }
    return StudentModel(transitions_from_active(active, difficulty, sigma), groups,
                        tuple(f"question {q}" for q in items), provenance)


def read_junyi(data_dir: str) -> list:
    """Rows of the Junyi exercise table as dicts (``prerequisites`` split into a list)."""
    path = os.path.join(data_dir, JUNYI_FILE)
    with open(path, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for field in ("name", "live", "prerequisites", "seconds_per_fast_problem", "topic"):
        if rows and field not in rows[0]:
            raise ValueError(f"{path}: no column {field!r}; columns are {sorted(rows[0])}")
    for row in rows:
        row["prerequisites"] = [p.strip() for p in row["prerequisites"].split(",") if p.strip()]
    return rows


def _depths(prerequisites: dict) -> dict:
    """Longest chain of prerequisites below each exercise (0 = none); cycles are cut where met."""
    depth, visiting = {}, set()

    def visit(name):
        if name in depth:
            return depth[name]
        if name in visiting:
            return 0
        visiting.add(name)
        depth[name] = 1 + max((visit(p) for p in prerequisites.get(name, ())), default=-1)
        visiting.discard(name)
        return depth[name]

    for name in prerequisites:
        visit(name)
    return depth


def junyi(data_dir: str, num_arms: int = 100, sigma: float = SEMI_ACTIVE_SCALE,
          active=None) -> StudentModel:
    """The Junyi-based student over ``num_arms`` exercises (see the module docstring)."""
    active = dict(JUNYI_ACTIVE, **(active or {}))
    rows = [row for row in read_junyi(data_dir) if row["live"].strip().upper() == "TRUE"]
    by_name = {row["name"]: row for row in rows}
    prerequisites = {name: [p for p in row["prerequisites"] if p in by_name] for name, row in by_name.items()}
    links = collections.Counter()
    for name, needs in prerequisites.items():
        links[name] += len(needs)
        for need in needs:
            links[need] += 1
    chosen = sorted(by_name, key=lambda name: (-links[name], name))[:num_arms]
    depth = _depths(prerequisites)
    seconds = np.array([float(by_name[n]["seconds_per_fast_problem"] or 0.0) for n in chosen])
    depths = np.array([depth[n] for n in chosen], np.float64)
    difficulty = _ranks01((_ranks01(seconds) + _ranks01(depths)) / 2.0)
    topics = sorted({by_name[n]["topic"] for n in chosen})
    groups = np.zeros((len(chosen), len(topics)), bool)
    selected = set(chosen)
    for i, name in enumerate(chosen):
        groups[i, topics.index(by_name[name]["topic"])] = True
        for need in prerequisites[name]:
            if need in selected:
                groups[i, topics.index(by_name[need]["topic"])] = True
    learn = active["learn_base"] + active["learn_easy"] * (1.0 - difficulty)
    active_p = np.stack([learn, np.full_like(learn, active["retain"])], axis=1)
    provenance = {
        "kind": "junyi", "data_dir": data_dir, "exercises": chosen, "topics": topics,
        "prerequisite_links": [links[n] for n in chosen], "seconds_per_fast_problem": seconds.tolist(),
        "prerequisite_depth": depths.tolist(), "difficulty": difficulty.tolist(), "active_rule": active,
        "sigma": sigma, "memberships_per_exercise": groups.sum(axis=1).tolist(),
    }
    return StudentModel(transitions_from_active(active_p, difficulty, sigma), groups, tuple(chosen), provenance)
