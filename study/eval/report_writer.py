"""The one writer of evaluation reports: ``write_report(report, out_dir)``.

A :class:`study.train.task.Report` becomes, in ``out_dir``::

    metrics.json      report.metrics (NaN written as null)
    summary.md        report.markdown (when not empty)
    <table>.csv       one per report.tables entry
    <figure>.png      one per report.figures entry

``write_reports(reports, out_dir)`` writes several evaluators' reports of one split into
``out_dir/<evaluator>/`` and their scalars into ``out_dir/scalars.json``.
"""

from pathlib import Path

from study.eval import reports as report_files
from study.train.task import Report


def write_report(report: Report, out_dir) -> dict:
    """Writes ``report`` into ``out_dir`` (created); returns ``{file kind or name: path}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": report_files.write_metrics_json(report.metrics, out_dir / "metrics.json")}
    if report.markdown:
        paths["summary"] = out_dir / "summary.md"
        report_files.write_text(paths["summary"], report.markdown)
    for name, table in report.tables.items():
        paths[name] = out_dir / f"{name}.csv"
        report_files.write_table_csv(table, paths[name])
    for name, draw in report.figures.items():
        paths[name] = Path(draw(out_dir / f"{name}.png"))
    return paths


def write_reports(reports: dict, out_dir) -> dict:
    """Writes every ``{evaluator name: Report}`` into ``out_dir/<name>/`` and all scalars into
    ``out_dir/scalars.json``; returns ``{name: {file: path}}``."""
    out_dir = Path(out_dir)
    written = {name: write_report(report, out_dir / name) for name, report in reports.items()}
    report_files.write_metrics_json({name: report.scalars for name, report in reports.items()},
                                    out_dir / "scalars.json")
    return written
