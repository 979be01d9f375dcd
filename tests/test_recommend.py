"""Tests of the serving row and recommendations (study.serve.serving_artifact, study.serve.recommend)."""

import json
import os

import numpy as np
import pytest

from study.data.reserved_ids import OOV, PAD, SEP
from study.serve import recommend, serving_artifact
from tests.test_export import make_artifact

ROW_LENGTH = 12


def item(raw):
    """Vocabulary id of the test vocabulary's raw item ``b<n>``."""
    return 3 + int(raw[1:])


@pytest.fixture(scope="module")
def study_recommender(tmp_path_factory):
    _, _, artifact_dir = make_artifact(str(tmp_path_factory.mktemp("study")), "study", top_k=10)
    return serving_artifact.load_artifact(artifact_dir)


@pytest.fixture(scope="module")
def two_stream_recommender(tmp_path_factory):
    _, _, artifact_dir = make_artifact(str(tmp_path_factory.mktemp("two")), "study_two_stream", top_k=8)
    return serving_artifact.load_artifact(artifact_dir)


@pytest.fixture(scope="module")
def individual_recommender(tmp_path_factory):
    _, _, artifact_dir = make_artifact(str(tmp_path_factory.mktemp("ind")), "individual", top_k=8)
    return serving_artifact.load_artifact(artifact_dir)


def test_serving_row_layout_by_hand(study_recommender):
    row, query = study_recommender.build_row(
        [("b1", 1000), ("b2", 1100), ("never-seen", 1200)],
        classmates={"c1": [("b5", 1050), ("b6", 1300)]},  # b6 is after the query time: left out
        grade=3,
    )
    # c1's segment, SEP, the student's three events, then the query at 1201 (placeholder OOV).
    pad = [PAD] * 6
    assert row["item_ids"].tolist() == [item("b5"), SEP, item("b1"), item("b2"), OOV, OOV] + pad
    assert row["timestamps"].tolist() == [50, 0, 0, 100, 200, 201] + [0] * 6  # seconds since 1000
    assert row["student_index"].tolist() == [0, -1, 1, 1, 1, 1] + [-1] * 6
    assert row["positions"].tolist() == [0, 0, 0, 1, 2, 3] + [0] * 6
    assert int(row["grade"]) == 3 and query == 5
    assert all(values.dtype == np.int32 for values in row.values())


def test_explicit_query_time_keeps_classmate_events_strictly_before_it(study_recommender):
    row, query = study_recommender.build_row(
        [("b1", 1000)], classmates={"c1": [("b5", 1050), ("b6", 1300), ("b7", 1400)]}, query_time=1400
    )
    assert row["item_ids"].tolist()[:6] == [item("b5"), item("b6"), SEP, item("b1"), OOV, PAD]
    assert row["timestamps"].tolist()[:5] == [50, 300, 0, 0, 400]
    assert query == 4


@pytest.mark.parametrize("name", ["study_recommender", "two_stream_recommender"])
def test_placeholder_id_does_not_change_the_recommendation(name, request):
    recommender = request.getfixturevalue(name)
    history = [("b1", 1000), ("b2", 1100), ("b3", 1200)]
    classmates = {"c1": [("b5", 1050), ("b9", 1150)], "c2": [("b7", 1190)]}
    rows = []
    for placeholder in (OOV, item("b4"), item("b19")):
        row, query = recommender.build_row(history, classmates, grade=2, placeholder_id=placeholder)
        rows.append(row)
    assert rows[0]["item_ids"][query] != rows[1]["item_ids"][query]
    ids, scores = recommender.score_rows(rows)
    np.testing.assert_array_equal(ids[0, query], ids[1, query])
    np.testing.assert_array_equal(ids[0, query], ids[2, query])
    np.testing.assert_allclose(scores[0, query], scores[1, query], atol=1e-6)
    np.testing.assert_allclose(scores[0, query], scores[2, query], atol=1e-6)
    # The rows differ only at the query position, so any change would have shown there.
    differing = np.flatnonzero(rows[0]["item_ids"] != rows[1]["item_ids"])
    assert differing.tolist() == [query]


def test_unknown_items_map_to_oov(study_recommender):
    row_a, query = study_recommender.build_row([("b1", 10), ("mystery", 20)], {"c": [("???", 5)]})
    row_b, _ = study_recommender.build_row([("b1", 10), (12345, 20)], {"c": [("other", 5)]})
    assert row_a["item_ids"][0] == OOV and row_a["item_ids"][query - 1] == OOV
    assert all(np.array_equal(row_a[name], row_b[name]) for name in row_a)
    assert study_recommender.recommend([("b1", 10), ("mystery", 20)], {"c": [("???", 5)]}, k=5) == \
        study_recommender.recommend([("b1", 10), (12345, 20)], {"c": [("other", 5)]}, k=5)


