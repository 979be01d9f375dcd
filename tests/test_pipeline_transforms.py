"""Unit tests of each PTransform of the dataset job (TestPipeline + assert_that)."""

import datetime
import zlib

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from apache_beam.testing import test_pipeline as beam_test_pipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from data_pipeline import model_rows
from data_pipeline import read_raw
from data_pipeline import splits
from data_pipeline import statistics
from data_pipeline import student_sequences
from data_pipeline import vocabulary
from data_pipeline import write_rows
from study.data import raw_schema
from study.data import reserved_ids
from study.data import row_format
from study.data import vocabulary as vocabulary_lib

DAY = 86400
SEP_2020 = 1598918400  # 2020-09-01T00:00:00Z


def utc(text):
    return int(datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc).timestamp())


def test_parse_timestamps_formats():
    seconds, parsed = read_raw.parse_timestamps(
        np.array(
            [
                "2020-09-01",
                "2020-09-01T12:30:00",
                "2020-09-01T14:30:00+02:00",
                "2020-09-01 12:30:00Z",
                "1598963400",
                "1598963400.9",
                "",
                "Sept 1st",
                "2020-13-01",
            ],
            dtype=object,
        )
    )
    noon_thirty = SEP_2020 + 12 * 3600 + 30 * 60
    assert parsed.tolist() == [True] * 6 + [False] * 3
    assert seconds[:6].tolist() == [SEP_2020] + [noon_thirty] * 5
    assert seconds.dtype == np.int64


def test_parse_timestamps_arrow_types():
    naive = pa.array([pd.Timestamp("2020-09-01 00:00:10"), None], pa.timestamp("ms"))
    seconds, parsed = read_raw.parse_timestamps(naive)
    assert seconds.tolist()[0] == SEP_2020 + 10 and parsed.tolist() == [True, False]
    seconds, parsed = read_raw.parse_timestamps(pa.array([SEP_2020, 3_000_000_000], pa.int64()))
    assert seconds.tolist() == [SEP_2020, 3_000_000_000] and parsed.all()  # beyond int32


def test_school_years_match_raw_schema():
    stamps = np.array([utc("2020-07-31T23:59:59"), utc("2020-08-01"), utc("2021-01-15")])
    assert student_sequences.school_years(stamps).tolist() == [
        raw_schema.school_year(int(t)) for t in stamps
    ]
    assert student_sequences.school_years(stamps).tolist() == [2019, 2020, 2020]


def test_read_csv_chunks_keep_line_numbers(tmp_path):
    # Tiny chunks force several CSV blocks; a malformed line sits between good ones.
    lines = ["student_id,item_id,timestamp"]
    for i in range(1, 41):
        lines.append(f"s{i % 3},item{i},2020-09-{1 + i % 28:02d}" + (",x" if i == 17 else ""))
    path = tmp_path / "events.csv"
    path.write_text("\n".join(lines) + "\n")
    (input_file,) = read_raw.inspect_inputs(str(path), read_raw.INTERACTIONS)
    with beam_test_pipeline.TestPipeline() as pipeline:
        outputs = pipeline | read_raw.ReadRawFiles([input_file], read_raw.INTERACTIONS, 256, 2)
        kept_lines = outputs.good | beam.FlatMap(
            lambda kv: (read_raw.order_to_file_line(o)[1] for o in kv[1].orders)
        )
        # Physical line numbers: the header is line 1, data line i is line i + 1.
        assert_that(kept_lines, equal_to([i + 1 for i in range(1, 41) if i != 17]), label="lines")
        # Every student lands in the bucket of its id, whatever chunk it is read in.
        assert_that(
            outputs.good
            | beam.FlatMap(lambda kv: {(s, kv[0]) for s in kv[1].students.tolist()})
            | beam.Distinct(),
            equal_to([(s, zlib.crc32(s.encode()) % 2) for s in ("s0", "s1", "s2")]),
            label="buckets",
        )
        assert_that(
            outputs.dead_letter | beam.Map(lambda l: (l["line"], l["reason"])),
            equal_to([(18, "malformed_line")]),
            label="dead",
        )
        assert_that(
            outputs.stats | beam.CombineGlobally(statistics.MergeCounters()),
            equal_to([{"interactions/rows_in": 40, "interactions/dead/malformed_line": 1}]),
            label="stats",
        )


