"""Parallelism that grows with the data: a classroom too large for one element is packed in parts,
each part a fair STUDY packing of its own students; below the bound nothing changes."""

import collections

import apache_beam as beam
import numpy as np
from apache_beam.testing import test_pipeline as beam_test_pipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from data_pipeline import model_rows
from study.data import reserved_ids
from tests.test_pipeline_transforms import VOCAB
from tests.test_pipeline_transforms import history
from tests.test_pipeline_transforms import with_splits

STUDENTS = [(f"st{i}", list(range(i % 4 + 2))) for i in range(12)]  # 2..5 interactions each


def _tokens(split_code):
    tokens = []
    for name, days in STUDENTS:
        h = with_splits(history(name, days, [f"i{d % 5}" for d in days]), [split_code] * len(days))
        tokens.append(model_rows.StudentTokens(h, VOCAB.lookup(h.items)))
    return tokens


def _row_segments(batch):
    """Row batch -> per row: the student hashes in it, and its (student hash, item id) pairs."""
    rows = []
    for i in range(len(batch["grade"])):
        filled = batch["item_ids"][i] != reserved_ids.PAD
        real = filled & (batch["student_index"][i] >= 0)
        hashes = batch["student_hash"][i][real].tolist()
        rows.append((set(hashes), list(zip(hashes, batch["item_ids"][i][real].tolist()))))
    return rows


def test_a_large_classroom_is_packed_in_parts_of_its_students():
    tokens = _tokens(0)  # training: 2 packings
    total = sum(len(t.token_ids) for t in tokens)  # 42 interactions, all in classroom "c"
    max_interactions = 10
    parts = model_rows.classroom_parts(total, max_interactions)
    assert parts == 5
    want = collections.Counter(
        (t.history.student_hash, int(i)) for t in tokens for i in t.token_ids
    )
    hashes = {t.history.student_hash for t in tokens}
    with beam_test_pipeline.TestPipeline() as pipeline:
        out = (
            pipeline
            | beam.Create([tokens[:5], tokens[5:]])
            | model_rows.StudyRows(6, 2, 2, 0, num_buckets=3, max_classroom_interactions=max_interactions)
        )
        rows = out.good | beam.FlatMapTuple(lambda split, batch: _row_segments(batch))

        def check(actual):
            (all_rows,) = actual
            got = collections.Counter(pair for _, pairs in all_rows for pair in pairs)
            # Every training interaction once per packing, two packings.
            assert got == collections.Counter({k: 2 * n for k, n in want.items()})
            for students, _ in all_rows:
                # A row never mixes students of two parts.
                assert len({h % parts for h in students}) == 1, students
            used_parts = {next(iter(s)) % parts for s, _ in all_rows}
            assert used_parts == {h % parts for h in hashes}

        assert_that(rows | beam.combiners.ToList(), check)
        assert_that(
            out.stats | beam.Map(lambda c: c["max/classroom_parts"]) | beam.CombineGlobally(max),
            equal_to([parts]),
            label="parts",
        )


def test_below_the_bound_a_classroom_is_packed_whole():
    tokens = _tokens(1)  # validation: one ordered packing
    members = [m for t in tokens for _, m in model_rows.classroom_members(t)]
    whole = model_rows.pack_classroom("validation", "c", members, 6, 2, 2, 0)
    with beam_test_pipeline.TestPipeline() as pipeline:
        out = (
            pipeline
            | beam.Create([tokens[:7], tokens[7:]])
            | model_rows.StudyRows(6, 2, 2, 0, num_buckets=2, max_classroom_interactions=1000)
        )
        assert_that(
            out.good | beam.MapTuple(lambda split, batch: (split, batch["item_ids"].tolist())),
            equal_to([("validation", np.asarray(whole["item_ids"]).tolist())]),
        )
