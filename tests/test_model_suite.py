"""The model suite's configuration handling and the history-gap table."""

import pytest

from study.eval import model_suite


def test_overrides_are_parsed_to_numbers_booleans_and_strings():
    parsed = model_suite.parse_overrides(["steps=10", "optimizer.peak_lr=1e-3", "model.use_grade=true",
                                          "model.attention=study_two_stream"])
    assert parsed == {"steps": 10, "optimizer.peak_lr": 0.001, "model.use_grade": True,
                      "model.attention": "study_two_stream"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        model_suite.parse_overrides(["steps"])


def test_model_config_applies_fixed_settings_and_reports_inapplicable_overrides():
    config, applied, skipped = model_suite.model_config(
        "study_two_stream", "smoke", "/data", {"steps": 7, "model.emb_dim": 48, "knn.context_size": 3,
                                               "optimizer.peak_lr": 1})
    assert config.model.attention == "study_two_stream" and config.dataset == "study"
    assert config.data_dir == "/data" and config.name == "study_two_stream"
    assert (config.steps, config.model.emb_dim) == (7, 48)
    assert config.optimizer.peak_lr == 1.0 and isinstance(config.optimizer.peak_lr, float)
    assert applied == {"steps": 7, "model.emb_dim": 48, "optimizer.peak_lr": 1}
    assert skipped == ["knn.context_size"]
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
