"""KNN baseline: hand-worked neighbours, a brute-force reference, causality, storage, `study eval`."""

import json
import os

import numpy as np
import pytest

from configs import knn as knn_config
from study.data.reserved_ids import OOV, PAD, SEP, is_item
from study.models import knn

# Toy vocabulary: PAD 0, OOV 1, SEP 2 and six items.
A, B, C, D, E, F = 3, 4, 5, 6, 7, 8
VOCAB_SIZE = 9


def make_batch(rows, row_length=8):
    """Rows given as lists of students' item sequences -> a batch dict (segments joined by SEP)."""
    shape = (len(rows), row_length)
    batch = {"item_ids": np.zeros(shape, np.int32), "student_index": np.full(shape, -1, np.int32),
             "positions": np.zeros(shape, np.int32)}
    for r, students in enumerate(rows):
        cursor = 0
        for s, items in enumerate(students):
            if s:
                batch["item_ids"][r, cursor] = SEP
                cursor += 1
            for p, item in enumerate(items):
                batch["item_ids"][r, cursor] = item
                batch["student_index"][r, cursor] = s
                batch["positions"][r, cursor] = p
                cursor += 1
    batch["row_valid"] = np.ones(len(rows), np.int32)
    return batch


# Training rows, one student each. Occurrences (item <- context of the <= 2 earlier items):
#   [A, B, C]:   A <- none, B <- {A}, C <- {A,B}
#   [A, B, D]:   A <- none, B <- {A}, D <- {A,B}
#   [B, A, C]:   B <- none, A <- {B}, C <- {A,B}       (order inside a context is ignored)
#   [A, A, E]:   A <- none, A <- {A}, E <- {A,A}
#   [OOV, B, F]: OOV (not indexed), B <- {OOV}, F <- {OOV,B}
# Distinct contexts and what followed them:
#   {A}: B x2, A x1;  {A,B}: C x2, D x1;  {B}: A x1;  {A,A}: E x1;  {OOV}: B x1;  {OOV,B}: F x1
# Popularity (every item occurrence): A 5, B 4, C 2, D 1, E 1, F 1 -> order A, B, C, D, E, F (ties by id).
TOY_TRAIN = [[[A, B, C]], [[A, B, D]], [[B, A, C]], [[A, A, E]], [[OOV, B, F]]]
POPULAR = [A, B, C, D, E, F]

# Query {A,B} (norm sqrt 2): cos with {A,B} = 1; with {A}, {B}, {A,A} = 1/sqrt2; with {OOV,B} = 1/2;
# with {OOV} = 0. Items: C (max 1, votes 2), D (1, 1), A (0.707, 0.707 + 0.707), B (0.707, 2 * 0.707),
# E (0.707, 0.707), F (0.5, 0.5). A and B tie on (max, votes): the more popular A goes first.
AFTER_AB = [C, D, A, B, E, F]
# Query {A} (or {A,A}, the same direction): cos with {A} and {A,A} = 1, with {A,B} = 1/sqrt2, else 0.
# B (max 1, votes 2), A (1, 1), E (1, 1), C (0.707, 1.414), D (0.707, 0.707); F followed no similar
# context: it comes last, by popularity. A and E tie on (max, votes): popularity puts A first.
AFTER_A = [B, A, E, C, D, F]
# Query {OOV} or {OOV,OOV}: cos with {OOV} = 1, with {OOV,B} = 1/sqrt2. B (1, 1), F (0.707, 0.707), then
# the unscored items by popularity.
AFTER_OOV = [B, F, A, C, D, E]


@pytest.fixture(scope="module")
def toy_index():
    return knn.fit([make_batch(TOY_TRAIN)], VOCAB_SIZE, context_size=2)


def test_toy_index_holds_the_hand_counted_contexts(toy_index):
    contexts = {tuple(np.repeat(np.arange(VOCAB_SIZE), row)): c
                for c, row in enumerate(toy_index.contexts.toarray())}
    expected = {(A,): {B: 2, A: 1}, (A, B): {C: 2, D: 1}, (B,): {A: 1}, (A, A): {E: 1},
                (OOV,): {B: 1}, (OOV, B): {F: 1}}
    assert set(contexts) == set(expected)
    next_items = toy_index.next_items.toarray()
    for context, followers in expected.items():
        row = np.zeros(VOCAB_SIZE, int)
        for item, count in followers.items():
            row[item] = count
        np.testing.assert_array_equal(next_items[contexts[context]], row, err_msg=str(context))
    np.testing.assert_array_equal(toy_index.popularity, [0, 0, 0, 5, 4, 2, 1, 1, 1])


