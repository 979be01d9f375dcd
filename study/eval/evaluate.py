"""The one evaluation path of every next-item recommender: predict, rank, collect records, compute metrics.

Usage::

    result = evaluate(predict_fn, batches, ns=(1, 3, 5, 10, 20), num_bootstrap=50, seed=0)
    result.metrics, result.per_student, result.records

``batches`` yields NumPy dicts in the ``study.data.row_format`` layout: per-position ``[B, L]`` arrays
(``item_ids``, ``timestamps``, ``student_hash``, ``history_len``, ``is_novel``, ``is_continuation`` ...),
per-row ``[B]`` arrays (``grade``, ``wealth``, ``classroom``) and ``row_valid [B] bool`` (False on padding
rows of the last batch; all rows are valid when absent).

``predict_fn(batch)`` returns either

* scores ``[B, L, V]`` float (any float dtype, NumPy or device array): ``scores[b, i]`` scores every
  token as the item at position ``i``; the model alone is responsible for looking only at the past; or
* ranked item ids ``[B, L, K]`` int, best first (e.g. KNN), with ``K >= max(ns)``.

The form is told by the dtype (float: scores, integer: ids) unless ``output`` names it. Ranks are
computed on device (``study.eval.ranking``); only ``[B, L]`` ranks come back to the host, where the
records of the target positions (item positions of valid rows) are kept.
"""

import dataclasses
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from study.data.reserved_ids import is_item
from study.eval import metrics as metrics_lib
from study.eval import ranking

OUTPUT_FORMS = ("auto", "scores", "top_k")
REQUIRED_BATCH_KEYS = ("item_ids", "student_hash", "history_len", "is_novel", "is_continuation")
RECORD_COLUMNS = (
    "student_hash", "item_id", "rank", "timestamp", "history_len", "is_novel", "is_continuation",
    "grade", "wealth", "classroom", "batch", "row", "position",
)

_ranks_from_scores = jax.jit(ranking.ranks_from_scores)
_ranks_from_top_k = jax.jit(ranking.ranks_from_top_k)


@dataclasses.dataclass
class EvalResult:
    """Outcome of ``evaluate``.

    Attributes:
      records: one row per target interaction, columns ``RECORD_COLUMNS`` (``rank`` as in
        ``study.eval.ranking``; ``batch``, ``row``, ``position`` locate the interaction in the input).
      per_student: ``study.eval.metrics.student_totals`` table.
      metrics: ``study.eval.metrics.compute_metrics`` dict.
    """

    records: pd.DataFrame
    per_student: pd.DataFrame
    metrics: dict


def batch_ranks(model_output, item_ids: np.ndarray, *, output: str = "auto", max_n: int = 1) -> np.ndarray:
    """Ranks ``[B, L] int32`` of the tokens ``item_ids [B, L]`` under one batch's model output.

    Raises ``ValueError`` when the output's shape does not fit the batch, when the scores cover fewer
    tokens than the batch's item ids need, or when a ranked list is shorter than ``max_n``.
    """
    if output not in OUTPUT_FORMS:
        raise ValueError(f"output must be one of {OUTPUT_FORMS}, got {output!r}")
    shape = tuple(model_output.shape)
    if len(shape) != 3 or shape[:2] != tuple(item_ids.shape):
        raise ValueError(
            f"predict_fn returned shape {shape}; expected [B, L, V] scores or [B, L, K] item ids with "
            f"[B, L] = {tuple(item_ids.shape)} (the batch's item_ids)"
        )
    if output == "auto":
        output = "scores" if jnp.issubdtype(model_output.dtype, jnp.floating) else "top_k"
    if output == "scores":
        vocab_size = shape[2]
        largest = int(item_ids.max(initial=0))
        if largest >= vocab_size:
            raise ValueError(
                f"the batch holds item id {largest} but predict_fn scores only {vocab_size} tokens; "
                "evaluate with the vocabulary the model was trained on (model vocab_size = vocab size + 3)"
            )
        ranks = _ranks_from_scores(model_output, item_ids)
    else:
        if shape[2] < max_n:
            raise ValueError(
                f"predict_fn returned ranked lists of {shape[2]} ids, too short to decide hits@{max_n}; "
                f"return at least {max_n} ids per position or evaluate smaller n"
            )
        ranks = _ranks_from_top_k(model_output, item_ids)
    return np.asarray(jax.device_get(ranks))