def test_read_parquet_with_official_aliases_and_typed_columns(tmp_path):
    frame = pd.DataFrame(
        {
            "StudentID": [101, 102, 101],
            "SHLF_NUM": ["B1", "B2", None],
            "Date": pd.to_datetime(["2020-09-01", "2020-09-02", "2020-09-03"]),
            "Seconds Read": [10, 20, 30],
        }
    )
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)
    (input_file,) = read_raw.inspect_inputs(str(path), read_raw.INTERACTIONS)
    assert input_file.columns["item_id"] == "SHLF_NUM"
    with beam_test_pipeline.TestPipeline() as pipeline:
        outputs = pipeline | read_raw.ReadRawFiles([input_file], read_raw.INTERACTIONS)
        assert_that(
            outputs.good
            | beam.FlatMap(
                lambda kv: zip(
                    kv[1].students.tolist(), kv[1].items.tolist(), kv[1].timestamps.tolist()
                )
            ),
            equal_to([("101", "B1", SEP_2020), ("102", "B2", SEP_2020 + DAY)]),
            label="good",
        )
        assert_that(
            outputs.dead_letter | beam.Map(lambda l: (l["line"], l["reason"])),
            equal_to([(3, "missing_item_id")]),
            label="dead",
        )


def batch(student, items, days, lines, file_index=0):
    return read_raw.StudentInteractions(
        np.array([student] * len(items)),
        np.array(items),
        np.array([SEP_2020 + d * DAY for d in days], dtype=np.int64),
        read_raw.input_order(file_index, lines),
    )


ROSTER_A = {"student_id": "a", "school_id": "s", "grade": "3", "order": 1}


def test_student_histories_join_order_and_deduplicate():
    with beam_test_pipeline.TestPipeline() as pipeline:
        interactions = pipeline | "I" >> beam.Create(
            [
                # Two chunks of student a, out of time order, with a duplicate (x, day 1) and a tie
                # at day 2 ordered by input order (file 0 line 5 before file 1 line 1).
                (0, batch("a", ["x", "y"], [1, 2], [1, 5])),
                (0, batch("a", ["z", "x"], [2, 1], [1, 2], file_index=1)),
                (0, batch("b", ["x"], [3], [7])),  # b has no roster entry
            ]
        )
        roster = pipeline | "R" >> beam.Create(
            [(0, [ROSTER_A]), (0, [dict(ROSTER_A, grade="4", order=9)])]
        )
        schools = pipeline | "S" >> beam.Create([("s", {"school_id": "s", "district_id": "d"})])
        outputs = (interactions, roster, schools) | student_sequences.StudentHistories(
            ["f0.csv", "f1.csv"], ["roster.csv"], 8
        )
        assert_that(
            outputs.good
            | beam.FlatMap(student_sequences.HistoryBatch.histories)
            | beam.Map(
                lambda h: (
                    h.student_id,
                    h.items.tolist(),
                    h.is_novel.tolist(),
                    h.classrooms.tolist(),
                    h.classroom_codes.dtype.name,
                    h.profile.grade,
                    h.profile.district_id,
                )
            ),
            equal_to([("a", ["x", "y", "z"], [1, 1, 1], ["s|3|2020"] * 3, "int16", "3", "d")]),
            label="good",
        )
        assert_that(
            outputs.dead_letter | beam.Map(lambda l: (l["source"], l["line"], l["reason"])),
            equal_to(
                [
                    ("f1.csv", 2, "duplicate_event"),
                    ("f0.csv", 7, "student_not_in_roster"),
                    ("roster.csv", 9, "duplicate_roster_entry"),
                ]
            ),
            label="dead",
        )


def history(student_id, days, items=None, classroom="c"):
    items = items or [f"i{d}" for d in days]
    return student_sequences.StudentHistory(
        student_id=student_id,
        student_hash=row_format.student_hash(student_id),
        profile=student_sequences.StudentProfile("s", "3", 3, "", "d", "B", 2),
        items=np.array(items),
        timestamps=np.array([SEP_2020 + d * DAY for d in days], dtype=np.int64),
        history_len=np.arange(len(days), dtype=np.int32),
        is_novel=np.ones(len(days), np.int32),
        is_continuation=np.zeros(len(days), np.int32),
        classroom_names=(classroom,),
        classroom_codes=np.zeros(len(days), np.int16),
    )