def test_toy_rankings_match_the_hand_worked_lists(toy_index):
    model = knn.NearestContexts(toy_index, top_k=8)
    pad = [PAD, PAD]  # only six items exist: the lists end with padding
    queries = np.array([[A, B], [B, A], [A, -1], [A, A], [OOV, -1], [OOV, OOV], [C, D], [-1, -1]])
    expected = [AFTER_AB, AFTER_AB, AFTER_A, AFTER_A, AFTER_OOV, AFTER_OOV, POPULAR, POPULAR]
    np.testing.assert_array_equal(model.rank(queries), [e + pad for e in expected])


def test_toy_predict_reads_the_two_previous_items_of_the_same_student(toy_index):
    model = knn.NearestContexts(toy_index, top_k=6)
    # Row 0: one student. Row 1: two students; the second never sees the first one's A, B.
    # Row 2: only the two most recent items count: the query at position 3 is {A,B}, not {D,A,B}.
    batch = make_batch([[[A, B, C]], [[A, B], [OOV, OOV, C]], [[D, A, B, C]]])
    ranked = model.predict(batch)
    assert ranked.shape == (3, 8, 6) and ranked.dtype == np.int32
    np.testing.assert_array_equal(ranked[0, :3], [POPULAR, AFTER_A, AFTER_AB])
    np.testing.assert_array_equal(ranked[1, 3:6], [POPULAR, AFTER_OOV, AFTER_OOV])
    np.testing.assert_array_equal(ranked[2, 3], AFTER_AB)


def test_history_contexts_lists_earlier_items_of_the_same_student_most_recent_first():
    batch = make_batch([[[A, B, C], [D, E]]])
    history = knn.history_contexts(batch["item_ids"], batch["student_index"], batch["positions"], 2)
    expected = [[-1, -1], [A, -1], [B, A], [-1, -1], [-1, -1], [D, -1], [-1, -1], [-1, -1]]
    np.testing.assert_array_equal(history[0], expected)


# Brute-force reference: every training occurrence, cosine by explicit loops, the documented item score.


def random_rows(rng, num_rows, vocab_size, row_length=10):
    rows = []
    for _ in range(num_rows):
        students, budget = [], row_length
        while budget > 1 and len(students) < 3:
            length = int(rng.integers(1, budget))
            items = rng.integers(SEP, vocab_size, size=length)
            students.append([OOV if item == SEP else int(item) for item in items])  # items and OOV
            budget -= length + 1
        rows.append(students)
    return rows


def occurrences(rows, context_size):
    """(context count vector as a dict, item) of every training occurrence with a context."""
    found = []
    for students in rows:
        for items in students:
            for t in range(1, len(items)):
                context = items[max(0, t - context_size):t]
                counts = {}
                for item in context:
                    counts[item] = counts.get(item, 0) + 1
                found.append((counts, items[t]))
    return found


def brute_force_ranking(query, found, popularity, top_k):
    q = {}
    for item in query:
        if item >= 0:
            q[item] = q.get(item, 0) + 1
    q_norm = np.sqrt(sum(v * v for v in q.values()))
    best, votes = {}, {}
    for counts, item in found:
        if item < 3 or not q:
            continue
        dot = sum(q.get(k, 0) * v for k, v in counts.items())
        cosine = round(dot / (q_norm * np.sqrt(sum(v * v for v in counts.values()))), 9)
        if cosine > 0:
            best[item] = max(best.get(item, 0.0), cosine)
            votes[item] = votes.get(item, 0.0) + cosine
    items = range(3, len(popularity))
    order = sorted(items, key=lambda i: (-best.get(i, 0.0), -round(votes.get(i, 0.0), 6), -popularity[i], i))
    return (order + [PAD] * top_k)[:top_k]


@pytest.mark.parametrize("context_size,vocab_size", [(2, 9), (3, 12), (1, 30)])
def test_sparse_ranking_matches_brute_force(context_size, vocab_size):
    rng = np.random.default_rng(context_size)
    train = random_rows(rng, 60, vocab_size)
    index = knn.fit([make_batch(train[:30], 10), make_batch(train[30:], 10)], vocab_size, context_size)
    found = occurrences(train, context_size)
    popularity = np.zeros(vocab_size, int)
    for students in train:
        for items in students:
            for item in items:
                popularity[item] += item >= 3
    np.testing.assert_array_equal(index.popularity, popularity)
    test = make_batch(random_rows(rng, 20, vocab_size), 10)
    history = knn.history_contexts(test["item_ids"], test["student_index"], test["positions"], context_size)
    top_k = 20
    # Tiny memory bounds force one query per sparse product and per dense block.
    for model in (knn.NearestContexts(index, top_k), knn.NearestContexts(index, top_k, max_similarities=1,
                                                                         dense_elements=1, cache_size=0)):
        ranked = model.predict(test)
        for b, i in zip(*np.nonzero(test["student_index"] >= 0)):
            expected = brute_force_ranking(history[b, i], found, popularity, top_k)
            assert ranked[b, i].tolist() == expected, (b, i, history[b, i])
        assert not np.isin(ranked, [OOV, SEP]).any()