def _batch_records(batch: dict, ranks: np.ndarray, batch_index: int) -> dict:
    """Columns of the records of one batch's target positions (item positions of valid rows)."""
    item_ids = np.asarray(batch["item_ids"])
    num_rows = item_ids.shape[0]
    row_valid = np.asarray(batch.get("row_valid", np.ones(num_rows, dtype=bool)), dtype=bool)
    rows, positions = np.nonzero(is_item(item_ids) & row_valid[:, None])

    def per_position(name, dtype, default=0):
        values = batch.get(name)
        if values is None:
            return np.full(len(rows), default, dtype=dtype)
        return np.asarray(values)[rows, positions].astype(dtype)

    def per_row(name, dtype):
        values = batch.get(name)
        if values is None:
            return np.zeros(len(rows), dtype=dtype)
        return np.asarray(values).reshape(num_rows)[rows].astype(dtype)

    classrooms = batch.get("classroom")
    if classrooms is None:
        classroom = np.full(len(rows), "", dtype=object)
    else:
        classrooms = np.asarray(classrooms, dtype=object).reshape(num_rows)
        decoded = np.array(
            [c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in classrooms], dtype=object
        )
        classroom = decoded[rows]
    return {
        "student_hash": per_position("student_hash", np.int64),
        "item_id": item_ids[rows, positions].astype(np.int32),
        "rank": ranks[rows, positions].astype(np.int32),
        "timestamp": per_position("timestamps", np.int64),
        "history_len": per_position("history_len", np.int32),
        "is_novel": per_position("is_novel", np.int32),
        "is_continuation": per_position("is_continuation", np.int32),
        "grade": per_row("grade", np.int32),
        "wealth": per_row("wealth", np.int32),
        "classroom": classroom,
        "batch": np.full(len(rows), batch_index, dtype=np.int32),
        "row": rows.astype(np.int32),
        "position": positions.astype(np.int32),
    }


def collect_records(
    predict_fn: Callable[[dict], object],
    batches: Iterable[dict],
    *,
    output: str = "auto",
    max_n: int = 1,
) -> pd.DataFrame:
    """Runs ``predict_fn`` over ``batches`` and returns one record per target interaction.

    Args:
      predict_fn: ``batch -> [B, L, V]`` float scores or ``[B, L, K]`` int ranked item ids.
      batches: NumPy batch dicts (module docstring).
      output: ``"auto"`` (by dtype), ``"scores"`` or ``"top_k"``.
      max_n: largest ``n`` to be evaluated (ranked lists must be at least this long).

    Returns:
      DataFrame with columns ``RECORD_COLUMNS``.
    """
    columns = {name: [] for name in RECORD_COLUMNS}
    for batch_index, batch in enumerate(batches):
        missing = [key for key in REQUIRED_BATCH_KEYS if key not in batch]
        if missing:
            raise ValueError(
                f"evaluation batch {batch_index} lacks {missing}; batches must follow study.data.row_format"
            )
        item_ids = np.asarray(batch["item_ids"])
        ranks = batch_ranks(predict_fn(batch), item_ids, output=output, max_n=max_n)
        for name, values in _batch_records(batch, ranks, batch_index).items():
            columns[name].append(values)
    empty = {"classroom": np.array([], dtype=object)}
    return pd.DataFrame(
        {
            name: np.concatenate(parts) if parts else empty.get(name, np.array([], dtype=np.int64))
            for name, parts in columns.items()
        }
    )


def evaluate(
    predict_fn: Callable[[dict], object],
    batches: Iterable[dict],
    *,
    ns=metrics_lib.DEFAULT_NS,
    num_bootstrap: int = 50,
    seed: int = 0,
    confidence: float = 0.95,
    output: str = "auto",
) -> EvalResult:
    """Evaluates one recommender: hits@n over subsets, macro/micro, bootstrap intervals, breakdowns.

    Args:
      predict_fn: ``batch -> [B, L, V]`` float scores or ``[B, L, K]`` int ranked item ids.
      batches: NumPy batch dicts in the ``study.data.row_format`` layout plus ``row_valid``.
      ns: the ``n`` of hits@n.
      num_bootstrap: bootstrap resamples of students for the intervals.
      seed: bootstrap seed.
      confidence: interval coverage.
      output: ``"auto"``, ``"scores"`` or ``"top_k"`` (see ``collect_records``).

    Returns:
      ``EvalResult`` with the records, the per-student table and the metrics dict.
    """
    ns = tuple(int(n) for n in ns)
    if not ns or min(ns) < 1:
        raise ValueError(f"ns must be positive integers, got {ns}")
    records = collect_records(predict_fn, batches, output=output, max_n=max(ns))
    if records.empty:
        raise ValueError("the evaluation batches hold no target interaction (no item position in a valid row)")
    metrics, per_student = metrics_lib.compute_metrics(
        records, ns, num_bootstrap=num_bootstrap, seed=seed, confidence=confidence
    )
    return EvalResult(records=records, per_student=per_student, metrics=metrics)
