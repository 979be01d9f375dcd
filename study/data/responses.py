"""Student-question response logs: the data of the IRT family (``study.tasks.irt``).

A :class:`ResponseLog` holds one row per response (``student [N] int32``, ``question [N] int32``,
``correct [N] int8`` in {0, 1}) over a fixed universe of ``num_students`` x ``num_questions`` indices, and
optional question covariates ``covariates [Q, C] float32`` whose columns fall in named groups
(``covariate_groups``: ``(name, width)`` in column order, e.g. one-hot labels then multi-hot skills), with
``skill [Q] int32`` naming each question's main skill for per-skill reports.

Readers:

* :func:`read_dkvmn_sequences`: the DKVMN 3-line format (sequence length / question ids / 0-1 answers);
* :func:`load_statics2011`: OLI Engineering Statics 2011 as the DKVMN release ships it (``STATICS_train.csv``
  and ``STATICS_test.csv`` together: 333 students, 1,223 questions, 189,297 responses), with the unit of each
  question (its name without the step and problem parts) as a one-hot label and the Q-matrix skills as a
  multi-hot covariate;
* :func:`read_response_csv`: a CSV with ``student_id, question_id, correct`` (ids of any form);
* :func:`save_npz` / :func:`load_npz`: a log as one ``.npz`` (no pickles).

:func:`random_split` splits responses at random (the statics2011 80/10/10 split); :func:`batch_at` gives
training batch ``b`` of an endless stream of shuffled epochs, a pure function of (seed, b).
"""

import csv
import dataclasses
import functools
import os

import numpy as np

from study.data import kt_sequences

STATICS_FILES = ("STATICS_train.csv", "STATICS_test.csv")


@dataclasses.dataclass
class ResponseLog:
    """Responses over ``num_students`` x ``num_questions`` (see the module docstring)."""

    student: np.ndarray
    question: np.ndarray
    correct: np.ndarray
    num_students: int
    num_questions: int
    covariates: np.ndarray | None = None
    covariate_groups: tuple = ()
    skill: np.ndarray | None = None

    def __post_init__(self):
        self.student = np.asarray(self.student, np.int32)
        self.question = np.asarray(self.question, np.int32)
        self.correct = np.asarray(self.correct, np.int8)
        if not self.student.shape == self.question.shape == self.correct.shape or self.student.ndim != 1:
            raise ValueError("student, question and correct must be 1-D arrays of one length, got shapes "
                             f"{self.student.shape}, {self.question.shape}, {self.correct.shape}")
        if len(self.student) and (self.student.min() < 0 or self.student.max() >= self.num_students):
            raise ValueError(f"student indices must lie in 0..{self.num_students - 1}")
        if len(self.question) and (self.question.min() < 0 or self.question.max() >= self.num_questions):
            raise ValueError(f"question indices must lie in 0..{self.num_questions - 1}")
        if not np.all((self.correct == 0) | (self.correct == 1)):
            raise ValueError("correct must be 0 or 1")
        self.covariate_groups = tuple((str(name), int(width)) for name, width in self.covariate_groups)
        if self.covariates is not None:
            self.covariates = np.asarray(self.covariates, np.float32)
            width = sum(w for _, w in self.covariate_groups)
            if self.covariates.shape != (self.num_questions, width):
                raise ValueError(f"covariates must be [num_questions={self.num_questions}, {width}] (the widths of "
                                 f"covariate_groups {self.covariate_groups}), got {self.covariates.shape}")

    def __len__(self) -> int:
        return len(self.student)

    def subset(self, rows: np.ndarray) -> "ResponseLog":
        """The responses ``rows`` (indices or a mask) over the same universe and covariates."""
        return dataclasses.replace(self, student=self.student[rows], question=self.question[rows],
                                   correct=self.correct[rows])

    def concat(self, other: "ResponseLog") -> "ResponseLog":
        """These responses followed by ``other``'s (same universe)."""
        if (other.num_students, other.num_questions) != (self.num_students, self.num_questions):
            raise ValueError("logs over different students or questions cannot be joined")
        return dataclasses.replace(self, student=np.concatenate([self.student, other.student]),
                                   question=np.concatenate([self.question, other.question]),
                                   correct=np.concatenate([self.correct, other.correct]))


def read_dkvmn_sequences(path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(question ids [L], answers [L])]``, one per student, of a DKVMN 3-line file (ids as written;
    ``study.data.kt_sequences.read_sequences``)."""
    return kt_sequences.read_sequences(path)


def question_unit(name: str) -> str:
    """The unit of a statics2011 question name: ``"tutor_05_07_q8_i8 UpdateRadioButton"`` -> ``"tutor_05_07"``
    (the step and problem parts dropped)."""
    return name.split(" ")[0].rsplit("_", 2)[0]


def load_statics2011(directory: str) -> ResponseLog:
    """Every student of the DKVMN statics2011 release (train then test file; student ``i`` is the ``i``-th
    sequence), questions ``qid - 1``, covariates = one-hot unit label (group ``"label"``) + Q-matrix skills
    (group ``"skill"``), ``skill`` = the question's first Q-matrix skill."""
    students, questions, answers = [], [], []
    for name in STATICS_FILES:
        for questions_of, answers_of in read_dkvmn_sequences(os.path.join(directory, name)):
            students.append(np.full(len(questions_of), len(students)))
            questions.append(questions_of - 1)
            answers.append(answers_of)
    q_matrix = np.loadtxt(os.path.join(directory, "Qmatrix.csv"), delimiter=",", dtype=np.float32, ndmin=2)
    num_questions = q_matrix.shape[0]
    names = [""] * num_questions
    with open(os.path.join(directory, "STATICS_qid_qname"), encoding="utf-8") as handle:
        for row in list(csv.reader(handle, delimiter="\t"))[1:]:
            names[int(row[0]) - 1] = question_unit(row[1])
    units = sorted(set(names))
    labels = np.zeros((num_questions, len(units)), np.float32)
    labels[np.arange(num_questions), [units.index(n) for n in names]] = 1.0
    student = np.concatenate(students)
    return ResponseLog(student, np.concatenate(questions), np.concatenate(answers), int(student.max()) + 1,
                       num_questions, covariates=np.concatenate([labels, q_matrix], axis=1),
                       covariate_groups=(("label", len(units)), ("skill", q_matrix.shape[1])),
                       skill=np.argmax(q_matrix, axis=1).astype(np.int32))