def test_predictions_are_causal_and_ignore_other_students():
    rng = np.random.default_rng(7)
    vocab_size = 15
    index = knn.fit([make_batch(random_rows(rng, 80, vocab_size), 10)], vocab_size, 2)
    model = knn.NearestContexts(index, top_k=20, cache_size=0)
    batch = make_batch(random_rows(rng, 30, vocab_size), 10)
    ranked = model.predict(batch)
    checked = 0
    for b in range(len(batch["item_ids"])):
        for j in np.flatnonzero(batch["student_index"][b] >= 0):
            changed = {k: v.copy() for k, v in batch.items()}
            changed["item_ids"][b, j] = OOV if batch["item_ids"][b, j] != OOV else vocab_size - 1
            after = model.predict(changed)
            same_student = batch["student_index"][b] == batch["student_index"][b, j]
            unaffected = ~same_student | (np.arange(batch["item_ids"].shape[1]) <= j)
            np.testing.assert_array_equal(after[b, unaffected], ranked[b, unaffected])
            np.testing.assert_array_equal(np.delete(after, b, 0), np.delete(ranked, b, 0))
            checked += 1
    assert checked > 50


def test_reserved_ids_are_never_recommended_and_padding_only_ends_short_lists():
    rng = np.random.default_rng(3)
    vocab_size = 40  # 37 items >= top_k: no padding needed
    train = random_rows(rng, 50, vocab_size)
    model = knn.NearestContexts(knn.fit([make_batch(train, 10)], vocab_size, 2), top_k=20)
    ranked = model.predict(make_batch(random_rows(rng, 30, vocab_size), 10))
    assert ranked.min() >= 3
    assert all(len(set(lists)) == 20 for lists in ranked.reshape(-1, 20).tolist())


def test_save_load_round_trip_gives_identical_predictions(toy_index, tmp_path):
    rng = np.random.default_rng(5)
    vocab_size = 20
    index = knn.fit([make_batch(random_rows(rng, 40, vocab_size), 10)], vocab_size, 2)
    knn.save_index(index, str(tmp_path / "index"), note="test")
    assert sorted(os.listdir(tmp_path / "index")) == ["contexts.npz", "index.json", "next_items.npz",
                                                      "popularity.npy"]
    loaded = knn.load_index(str(tmp_path / "index"))
    assert loaded.context_size == 2 and loaded.summary() == index.summary()
    batch = make_batch(random_rows(rng, 20, vocab_size), 10)
    np.testing.assert_array_equal(knn.NearestContexts(loaded).predict(batch),
                                  knn.NearestContexts(index).predict(batch))
    with pytest.raises(FileNotFoundError, match="index.json"):
        knn.load_index(str(tmp_path / "nothing"))


def test_bad_input_gives_actionable_errors(toy_index):
    with pytest.raises(ValueError, match="outside the KNN vocabulary"):
        knn.NearestContexts(toy_index).predict(make_batch([[[A, 50]]]))
    with pytest.raises(ValueError, match="context_size"):
        knn.history_contexts(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)), 0)


def test_knn_is_fitted_by_the_loop_in_one_pass_then_evaluated_and_exported(tmp_path):
    from study.commands import evaluate, export, train
    from tests.test_input_pipeline import write_dataset

    data_dir, workdir = tmp_path / "data", tmp_path / "run"
    rows = write_dataset(data_dir, dataset="individual", rows_per_split={"train": 40, "test": 12}, num_shards=2)
    config = knn_config.get_config("smoke")
    config.data_dir = str(data_dir)
    config.model.row_length = 12
    config.batch_size = 8
    result = train.train(config, str(workdir))
    assert result["step"] == 5  # 40 training rows in batches of 8: one pass
    metrics = evaluate.evaluate_run(config, str(workdir), split="test", num_bootstrap=2)["hits"].metrics
    written = json.loads((workdir / "eval_test" / "hits" / "metrics.json").read_text())
    # 23 tokens = 20 items: every list holds every item, so hits@20 is the share of non-OOV targets.
    targets = np.concatenate([row["item_ids"][is_item(row["item_ids"])] for row in rows["test"]])
    for result in (metrics, written):
        assert result["overall"]["all"]["micro"]["hits@20"]["value"] == pytest.approx(np.mean(targets != OOV))
    # The loop's index is the one fitted directly on the same rows.
    direct = knn.fit([{name: np.stack([row[name] for row in rows["train"]]) for name in
                       ("item_ids", "student_index", "positions")}], 23, 2)
    export.export_run(config, str(workdir), str(tmp_path / "index"))
    exported = knn.load_index(str(tmp_path / "index"))
    assert (exported.contexts != direct.contexts).nnz == 0 and (exported.next_items != direct.next_items).nnz == 0
    np.testing.assert_array_equal(exported.popularity, direct.popularity)