def test_split_boundary_and_assignment():
    # Earliest interaction 2020-09-01 -> boundary 2021-08-01; day 334 = 2021-08-01.
    boundary = utc("2021-08-01")
    assert splits.default_split_timestamp(SEP_2020) == boundary
    assert splits.parse_split_date("2021-08-01") == boundary
    students = [f"s{i}" for i in range(40)]
    with beam_test_pipeline.TestPipeline() as pipeline:
        histories = pipeline | beam.Create(
            [
                student_sequences.HistoryBatch.from_histories(
                    [history(s, [0, 333, 334, 400]) for s in group]
                )
                for group in (students[:25], students[25:])
            ]
        )
        found = histories | splits.SplitBoundary(None, 8)
        assigned = (
            histories
            | beam.FlatMap(student_sequences.HistoryBatch.histories)
            | beam.Map(splits.assign_splits, beam.pvalue.AsSingleton(found), 0.5)
        )
        assert_that(found, equal_to([boundary]), label="boundary")
        assert_that(
            assigned | beam.Map(lambda h: (h.student_id, h.splits.tolist())),
            equal_to(
                [
                    (s, [0, 0] + [splits.later_period_split(s, 0.5)] * 2)
                    for s in students
                ]
            ),
            label="splits",
        )
    later = [splits.later_period_split(s, 0.5) for s in students]
    assert set(later) == {splits.VALIDATION, splits.TEST}  # both used with 40 students


def with_splits(h, codes):
    return h._replace(splits=np.array(codes, dtype=np.int8))


def test_build_vocabulary_counts_train_only_and_breaks_ties_by_id():
    with beam_test_pipeline.TestPipeline() as pipeline:
        # Boundary at day 2: days 0 and 1 are training.
        histories = pipeline | "H" >> beam.Create(
            [
                student_sequences.HistoryBatch.from_histories(
                    [history("a", [0, 1, 2], ["b", "a", "z"]), history("b", [0, 1, 1], ["a", "b", "c"])]
                ),
                student_sequences.HistoryBatch.from_histories([history("c", [2, 3], ["z", "z"])]),
            ]
        )
        boundary = pipeline | "B" >> beam.Create([SEP_2020 + 2 * DAY])
        vocab = (histories, boundary) | vocabulary.BuildVocabulary(2)
        assert_that(
            vocab | beam.Map(lambda v: (v.items, v.counts, v.train_oov_interactions)),
            equal_to([(("a", "b"), (2, 2), 1)]),
        )


VOCAB = vocabulary_lib.Vocabulary(items=("i0", "i1", "i2", "i3", "i4"))


def test_individual_rows_chunk_each_split():
    h = with_splits(history("a", [0, 1, 2, 3, 4]), [0, 0, 0, 1, 1])
    tokens = model_rows.StudentTokens(h, VOCAB.lookup(h.items))
    h2 = with_splits(history("b", [0, 1, 2], ["i3", "i4", "zz"], classroom="d"), [2, 0, 2])
    tokens2 = model_rows.StudentTokens(h2, VOCAB.lookup(h2.items))
    with beam_test_pipeline.TestPipeline() as pipeline:
        rows = pipeline | beam.Create([[tokens, tokens2]]) | model_rows.IndividualRows(row_length=2)
        assert_that(
            rows | beam.FlatMapTuple(lambda split, batch: ((split, r) for r in unbatch(batch))),
            equal_to(
                [
                    ("train", ([3, 4], [0, 0], [0, 1], [0, 1], b"c")),
                    ("train", ([5, 0], [0, -1], [0, 0], [2, 0], b"c")),
                    ("validation", ([6, 7], [0, 0], [0, 1], [3, 4], b"c")),
                    # b's interactions of one split stay in time order, chunked per split.
                    ("test", ([6, 1], [0, 0], [0, 1], [0, 2], b"d")),
                    ("train", ([7, 0], [0, -1], [0, 0], [1, 0], b"d")),
                ]
            ),
        )


def unbatch(batch):
    """Row batch -> (item_ids, student_index, positions, history_len, classroom) per row."""
    return [
        (
            batch["item_ids"][i].tolist(),
            batch["student_index"][i].tolist(),
            batch["positions"][i].tolist(),
            batch["history_len"][i].tolist(),
            batch["classroom"][i],
        )
        for i in range(len(batch["grade"]))
    ]


def test_study_rows_pack_classmates_and_cover_evaluation_once():
    # Validation classroom: a has 3 items, b has 1, c has 2; s = 2, c = 5.
    members = [("a", [0, 1, 2]), ("b", [3]), ("c", [4, 5])]
    items = ["i0", "i1", "i2", "i3", "i4", "zz"]
    tokens = []
    for name, days in members:
        h = with_splits(history(name, days, [items[d] for d in days]), [1] * len(days))
        tokens.append(model_rows.StudentTokens(h, VOCAB.lookup(h.items)))
    with beam_test_pipeline.TestPipeline() as pipeline:
        rows = (pipeline | beam.Create([tokens[:2], tokens[2:]]) | model_rows.StudyRows(5, 2, 3, 0)).good
        # Segments in order a0=[3,4], a1=[5], b0=[6], c0=[7,OOV]; first fit into rows of 5:
        # row0: a0 SEP b0 (4 used); a1 -> row1; c0 -> row1 (1+1+2=4).
        assert_that(
            rows | beam.FlatMapTuple(lambda split, batch: ((split, r) for r in unbatch(batch))),
            equal_to(
                [
                    ("validation", ([3, 4, 2, 6, 0], [0, 0, -1, 1, -1], [0, 1, 0, 0, 0], [0, 1, 0, 0, 0], b"c")),
                    ("validation", ([5, 2, 7, 1, 0], [0, -1, 1, 1, -1], [0, 0, 0, 1, 0], [2, 0, 0, 1, 0], b"c")),
                ]
            ),
        )


