"""Report files: metrics.json, per_student.csv, summary.md, plots, and the model comparison."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from study.eval.evaluate import EvalResult
from study.eval.evaluators import hits_report
from study.eval.report_writer import write_report


def write_reports(result, out_dir, model_name):
    return write_report(hits_report(result, model_name), out_dir)
from study.eval.metrics import compute_metrics
from study.eval.reports import compare_models, load_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CELL = re.compile(r"^(\d\.\d{4}) \[(\d\.\d{4}), (\d\.\d{4})\]$")


def records_of(num_students, hit_rate, seed):
    rng = np.random.default_rng(seed)
    students = np.repeat(np.arange(num_students, dtype=np.int64) * 7919 + 1, 6)
    ranks = np.where(rng.random(len(students)) < hit_rate, rng.integers(0, 3, len(students)), 30)
    return pd.DataFrame(
        {
            "student_hash": students,
            "item_id": rng.integers(1, 40, len(students)),
            "rank": ranks.astype(np.int32),
            "is_novel": rng.integers(0, 2, len(students)),
            "is_continuation": rng.integers(0, 2, len(students)),
            "history_len": rng.integers(0, 70, len(students)),
            "grade": np.repeat(rng.integers(0, 13, num_students), 6),
            "wealth": np.repeat(rng.integers(0, 6, num_students), 6),
        }
    )


def result_of(num_students=25, hit_rate=0.4, seed=0):
    records = records_of(num_students, hit_rate, seed)
    metrics, per_student = compute_metrics(records, ns=(1, 3, 5, 10, 20), num_bootstrap=20, seed=0)
    return EvalResult(records=records, per_student=per_student, metrics=metrics)


def parse_markdown_table(text):
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert set(lines[1].replace("|", "")) == {"-"}
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    assert all(len(row) == len(header) for row in rows)
    return header, rows


def test_model_reports_are_written_and_consistent(tmp_path):
    result = result_of()
    paths = write_reports(result, tmp_path / "eval", "study")
    for name in ("metrics", "per_student", "summary", "hits_by_history"):
        assert paths[name].exists(), name
    assert not list((tmp_path / "eval").glob("*.tmp*"))
    assert paths["hits_by_history"].read_bytes()[:8] == PNG_MAGIC

    metrics = json.loads(paths["metrics"].read_text())  # strict JSON: NaN would have failed to load
    assert metrics["counts"]["students"] == 25
    per_student = pd.read_csv(paths["per_student"])
    assert len(per_student) == 25
    assert {"student_hash", "grade", "wealth", "num_interactions_novel", "hits@10_non_continuation"} <= set(
        per_student.columns
    )
    assert per_student["num_interactions_all"].sum() == len(result.records)

    header, rows = parse_markdown_table(paths["summary"].read_text())
    assert header == ["subset", "average", "students", "interactions"] + [
        f"hits@{n}" for n in (1, 3, 5, 10, 20)
    ]
    assert [(row[0], row[1]) for row in rows] == [
        (s, a) for s in ("all", "non_continuation", "novel") for a in ("macro", "micro")
    ]
    for row in rows:
        for n, cell in zip((1, 3, 5, 10, 20), row[4:]):
            point, low, high = (float(x) for x in CELL.match(cell).groups())
            entry = metrics["overall"][row[0]][row[1]][f"hits@{n}"]
            assert point == pytest.approx(entry["value"], abs=5e-5)
            assert low <= point <= high
        assert int(row[3]) == metrics["overall"][row[0]]["num_interactions"]


def test_undefined_numbers_become_null_and_n_a(tmp_path):
    records = records_of(3, 0.5, seed=1)
    records["is_novel"] = 0  # the novel subset is empty
    metrics, per_student = compute_metrics(records, ns=(1, 10), num_bootstrap=5)
    paths = write_reports(EvalResult(records, per_student, metrics), tmp_path, "individual")
    stored = load_metrics(paths["metrics"])
    assert stored["overall"]["novel"]["macro"]["hits@1"]["value"] is None
    _, rows = parse_markdown_table(paths["summary"].read_text())
    assert [row[4] for row in rows if row[0] == "novel"] == ["n/a", "n/a"]


def test_compare_models_writes_table_json_and_plot(tmp_path):
    first = result_of(seed=1, hit_rate=0.6)
    second = result_of(seed=2, hit_rate=0.2)
    write_reports(second, tmp_path / "individual", "individual")
    metrics_by_model = {
        "study": first.metrics,
        "individual": load_metrics(tmp_path / "individual" / "metrics.json"),  # read back, with nulls allowed
    }
    paths = compare_models(metrics_by_model, tmp_path / "compare", ns=(1, 10))
    header, rows = parse_markdown_table(paths["table"].read_text())
    assert header == ["model", "subset", "average", "students", "interactions", "hits@1", "hits@10"]
    assert len(rows) == 2 * 3 * 2
    study_all_macro = next(r for r in rows if r[:3] == ["study", "all", "macro"])
    assert float(study_all_macro[5].split()[0]) == pytest.approx(
        first.metrics["overall"]["all"]["macro"]["hits@1"]["value"], abs=5e-5
    )
    stored = json.loads(paths["json"].read_text())
    assert list(stored) == ["study", "individual"]
    assert math.isclose(
        stored["individual"]["overall"]["all"]["micro"]["hits@10"]["value"],
        second.metrics["overall"]["all"]["micro"]["hits@10"]["value"],
    )
    assert paths["plot"].read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="n=\\[50\\]"):
        compare_models(metrics_by_model, tmp_path / "bad", ns=(50,))
