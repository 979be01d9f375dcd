"""The model suite's configuration handling and the history-gap table."""

import pytest

from study.commands import suite as model_suite


def test_overrides_are_parsed_to_numbers_booleans_and_strings():
    parsed = model_suite.parse_overrides(["steps=10", "optimizer.peak_lr=1e-3", "model.use_grade=true",
                                          "model.attention=study_two_stream"])
    assert parsed == {"steps": 10, "optimizer.peak_lr": 0.001, "model.use_grade": True,
                      "model.attention": "study_two_stream"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        model_suite.parse_overrides(["steps"])


def test_model_config_applies_fixed_settings_and_reports_inapplicable_overrides():
    config, applied, skipped = model_suite.model_config(
        "study_two_stream", "smoke", "/data", {"steps": 7, "model.emb_dim": 48, "model.context_size": 3,
                                               "optimizer.peak_lr": 1})
    assert config.model.attention == "study_two_stream" and config.dataset == "study"
    assert config.data_dir == "/data" and config.name == "study_two_stream"
    assert (config.steps, config.model.emb_dim) == (7, 48)
    assert config.optimizer.peak_lr == 1.0 and isinstance(config.optimizer.peak_lr, float)
    assert applied == {"steps": 7, "model.emb_dim": 48, "optimizer.peak_lr": 1}
    assert skipped == ["model.context_size"]
    individual, _, _ = model_suite.model_config("individual", "smoke", "/data", {})
    assert individual.model.attention == "individual" and individual.dataset == "individual"
    with pytest.raises(ValueError, match="unknown model"):
        model_suite.model_config("nope", "smoke", "/data", {})


def _metrics(values_by_bucket):
    return {"breakdowns": {"history_len": {
        bucket: {"all": {"num_interactions": 5, "macro": {"hits@1": v1, "hits@10": v10}}}
        for bucket, (v1, v10) in values_by_bucket.items()}}}


def test_history_gaps_subtract_the_reference_bucket_by_bucket():
    metrics = {"individual": _metrics({"0": (0.1, 0.3), "1-2": (0.2, 0.5)}),
               "study": _metrics({"0": (0.15, 0.3), "1-2": (0.1, 0.6)})}
    gaps = model_suite.history_gaps(metrics, "individual")
    assert set(gaps) == {"study"}
    assert gaps["study"]["all"]["0"] == pytest.approx({"hits@1": 0.05, "hits@10": 0.0})
    assert gaps["study"]["all"]["1-2"] == pytest.approx({"hits@1": -0.1, "hits@10": 0.1})


def _per_student(rows):
    """rows: (student_hash, all_count, hits@1_all, novel_count, hits@1_novel)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=["student_hash", "num_interactions_all", "hits@1_all",
                                        "num_interactions_novel", "hits@1_novel"])
    frame["num_interactions_non_continuation"] = frame["num_interactions_all"]
    frame["hits@1_non_continuation"] = frame["hits@1_all"]
    return frame


def test_paired_differences_are_macro_over_students_and_exact_when_models_agree():
    model = _per_student([(1, 4, 2, 2, 1), (2, 2, 2, 0, 0), (3, 5, 0, 5, 0)])
    reference = _per_student([(3, 5, 1, 5, 1), (1, 4, 1, 2, 0), (2, 2, 1, 0, 0)])
    diffs = model_suite.paired_macro_differences(model, reference, num_bootstrap=100)
    # all: per-student rate differences 1/4, 1/2, -1/5 -> mean (0.25 + 0.5 - 0.2) / 3
    assert diffs["all"]["hits@1"]["value"] == pytest.approx((0.25 + 0.5 - 0.2) / 3)
    # novel: student 2 has no novel interaction; differences 1/2 and -1/5 over two students
    assert diffs["novel"]["hits@1"]["value"] == pytest.approx((0.5 - 0.2) / 2)
    low, high = diffs["all"]["hits@1"]["ci_low"], diffs["all"]["hits@1"]["ci_high"]
    assert -0.2 - 1e-12 <= low <= diffs["all"]["hits@1"]["value"] <= high <= 0.5 + 1e-12
    same = model_suite.paired_macro_differences(model, model.copy(), num_bootstrap=20)
    assert same["all"]["hits@1"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    with pytest.raises(ValueError, match="different students"):
        model_suite.paired_macro_differences(model, reference.iloc[:2])