def test_study_training_packings_are_seeded_and_complete():
    h1 = with_splits(history("a", [0, 1, 2, 3]), [0] * 4)
    h2 = with_splits(history("b", [0, 1], ["i4", "zz"]), [0] * 2)
    tokens = [model_rows.StudentTokens(h, VOCAB.lookup(h.items)) for h in (h1, h2)]
    with beam_test_pipeline.TestPipeline() as pipeline:
        rows = (pipeline | beam.Create([tokens]) | model_rows.StudyRows(5, 2, 3, 7)).good
        keys = rows | beam.FlatMapTuple(lambda s, batch: ((s, tuple(r[0])) for r in unbatch(batch)))
        # Segments a0=[3,4], a1=[5,6], b0=[7,OOV]: a0 and a1 never share a row, b0 joins one:
        # two rows per packing, three packings.
        assert_that(keys | beam.combiners.Count.Globally(), equal_to([6]), label="count")
        # Every training interaction appears once per packing.
        assert_that(
            keys
            | beam.FlatMap(lambda kv: [t for t in kv[1] if t != reserved_ids.PAD and t != reserved_ids.SEP])
            | beam.combiners.Count.PerElement(),
            equal_to([(1, 3), (3, 3), (4, 3), (5, 3), (6, 3), (7, 3)]),
            label="coverage",
        )


def test_training_packings_depend_on_seed_packing_and_classroom_only():
    members = []
    for i in range(12):
        h = with_splits(history(f"s{i}", [0, 1, 2]), [0] * 3)
        tokens = model_rows.StudentTokens(h, VOCAB.lookup(h.items))
        ((_, _), member), = model_rows.classroom_members(tokens)
        members.append(member)

    def packings(seed, classroom="room", order=members):
        rows = model_rows.pack_classroom("train", classroom, list(order), 8, 3, 2, seed)
        return rows["student_hash"].tolist()

    assert packings(0) == packings(0, order=members[::-1])  # input order does not matter
    assert packings(0) != packings(1)
    assert packings(0) != packings(0, classroom="other")
    first, second = packings(0)[:6], packings(0)[6:]
    assert first != second  # the two packings differ


def test_merge_counters_and_accounting_check():
    merged = statistics.MergeCounters()
    total = merged.merge_accumulators(
        [
            {"interactions/rows_in": 3, "split/train/classrooms": {"a"}},
            {"interactions/rows_in": 2, "interactions/rows_kept": 4, "split/train/classrooms": {"b", "a"}},
            {"interactions/dead/x": 1, "roster/rows_in": 1, "roster/rows_kept": 1},
        ]
    )
    stats = statistics.nested_stats(total)
    assert stats["inputs"]["interactions"]["rows_dead_lettered"] == 1
    assert stats["splits"]["train"]["classrooms"] == 2
    with pytest.raises(AssertionError, match="rows_in 5 != rows_kept 3"):
        statistics.nested_stats(dict(total, **{"interactions/rows_kept": 3}))


def test_split_and_tokenize_assigns_splits_tokens_and_stats():
    boundary = SEP_2020 + 2 * DAY
    with beam_test_pipeline.TestPipeline() as pipeline:
        histories = pipeline | "H" >> beam.Create(
            [student_sequences.HistoryBatch.from_histories([history("a", [0, 1, 5], ["i1", "zz", "i0"])])]
        )
        outputs = (
            histories,
            pipeline | "B" >> beam.Create([boundary]),
            pipeline | "V" >> beam.Create([VOCAB]),
        ) | model_rows.SplitAndTokenize(1.0)  # every later student in validation
        assert_that(
            outputs.good
            | beam.FlatMap(lambda batch: batch)
            | beam.Map(lambda t: (t.history.splits.tolist(), t.token_ids.tolist())),
            equal_to([([0, 0, 1], [4, reserved_ids.OOV, 3])]),
            label="tokens",
        )
        assert_that(
            outputs.stats | beam.CombineGlobally(statistics.MergeCounters()),
            equal_to(
                [
                    {
                        "split/train/interactions": 2,
                        "split/train/students": 1,
                        "split/train/oov_interactions": 1,
                        "split/train/classrooms": {"c"},
                        "split/train/districts": {"d"},
                        "split/validation/interactions": 1,
                        "split/validation/students": 1,
                        "split/validation/oov_interactions": 0,
                        "split/validation/classrooms": {"c"},
                        "split/validation/districts": {"d"},
                    }
                ]
            ),
            label="stats",
        )
        assert_that(
            outputs.students_csv,
            equal_to([f"a,{row_format.student_hash('a')},train;validation,c,s,d,3,B,2,1,0"]),
            label="csv",
        )


