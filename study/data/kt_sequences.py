"""Knowledge-tracing response sequences in the DKVMN 3-line format, with the release's fold files.

A file holds 3 lines per student: (1) the sequence length ``L``, (2) ``L`` comma-separated question ids
(1-based; 0 is never an id), (3) ``L`` comma-separated 0/1 answers. A trailing comma is allowed (the synthetic
release writes one); blank lines between blocks are skipped. Any other departure is a ``ValueError`` naming the
file, the physical line (1-based) and the field.

The releases in ``../shared/data/kt`` (``DATASETS``) ship ``<prefix>_train<k>.csv`` / ``<prefix>_valid<k>.csv``
for folds ``k`` (``_train`` = ``_train<k>`` + ``_valid<k>``) and one ``<prefix>_test.csv``.

:func:`padded` packs sequences into fixed windows as DKVMN trains them: a sequence longer than ``window`` is
cut into consecutive windows (each a fresh start of memory), shorter ones are right-padded with question 0.

Example::

    from study.data import kt_sequences as kts

    spec = kts.DATASETS["assist2009"]
    train = kts.read_sequences(kts.fold_path(spec, "../shared/data/kt/dkvmn_assist2009_updated", "train", 1),
                               num_questions=spec.num_questions)
    batch = kts.padded(train, window=200)  # {"question": [N, 200] int32, "answer": [N, 200] int8, "mask": ...}
"""

import dataclasses
import os

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A release's file naming and question universe (``num_questions``: ids run 1..num_questions)."""

    prefix: str
    num_questions: int
    folds: tuple
    default_dir: str


DATASETS = {
    "assist2009": DatasetSpec("assist2009_updated", 110, (1, 2, 3, 4, 5),
                              "../shared/data/kt/dkvmn_assist2009_updated"),
    "statics2011": DatasetSpec("STATICS", 1223, (1, 2, 3, 4, 5), "../shared/data/kt/statics2011_dkvmn"),
    "synthetic": DatasetSpec("naive_c5_q50_s4000_v0", 50, (1,), "../shared/data/kt/dkvmn_synthetic"),
}


def fold_path(spec: DatasetSpec, directory: str, split: str, fold: int) -> str:
    """The file of ``split`` ("train", "validation" or "test") of fold ``fold`` in ``directory``."""
    if split == "test":
        name = f"{spec.prefix}_test.csv"
    elif split in ("train", "validation"):
        if fold not in spec.folds:
            raise ValueError(f"fold {fold} does not exist for {spec.prefix}; its folds are {list(spec.folds)}")
        name = f"{spec.prefix}_{'train' if split == 'train' else 'valid'}{fold}.csv"
    else:
        raise ValueError(f"unknown split {split!r}; choose train, validation or test")
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: point the data directory at the DKVMN release folder "
                                f"that holds {spec.prefix}_*.csv")
    return path


def _integers(path: str, line_number: int, text: str, field: str) -> np.ndarray:
    tokens = text.rstrip(",").split(",")
    try:
        return np.array([int(token) for token in tokens], np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.strip().lstrip("-").isdigit())
        raise ValueError(f"{path}, line {line_number}: {field} must be comma-separated integers, found {bad!r}") \
            from None


def read_sequences(path: str, num_questions: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(question ids [L] int64, answers [L] int64)]``, one per student, in file order.

    ``num_questions``: when given, every id must lie in 1..num_questions. Errors name the file and line.
    """
    with open(path, encoding="utf-8") as handle:
        numbered = [(number, line.strip()) for number, line in enumerate(handle, start=1) if line.strip()]
    if len(numbered) % 3:
        last = numbered[len(numbered) - len(numbered) % 3][0]
        raise ValueError(f"{path}: {len(numbered)} non-blank lines, not a multiple of 3 (length / question ids / "
                         f"answers per student); the incomplete block starts at line {last}")
    sequences = []
    for start in range(0, len(numbered), 3):
        (n_len, text_len), (n_q, text_q), (n_a, text_a) = numbered[start:start + 3]
        if not text_len.isdigit():
            raise ValueError(f"{path}, line {n_len}: expected a sequence length (a non-negative integer), found "
                             f"{text_len[:40]!r}")
        length = int(text_len)
        questions = _integers(path, n_q, text_q, "question ids")
        answers = _integers(path, n_a, text_a, "answers")
        if len(questions) != length:
            raise ValueError(f"{path}, line {n_q}: the length line {n_len} says {length} but there are "
                             f"{len(questions)} question ids")
        if len(answers) != length:
            raise ValueError(f"{path}, line {n_a}: the length line {n_len} says {length} but there are "
                             f"{len(answers)} answers")
        if not np.all((answers == 0) | (answers == 1)):
            raise ValueError(f"{path}, line {n_a}: answers must be 0 or 1, found "
                             f"{answers[(answers != 0) & (answers != 1)][0]}")
        high = num_questions if num_questions is not None else np.iinfo(np.int64).max
        out = (questions < 1) | (questions > high)
        if np.any(out):
            limit = f"1..{num_questions}" if num_questions is not None else ">= 1"
            raise ValueError(f"{path}, line {n_q}: question ids must lie in {limit}, found {questions[out][0]}")
        sequences.append((questions, answers))
    return sequences


def padded(sequences, window: int) -> dict:
    """Fixed windows of ``sequences`` (see the module docstring).

    Returns ``{"question": [N, window] int32 (0 = padding), "answer": [N, window] int8, "mask": [N, window]
    bool, "student": [N] int32 (index of the source sequence)}``; ``N`` = sum over sequences of
    ``ceil(L / window)``. Empty sequences give no window.
    """
    questions, answers, students = [], [], []
    for index, (q, a) in enumerate(sequences):
        for start in range(0, len(q), window):
            chunk_q, chunk_a = q[start:start + window], a[start:start + window]
            questions.append(np.pad(chunk_q, (0, window - len(chunk_q))))
            answers.append(np.pad(chunk_a, (0, window - len(chunk_a))))
            students.append(index)
    if not questions:
        return {"question": np.zeros((0, window), np.int32), "answer": np.zeros((0, window), np.int8),
                "mask": np.zeros((0, window), bool), "student": np.zeros(0, np.int32)}
    question = np.stack(questions).astype(np.int32)
    return {"question": question, "answer": np.stack(answers).astype(np.int8), "mask": question > 0,
            "student": np.asarray(students, np.int32)}


def read_cluster_info(path: str) -> np.ndarray:
    """``[Q] int64``: the true concept of question id ``q`` at index ``q - 1`` (first line of the synthetic
    release's ``cluster_info_<v>``, a Python-style list of integers)."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().strip()
    if not (first.startswith("[") and first.endswith("]")):
        raise ValueError(f"{path}, line 1: expected a list like [3, 3, 1, ...] of each question's concept, found "
                         f"{first[:40]!r}")
    return _integers(path, 1, first[1:-1].replace(" ", ""), "concepts")
