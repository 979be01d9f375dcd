"""SR-GNN: session graphs and normalised adjacency (paper Figure), causality, padding, a NumPy reference of
the paper's equations, the registry/config, a few trainer steps, and the P@K / MRR@K metrics."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from configs import srgnn as srgnn_config
from study.data import reserved_ids
from study.eval import ranking, session_metrics
from study.models import registry, srgnn
from study.commands import train
from tests.test_diginetica import write_views
from tests.test_input_pipeline import write_dataset

PAD = reserved_ids.PAD
V1, V2, V3, V4, V5 = 3, 4, 5, 6, 7  # token ids of the paper's v1..v5


def individual_batch(sessions, row_length):
    """A device batch of one-student rows, one session per row, padded with PAD."""
    batch_size = len(sessions)
    item_ids = np.full((batch_size, row_length), PAD, np.int32)
    student_index = np.full((batch_size, row_length), -1, np.int32)
    positions = np.zeros((batch_size, row_length), np.int32)
    for b, session in enumerate(sessions):
        n = len(session)
        item_ids[b, :n] = session
        student_index[b, :n] = 0
        positions[b, :n] = np.arange(n)
    return {"item_ids": item_ids, "student_index": student_index, "positions": positions}


def dense_adjacency(session, row_length=None):
    """(A_out, A_in) of the graph of the whole ``session`` as built by ``prefix_session_graphs`` (query = the
    position just after it), restricted to its nodes in first-occurrence order, and the row positions of the
    nodes' clicks."""
    row_length = row_length or len(session) + 1
    batch = individual_batch([list(session) + [V5]], row_length)

    @jax.jit
    def graphs_and_means(batch):
        prefix = srgnn.prefix_session_graphs(batch["item_ids"], batch["student_index"], batch["positions"])
        # one-hot of each slot's click position: neighbour means of it are the adjacency rows.
        features = jax.nn.one_hot(prefix.position[prefix.click], row_length)
        return prefix, (srgnn.neighbour_mean(prefix.graphs, features, "out"),
                        srgnn.neighbour_mean(prefix.graphs, features, "in"))

    prefix, (out_mean, in_mean) = graphs_and_means(batch)
    query = len(session)  # click slot (= row position: every position of the row is a click) of the query
    nodes = np.flatnonzero(np.asarray(prefix.is_node) & (np.asarray(prefix.graph) == query))
    clicks = np.asarray(prefix.position)[np.asarray(prefix.click)[nodes]]
    return np.asarray(out_mean)[nodes][:, clicks], np.asarray(in_mean)[nodes][:, clicks], clicks