def test_serialize_rows_matches_deterministic_protobuf():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    rows = []
    for length in (1, 3, 65):
        for classroom in (b"", "clé", b"c" * 300):
            row = row_format.empty_row(length)
            for name, dtype in row_format.SEQUENCE_FEATURES.items():
                edges = [0, -1, 1, 127, 128, 16383, 16384, np.iinfo(dtype).max, np.iinfo(dtype).min]
                row[name] = rng.choice(edges + [int(rng.integers(-(2**30), 2**30))], size=length)
                row[name] = row[name].astype(dtype)
            row.update(classroom=classroom, grade=np.int32(rng.integers(0, 13)), wealth=np.int32(2))
            rows.append(row)
    for row in rows:
        example = tf.train.Example()
        feature = example.features.feature
        for name in row_format.SEQUENCE_FEATURES:
            feature[name].int64_list.value.extend(row[name].tolist())
        classroom = row["classroom"]
        feature["classroom"].bytes_list.value.append(
            classroom.encode() if isinstance(classroom, str) else classroom
        )
        feature["grade"].int64_list.value.append(int(row["grade"]))
        feature["wealth"].int64_list.value.append(int(row["wealth"]))
        assert write_rows.row_to_example(row) == example.SerializeToString(deterministic=True)
    # A batch of rows of one length serializes row by row the same way.
    batch = {name: np.stack([r[name] for r in rows[-3:]]) for name in row_format.SEQUENCE_FEATURES}
    batch.update(
        classroom=[r["classroom"] for r in rows[-3:]],
        grade=np.array([r["grade"] for r in rows[-3:]]),
        wealth=np.array([r["wealth"] for r in rows[-3:]]),
    )
    assert write_rows.serialize_rows(batch) == [write_rows.row_to_example(r) for r in rows[-3:]]


def test_varint_payloads_by_hand():
    buffer, offsets = write_rows._varint_payloads(np.array([[1, 300], [-1, 0]]))
    # 1 -> 01; 300 -> ac 02; -1 -> ff x9 01 (int64 two's complement); 0 -> 00.
    assert buffer == bytes([1, 0xAC, 2] + [0xFF] * 9 + [1, 0])
    assert offsets.tolist() == [0, 3, 14]


def test_history_and_member_batches_round_trip():
    histories = [history("a", [0, 1, 2]), history("b", [3], ["q"], classroom="d")]
    unpacked = student_sequences.HistoryBatch.from_histories(histories).histories()
    for before, after in zip(histories, unpacked):
        assert before.student_id == after.student_id and before.profile == after.profile
        assert before.classroom_names == after.classroom_names
        for name in ("items", "timestamps", "history_len", "is_novel", "classroom_codes"):
            assert getattr(before, name).tolist() == getattr(after, name).tolist()
    tokens = model_rows.StudentTokens(with_splits(histories[0], [0, 1, 1]), np.array([3, 4, 5]))
    keyed = list(model_rows.classroom_members(tokens))
    back = list(model_rows.MemberBatch.from_members(keyed).members())
    assert [k for k, _ in back] == [("train", "c"), ("validation", "c")]
    assert [m.features.tolist() for _, m in back] == [m.features.tolist() for _, m in keyed]
    assert [m.student_hash for _, m in back] == [row_format.student_hash("a")] * 2


def test_tfrecord_frames_match_tensorflow_writer(tmp_path):
    import tensorflow as tf

    assert write_rows.crc32c([b"123456789"]).tolist() == [0xE3069283]  # the CRC-32C check value
    rng = np.random.default_rng(1)
    records = [b"", b"a", b"123456789"] + [
        rng.integers(0, 256, int(n)).astype(np.uint8).tobytes() for n in rng.integers(0, 2000, 40)
    ]
    path = str(tmp_path / "reference.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    with open(path, "rb") as handle:
        assert write_rows.tfrecord_frames(records) == handle.read()
