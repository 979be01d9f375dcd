"""DIGINETICA loader: SR-GNN's filtering, date split, item numbering and augmentation on a hand-made file;
bad input; rows and the processed dataset; a hand-written file in the sample's format (always) and the shared
sample (when ../shared/data has it) against an independent pandas count."""

import datetime
import json
import os

import numpy as np
import pytest

from data_pipeline import diginetica
from study.data import input_pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "..", "shared", "data", "sessions_diginetica_sample", "sample_train-item-views.csv")
FIXTURE = os.path.join(REPO, "tests", "fixtures", "diginetica_item_views.csv")  # hand-written, same format
A, B, C, D, E = "100", "200", "300", "400", "500"

# (session, item, timeframe ms, date). Counts over sessions of >= 2 clicks: A 6, B 5, C 5, E 5, D 4 (rare).
VIEWS = [
    (1, A, 0, "2016-05-01"), (1, B, 2000, "2016-05-01"), (1, C, 1000, "2016-05-01"),  # -> A C B
    (2, A, 0, "2016-05-02"),                                                           # one click: dropped
    (3, D, 0, "2016-05-03"), (3, A, 10, "2016-05-03"), (3, D, 20, "2016-05-03"), (3, B, 30, "2016-05-03"),
    (4, D, 0, "2016-05-04"), (4, D, 5, "2016-05-04"),                                  # only rare D: dropped
    (5, C, 0, "2016-05-13"), (5, C, 1, "2016-05-13"), (5, A, 2, "2016-05-13"),        # last training day
    (9, A, 0, "2016-05-06"), (9, B, 1, "2016-05-06"), (9, A, 2, "2016-05-06"),        # earlier than 5
    (6, E, 0, "2016-05-14"), (6, A, 1, "2016-05-14"), (6, E, 2, "2016-05-14"),        # test; E unseen -> 1 click
    (7, B, 0, "2016-05-20"), (7, E, 1, "2016-05-20"), (7, C, 2, "2016-05-20"), (7, B, 3, "2016-05-20"),
    (8, E, 0, "2016-05-15"), (8, E, 1, "2016-05-15"), (8, C, 5, "2016-05-15"),        # test -> 1 click
]
BAD_LINES = ["x;NA;100;0;2016-05-01", "10;NA;100;abc;2016-05-01", "11;NA;100;0;2016-13-01", "12;NA;100", ""]


def write_views(path, views=VIEWS, bad_lines=(), header="sessionId;userId;itemId;timeframe;eventdate"):
    lines = [header] + [f"{s};NA;{i};{t};{d}" for s, i, t, d in views] + list(bad_lines)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_filtering_split_numbering_and_augmentation(tmp_path):
    splits, report = diginetica.load_splits(write_views(tmp_path / "views.csv"))
    assert report.views == len(VIEWS) and not report.skipped
    # Items numbered in order of first appearance in date-ordered training sessions: A=3, C=4, B=5.
    assert splits.vocab.items == (A, C, B) and splits.vocab.vocab_size == 6
    assert splits.vocab.counts == (5, 3, 3)
    assert [(s.session_id, s.items) for s in splits.train] == [
        (1, (3, 4, 5)), (3, (3, 5)), (9, (3, 5, 3)), (5, (4, 4, 3))]
    assert [(s.session_id, s.items) for s in splits.test] == [(7, (5, 4, 5))]
    assert splits.test_start == datetime.date(2016, 5, 14)
    midnight = 1462060800  # 2016-05-01T00:00:00Z
    assert splits.train[0].timestamps == (midnight, midnight + 1, midnight + 2)
    expected_stats = {
        "views": 26, "sessions": 9, "sessions_dropped_length_1": 1, "items_dropped_rare": 1,
        "sessions_dropped_rare_items": 1, "test_clicks_dropped_unseen_item": 5,
        "test_sessions_dropped_unseen_items": 2, "train_sessions": 4, "test_sessions": 1, "items": 3,
        "train_cases": 7, "test_cases": 2,
    }
    assert {k: splits.stats[k] for k in expected_stats} == expected_stats
    prefixes, targets = diginetica.augment(splits.train)
    assert list(zip(prefixes, targets)) == [
        ((3,), 4), ((3, 4), 5), ((3,), 5), ((3,), 5), ((3, 5), 3), ((4,), 4), ((4, 4), 3)]


def test_bad_lines_are_counted_never_silent(tmp_path):
    splits, report = diginetica.load_splits(write_views(tmp_path / "views.csv", bad_lines=BAD_LINES))
    assert report.skipped == {"bad_id": 1, "bad_timeframe": 1, "bad_eventdate": 1, "wrong_field_count": 2}
    first_bad = len(VIEWS) + 2  # header is line 1
    assert report.skipped_lines["bad_id"] == [first_bad]
    assert report.skipped_lines["wrong_field_count"] == [first_bad + 3, first_bad + 4]
    assert report.lines == report.views + sum(report.skipped.values())
    assert splits.stats["lines_skipped"] == report.skipped
    assert splits.stats["train_sessions"] == 4  # the good lines give the same result


