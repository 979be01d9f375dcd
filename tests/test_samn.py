"""SAMN on STUDY rows: a loop-by-loop NumPy reference of the whole forward pass on a hand-built row, friend
and memory attention weights, the causality contract by perturbation, the BPR loss and its negatives, and a
short run through the generic trainer and ``study eval``."""

import json
import math
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import samn as samn_config
from study.data import reserved_ids
from study.commands import evaluate, train
from study.models import losses, registry, samn, sequence_transformer
from tests.test_attention_masks import random_classroom_rows
from tests.test_input_pipeline import write_dataset

SEP, PAD = reserved_ids.SEP, reserved_ids.PAD
VOCAB_SIZE = 30
CHANGED = 1e-4  # the smallest max-abs logit change that counts as "the logits moved"


def hand_row():
    """One row of four students (timestamps in brackets), then padding:

    s0: 3, 4, 5, 6 [1, 3, 5, 8] | SEP | s1: 7, 1 (OOV) [2, 4] | SEP | s2: 8, 9 [5, 9] | SEP | s3: 10 [10] | PAD PAD
    """
    items = [3, 4, 5, 6, SEP, 7, 1, SEP, 8, 9, SEP, 10, PAD, PAD]
    times = [1, 3, 5, 8, 0, 2, 4, 0, 5, 9, 0, 10, 0, 0]
    students = [0, 0, 0, 0, -1, 1, 1, -1, 2, 2, -1, 3, -1, -1]
    positions = [0, 1, 2, 3, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]
    return {name: np.array([values], np.int32) for name, values in
            (("item_ids", items), ("timestamps", times), ("student_index", students), ("positions", positions))}


# The classmates with an interaction strictly before each item position's timestamp, worked out by hand.
HAND_FRIENDS = {0: set(), 1: {1}, 2: {1}, 3: {1, 2}, 5: {0}, 6: {0}, 8: {0, 1}, 9: {0, 1}, 11: {0, 1, 2}}


def small_model(row_length, max_students=0):
    return samn.SAMN(vocab_size=VOCAB_SIZE, row_length=row_length, emb_dim=8, memory_slots=3, attention_dim=5,
                     max_students=max_students)


@pytest.fixture(scope="module")
def hand_run():
    batch = {name: jnp.asarray(value) for name, value in hand_row().items()}
    model = small_model(row_length=14)
    variables = nn.unbox(jax.jit(model.init)(jax.random.key(3), batch))
    logits, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(variables, batch)
    sown = {name: np.asarray(value[0]) for name, value in state["intermediates"].items()}
    return jax.tree.map(np.asarray, variables["params"]), np.asarray(logits), sown


