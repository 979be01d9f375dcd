"""hits@n from per-interaction ranks: subsets, macro/micro averages, bootstrap intervals, breakdowns.

Input is the per-interaction record table built by ``study.eval.evaluate`` (one row per target
interaction) with at least the columns ``student_hash`` (int64), ``rank`` (int32, see
``study.eval.ranking``), ``history_len``, ``is_novel``, ``is_continuation``, ``grade`` and ``wealth``.

Definitions:

* ``hit@n`` of an interaction: ``rank < n``.
* Subsets: ``all``; ``non_continuation`` (``is_continuation == 0``: the item differs from the student's
  previous item); ``novel`` (``is_novel == 1``: the student's first interaction with the item).
* micro average: mean of ``hit@n`` over the subset's interactions.
* macro average (the STUDY paper's): mean over students of each student's own mean; a student with no
  interaction in a subset is left out of that subset's macro average.
* 95% intervals: percentile bootstrap over students (``study.eval.bootstrap``), for macro and micro.
* Breakdowns group interactions by the history length of the interaction (``HISTORY_BUCKETS``: number of
  the student's earlier interactions, 0, 1-2, 3-5, 6-10, 11-20, 21-50, 51+), by the row's grade
  (``GRADE_NAMES``) and by wealth indicator (``WEALTH_NAMES``); macro within a group averages over the
  students having interactions in that group, using only those interactions. Breakdowns carry no intervals.
"""

import numpy as np
import pandas as pd

from study.data.reserved_ids import OOV
from study.data.row_format import GRADE_NAMES, WEALTH_NAMES
from study.eval import bootstrap

DEFAULT_NS = (1, 3, 5, 10, 20)
SUBSETS = ("all", "non_continuation", "novel")
AVERAGES = ("macro", "micro")
# (lowest history_len, label); a bucket runs up to the next bucket's lowest value minus one.
HISTORY_BUCKETS = ((0, "0"), (1, "1-2"), (3, "3-5"), (6, "6-10"), (11, "11-20"), (21, "21-50"), (51, "51+"))
REQUIRED_COLUMNS = ("student_hash", "rank", "history_len", "is_novel", "is_continuation", "grade", "wealth")


def hits_name(n: int) -> str:
    """Metric name of hits@n, e.g. ``"hits@10"``."""
    return f"hits@{n}"


def check_records(records: pd.DataFrame) -> None:
    """Raises a ``ValueError`` naming the missing columns if ``records`` is not a record table."""
    missing = [name for name in REQUIRED_COLUMNS if name not in records.columns]
    if missing:
        raise ValueError(
            f"evaluation records lack columns {missing}; build them with study.eval.evaluate.collect_records"
        )