def read_response_csv(path: str) -> tuple[ResponseLog, list, list]:
    """``(log, student ids, question ids)`` of a CSV with columns ``student_id, question_id, correct``
    (students and questions numbered in order of first appearance)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"student_id", "question_id", "correct"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)}; the header must name student_id, "
                             "question_id, correct")
        rows = list(reader)
    student_ids, question_ids = {}, {}
    student = [student_ids.setdefault(r["student_id"], len(student_ids)) for r in rows]
    question = [question_ids.setdefault(r["question_id"], len(question_ids)) for r in rows]
    correct = []
    for line, row in enumerate(rows, start=2):
        if row["correct"] not in ("0", "1"):
            raise ValueError(f"{path}, line {line}: correct must be 0 or 1, got {row['correct']!r}")
        correct.append(int(row["correct"]))
    log = ResponseLog(student, question, correct, len(student_ids), len(question_ids))
    return log, list(student_ids), list(question_ids)


def random_split(log: ResponseLog, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> list[ResponseLog]:
    """The responses split at random into parts of the given fractions (a seeded permutation)."""
    order = np.random.default_rng(seed).permutation(len(log))
    bounds = np.round(np.cumsum(fractions) / np.sum(fractions) * len(log)).astype(int)
    return [log.subset(np.sort(part)) for part in np.split(order, bounds[:-1])]


def save_npz(log: ResponseLog, path: str) -> None:
    arrays = {"student": log.student, "question": log.question, "correct": log.correct,
              "universe": np.array([log.num_students, log.num_questions], np.int64)}
    if log.covariates is not None:
        arrays["covariates"] = log.covariates
        arrays["group_names"] = np.array([name for name, _ in log.covariate_groups])
        arrays["group_widths"] = np.array([width for _, width in log.covariate_groups], np.int64)
    if log.skill is not None:
        arrays["skill"] = log.skill
    np.savez(path, **arrays)


def load_npz(path: str) -> ResponseLog:
    with np.load(path, allow_pickle=False) as data:
        groups = tuple(zip(data["group_names"].tolist(), data["group_widths"].tolist())) if "covariates" in data else ()
        return ResponseLog(data["student"], data["question"], data["correct"], int(data["universe"][0]),
                           int(data["universe"][1]), covariates=data["covariates"] if "covariates" in data else None,
                           covariate_groups=groups, skill=data["skill"] if "skill" in data else None)


def batch_at(log: ResponseLog, index: int, batch_size: int, seed: int) -> dict:
    """Training batch ``index`` (0-based) of the endless stream of epochs, each a seeded permutation of the
    responses (:func:`stream_rows`); a resumed run reads what the uninterrupted one read."""
    if len(log) == 0:
        raise ValueError("the response log is empty")
    rows = stream_rows(len(log), index, batch_size, seed)
    return {"student": log.student[rows], "question": log.question[rows],
            "correct": log.correct[rows].astype(np.float32)}


def stream_rows(size: int, index: int, batch_size: int, seed: int) -> np.ndarray:
    """``[batch_size] int64``: the rows of batch ``index`` of an endless stream of epochs over ``size`` rows,
    each epoch a seeded permutation (rows ``index * batch_size ...`` of the stream, wrapping into the next
    epoch). A pure function of its arguments, so any batch can be recomputed on resume."""
    positions = index * batch_size + np.arange(batch_size, dtype=np.int64)
    epochs, offsets = np.divmod(positions, size)
    rows = np.empty(batch_size, np.int64)
    for epoch in np.unique(epochs):
        rows[epochs == epoch] = _epoch_order(size, seed, int(epoch))[offsets[epochs == epoch]]
    return rows


@functools.lru_cache(maxsize=2)
def _epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(size)


def eval_batches_of(log: ResponseLog, batch_size: int, max_batches: int | None = None):
    """Every response once, in order, in batches of ``batch_size`` (the last padded; ``mask`` False there)."""
    count = -(-len(log) // batch_size)
    for b in range(count if max_batches is None else min(count, max_batches)):
        rows = np.arange(b * batch_size, (b + 1) * batch_size)
        mask = rows < len(log)
        rows = np.where(mask, rows, 0)
        yield {"student": log.student[rows], "question": log.question[rows],
               "correct": log.correct[rows].astype(np.float32), "mask": mask}