def _softmax(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def reference_position(params, row, i):
    """SAMN at position ``i`` of one row, loop by loop in float64: (logits [V], {friend: weight})."""
    items, times, students, positions = (row[name][0] for name in
                                         ("item_ids", "timestamps", "student_index", "positions"))
    p = {name: np.asarray(value, np.float64) for name, value in _flat(params).items()}
    history = p["history_embedding"]
    interactions = [j for j in range(len(items)) if items[j] not in (PAD, SEP)]
    own = [j for j in interactions if students[j] == students[i] and positions[j] < positions[i]]
    user = history[items[own]].mean(axis=0) if own else p["empty_user"]
    relations, scores = {}, {}
    for s in sorted({students[j] for j in interactions} - {students[i]}):
        earlier = [j for j in interactions if students[j] == s and times[j] < times[i]]
        if not earlier:
            continue
        friend = history[items[earlier]].mean(axis=0)
        joint = user / np.linalg.norm(user) * friend / np.linalg.norm(friend)
        slots = _softmax(joint @ p["memory/keys"])
        relations[s] = (slots @ p["memory/memory"]) * friend
        hidden = (user @ p["friend_attention/user/kernel"] + relations[s] @ p["friend_attention/relation/kernel"]
                  + p["friend_attention/relation/bias"])
        scores[s] = (np.maximum(hidden, 0.0) @ p["friend_attention/query"])[0]
    weights = dict(zip(scores, _softmax(np.array(list(scores.values()))))) if scores else {}
    final = user + sum((weights[s] * relations[s] for s in weights), np.zeros_like(user))
    return final @ p["item_embedding"].T, weights


def _flat(params):
    return {"/".join(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def test_logits_match_a_loop_by_loop_reference_on_a_hand_built_row(hand_run):
    params, logits, sown = hand_run
    row = hand_row()
    assert logits.shape == (1, 14, VOCAB_SIZE) and np.isfinite(logits).all()
    for i, expected_friends in HAND_FRIENDS.items():
        expected_logits, expected_weights = reference_position(params, row, i)
        assert set(expected_weights) == expected_friends, i  # the reference agrees with the hand analysis
        np.testing.assert_allclose(logits[0, i], expected_logits, rtol=1e-4, atol=1e-5, err_msg=f"position {i}")
        for s, weight in expected_weights.items():
            np.testing.assert_allclose(sown["friend_weights"][0, i, s], weight, rtol=1e-4, atol=1e-6)


def test_friend_weights_sum_to_one_over_earlier_classmates_and_are_zero_elsewhere(hand_run):
    params, logits, sown = hand_run
    weights = sown["friend_weights"][0]  # [L, S]
    assert weights.shape == (14, (14 + 1) // 2)
    for i, friends in HAND_FRIENDS.items():
        present = np.zeros(weights.shape[1], bool)
        present[list(friends)] = True
        assert np.all(weights[i, present] > 0), i
        assert np.all(weights[i, ~present] == 0.0), i  # own student, later-only classmates, empty slots
        assert weights[i].sum() == pytest.approx(1.0 if friends else 0.0, abs=1e-6)
    # No friend and no own history (the first interaction of the row): p_u is the learned empty user.
    np.testing.assert_allclose(logits[0, 0], params["empty_user"] @ params["item_embedding"].T, rtol=1e-5,
                               atol=1e-6)


def test_memory_attention_weights_sum_to_one_over_slots(hand_run):
    _, _, sown = hand_run
    slot_weights = sown["slot_weights"][0]  # [L, S, N]
    assert slot_weights.shape == (14, 7, 3)
    assert np.all(slot_weights > 0)
    np.testing.assert_allclose(slot_weights.sum(axis=-1), 1.0, atol=1e-6)


def test_masked_softmax_of_an_empty_set_is_all_zero_and_has_finite_gradients():
    scores = jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    mask = jnp.array([[True, False, True], [False, False, False]])
    weights = samn.masked_softmax(scores, mask)
    np.testing.assert_allclose(weights[0], [1 / (1 + math.e**2), 0.0, math.e**2 / (1 + math.e**2)], rtol=1e-6)
    np.testing.assert_array_equal(weights[1], 0.0)
    grads = jax.jit(jax.grad(lambda x: jnp.sum(samn.masked_softmax(x, mask) * jnp.arange(3.0))))(scores)
    assert np.isfinite(grads).all()


def _perturbations(row, i, rng):
    """(name, perturbed row, must_change) for target position ``i`` of one row (a dict of ``[L]`` arrays)."""
    items, times, students, positions = (row[n] for n in ("item_ids", "timestamps", "student_index", "positions"))
    u, t, p = students[i], times[i], positions[i]
    t_max = int(times.max()) + 5
    cases = []

    def perturbed(j, item=None, time=None):
        copy = {name: value.copy() for name, value in row.items()}
        if item is not None:
            copy["item_ids"][j] = item
        if time is not None:
            copy["timestamps"][j] = time
        return copy

    for j in np.flatnonzero(reserved_ids.is_item(items)):
        other = rng.choice([x for x in range(reserved_ids.FIRST_ITEM_ID, VOCAB_SIZE) if x != items[j]])
        own = students[j] == u
        if own and positions[j] >= p:
            cases.append((f"own item at position {positions[j]}", perturbed(j, item=other), False))
        if own and positions[j] > p:
            cases.append((f"own later time at {positions[j]}", perturbed(j, time=rng.integers(t, t_max)), False))
        if not own and times[j] >= t:
            cases.append((f"classmate later item at {j}", perturbed(j, item=other), False))
            cases.append((f"classmate later time at {j}", perturbed(j, time=rng.integers(t, t_max)), False))
        if not own and times[j] < t:
            cases.append((f"classmate earlier item at {j}", perturbed(j, item=other), True))
        if own and positions[j] == p - 1:
            cases.append(("own previous item", perturbed(j, item=other), True))
    return cases


def test_logits_depend_only_on_what_the_contract_allows():
    rng = np.random.default_rng(7)
    row_length = 24
    rows = random_classroom_rows(rng, batch_size=16, row_length=row_length, max_students=4, max_time=10)
    targets = []
    for b in range(16):
        for i in rng.permutation(row_length):
            items, times, students = rows["item_ids"][b], rows["timestamps"][b], rows["student_index"][b]
            earlier_classmate = reserved_ids.is_item(items) & (students != students[i]) & (times < times[i])
            if reserved_ids.is_item(items[i]) and rows["positions"][b, i] > 0 and earlier_classmate.any():
                targets.append((b, i))
                break
    assert len(targets) >= 4, "random rows hold too few usable targets; change the seed"
    to_run, checks = [], []
    for b, i in targets[:4]:
        row = {name: rows[name][b] for name in ("item_ids", "timestamps", "student_index", "positions")}
        cases = _perturbations(row, i, rng)
        checks.append((i, len(to_run), cases))
        to_run += [row] + [case for _, case, _ in cases]
    batch = {name: jnp.asarray(np.stack([row[name] for row in to_run])) for name in to_run[0]}
    model = small_model(row_length)
    variables = jax.jit(model.init)(jax.random.key(0), batch)
    logits = np.asarray(jax.jit(model.apply)(variables, batch))
    must_change = 0
    for i, base, cases in checks:
        for k, (name, _, changes) in enumerate(cases, start=1):
            moved = np.max(np.abs(logits[base + k, i] - logits[base, i]))
            if changes:
                must_change += 1
                assert moved > CHANGED, f"changing {name} did not reach the target at {i}"
            else:
                assert moved <= 1e-6, f"changing {name} leaked into the target at {i} ({moved})"
    assert must_change >= 8  # every target: its own previous item and at least one earlier classmate item


def test_bpr_loss_equals_a_hand_computed_value_with_given_negatives():
    logits = jnp.array([[[0.0, 0.5, 9.0, 2.0, -1.0, 0.25],
                         [0.0, 0.0, 0.0, 1.5, 3.0, 0.0],
                         [7.0, 7.0, 7.0, 7.0, 7.0, 7.0]]])
    batch = {"item_ids": jnp.array([[3, 1, PAD]])}  # a real item, an OOV target, padding
    negatives = jnp.array([[[4, 5], [3, 4], [3, 3]]])

    def softplus(x):
        return math.log1p(math.exp(x))

    expected = ((softplus(-1.0 - 2.0) + softplus(0.25 - 2.0)) / 2
                + (softplus(1.5 - 0.0) + softplus(3.0 - 0.0)) / 2)
    loss_sum, weight_sum = samn.bpr_loss(logits, batch, negatives=negatives)
    assert float(loss_sum) == pytest.approx(expected, rel=1e-6)
    assert float(weight_sum) == 2.0
    one = samn.bpr_loss(logits, batch, negatives=negatives[..., :1])[0]
    assert float(one) == pytest.approx(softplus(-3.0) + softplus(1.5), rel=1e-6)


def test_negatives_are_uniform_real_items_never_reserved_nor_the_target():
    vocab_size = 8  # real items 3..7
    targets = jnp.array([[3, 5, 7, reserved_ids.OOV, PAD, SEP]] * 4000)
    negatives = np.asarray(samn.sample_negatives(jax.random.key(0), targets, vocab_size, num_negatives=3))
    assert negatives.shape == (4000, 6, 3) and negatives.dtype == np.int32
    assert negatives.min() >= reserved_ids.FIRST_ITEM_ID and negatives.max() < vocab_size
    for column, target in enumerate([3, 5, 7, reserved_ids.OOV, PAD, SEP]):
        values, counts = np.unique(negatives[:, column], return_counts=True)
        expected = [x for x in range(3, vocab_size) if x != target]
        assert values.tolist() == expected, target
        # 12,000 draws over 4 or 5 values: each share within 2.5% of uniform (> 5 standard deviations).
        np.testing.assert_allclose(counts / counts.sum(), 1 / len(expected), atol=0.025)
    with pytest.raises(ValueError, match="at least 2"):
        samn.sample_negatives(jax.random.key(0), targets, vocab_size=4, num_negatives=1)


def test_registry_builds_samn_with_bpr_and_keeps_next_item_loss_for_transformers():
    config = samn_config.get_config("smoke").model
    config.vocab_size = VOCAB_SIZE
    assert isinstance(registry.build_model(config), samn.SAMN)
    assert registry.reads_classmates(config)
    logits = jax.random.normal(jax.random.key(1), (1, 3, VOCAB_SIZE))
    batch = {"item_ids": jnp.array([[3, 4, 0]])}
    loss = registry.loss_for(config)
    # BPR: the loss depends on the key (sampled negatives); the transformer's cross-entropy does not.
    assert float(loss(logits, batch, jax.random.key(0))[0]) != float(loss(logits, batch, jax.random.key(5))[0])
    transformer = sequence_transformer.default_config()
    cross_entropy = registry.loss_for(transformer)
    expected = losses.next_item_loss(logits, batch)
    for key in (0, 5):
        assert float(cross_entropy(logits, batch, jax.random.key(key))[0]) == float(expected[0])


def test_trainer_learns_with_bpr_and_study_eval_writes_metrics(tmp_path):
    data_dir = tmp_path / "data"
    write_dataset(data_dir, rows_per_split={"train": 24, "validation": 8, "test": 8}, num_shards=1)
    config = samn_config.get_config("smoke")
    config.data_dir = str(data_dir)
    config.model.row_length = 12  # the rows write_dataset makes
    config.optimizer.peak_lr = 0.05
    config.optimizer.warmup_steps = 5
    config.steps = 30
    config.batch_size = 8
    config.log_every = 1
    config.evals.loss.every = 0
    config.checkpoint_every = 30
    workdir = str(tmp_path / "run")
    result = train.train(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        losses = [record["loss"] for record in map(json.loads, f) if record.get("split") == "train"]
    assert len(losses) == 30
    # BPR starts at log 2 (near-zero scores); softmax cross-entropy would start near log(23) = 3.1.
    assert losses[0] == pytest.approx(math.log(2), abs=0.01)
    assert np.mean(losses[-5:]) < losses[0] - 0.1, losses
    assert np.isfinite(result["validation"]["loss"])
    metrics = evaluate.evaluate_run(config, workdir, split="test", num_bootstrap=2)["hits"].metrics
    with open(os.path.join(workdir, "eval_test", "hits", "metrics.json")) as f:
        written = json.load(f)
    assert written["counts"] == metrics["counts"] and written["counts"]["interactions"] > 0
