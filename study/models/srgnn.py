"""SR-GNN (Wu et al., AAAI 2019): session graphs, a gated graph network and an attention readout (jraph).

The paper's model, for one session ``s = [v_1, ..., v_n]`` (``n`` clicks, in order):

* **Session graph.** One node per *distinct* item of ``s``; one directed edge ``(v_{t-1}, v_t)`` per pair of
  consecutive clicks. Repeated transitions are counted: ``A_out[i, j] = #(i -> j) / outdeg(i)`` and
  ``A_in[i, j] = #(j -> i) / indeg(i)``, degrees counting every transition (the paper's Figure example
  ``v1 v2 v3 v2 v4`` gives ``A_out[v2] = (0, 0, 1/2, 1/2)``, ``A_in[v2] = (1/2, 0, 1/2, 0)``). No self-loops
  are added; a back-to-back repeat ``(v, v)`` is a transition like any other, hence a self-loop of ``v``
  counted in both of its degrees. A node without outgoing (incoming) transitions has a zero row.
* **Gated GNN**, ``gnn_steps`` times with shared weights (``GatedGraphCell``)::

      a_i = [H_out (A_out V)_i ; H_in (A_in V)_i] + b
      z = sigmoid(W_z a + U_z v),  r = sigmoid(W_r a + U_r v),  c = tanh(W_o a + U_o (r * v))
      v <- (1 - z) * v + z * c

* **Readout** (``AttentionReadout``): ``s_l`` = node vector of the last click; for every click ``t`` of the
  session (an item clicked twice counts twice, as the paper sums over the sequence)
  ``alpha_t = q^T sigmoid(W_1 s_l + W_2 v_(t) + c)``, ``s_g = sum_t alpha_t v_(t)``; ``s_h = W_3 [s_l; s_g]``.
* **Scores** ``s_h^T e_v`` against the item embeddings ``e_v`` that also initialise the nodes; softmax
  cross-entropy.

Initialisation (``model.init``, :func:`initializer`): ``"uniform_0.1"``, every parameter ~ U(-0.1, 0.1), is
the official code's and RecBole's ``U(-1/sqrt(d), 1/sqrt(d))`` at the paper's d = 100 (and trains clearly
better on DIGINETICA); ``"normal_0.1"``, N(0, 0.1^2), is what the paper's text states.

Where the official code differs and this module follows the paper: it marks each transition once (0/1)
before normalising; it uses PyTorch's GRU cell (biased gates, the update gate keeping the old state) and
biased linear maps.

**Adaptation to model rows.** A session is one student's sequence within a row (Individual rows: the whole
row). ``logits[b, i]`` scores the item at position ``i`` from the session *prefix* made of the same
student's clicks at strictly earlier ``positions``, so every position gets its own graph: the graph of the
prefix before ``i``. Training on a row therefore covers exactly the paper's sequence augmentation (every
prefix with its next click as target). A position with no earlier click of its student (``positions == 0``:
the first click, also PAD and SEP) is scored by a learned session vector ``no_history_session`` (a
popularity prior); the paper never predicts a first click, and :func:`session_next_item_loss` trains on the
paper's targets only. ``OOV`` clicks share one node, like any repeated item.

**Packed layout** (:func:`prefix_session_graphs`). Work is proportional to the real sessions, not to the row
length: a batch's clicks (row positions holding an item) are packed into ``click_budget`` click slots, and its
prefix graphs into one ``jraph.GraphsTuple`` of ``node_budget`` node slots, one per *(query click, earlier
click of its student)* pair: ``n`` click slots and ``n (n - 1) / 2`` node slots for a session of ``n`` clicks,
in a row of any length. The slot of pair ``(i, j)`` is the node of click ``j``'s item in the graph of click
``i`` when ``j`` is that item's first click, and an isolated padding node otherwise; it is also the edge slot of
the transition into click ``j`` (weight 0 for a first click). Graph ``q`` (the prefix before click slot ``q``)
holds its pairs contiguously, as ``jraph`` wants, and a last graph the unused slots. The linear maps of the
first GNN step run once per click slot, the readout sums over the pairs of a graph (a click of a repeated item
counts once per click), and the scores are computed once per click slot plus one row for every position
without history.

``model.click_budget`` / ``model.node_budget`` (0 = the worst case of the batch shape, ``B * L`` and
``B * L * (L - 1) / 2``, enough for any batch) set the slots. A batch with more clicks or pairs than the budgets
is never truncated: the model then runs the same computation at the worst case (``flax.linen.cond``; that
branch is rematerialised in the backward pass so the fitting branch keeps small residuals), so results never
depend on the budgets, only speed does. Size them for a typical batch of the data with a margin (e.g.
``benchmarks/srgnn_sessions.py:budgets``).
"""

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import ml_collections