def test_empty_history_is_allowed(study_recommender, individual_recommender):
    row, query = study_recommender.build_row([], {"c1": [("b5", 100), ("b6", 200)]})
    # Only classmates and the query, which comes one second after the last classmate event.
    assert row["item_ids"].tolist()[:5] == [item("b5"), item("b6"), SEP, OOV, PAD]
    assert row["timestamps"].tolist()[:4] == [0, 100, 0, 101]
    assert query == 3 and row["positions"][query] == 0
    for recommender in (study_recommender, individual_recommender):
        ranked = recommender.recommend([], k=5)
        assert len(ranked) == 5 and len({raw for raw, _ in ranked}) == 5
        assert all(raw.startswith("b") and score < 0 for raw, score in ranked)


def test_long_history_keeps_the_most_recent_events(study_recommender):
    history = [(f"b{i}", 100 * i) for i in range(20)]
    row, query = study_recommender.build_row(history, {"c1": [("b1", 5)]})
    # 11 most recent events + the query fill the row; no room for classmates.
    assert row["item_ids"].tolist() == [item(f"b{i}") for i in range(9, 20)] + [OOV]
    assert row["positions"].tolist() == list(range(12)) and query == 11
    assert study_recommender.recommend(history, k=5) == study_recommender.recommend(history[-11:], k=5)


def test_classmates_oldest_events_are_dropped_first(study_recommender):
    history = [(f"b{i}", 1000 + i) for i in range(7)]  # 7 events + query: 4 positions left
    classmates = {
        "c1": [("b10", 10), ("b11", 20), ("b12", 30)],
        "c2": [("b13", 25)],
        "c3": [("b14", 5000)],  # after the query time: never in the row
    }
    row, query = study_recommender.build_row(history, classmates)
    # Most recent first: b12 (c1, +SEP), b13 (c2, +SEP) fill the 4 positions; b11, b10 are dropped.
    # Segments are ordered by their first kept event: c2 (25) before c1 (30).
    expected = [item("b13"), SEP, item("b12"), SEP] + [item(f"b{i}") for i in range(7)] + [OOV]
    assert row["item_ids"].tolist() == expected
    assert row["student_index"].tolist() == [0, -1, 1, -1] + [2] * 8
    assert query == 11


def test_individual_artifact_ignores_classmates(individual_recommender):
    history = [("b1", 100), ("b2", 200)]
    row, query = individual_recommender.build_row(history, {"c1": [("b5", 150)]})
    assert row["item_ids"].tolist()[:4] == [item("b1"), item("b2"), OOV, PAD] and query == 2
    assert individual_recommender.recommend(history, {"c1": [("b5", 150)]}, k=5) == \
        individual_recommender.recommend(history, k=5)


def test_exclude_removes_items_and_keeps_the_order(study_recommender):
    history = [("b1", 100), ("b2", 200)]
    full = study_recommender.recommend(history, k=6)
    excluded = [full[0][0], full[2][0], "not-in-vocab"]
    filtered = study_recommender.recommend(history, k=4, exclude=excluded)
    assert filtered == [full[1]] + full[3:6]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda r: r.recommend("b1,b2"), "history must be a list"),
        (lambda r: r.recommend([("b1",)]), r"history\[0\] must be a \(raw_item_id, timestamp\) pair"),
        (lambda r: r.recommend([("b1", "2020-01-01")]), r"history\[0\]: timestamp must be an integer"),
        (lambda r: r.recommend([(None, 10)]), r"history\[0\]: raw item id must be a string or an integer"),
        (lambda r: r.recommend([("b1", 10)], classmates=[("b2", 5)]), "classmates must be a dict"),
        (lambda r: r.recommend([("b1", 10)], classmates={"c": [("b2", 5.5)]}), r"classmates\['c'\]\[0\]"),
        (lambda r: r.recommend([("b1", 10)], grade=40), "grade 40 is outside 0..12"),
        (lambda r: r.recommend([("b1", 10)], k=0), "k must be an integer in 1..10"),
        (lambda r: r.recommend([("b1", 10)], k=11), "k must be an integer in 1..10"),
        (lambda r: r.recommend([("b1", 10)], query_time=5), "query_time 5 is before the history's last event"),
        (lambda r: r.recommend_batch([{"histry": []}]), "request 0 must be a dict with at least a 'history'"),
        (lambda r: r.recommend_batch([{"history": [], "grde": 1}]), r"request 0 has unknown fields \['grde'\]"),
    ],
)
def test_malformed_input_is_a_clear_value_error(study_recommender, call, message):
    with pytest.raises(ValueError, match=message):
        call(study_recommender)