def test_unreadable_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        diginetica.read_item_views(str(tmp_path / "nowhere.csv"))
    bad_header = write_views(tmp_path / "header.csv", header="session;userId;itemId;timeframe;eventdate")
    with pytest.raises(ValueError, match=r"header.csv.*lacks column\(s\) \['session_id'\]"):
        diginetica.read_item_views(bad_header)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        diginetica.read_item_views(str(empty))
    # The sample's spelling (session_id, item_id) is accepted.
    views, _ = diginetica.read_item_views(write_views(
        tmp_path / "alias.csv", header="session_id;user_id;item_id;timeframe;eventdate"))
    assert views[0] == diginetica.ItemView(1, A, 0, datetime.date(2016, 5, 1))


def test_rows_and_processed_dataset(tmp_path):
    splits, _ = diginetica.load_splits(write_views(tmp_path / "views.csv"))
    rows = diginetica.session_rows(splits.train, row_length=4)
    np.testing.assert_array_equal(rows[3]["item_ids"], [4, 4, 3, 0])
    np.testing.assert_array_equal(rows[3]["positions"], [0, 1, 2, 0])
    np.testing.assert_array_equal(rows[3]["student_index"], [0, 0, 0, -1])
    np.testing.assert_array_equal(rows[3]["is_continuation"], [0, 1, 0, 0])
    np.testing.assert_array_equal(rows[2]["is_novel"], [1, 1, 0, 0])
    with pytest.raises(ValueError, match="row_length >= 3"):
        diginetica.session_rows(splits.train, row_length=2)

    data_dir = str(tmp_path / "processed")
    assert diginetica.write_processed(splits, data_dir, row_length=4) == {"train": 4, "test": 1}
    with open(os.path.join(data_dir, "vocab.json")) as f:
        assert json.load(f)["vocab_size"] == 6
    files = input_pipeline.dataset_files(data_dir, "individual", "test")
    batch = next(input_pipeline.eval_batches(files, 2, row_length=4))
    np.testing.assert_array_equal(batch["item_ids"][0], [5, 4, 5, 0])
    assert batch["row_valid"].tolist() == [1, 0]


def assert_matches_an_independent_pandas_count(path):
    """SR-GNN's preprocessing redone with pandas on the file at ``path``; the loader's counts must agree."""
    import pandas as pd

    splits, report = diginetica.load_splits(path)
    frame = pd.read_csv(path, sep=";")
    assert report.views == len(frame) and not report.skipped
    lengths = frame.groupby("session_id").size()
    frame = frame[frame.session_id.isin(lengths[lengths > 1].index)]
    counts = frame.item_id.value_counts()
    frame = frame[frame.item_id.isin(counts[counts >= 5].index)]
    lengths = frame.groupby("session_id").size()
    frame = frame[frame.session_id.isin(lengths[lengths >= 2].index)]
    day = pd.to_datetime(frame.groupby("session_id").eventdate.max())
    test_start = day.max() - pd.Timedelta(days=6)
    train_ids = day[day < test_start].index
    assert splits.stats["train_sessions"] == len(train_ids)
    assert splits.stats["test_sessions"] + splits.stats["test_sessions_dropped_unseen_items"] == (
        (day >= test_start).sum())
    assert splits.vocab.vocab_size - 3 == frame[frame.session_id.isin(train_ids)].item_id.nunique()
    return splits, report


def test_fixture_in_the_sample_format_by_hand_and_against_pandas():
    """tests/fixtures/diginetica_item_views.csv: 42 views in the DIGINETICA sample's format (hand-written).

    By hand: sessions 2 and 15 have one click; 77104 (3), 55555 (2), 40404 (4) and 60606 (1) are rare, which
    empties or shortens sessions 5, 9, 12 and 13; the last day is 2016-05-20, so the test period starts on
    2016-05-14: sessions 1, 3, 4, 6, 7, 8, 10 train, 11, 14, 16 test. Items are numbered in order of first
    click in session 1 (clicks ordered by timeframe): 9654, 32118, 81766, 31331 -> 3, 4, 5, 6."""
    splits, report = assert_matches_an_independent_pandas_count(FIXTURE)
    assert report.views == 42
    assert splits.vocab.items == ("9654", "32118", "81766", "31331")
    assert {key: splits.stats[key] for key in (
        "sessions", "sessions_dropped_length_1", "items_dropped_rare", "sessions_dropped_rare_items",
        "train_sessions", "test_sessions")} == {
        "sessions": 16, "sessions_dropped_length_1": 2, "items_dropped_rare": 4, "sessions_dropped_rare_items": 4,
        "train_sessions": 7, "test_sessions": 3}
    assert [(s.session_id, s.items) for s in splits.train] == [
        (1, (3, 4, 5, 6)), (3, (3, 5, 3)), (4, (6, 4)), (6, (5, 4, 6)), (7, (3, 6)), (8, (5, 3, 4, 6)), (10, (5, 4))]
    assert [(s.session_id, s.items) for s in splits.test] == [(11, (3, 5, 4)), (14, (3, 5, 4)), (16, (4, 3))]
    assert splits.test_start == datetime.date(2016, 5, 14)


@pytest.mark.skipif(not os.path.exists(SAMPLE), reason="shared DIGINETICA sample not present (../shared/data)")
def test_shared_sample_matches_an_independent_pandas_count():
    _, report = assert_matches_an_independent_pandas_count(SAMPLE)
    assert report.views == 12_391