from study.data import reserved_ids
from study.models.losses import next_item_loss

INITIALIZERS = ("normal", "uniform")


def initializer(name: str) -> Callable:
    """The parameter initialiser named ``"<kind>_<scale>"``: ``normal_s`` ~ N(0, s^2), ``uniform_s`` ~ U(-s, s).

    Raises:
      ValueError: an unknown kind or a scale that is not a positive number (config field ``model.init``).
    """
    kind, _, scale = str(name).partition("_")
    try:
        scale = float(scale)
    except ValueError:
        scale = -1.0
    if kind not in INITIALIZERS or not scale > 0:
        raise ValueError(f"unknown initialiser {name!r} (config field model.init); expected "
                         "'normal_<std>' or 'uniform_<half-width>', e.g. 'uniform_0.1'")
    if kind == "normal":
        return nn.initializers.normal(stddev=scale)

    def uniform(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return uniform


class PrefixGraphs(NamedTuple):
    """The session graphs of every prefix of a batch of rows (``B`` rows of length ``L``), packed.

    Clicks (the row positions holding an item) are packed into ``C`` click slots in (row, position) order;
    pairs (query click ``i``, earlier click ``j`` of the same student) into ``P`` node slots in (row, ``i``,
    ``j``) order; unused slots come last. ``C`` and ``P`` are the budgets.

    Attributes:
      graphs: one ``jraph.GraphsTuple`` of ``C + 1`` graphs: graph ``q`` is the prefix before click slot ``q``
        (empty for a first click), the last one holds the unused node slots. ``nodes [P] int32`` item id of
        a node slot (``PAD`` for the other slots); ``edges [P] float32`` 1 for the transition into click
        ``j`` (0: ``j`` is a first click, or an unused slot); ``senders``/``receivers [P] int32`` node slots
        (a slot without transition points at itself); ``n_node``/``n_edge [C + 1] int32``; ``globals`` None.
      position: ``[C] int32``, flat row position ``b * L + i`` of each click slot (0 for unused slots).
      click: ``[P] int32``, click slot of each pair's click ``j`` (0 for unused slots).
      previous: ``[P] int32``, click slot of the click before ``j`` (0 where there is none).
      click_node: ``[P] int32``, node slot of the node of ``j``'s item in the same graph (itself if unused).
      graph: ``[P] int32``, graph of each node slot (``C`` for unused slots).
      is_node: ``[P] bool``, the slot is a node: ``j`` is the first click of its item.
      last_node: ``[C] int32``, node slot of the node of the last click of each prefix (0 where empty).
      scored_by: ``[B, L] int32``, the click slot whose prefix scores each position; ``C`` where the prefix
        is empty (a first click, PAD, SEP).
      num_clicks, num_pairs: ``[] int32``, the batch's clicks and pairs; more than a budget: the batch does
        not fit (the other fields are then incomplete).
    """

    graphs: jraph.GraphsTuple
    position: jax.Array
    click: jax.Array
    previous: jax.Array
    click_node: jax.Array
    graph: jax.Array
    is_node: jax.Array
    last_node: jax.Array
    scored_by: jax.Array
    num_clicks: jax.Array
    num_pairs: jax.Array


def worst_case_budgets(batch: int, length: int) -> tuple[int, int]:
    """``(clicks, pairs)`` ``B`` rows of length ``L`` can hold at most: ``B * L`` and ``B * L * (L - 1) / 2``."""
    return batch * length, max(batch * length * (length - 1) // 2, 1)


def prefix_clicks(item_ids, student_index, positions):
    """``(same_student, in_prefix)``, both ``[B, L, L] bool``: ``[b, i, j]`` clicks ``i`` and ``j`` of row ``b``
    are items of one student; click ``j`` is in the prefix of position ``i`` (same student, earlier position)."""
    item_ids = jnp.asarray(item_ids, jnp.int32)
    student_index = jnp.asarray(student_index, jnp.int32)
    positions = jnp.asarray(positions, jnp.int32)
    is_item = reserved_ids.is_item(item_ids)
    same_student = (
        (student_index[:, :, None] == student_index[:, None, :]) & is_item[:, :, None] & is_item[:, None, :]
    )
    return same_student, same_student & (positions[:, None, :] < positions[:, :, None])


def _pack(mask, size: int):
    """``(slot_of, entries, used)`` of the ``True`` entries of ``mask`` packed in order into ``size`` slots:
    ``slot_of`` (``mask``'s shape) the slot of each entry, ``entries [size]`` the flat index of each slot's
    entry (0 for unused slots), ``used [size]`` the slot holds one."""
    flat = mask.reshape(-1)
    slot_of = (jnp.cumsum(flat, dtype=jnp.int32) - 1).reshape(mask.shape)
    (entries,) = jnp.nonzero(flat, size=size, fill_value=0)
    return slot_of, entries.astype(jnp.int32), jnp.arange(size) < jnp.sum(flat, dtype=jnp.int32)


def prefix_session_graphs(item_ids, student_index, positions, click_budget: int = 0,
                          node_budget: int = 0) -> PrefixGraphs:
    """Builds the packed session graph of the prefix before every click of every row (static shapes).

    Args:
      item_ids, student_index, positions: ``[B, L]`` int row features (``study.data.row_format``). The
        prefix of position ``i`` is the clicks ``j`` of the same student with ``positions[j] < positions[i]``;
        consecutive clicks are those whose ``positions`` differ by one.
      click_budget, node_budget: click slots ``C`` and node slots ``P`` (0 = :func:`worst_case_budgets`,
        never too small).

    Returns:
      A :class:`PrefixGraphs`.
    """
    item_ids = jnp.asarray(item_ids, jnp.int32)
    positions = jnp.asarray(positions, jnp.int32)
    batch, length = item_ids.shape
    worst_clicks, worst_pairs = worst_case_budgets(batch, length)
    num_click_slots, num_node_slots = click_budget or worst_clicks, node_budget or worst_pairs
    same_student, in_prefix = prefix_clicks(item_ids, student_index, positions)
    same_item = same_student & (item_ids[:, :, None] == item_ids[:, None, :])
    never = jnp.iinfo(jnp.int32).max
    # Row position of the first click of each click's item (the click that holds the node).
    first_click = jnp.argmin(jnp.where(same_item, positions[:, None, :], never), axis=-1).astype(jnp.int32)
    # [b, j, k]: click k comes just before click j.
    is_previous = same_student & (positions[:, None, :] == positions[:, :, None] - 1)
    has_previous = jnp.any(is_previous, axis=-1)
    previous = jnp.argmax(is_previous, axis=-1).astype(jnp.int32)
    last_click = jnp.argmax(jnp.where(in_prefix, positions[:, None, :], -1), axis=-1).astype(jnp.int32)

    is_item = reserved_ids.is_item(item_ids)
    click_of, click_positions, click_used = _pack(is_item, num_click_slots)
    pair_of, pairs, used = _pack(in_prefix, num_node_slots)
    row, rest = jnp.divmod(pairs, length * length)
    query, click = jnp.divmod(rest, length)
    own = jnp.arange(num_node_slots, dtype=jnp.int32)
    node_click = first_click[row, click]
    click_node = jnp.where(used, pair_of[row, query, node_click], own)
    has_edge = used & has_previous[row, click]
    senders = jnp.where(has_edge, pair_of[row, query, first_click[row, previous[row, click]]], own)
    receivers = jnp.where(has_edge, click_node, own)
    is_node = used & (node_click == click)
    graph = jnp.where(used, click_of[row, query], num_click_slots)
    counts = jnp.bincount(graph, length=num_click_slots + 1).astype(jnp.int32)
    graphs = jraph.GraphsTuple(
        nodes=jnp.where(is_node, item_ids[row, click], reserved_ids.PAD), edges=has_edge.astype(jnp.float32),
        senders=senders, receivers=receivers, globals=None, n_node=counts, n_edge=counts,
    )
    has_history = jnp.any(in_prefix, axis=-1)
    # Click slot q's prefix: its last click's node (row and position of slot q from its flat position).
    q_row, q_position = jnp.divmod(click_positions, length)
    last_node = jnp.where(click_used & has_history[q_row, q_position],
                          pair_of[q_row, q_position, first_click[q_row, last_click[q_row, q_position]]], 0)
    return PrefixGraphs(
        graphs=graphs, position=jnp.where(click_used, click_positions, 0),
        click=jnp.where(used, click_of[row, click], 0),
        previous=jnp.where(has_edge, click_of[row, previous[row, click]], 0), click_node=click_node,
        graph=graph, is_node=is_node, last_node=last_node,
        scored_by=jnp.where(has_history, click_of, num_click_slots),
        num_clicks=jnp.sum(is_item, dtype=jnp.int32), num_pairs=jnp.sum(in_prefix, dtype=jnp.int32),
    )


def neighbour_mean(graph: jraph.GraphsTuple, features, direction: str):
    """``A_out @ features`` (``direction="out"``) or ``A_in @ features`` (``"in"``) of a padded session graph.

    Args:
      graph: one ``jraph.GraphsTuple`` whose ``edges`` ``[E] float`` weigh each transition (1, or 0 for a
        padding edge); parallel edges are repeated transitions.
      features: ``[N, f]`` node features.
      direction: "out" averages over each node's outgoing transitions' targets, "in" over its incoming
        transitions' sources.

    Returns:
      ``[N, f] float32``: the mean (0 for a node without such transitions), i.e. the paper's ``A_out V`` /
      ``A_in V`` with ``A[i, j] = count / degree``.
    """
    if direction not in ("out", "in"):
        raise ValueError(f"direction must be 'out' or 'in', got {direction!r}")
    sources = graph.receivers if direction == "out" else graph.senders
    return message_mean(graph, features[sources], direction, features.shape[0])


def message_mean(graph: jraph.GraphsTuple, messages, direction: str, num_nodes: int):
    """:func:`neighbour_mean` from the message of every edge (``messages [E, f]``, the features of its
    target for "out", of its source for "in") -> ``[num_nodes, f] float32``."""
    targets = graph.senders if direction == "out" else graph.receivers
    weights = graph.edges.astype(jnp.float32)
    total = jraph.segment_sum(weights[:, None] * messages.astype(jnp.float32), targets, num_nodes)
    degree = jraph.segment_sum(weights, targets, num_nodes)
    return total / jnp.maximum(degree, 1.0)[:, None]


class GatedGraphCell(nn.Module):
    """One gated-GNN propagation step over a packed batch of session graphs (``PrefixGraphs.graphs``).

    Parameters (the paper's names): ``out_edges`` H_out and ``in_edges`` H_in ``[d, d]``, ``edge_bias`` b
    ``[2d]``, ``input_gates`` [W_z | W_r | W_o] ``[2d, 3d]``, ``hidden_gates`` [U_z | U_r | U_o] ``[d, 3d]``.
    """

    emb_dim: int
    dtype: Any = jnp.float32
    param_init: str = "normal_0.1"  # config field model.init: see initializer()

    def setup(self):
        d, init = self.emb_dim, initializer(self.param_init)
        self.out_edges = self.param("out_edges", init, (d, d))
        self.in_edges = self.param("in_edges", init, (d, d))
        self.edge_bias = self.param("edge_bias", init, (2 * d,))
        self.input_gates = self.param("input_gates", init, (2 * d, 3 * d))
        self.hidden_gates = self.param("hidden_gates", init, (d, 3 * d))

    def _cast(self, x):
        return jnp.asarray(x, self.dtype)

    def _gru(self, input_terms, hidden, hidden_terms):
        """``input_terms`` = W a ``[..., 3d]``, ``hidden_terms`` = [U_z v, U_r v] ``[..., 2d]`` -> new ``v``."""
        d = self.emb_dim
        update = nn.sigmoid(input_terms[..., :d] + hidden_terms[..., :d])
        reset = nn.sigmoid(input_terms[..., d:2 * d] + hidden_terms[..., d:])
        candidate = jnp.tanh(input_terms[..., 2 * d:] + (reset * hidden) @ self._cast(self.hidden_gates[:, 2 * d:]))
        return (1 - update) * hidden + update * candidate

    def __call__(self, graphs: jraph.GraphsTuple, hidden):
        """A step from any node vectors ``hidden [N, d]`` -> ``[N, d]``."""
        d = self.emb_dim
        a = jnp.concatenate([
            self._cast(neighbour_mean(graphs, hidden, "out")) @ self._cast(self.out_edges),
            self._cast(neighbour_mean(graphs, hidden, "in")) @ self._cast(self.in_edges),
        ], axis=-1) + self._cast(self.edge_bias)
        return self._gru(a @ self._cast(self.input_gates), hidden, hidden @ self._cast(self.hidden_gates[:, :2 * d]))

    def first_step(self, prefix: "PrefixGraphs", click_embeddings):
        """The same step when every node starts from the embedding of its click: ``click_embeddings [C, d]``
        of the click slots of ``prefix`` -> ``[P, d]``.

        The linear maps commute with the neighbour means (``W A V H = A (V H W)``), so they are applied
        once per click instead of once per node of every prefix graph, and an edge's message is read from
        the click it comes from (the transition into click ``j`` carries ``j``'s item out of the node of
        the click before it, and that click's item into ``j``'s node). Equal to ``__call__`` on the gathered
        embeddings up to float rounding.
        """
        d = self.emb_dim
        gates = self._cast(self.input_gates)
        out_terms = click_embeddings @ (self._cast(self.out_edges) @ gates[:d])  # [C, 3d]
        in_terms = click_embeddings @ (self._cast(self.in_edges) @ gates[d:])
        nodes = prefix.click.shape[0]
        input_terms = (self._cast(message_mean(prefix.graphs, out_terms[prefix.click], "out", nodes))
                       + self._cast(message_mean(prefix.graphs, in_terms[prefix.previous], "in", nodes))
                       + self._cast(self.edge_bias) @ gates)
        hidden_terms = click_embeddings @ self._cast(self.hidden_gates[:, :2 * d])
        return self._gru(input_terms, click_embeddings[prefix.click], hidden_terms[prefix.click])


class AttentionReadout(nn.Module):
    """Hybrid session embedding ``s_h = W_3 [s_l; s_g]`` with the soft-attention global part ``s_g``.

    ``clicks [P, d]`` the node vector of each click of every session, ``session [P] int`` the session of
    each (``>= num_sessions``: none), ``last [num_sessions, d]`` (``s_l``) -> ``[num_sessions, d]``.
    Parameters: ``last_click`` W_1, ``click`` W_2 with bias c, ``attention`` q, ``hybrid`` W_3.
    """

    emb_dim: int
    dtype: Any = jnp.float32
    param_init: str = "normal_0.1"  # config field model.init: see initializer()

    @nn.compact
    def __call__(self, clicks, session, last):
        init = initializer(self.param_init)

        def dense(name, features, x, use_bias=False):
            return nn.Dense(features, use_bias=use_bias, dtype=self.dtype, kernel_init=init, bias_init=init,
                            name=name)(x)

        num_sessions = last.shape[0]
        query = dense("last_click", self.emb_dim, last)
        padded_query = jnp.concatenate([query, jnp.zeros_like(query[:1])])  # session index num_sessions: none
        alpha = dense("attention", 1, nn.sigmoid(padded_query[session]
                                                 + dense("click", self.emb_dim, clicks, use_bias=True)))
        global_part = jraph.segment_sum(alpha * clicks, session, num_sessions)  # out-of-range sessions dropped
        return dense("hybrid", self.emb_dim, jnp.concatenate([last, global_part.astype(last.dtype)], axis=-1))


class SRGNN(nn.Module):
    """SR-GNN next-item model on model rows: ``batch -> logits [B, L, vocab_size] float32``.

    ``batch`` needs ``item_ids``, ``student_index``, ``positions`` ``[B, L] int``; ``logits[b, i]`` uses only
    the same student's clicks at earlier positions. ``train`` is accepted for the common interface (the
    model has no dropout).
    """

    vocab_size: int
    emb_dim: int = 100
    gnn_steps: int = 1
    dtype: Any = jnp.float32
    param_init: str = "normal_0.1"  # config field model.init: see initializer()
    click_budget: int = 0
    node_budget: int = 0

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "SRGNN":
        """From a model config: ``vocab_size``, ``emb_dim``, ``gnn_steps`` (default 1), ``dtype``, ``init``
        (default "normal_0.1"), ``click_budget`` and ``node_budget`` (default 0: the worst case)."""
        return cls(
            vocab_size=config.vocab_size,
            emb_dim=config.emb_dim,
            gnn_steps=config.get("gnn_steps", 1),
            dtype=jnp.dtype(config.get("dtype", "float32")),
            param_init=config.get("init", "normal_0.1"),
            click_budget=config.get("click_budget", 0),
            node_budget=config.get("node_budget", 0),
        )

    def _scores(self, batch, embedding, budgets):
        """Logits ``[B, L, V]`` with the prefix graphs packed to ``budgets = (clicks, pairs)``; garbage when the
        batch does not fit them."""
        prefix = prefix_session_graphs(batch["item_ids"], batch["student_index"], batch["positions"], *budgets)
        item_ids = jnp.asarray(batch["item_ids"], jnp.int32).reshape(-1)
        click_embeddings = embedding[item_ids[prefix.position]].astype(self.dtype)  # [C, d]
        cell = GatedGraphCell(self.emb_dim, self.dtype, self.param_init, name="gnn")
        hidden = cell.first_step(prefix, click_embeddings)  # [P, d]
        for _ in range(self.gnn_steps - 1):
            hidden = cell(prefix.graphs, hidden)
        session = AttentionReadout(self.emb_dim, self.dtype, self.param_init, name="readout")(
            hidden[prefix.click_node], prefix.graph, hidden[prefix.last_node])  # [C, d]
        no_history = self.param("no_history_session", initializer(self.param_init), (self.emb_dim,))
        session = jnp.concatenate([session.astype(jnp.float32), no_history[None]])
        logits = session @ jnp.asarray(embedding, jnp.float32).T  # [C + 1, V]: row C for empty prefixes
        return logits[prefix.scored_by]

    @nn.compact
    def __call__(self, batch, train: bool = False):
        del train
        if self.gnn_steps < 1:
            raise ValueError(f"gnn_steps must be >= 1 (config field model.gnn_steps), got {self.gnn_steps}")
        if self.node_budget < 0 or self.click_budget < 0:
            raise ValueError(f"click_budget and node_budget must be >= 0 (config fields model.click_budget, "
                             f"model.node_budget), got {self.click_budget}, {self.node_budget}")
        item_ids = jnp.asarray(batch["item_ids"], jnp.int32)
        embedding = self.param(
            "item_embedding", nn.with_logical_partitioning(initializer(self.param_init), ("vocab", "embed")),
            (self.vocab_size, self.emb_dim),
        )
        worst = worst_case_budgets(*item_ids.shape)
        budgets = tuple(min(budget or most, most) for budget, most in zip((self.click_budget, self.node_budget), worst))
        if budgets == worst or self.is_initializing():
            return self._scores(batch, embedding, worst)
        _, in_prefix = prefix_clicks(item_ids, batch["student_index"], batch["positions"])
        fits = ((jnp.sum(reserved_ids.is_item(item_ids)) <= budgets[0]) & (jnp.sum(in_prefix) <= budgets[1]))
        # The worst case is rematerialised in its backward pass, so that the residuals the fitting branch
        # carries (sized by the larger branch under autodiff) stay those of the inputs.
        return nn.cond(fits, lambda model, *args: model._scores(*args, budgets),
                       nn.remat(lambda model, *args: model._scores(*args, worst)), self, batch, embedding)


def session_next_item_loss(logits, batch, label_smoothing: float = 0.0):
    """``next_item_loss`` over the paper's targets only: every click but a student's first in the row.

    Same arguments and ``(loss_sum, weight_sum)`` result as ``study.models.losses.next_item_loss``; ``batch``
    also needs ``positions [B, L]``. Positions with ``positions == 0`` (no history) are not targets.
    """
    targets = jnp.where(batch["positions"] > 0, batch["item_ids"], reserved_ids.PAD)
    return next_item_loss(logits, {**batch, "item_ids": targets}, label_smoothing)