def test_recommend_from_file(study_recommender, tmp_path):
    requests = [
        {"id": "alice", "history": [["b1", 100], ["b2", 200]], "classmates": {"bob": [["b3", 150]]}, "grade": 4},
        {"history": [], "k": 2, "exclude": ["b0"]},
    ]
    requests_path, output_path = tmp_path / "requests.json", tmp_path / "responses.json"
    requests_path.write_text(json.dumps({"requests": requests}))
    returned = recommend.recommend_from_file(study_recommender.path, str(requests_path), 3, str(output_path),
                                             batch_size=1)
    written = json.loads(output_path.read_text())
    assert returned == {"artifact": study_recommender.path, "k": 3, "num_responses": 2, "output": str(output_path)}
    assert (written["artifact"], written["k"]) == (study_recommender.path, 3)
    assert [response["id"] for response in written["responses"]] == ["alice", 1]
    alice = study_recommender.recommend([("b1", 100), ("b2", 200)], {"bob": [("b3", 150)]}, grade=4, k=3)
    assert [(r["item_id"], r["score"]) for r in written["responses"][0]["recommendations"]] == \
        [(raw, pytest.approx(score, abs=1e-6)) for raw, score in alice]
    second = written["responses"][1]["recommendations"]
    assert len(second) == 2 and "b0" not in [r["item_id"] for r in second]


def test_recommend_from_file_names_the_file_and_request(study_recommender, tmp_path):
    requests_path = tmp_path / "requests.json"
    requests_path.write_text(json.dumps([{"history": []}, {"history": [["b1", "yesterday"]]}], indent=1))
    output_path = tmp_path / "responses.json"
    with pytest.raises(ValueError, match=r"requests.json: request 1 \(line 5\): history\[0\]: timestamp"):
        recommend.recommend_from_file(study_recommender.path, str(requests_path), 3, str(output_path))
    assert sorted(os.listdir(tmp_path)) == ["requests.json"]  # no partial output, no temporary file left
    requests_path.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON: line 1"):
        recommend.recommend_from_file(study_recommender.path, str(requests_path), 3)


@pytest.mark.parametrize("text, message", [
    ('[{"history": []}, {"history": []}', r"not valid JSON: line 1: expected ',' or '\]'"),
    ('[{"history": []}] [', "extra data after the requests"),
    ('{"request": []}', 'no "requests" list'),
    ('"history"', r"expected a JSON list"),
    ('[{"history": []},\n {"history": [["b1", 1]], "k": 0}]', r"request 1 \(line 2\): k must be an integer"),
])
def test_malformed_requests_files_are_errors_naming_file_and_line(study_recommender, tmp_path, text, message):
    requests_path, output_path = tmp_path / "requests.json", tmp_path / "responses.json"
    requests_path.write_text(text)
    with pytest.raises(ValueError, match=message):
        recommend.recommend_from_file(study_recommender.path, str(requests_path), 3, str(output_path))
    assert not output_path.exists()


def test_streamed_reader_matches_json_load_across_chunks(monkeypatch, tmp_path):
    """Requests that straddle the reader's chunks (a 7-character chunk here) come back as json.load reads them."""
    monkeypatch.setattr(recommend, "CHUNK_CHARS", 7)
    requests = [{"id": n, "history": [[f"b{n}", 1000 + n]] * (n % 3), "grade": n % 12, "k": 1 + n % 5,
                 "exclude": ["b1"], "query_time": 123456789 + n} for n in range(40)]
    path = tmp_path / "requests.json"
    for payload in (requests, {"version": 1, "requests": requests, "note": [1, {"x": "]"}]}):
        path.write_text(json.dumps(payload, indent=2))
        read = list(recommend.iter_requests(str(path)))
        assert [request for _, request in read] == requests
        lines = path.read_text().splitlines()
        assert all(lines[line - 1].strip().startswith("{") for line, _ in read)


def test_batches_give_the_same_answers_as_one_call(study_recommender):
    requests = [{"history": [[f"b{n % 20}", 100 * n], [f"b{(3 * n) % 20}", 100 * n + 50]],
                 "classmates": {"c": [[f"b{(7 * n) % 20}", 100 * n + 10]]}, "k": 1 + n % 4} for n in range(11)]
    expected = [study_recommender.recommend_batch([request], k=3)[0] for request in requests]
    for batch_size in (1, 4, 11, 64):
        streamed = list(study_recommender.recommend_stream(iter(requests), k=3, batch_size=batch_size))
        assert [[item for item, _ in ranked] for ranked in streamed] == [[i for i, _ in r] for r in expected]
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        study_recommender.recommend_batch(requests, batch_size=0)
