"""Evaluation reports on disk: metrics.json, per_student.csv, summary.md, plots, model comparisons.

Files of one model's hits evaluation (``study.eval.evaluators.HitsEvaluator``, written by
``study.eval.report_writer``)::

    metrics.json              every number of ``study.eval.metrics.compute_metrics`` (NaN written as null)
    per_student.csv           one row per student: student_hash, grade, wealth, interaction and hit counts
    summary.md                one markdown table: rows subset x macro/micro, columns hits@n with 95% intervals
    hits_by_history.png       hits@n (macro, all interactions) against history-length bucket

Files of a comparison (``compare_models``)::

    comparison.md             one markdown table: rows model x subset x average, columns hits@n with intervals
    comparison.json           ``{model: {"ns", "counts", "overall"}}`` taken from each model's metrics
    comparison_hits_by_history.png   one panel per n, one line per model

Plots use the Agg canvas directly, so no display and no global matplotlib backend are needed.
"""

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from study.eval.metrics import AVERAGES, HISTORY_BUCKETS, SUBSETS, hits_name

PLOT_NS = (1, 10)


def _json_ready(value):
    """Replaces NaN/inf floats by None (JSON has no NaN) and NumPy scalars by Python ones."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_text(path: Path, text: str) -> None:
    """Writes through a temporary file and a rename, so a reader never sees half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_metrics_json(metrics: dict, path) -> Path:
    """Writes ``metrics`` as indented JSON (NaN -> null). Returns the path."""
    path = Path(path)
    write_text(path, json.dumps(_json_ready(metrics), indent=2, allow_nan=False) + "\n")
    return path


def load_metrics(path) -> dict:
    """Reads a ``metrics.json`` written by ``write_metrics_json`` (null values stay ``None``)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no metrics file at {path}; run the evaluation first") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-run the evaluation to rewrite it") from None


def write_table_csv(table: pd.DataFrame, path) -> Path:
    """Writes ``table`` as CSV without its index (e.g. the ``student_totals`` table, one row per student),
    through a temporary file and a rename. Returns the path."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    table.to_csv(temporary, index=False)
    os.replace(temporary, path)
    return path


def _number(value) -> float:
    return math.nan if value is None else float(value)


def format_interval(entry: dict) -> str:
    """``{"value", "ci_low", "ci_high"}`` -> ``"0.1234 [0.1100, 0.1350]"``; ``"n/a"`` when undefined."""
    value, low, high = (_number(entry.get(key)) for key in ("value", "ci_low", "ci_high"))
    if math.isnan(value):
        return "n/a"
    if math.isnan(low) or math.isnan(high):
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def summary_markdown(metrics: dict, model_name: str) -> str:
    """A title, one line of counts and one table (rows subset x average, columns hits@n with intervals)."""
    ns = metrics["ns"]
    counts = metrics["counts"]
    confidence = round(100 * metrics["confidence"])
    header = ["subset", "average", "students", "interactions"] + [hits_name(n) for n in ns]
    rows = []
    for subset in SUBSETS:
        entry = metrics["overall"][subset]
        for average in AVERAGES:
            rows.append(
                [subset, average, str(entry["num_students"]), str(entry["num_interactions"])]
                + [format_interval(entry[average][hits_name(n)]) for n in ns]
            )
    oov = counts.get("oov_targets")
    oov_text = f"; {oov} OOV targets, counted as misses" if oov is not None else ""
    intro = (
        f"# Next-item evaluation: {model_name}\n\n"
        f"{counts['interactions']} interactions of {counts['students']} students{oov_text}. "
        f"Intervals: {confidence}% percentile bootstrap over students ({metrics['num_bootstrap']} resamples, "
        f"seed {metrics['seed']}).\n\n"
    )
    return intro + _markdown_table(header, rows)