def test_paper_figure_graph_counts_repeated_items_once_and_normalises_by_degree():
    # Paper Figure: session v1 -> v2 -> v3 -> v2 -> v4; four nodes (v2 once), matrices as printed there.
    a_out, a_in, slots = dense_adjacency([V1, V2, V3, V2, V4])
    np.testing.assert_array_equal(slots, [0, 1, 2, 4])  # node of v2 = its first click; no node at slot 3
    np.testing.assert_allclose(a_out, [[0, 1, 0, 0], [0, 0, 0.5, 0.5], [0, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(a_in, [[0, 0, 0, 0], [0.5, 0, 0.5, 0], [0, 1, 0, 0], [0, 1, 0, 0]])


def test_repeated_transitions_are_counted():
    # a b a b a c: a->b twice, b->a twice, a->c once. Counting gives A_out[a] = (0, 2/3, 1/3).
    a, b, c = V1, V2, V3
    a_out, a_in, _ = dense_adjacency([a, b, a, b, a, c])
    np.testing.assert_allclose(a_out, [[0, 2 / 3, 1 / 3], [1, 0, 0], [0, 0, 0]], rtol=1e-6)
    np.testing.assert_allclose(a_in, [[0, 1, 0], [1, 0, 0], [1, 0, 0]])


def test_no_self_loops_added_but_a_back_to_back_repeat_is_one():
    # a a b: the transition a->a is a self-loop of a (counted in both degrees); nothing else has one.
    a, b = V1, V2
    a_out, a_in, slots = dense_adjacency([a, a, b])
    np.testing.assert_array_equal(slots, [0, 2])
    np.testing.assert_allclose(a_out, [[0.5, 0.5], [0, 0]])
    np.testing.assert_allclose(a_in, [[1, 0], [1, 0]])
    a_out, a_in, _ = dense_adjacency([a, b, a])
    assert np.all(np.diag(a_out) == 0) and np.all(np.diag(a_in) == 0)


def test_prefix_graphs_of_every_position_packed_without_padding_slots():
    batch = individual_batch([[V1, V2, V3, V2, V4]], 7)
    # 0 + 1 + 2 + 3 + 4 (query, earlier click) pairs: a budget of exactly 10 slots holds every graph.
    for budget in (0, 10):
        prefix = srgnn.prefix_session_graphs(batch["item_ids"], batch["student_index"], batch["positions"],
                                             node_budget=budget)
        assert prefix.graphs.nodes.shape == ((7 * 6 // 2) if budget == 0 else 10,)
        graph = np.asarray(prefix.graph)[:10]
        np.testing.assert_array_equal(np.asarray(prefix.graphs.n_node)[:7], [0, 1, 2, 3, 4, 0, 0])
        np.testing.assert_array_equal(np.bincount(graph, weights=np.asarray(prefix.is_node)[:10], minlength=7),
                                      [0, 1, 2, 3, 3, 0, 0])  # graph of position 4: v2 once
        np.testing.assert_array_equal(np.bincount(graph, weights=np.asarray(prefix.graphs.edges)[:10],
                                                  minlength=7), [0, 0, 1, 2, 3, 0, 0])
        # Click slots are the row's 5 clicks; the last click of each prefix and its node (v2's node is its
        # first click, position 1); positions without history are scored by slot C = 7 (no history).
        position = np.asarray(prefix.position)
        np.testing.assert_array_equal(position[:5], [0, 1, 2, 3, 4])
        np.testing.assert_array_equal(position[np.asarray(prefix.click)[np.asarray(prefix.last_node)[1:5]]],
                                      [0, 1, 2, 1])
        np.testing.assert_array_equal(prefix.scored_by[0], [7, 1, 2, 3, 4, 7, 7])
        assert (int(prefix.num_clicks), int(prefix.num_pairs)) == (5, 10)
        # Every edge joins two nodes of one graph; unused slots are the last graph's.
        senders, receivers = np.asarray(prefix.graphs.senders), np.asarray(prefix.graphs.receivers)
        edges = np.asarray(prefix.graphs.edges) > 0
        is_node = np.asarray(prefix.is_node)
        assert np.all(is_node[senders[edges]]) and np.all(is_node[receivers[edges]])
        every_graph = np.asarray(prefix.graph)
        np.testing.assert_array_equal(every_graph[senders[edges]], every_graph[edges])
        np.testing.assert_array_equal(every_graph[receivers[edges]], every_graph[edges])
        assert np.all(every_graph[10:] == 7)
        assert int(np.asarray(prefix.graphs.n_node)[7]) == prefix.graphs.nodes.shape[0] - 10


def test_neighbour_means_on_a_jraph_batch_of_unpadded_graphs():
    # Two separate session graphs batched by jraph: v1->v2->v1 (2 nodes) and x->y, x->z (3 nodes).
    first = jraph.GraphsTuple(nodes=None, edges=jnp.ones(2), senders=jnp.array([0, 1]),
                              receivers=jnp.array([1, 0]), globals=None, n_node=jnp.array([2]),
                              n_edge=jnp.array([2]))
    second = jraph.GraphsTuple(nodes=None, edges=jnp.ones(2), senders=jnp.array([0, 0]),
                               receivers=jnp.array([1, 2]), globals=None, n_node=jnp.array([3]),
                               n_edge=jnp.array([2]))
    batched = jraph.batch([first, second])
    features = jnp.arange(5.0)[:, None] * jnp.array([[1.0, 10.0]])
    out_mean = srgnn.neighbour_mean(batched, features, "out")
    in_mean = srgnn.neighbour_mean(batched, features, "in")
    # By hand: node 0 -> 1, 1 -> 0; node 2 (x) -> 3 (y), 4 (z).
    np.testing.assert_allclose(out_mean[:, 0], [1, 0, 3.5, 0, 0])
    np.testing.assert_allclose(in_mean[:, 0], [1, 0, 0, 2, 2])


# ---------------------------------------------------------------- the model against the paper's equations


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_scores(params, session, gnn_steps):
    """The paper's SR-GNN on one unpadded session, in float64 NumPy with dense matrices: ``[V]`` scores."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), nn.unbox(params))
    embedding = p["item_embedding"]
    nodes = list(dict.fromkeys(session))
    index = {item: i for i, item in enumerate(nodes)}
    counts = np.zeros((len(nodes), len(nodes)))
    for source, target in zip(session[:-1], session[1:]):
        counts[index[source], index[target]] += 1
    a_out = counts / np.maximum(counts.sum(1), 1)[:, None]
    a_in = counts.T / np.maximum(counts.sum(0), 1)[:, None]
    gnn, readout = p["gnn"], p["readout"]

    def k(layer, name):
        return layer[name]["kernel"]

    w_z, w_r, w_o = np.split(gnn["input_gates"], 3, axis=1)
    u_z, u_r, u_o = np.split(gnn["hidden_gates"], 3, axis=1)
    v = embedding[nodes]
    for _ in range(gnn_steps):
        a = np.concatenate([a_out @ v @ gnn["out_edges"], a_in @ v @ gnn["in_edges"]], 1) + gnn["edge_bias"]
        z = _sigmoid(a @ w_z + v @ u_z)
        r = _sigmoid(a @ w_r + v @ u_r)
        candidate = np.tanh(a @ w_o + (r * v) @ u_o)
        v = (1 - z) * v + z * candidate
    clicks = v[[index[item] for item in session]]
    s_l = clicks[-1]
    alpha = _sigmoid(s_l @ k(readout, "last_click") + clicks @ k(readout, "click") + readout["click"]["bias"])
    alpha = alpha @ k(readout, "attention")
    s_g = np.sum(alpha * clicks, axis=0)
    s_h = np.concatenate([s_l, s_g]) @ k(readout, "hybrid")
    return s_h @ embedding.T


@pytest.fixture(scope="module")
def model_and_params():
    model = srgnn.SRGNN(vocab_size=20, emb_dim=8, gnn_steps=2)
    batch = individual_batch([[V1, V2]], 4)
    params = jax.jit(model.init)(jax.random.key(1), batch)["params"]
    return jax.jit(model.apply), params


def test_padded_batched_model_matches_numpy_reference(model_and_params):
    model, params = model_and_params
    session = [5, 6, 7, 6, 8, 6, 6, 9]  # repeats, a back-to-back repeat (self-loop), a revisit
    # Row 0: the session in a padded row; row 1: another session; row 2: a two-student row with the session
    # as the second student's segment.
    rows = individual_batch([session, [10, 11, 10]], 12)
    other = [12, 13, 14]
    multi = np.full((1, 12), PAD, np.int32)
    multi[0, :3], multi[0, 3] = other, reserved_ids.SEP
    multi[0, 4:] = session
    student = np.array([[0, 0, 0, -1] + [1] * 8], np.int32)
    position = np.array([[0, 1, 2, 0] + list(range(8))], np.int32)
    batch = {
        "item_ids": np.concatenate([rows["item_ids"], multi]),
        "student_index": np.concatenate([rows["student_index"], student]),
        "positions": np.concatenate([rows["positions"], position]),
    }
    logits = np.asarray(model({"params": params}, batch))
    for prefix_length in range(1, len(session)):
        expected = reference_scores(params, session[:prefix_length], gnn_steps=2)
        np.testing.assert_allclose(logits[0, prefix_length], expected, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(logits[2, 4 + prefix_length], expected, rtol=2e-4, atol=2e-5)
    no_history = np.asarray(params["no_history_session"]) @ np.asarray(nn.unbox(params)["item_embedding"]).T
    for b, i in ((0, 0), (1, 0), (2, 0), (2, 4)):
        np.testing.assert_allclose(logits[b, i], no_history, rtol=1e-5, atol=1e-6)


def test_causality_later_items_and_other_students_do_not_matter(model_and_params):
    model, params = model_and_params
    rng = np.random.default_rng(0)
    batch = individual_batch([list(rng.integers(1, 20, size=10)) for _ in range(3)], 10)
    logits = np.asarray(model({"params": params}, batch))
    for cut in (0, 3, 7, 9):
        changed = {k: v.copy() for k, v in batch.items()}
        changed["item_ids"][:, cut:] = rng.integers(1, 20, size=(3, 10 - cut))
        perturbed = np.asarray(model({"params": params}, changed))
        np.testing.assert_allclose(perturbed[:, : cut + 1], logits[:, : cut + 1], rtol=1e-6, atol=1e-7)
        assert not np.allclose(perturbed[:, cut + 1:], logits[:, cut + 1:]) or cut == 9
    # Two students in one row: the second's scores ignore the first's items.
    two = {"item_ids": np.array([[5, 6, 7, 2, 8, 9, 8, 0]], np.int32),
           "student_index": np.array([[0, 0, 0, -1, 1, 1, 1, -1]], np.int32),
           "positions": np.array([[0, 1, 2, 0, 0, 1, 2, 0]], np.int32)}
    before = np.asarray(model({"params": params}, two))
    two["item_ids"][0, :3] = [10, 11, 12]
    after = np.asarray(model({"params": params}, two))
    np.testing.assert_allclose(after[0, 4:7], before[0, 4:7], rtol=1e-6, atol=1e-7)


def test_padding_and_batch_neighbours_never_change_results(model_and_params):
    model, params = model_and_params
    session = [5, 6, 5, 7, 7]
    short = np.asarray(model({"params": params}, individual_batch([session], 5)))
    long = np.asarray(model({"params": params}, individual_batch([session, [9, 8, 9, 8]], 11)))
    np.testing.assert_allclose(long[0, :5], short[0], rtol=1e-6, atol=1e-7)
    assert np.all(np.isfinite(long))


def test_node_budget_changes_speed_not_results(model_and_params):
    _, params = model_and_params
    # 8 + 3 clicks and 28 + 3 pairs: budgets (11, 31) fit exactly; (10, 31) and (24, 12) overflow, and the
    # model then runs at the worst case, (24, 132).
    batch = individual_batch([[5, 6, 7, 6, 8, 6, 6, 9], [10, 11, 10]], 12)
    prefix = srgnn.prefix_session_graphs(batch["item_ids"], batch["student_index"], batch["positions"])
    assert (int(prefix.num_clicks), int(prefix.num_pairs)) == (11, 31)
    assert srgnn.worst_case_budgets(2, 12) == (24, 132)

    def logits_and_grads(budgets):
        model = srgnn.SRGNN(vocab_size=20, emb_dim=8, gnn_steps=2, click_budget=budgets[0], node_budget=budgets[1])
        loss = lambda p: jnp.sum(jnp.sin(model.apply({"params": p}, batch)))  # noqa: E731
        return jax.jit(lambda p: (model.apply({"params": p}, batch), jax.grad(loss)(p)))(params)

    expected_logits, expected_grads = logits_and_grads((0, 0))
    for budgets in ((11, 31), (10, 31), (24, 12)):
        logits, grads = logits_and_grads(budgets)
        np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, expected_grads)


def test_initializers_and_their_config_names():
    key = jax.random.key(0)
    uniform = np.asarray(srgnn.initializer("uniform_0.1")(key, (200, 100)))
    assert uniform.min() >= -0.1 and uniform.max() <= 0.1 and uniform.min() < -0.099 and uniform.max() > 0.099
    assert abs(uniform.mean()) < 0.002 and uniform.std() == pytest.approx(0.1 / np.sqrt(3), rel=0.02)
    normal = np.asarray(srgnn.initializer("normal_0.1")(key, (200, 100)))
    assert normal.std() == pytest.approx(0.1, rel=0.02) and np.abs(normal).max() > 0.3
    for bad in ("uniform", "gaussian_0.1", "uniform_-1", "normal_x"):
        with pytest.raises(ValueError, match="model.init"):
            srgnn.initializer(bad)
    config = srgnn_config.get_config("default").model
    config.vocab_size, config.emb_dim = 20, 8
    params = registry.build_model(config).init(jax.random.key(1), individual_batch([[V1, V2]], 4))["params"]
    leaves = np.concatenate([np.ravel(x) for x in jax.tree.leaves(nn.unbox(params))])
    assert np.abs(leaves).max() <= 0.1 and leaves.std() == pytest.approx(0.1 / np.sqrt(3), rel=0.1)


def test_bfloat16_compute_stays_close_to_float32(model_and_params):
    model, params = model_and_params
    batch = individual_batch([[5, 6, 7, 6, 8]], 6)
    low = srgnn.SRGNN(vocab_size=20, emb_dim=8, gnn_steps=2, dtype=jnp.bfloat16)
    reduced = np.asarray(jax.jit(low.apply)({"params": params}, batch))
    assert reduced.dtype == np.float32
    np.testing.assert_allclose(reduced, np.asarray(model({"params": params}, batch)), atol=2e-3)


def test_session_loss_skips_first_clicks():
    batch = individual_batch([[5, 6, 7], [8, 9]], 4)
    logits = jnp.zeros((2, 4, 10))
    loss_sum, weight_sum = srgnn.session_next_item_loss(logits, batch)
    assert float(weight_sum) == 3  # 6, 7 and 9; not the first clicks 5 and 8, not PAD
    assert float(loss_sum) == pytest.approx(3 * np.log(10), rel=1e-6)


# ---------------------------------------------------------------- registry, config, trainer


def test_config_presets_and_registry():
    config = srgnn_config.get_config("learning_ally")
    assert config.dataset == "individual" and config.model.name == "srgnn"
    assert (config.model.emb_dim, config.model.gnn_steps) == (100, 1)
    assert (config.optimizer.peak_lr, config.optimizer.warmup_steps, config.steps, config.batch_size) == (
        0.0001, 1000, 3500, 131_072)
    default = srgnn_config.get_config("default")
    assert default.model.emb_dim == 100 and default.model.init == "uniform_0.1"
    # The reference optimizer: Adam (PyTorch's defaults) at a constant 0.001, no weight decay.
    assert (default.optimizer.name, default.optimizer.peak_lr, default.schedule, default.optimizer.warmup_steps) == (
        "adam", 0.001, "constant", 0)
    assert (default.optimizer.b2, default.optimizer.eps, default.optimizer.weight_decay) == (0.999, 1e-8, 0.0)
    assert (default.early_stopping.metric, default.early_stopping.mode) == ("session/MRR@20", "max")
    assert default.evals.session.every > 0
    smoke = srgnn_config.get_config("smoke")
    smoke.model.vocab_size = 23
    model = registry.build_model(smoke.model)
    assert isinstance(model, srgnn.SRGNN) and model.emb_dim == smoke.model.emb_dim
    assert not registry.reads_classmates(smoke.model)


def test_trainer_lowers_the_loss(tmp_path):
    write_dataset(tmp_path / "data", dataset="individual", rows_per_split={"train": 32}, num_shards=2)
    config = srgnn_config.get_config("smoke")
    config.data_dir = str(tmp_path / "data")
    config.model.row_length = 12
    config.model.emb_dim = 16
    config.batch_size = 8
    config.steps = 30
    config.log_every = 10
    config.evals.loss.every = 0
    config.checkpoint_every = 30
    config.optimizer.peak_lr = 0.05
    config.optimizer.warmup_steps = 5
    config.schedule = "official_rsqrt"
    config.shuffle_buffer = 64
    result = train.train(config, str(tmp_path / "run"))
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        losses = [r["loss"] for r in map(json.loads, f) if r.get("split") == "train"]
    assert result["step"] == 30 and len(losses) == 3
    assert losses[-1] < losses[0] - 0.3, losses


# ---------------------------------------------------------------- P@K and MRR@K


def test_precision_and_mrr_on_hand_worked_ranks():
    ranks = np.array([0, 4, 19, 20, ranking.MISS_RANK])
    assert session_metrics.precision_at_k(ranks, 20) == pytest.approx(3 / 5)
    assert session_metrics.mrr_at_k(ranks, 20) == pytest.approx((1 + 1 / 5 + 1 / 20) / 5)
    assert session_metrics.precision_at_k(ranks, 5) == pytest.approx(2 / 5)
    assert session_metrics.mrr_at_k(ranks, 5) == pytest.approx((1 + 1 / 5) / 5)
    assert session_metrics.session_metrics(ranks) == pytest.approx(
        {"P@20": 0.6, "MRR@20": 0.25, "test_cases": 5})
    with pytest.raises(ValueError, match="no test cases"):
        session_metrics.precision_at_k(np.array([], np.int32))


def test_metrics_from_scores_and_next_click_mask():
    # Items 3..7; targets at rank 2 (scores 5 > 4 > 3) and rank 0. Reserved ids never compete.
    scores = np.array([[[9, 9, 9, 1, 5, 3, 4, 0], [9, 9, 9, 1, 5, 3, 4, 0], [0] * 8]], np.float32)
    item_ids = np.array([[4, 5, 0]], np.int32)
    positions = np.array([[0, 1, 0]], np.int32)
    ranks = np.asarray(ranking.ranks_from_scores(scores, item_ids))
    mask = session_metrics.next_click_mask(item_ids, positions)
    np.testing.assert_array_equal(mask, [[False, True, False]])
    assert ranks[mask].tolist() == [2]
    assert session_metrics.mrr_at_k(ranks[mask], 20) == pytest.approx(1 / 3)
    assert session_metrics.precision_at_k(ranks[mask], 2) == 0.0


# ---------------------------------------------------------------- DIGINETICA: validation slice for early stopping


def test_diginetica_validation_slice_is_the_latest_training_sessions(tmp_path):
    from data_pipeline import diginetica
    from study.data import input_pipeline

    path = write_views(tmp_path / "views.csv")
    plain, _ = diginetica.load_splits(path)
    splits, _ = diginetica.load_splits(path, validation_fraction=0.3)
    # Training sessions by date: 1, 3, 9, 5; ceil(0.3 * 4) = 2 latest held out. Items and test unchanged.
    assert [s.session_id for s in splits.train] == [1, 3] and [s.session_id for s in splits.validation] == [9, 5]
    assert splits.vocab == plain.vocab and splits.test == plain.test and not plain.validation
    assert (splits.stats["train_cases"], splits.stats["validation_cases"], splits.stats["test_cases"]) == (3, 4, 2)
    data_dir = str(tmp_path / "processed")
    assert diginetica.write_processed(splits, data_dir, row_length=4) == {"train": 2, "test": 1, "validation": 2}
    files = input_pipeline.dataset_files(data_dir, "individual", "validation")
    batch = next(input_pipeline.eval_batches(files, 2, row_length=4))
    np.testing.assert_array_equal(batch["item_ids"], [[3, 5, 3, 0], [4, 4, 3, 0]])
    with pytest.raises(ValueError, match="validation_fraction"):
        diginetica.load_splits(path, validation_fraction=1.0)