def subset_masks(records: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{subset: [num_records] bool}`` for each name in ``SUBSETS``."""
    return {
        "all": np.ones(len(records), dtype=bool),
        "non_continuation": records["is_continuation"].to_numpy() == 0,
        "novel": records["is_novel"].to_numpy() == 1,
    }


def history_bucket_labels(history_len: np.ndarray) -> np.ndarray:
    """``[N]`` int history lengths -> ``[N]`` object array of ``HISTORY_BUCKETS`` labels."""
    lowest = np.array([low for low, _ in HISTORY_BUCKETS])
    labels = np.array([label for _, label in HISTORY_BUCKETS], dtype=object)
    index = np.searchsorted(lowest, np.maximum(np.asarray(history_len), 0), side="right") - 1
    return labels[index]


def _totals_by_key(keys: np.ndarray, records: pd.DataFrame, ns) -> tuple:
    """Interaction and hit counts of the records sharing each key.

    Args:
      keys: ``[num_records]`` int64 key of each record (e.g. student hash).
      records: the record table.
      ns: the ``n`` of hits@n.

    Returns:
      ``(unique_keys [K], first_record [K], counts [K, subsets] int64, hits [K, subsets, len(ns)] int64)``,
      keys sorted; ``first_record`` indexes each key's first record.
    """
    # Hash-based factorization: O(N), and codes number the keys in order of first appearance.
    key_index, unique_keys = pd.factorize(np.asarray(keys), sort=False)
    seen_before = np.concatenate([[-1], np.maximum.accumulate(key_index)[:-1]])
    first_record = np.flatnonzero(key_index > seen_before)
    ranks = records["rank"].to_numpy()
    counts = np.zeros((len(unique_keys), len(SUBSETS)), dtype=np.int64)
    hits = np.zeros((len(unique_keys), len(SUBSETS), len(ns)), dtype=np.int64)
    for g, mask in enumerate(subset_masks(records).values()):
        counts[:, g] = np.bincount(key_index, weights=mask, minlength=len(unique_keys)).round()
        for j, n in enumerate(ns):
            hits[:, g, j] = np.bincount(key_index, weights=mask & (ranks < n), minlength=len(unique_keys)).round()
    order = np.argsort(unique_keys, kind="stable")
    return unique_keys[order], first_record[order], counts[order], hits[order]


def student_totals(records: pd.DataFrame, ns=DEFAULT_NS) -> pd.DataFrame:
    """One row per student (sorted by ``student_hash``) with per-subset interaction and hit counts.

    Columns: ``student_hash``; ``num_interactions_<subset>`` and ``hits@<n>_<subset>`` (int64 counts) for
    every subset and ``n``; ``grade`` and ``wealth`` codes of the student's first record.
    """
    check_records(records)
    students, first_record, counts, hits = _totals_by_key(
        records["student_hash"].to_numpy(dtype=np.int64), records, ns
    )
    columns = {"student_hash": students}
    for g, subset in enumerate(SUBSETS):
        columns[f"num_interactions_{subset}"] = counts[:, g]
        for j, n in enumerate(ns):
            columns[f"{hits_name(n)}_{subset}"] = hits[:, g, j]
    columns["grade"] = records["grade"].to_numpy()[first_record]
    columns["wealth"] = records["wealth"].to_numpy()[first_record]
    return pd.DataFrame(columns)


def totals_arrays(totals: pd.DataFrame, ns=DEFAULT_NS) -> tuple[np.ndarray, np.ndarray]:
    """``student_totals`` table -> ``counts [S, subsets] int64`` and ``hits [S, subsets, len(ns)] int64``."""
    counts = np.stack([totals[f"num_interactions_{s}"].to_numpy(np.int64) for s in SUBSETS], axis=1)
    hits = np.stack(
        [np.stack([totals[f"{hits_name(n)}_{s}"].to_numpy(np.int64) for n in ns], axis=1) for s in SUBSETS],
        axis=1,
    )
    return counts.reshape(len(totals), len(SUBSETS)), hits.reshape(len(totals), len(SUBSETS), len(ns))


def macro_micro(counts: np.ndarray, hits: np.ndarray, weights: np.ndarray | None = None):
    """Macro and micro hit rates from per-student totals.

    Args:
      counts: ``[S, G]`` interactions of each student in each subset.
      hits: ``[S, G, N]`` hits of each student in each subset for each ``n``.
      weights: ``[S]`` multiplicity of each student (a bootstrap resample); all ones when ``None``.

    Returns:
      ``(macro, micro)``, each ``[G, N]`` float64; NaN for a subset without interactions.
    """
    counts = np.asarray(counts, dtype=np.float64)
    hits = np.asarray(hits, dtype=np.float64)
    weights = np.ones(counts.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    present = counts > 0
    per_student_rate = hits / np.where(present, counts, 1.0)[..., None]  # [S, G, N]
    student_weight = weights[:, None] * present  # [S, G]
    with np.errstate(invalid="ignore", divide="ignore"):
        macro = np.einsum("sg,sgn->gn", student_weight, per_student_rate) / student_weight.sum(0)[:, None]
        micro = np.einsum("s,sgn->gn", weights, hits) / (weights @ counts)[:, None]
    return macro, micro


def breakdown(records: pd.DataFrame, labels: np.ndarray, group_order, ns=DEFAULT_NS) -> dict:
    """Metrics of each group of interactions.

    Args:
      records: the record table.
      labels: ``[num_records]`` group label of each interaction.
      group_order: labels to report, in order; a label without interactions is reported with zero counts
        and NaN rates.
      ns: the ``n`` of hits@n.

    Returns:
      ``{str(label): {subset: {num_interactions, num_students, macro: {hits@n}, micro: {hits@n}}}}``.
    """
    check_records(records)
    group_index, group_labels = pd.factorize(np.asarray(labels), sort=False)
    student_index, students = pd.factorize(records["student_hash"].to_numpy(dtype=np.int64), sort=False)
    num_students = len(students)
    # One aggregation over (group, student) pairs instead of one per group.
    pair_keys = group_index.astype(np.int64) * num_students + student_index
    pairs, _, counts, hits = _totals_by_key(pair_keys, records, ns)
    pair_group = pairs // max(num_students, 1)
    position = {label: i for i, label in enumerate(np.asarray(group_labels).tolist())}
    result = {}
    for label in group_order:
        in_group = pair_group == position.get(label, -1)
        macro, micro = macro_micro(counts[in_group], hits[in_group])
        result[str(label)] = {
            subset: {
                "num_interactions": int(counts[in_group, g].sum()),
                "num_students": int((counts[in_group, g] > 0).sum()),
                "macro": {hits_name(n): float(macro[g, j]) for j, n in enumerate(ns)},
                "micro": {hits_name(n): float(micro[g, j]) for j, n in enumerate(ns)},
            }
            for g, subset in enumerate(SUBSETS)
        }
    return result


def compute_metrics(
    records: pd.DataFrame,
    ns=DEFAULT_NS,
    *,
    num_bootstrap: int = 50,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[dict, pd.DataFrame]:
    """All evaluation numbers of one model.

    Args:
      records: per-interaction record table (see module docstring).
      ns: the ``n`` of hits@n.
      num_bootstrap: bootstrap resamples of students for the intervals (0: no intervals, NaN bounds).
      seed: seed of the bootstrap.
      confidence: coverage of the intervals.

    Returns:
      ``(metrics, per_student)``. ``metrics`` is a JSON-ready dict (NaN where undefined)::

        {"ns", "subsets", "num_bootstrap", "seed", "confidence",
         "counts": {"interactions", "students", "oov_targets"},
         "overall": {subset: {"num_interactions", "num_students",
                              "macro"|"micro": {"hits@n": {"value", "ci_low", "ci_high"}}}},
         "breakdowns": {"history_len"|"grade"|"wealth": {group: {subset: {"num_interactions",
                        "num_students", "macro"|"micro": {"hits@n": value}}}}}}

      ``per_student`` is the ``student_totals`` table.
    """
    check_records(records)
    ns = tuple(int(n) for n in ns)
    totals = student_totals(records, ns)
    counts, hits = totals_arrays(totals, ns)
    macro, micro = macro_micro(counts, hits)

    def both_averages(weights):
        return np.stack(macro_micro(counts, hits, weights))  # [2, G, N]

    low, high = bootstrap.percentile_interval(
        both_averages, len(totals), num_resamples=num_bootstrap, seed=seed, confidence=confidence
    )
    point = np.stack([macro, micro])
    overall = {}
    for g, subset in enumerate(SUBSETS):
        entry = {
            "num_interactions": int(counts[:, g].sum()),
            "num_students": int((counts[:, g] > 0).sum()),
        }
        for a, average in enumerate(AVERAGES):
            entry[average] = {
                hits_name(n): {
                    "value": float(point[a, g, j]),
                    "ci_low": float(low[a, g, j]),
                    "ci_high": float(high[a, g, j]),
                }
                for j, n in enumerate(ns)
            }
        overall[subset] = entry

    grade = records["grade"].to_numpy()
    wealth = records["wealth"].to_numpy()
    breakdowns = {
        "history_len": breakdown(
            records,
            history_bucket_labels(records["history_len"].to_numpy()),
            [label for _, label in HISTORY_BUCKETS],
            ns,
        ),
        "grade": {
            GRADE_NAMES.get(int(code), str(code)): groups
            for code, groups in breakdown(records, grade, sorted(set(grade.tolist())), ns).items()
        },
        "wealth": {
            WEALTH_NAMES.get(int(code), str(code)): groups
            for code, groups in breakdown(records, wealth, sorted(set(wealth.tolist())), ns).items()
        },
    }
    oov_targets = int((records["item_id"] == OOV).sum()) if "item_id" in records.columns else None
    metrics = {
        "ns": list(ns),
        "subsets": list(SUBSETS),
        "num_bootstrap": int(num_bootstrap),
        "seed": int(seed),
        "confidence": float(confidence),
        "counts": {
            "interactions": int(len(records)),
            "students": int(len(totals)),
            "oov_targets": oov_targets,
        },
        "overall": overall,
        "breakdowns": breakdowns,
    }
    return metrics, totals