def plot_hits_by_history(
    metrics_by_model: dict,
    path,
    *,
    ns=PLOT_NS,
    subset: str = "all",
    average: str = "macro",
) -> Path:
    """Writes a PNG: one panel per ``n``, hits@n against history-length bucket, one line per model.

    Args:
      metrics_by_model: ``{model name: metrics}`` (as returned by ``compute_metrics`` or ``load_metrics``).
      path: PNG file to write.
      ns: the ``n`` to plot; each must be among every model's ``metrics["ns"]``.
      subset: which subset's numbers to plot.
      average: ``"macro"`` or ``"micro"``.
    """
    path = Path(path)
    for name, metrics in metrics_by_model.items():
        absent = [n for n in ns if n not in metrics["ns"]]
        if absent:
            raise ValueError(f"model {name!r} has no hits@n for n={absent}; its metrics have ns={metrics['ns']}")
    labels = [label for _, label in HISTORY_BUCKETS]
    figure = Figure(figsize=(4.5 * len(ns), 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(ns), squeeze=False)[0]
    for axis, n in zip(axes, ns):
        for name, metrics in metrics_by_model.items():
            by_bucket = metrics["breakdowns"]["history_len"]
            values = [
                _number(by_bucket.get(label, {}).get(subset, {}).get(average, {}).get(hits_name(n)))
                for label in labels
            ]
            axis.plot(range(len(labels)), values, marker="o", label=name)
        axis.set_xticks(range(len(labels)), labels)
        axis.set_xlabel("student history length (interactions before)")
        axis.set_ylabel(f"{hits_name(n)} ({average}, {subset})")
        axis.set_ylim(bottom=0.0)
        axis.grid(alpha=0.3)
        axis.legend()
    temporary = path.with_name(path.name + ".tmp.png")
    figure.savefig(temporary, dpi=110)
    os.replace(temporary, path)
    return path


def compare_models(metrics_by_model: dict, out_dir, *, ns=None) -> dict:
    """Writes a comparison of several models' metrics into ``out_dir``.

    Args:
      metrics_by_model: ``{model name: metrics}`` (``compute_metrics`` output or ``load_metrics`` of a
        metrics.json), in the order the table should list them.
      out_dir: folder to write into (created).
      ns: the ``n`` to tabulate; defaults to those every model has.

    Returns:
      ``{"table", "json", "plot"}`` -> path of comparison.md, comparison.json and the PNG.
    """
    if not metrics_by_model:
        raise ValueError("compare_models needs at least one model's metrics")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    common_ns = [n for n in next(iter(metrics_by_model.values()))["ns"]
                 if all(n in m["ns"] for m in metrics_by_model.values())]
    ns = list(ns) if ns is not None else common_ns
    missing = [n for n in ns if n not in common_ns]
    if missing:
        raise ValueError(f"not every model has hits@n for n={missing}; common n: {common_ns}")
    header = ["model", "subset", "average", "students", "interactions"] + [hits_name(n) for n in ns]
    rows = []
    for subset in SUBSETS:
        for average in AVERAGES:
            for name, metrics in metrics_by_model.items():
                entry = metrics["overall"][subset]
                rows.append(
                    [name, subset, average, str(entry["num_students"]), str(entry["num_interactions"])]
                    + [format_interval(entry[average][hits_name(n)]) for n in ns]
                )
    table_path = out_dir / "comparison.md"
    write_text(table_path, "# Next-item evaluation: model comparison\n\n" + _markdown_table(header, rows))
    json_path = write_metrics_json(
        {name: {"ns": m["ns"], "counts": m["counts"], "overall": m["overall"]} for name, m in metrics_by_model.items()},
        out_dir / "comparison.json",
    )
    plot_ns = tuple(n for n in PLOT_NS if n in ns) or tuple(ns[:1])
    plot_path = plot_hits_by_history(metrics_by_model, out_dir / "comparison_hits_by_history.png", ns=plot_ns)
    return {"table": table_path, "json": json_path, "plot": plot_path}
