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
length: the batch's graphs are one ``jraph.GraphsTuple`` of ``node_budget`` node slots, one slot per
*(query position, earlier click of its student)* pair, i.e. ``n (n - 1) / 2`` slots for a session of ``n``
clicks in a row of any length. The slot of pair ``(i, j)`` is the node of click ``j``'s item in the graph of
position ``i`` when ``j`` is that item's first click, and an isolated padding node otherwise; it is also the
edge slot of the transition into click ``j`` (weight 0 for a first click). Graph ``b * L + i`` holds
position ``i`` of row ``b``'s pairs (contiguous, as ``jraph`` wants), a last graph the unused slots. The
readout sums over the pairs of a graph, so a click of a repeated item counts once per click.

``model.node_budget`` (0 = the worst case of the batch shape, ``B * L * (L - 1) / 2``, exactly enough for
every possible batch) sets the slots. A batch with more pairs than the budget is not truncated: the model
then runs the same computation at the worst-case budget (``flax.linen.cond``), so results never depend on
the budget, only speed does. Size it from the data: the sum of the ``B`` largest ``n (n - 1) / 2`` over the
training rows can never overflow.
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

    ``P`` = the node budget. Slot ``p`` stands for one pair (query position ``i``, click ``j``) of a row,
    ``j`` a click of the same student at an earlier position; pairs are in (row, ``i``, ``j``) order, then
    unused slots.

    Attributes:
      graphs: one ``jraph.GraphsTuple``: ``B * L + 1`` graphs (graph ``b * L + i`` = the prefix before position
        ``i`` of row ``b``; the last one holds the unused slots). ``nodes [P] int32`` item id of a node slot
        (``PAD`` for the other slots); ``edges [P] float32`` 1 for the transition into click ``j`` (0: ``j``
        is a first click, or an unused slot); ``senders``/``receivers [P] int32`` slot indices (a slot
        without transition points at itself); ``n_node``/``n_edge [B * L + 1] int32``; ``globals`` None.
      click: ``[P] int32``, flat row position ``b * L + j`` of each slot's click (0 for unused slots).
      click_node: ``[P] int32``, slot of the node of that click's item in the same graph (itself if unused).
      graph: ``[P] int32``, graph of each slot (``B * L`` for unused slots).
      is_node: ``[P] bool``, the slot is a node: ``j`` is the first click of its item.
      last_node: ``[B, L] int32``, slot of the node of the last click of each prefix (0 where empty).
      has_history: ``[B, L] bool``, the prefix is not empty.
      num_pairs: ``[] int32``, the batch's pairs; more than ``P``: the budget is too small for this batch
        (the other fields are then incomplete).
    """

    graphs: jraph.GraphsTuple
    click: jax.Array
    click_node: jax.Array
    graph: jax.Array
    is_node: jax.Array
    last_node: jax.Array
    has_history: jax.Array
    num_pairs: jax.Array


def worst_case_pairs(batch: int, length: int) -> int:
    """Most (query, earlier click) pairs ``B`` rows of length ``L`` can hold: ``B * L * (L - 1) / 2`` (>= 1)."""
    return max(batch * length * (length - 1) // 2, 1)


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


def prefix_session_graphs(item_ids, student_index, positions, node_budget: int = 0) -> PrefixGraphs:
    """Builds the packed session graph of the prefix before every position of every row (static shapes).

    Args:
      item_ids, student_index, positions: ``[B, L]`` int row features (``study.data.row_format``). The
        prefix of position ``i`` is the clicks ``j`` of the same student with ``positions[j] < positions[i]``;
        consecutive clicks are those whose ``positions`` differ by one.
      node_budget: slots ``P`` (0 = :func:`worst_case_pairs`, never too small).

    Returns:
      A :class:`PrefixGraphs`.
    """
    item_ids = jnp.asarray(item_ids, jnp.int32)
    student_index = jnp.asarray(student_index, jnp.int32)
    positions = jnp.asarray(positions, jnp.int32)
    batch, length = item_ids.shape
    size = node_budget or worst_case_pairs(batch, length)
    same_student, click_mask = prefix_clicks(item_ids, student_index, positions)
    same_item = same_student & (item_ids[:, :, None] == item_ids[:, None, :])
    never = jnp.iinfo(jnp.int32).max
    # Row position of the first click of each click's item (the click that holds the node).
    first_click = jnp.argmin(jnp.where(same_item, positions[:, None, :], never), axis=-1).astype(jnp.int32)
    # [b, j, k]: click k comes just before click j.
    is_previous = same_student & (positions[:, None, :] == positions[:, :, None] - 1)
    has_previous = jnp.any(is_previous, axis=-1)
    previous = jnp.argmax(is_previous, axis=-1).astype(jnp.int32)
    has_history = jnp.any(click_mask, axis=-1)
    last_click = jnp.argmax(jnp.where(click_mask, positions[:, None, :], -1), axis=-1).astype(jnp.int32)

    flat_mask = click_mask.reshape(-1)
    num_pairs = jnp.sum(flat_mask, dtype=jnp.int32)
    slot_of = (jnp.cumsum(flat_mask, dtype=jnp.int32) - 1).reshape(batch, length, length)  # [b, i, j] -> slot
    (flat,) = jnp.nonzero(flat_mask, size=size, fill_value=0)
    row, rest = jnp.divmod(flat.astype(jnp.int32), length * length)
    query, click = jnp.divmod(rest, length)
    own = jnp.arange(size, dtype=jnp.int32)
    used = own < num_pairs
    node_click = first_click[row, click]
    click_node = jnp.where(used, slot_of[row, query, node_click], own)
    has_edge = used & has_previous[row, click]
    senders = jnp.where(has_edge, slot_of[row, query, first_click[row, previous[row, click]]], own)
    receivers = jnp.where(has_edge, click_node, own)
    is_node = used & (node_click == click)
    num_graphs = batch * length
    graph = jnp.where(used, row * length + query, num_graphs)
    counts = jnp.bincount(graph, length=num_graphs + 1).astype(jnp.int32)
    graphs = jraph.GraphsTuple(
        nodes=jnp.where(is_node, item_ids[row, click], reserved_ids.PAD), edges=has_edge.astype(jnp.float32),
        senders=senders, receivers=receivers, globals=None, n_node=counts, n_edge=counts,
    )
    rows = jnp.arange(batch)[:, None]
    last_node = jnp.where(has_history, slot_of[rows, jnp.arange(length)[None, :], first_click[rows, last_click]], 0)
    return PrefixGraphs(graphs, jnp.where(used, row * length + click, 0), click_node, graph, is_node,
                        last_node, has_history, num_pairs)


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
    sources, targets = (graph.receivers, graph.senders) if direction == "out" else (graph.senders, graph.receivers)
    features = features.astype(jnp.float32)
    num_nodes = features.shape[0]
    weights = graph.edges.astype(jnp.float32)
    total = jraph.segment_sum(weights[:, None] * features[sources], targets, num_nodes)
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

    def first_step(self, graphs: jraph.GraphsTuple, click_embeddings, click):
        """The same step when node ``p`` holds ``click_embeddings[click[p]]`` (``[C, d]``, ``click [N]``)
        -> ``[N, d]``.

        The linear maps commute with the neighbour means (``W A V H = A (V H W)``), so they are applied
        once per click instead of once per node of every prefix graph; only the means and the reset-gated
        term are per node. Equal to ``__call__`` on the gathered embeddings up to float rounding.
        """
        d = self.emb_dim
        gates = self._cast(self.input_gates)
        out_terms = click_embeddings @ (self._cast(self.out_edges) @ gates[:d])  # [C, 3d]
        in_terms = click_embeddings @ (self._cast(self.in_edges) @ gates[d:])
        input_terms = (self._cast(neighbour_mean(graphs, out_terms[click], "out"))
                       + self._cast(neighbour_mean(graphs, in_terms[click], "in"))
                       + self._cast(self.edge_bias) @ gates)
        hidden_terms = click_embeddings @ self._cast(self.hidden_gates[:, :2 * d])
        return self._gru(input_terms, click_embeddings[click], hidden_terms[click])


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
        alpha = dense("attention", 1, nn.sigmoid(padded_query[jnp.minimum(session, num_sessions)]
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
    node_budget: int = 0

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "SRGNN":
        """From a model config: ``vocab_size``, ``emb_dim``, ``gnn_steps`` (default 1), ``dtype``, ``init``
        (default "normal_0.1"), ``node_budget`` (default 0: the worst case)."""
        return cls(
            vocab_size=config.vocab_size,
            emb_dim=config.emb_dim,
            gnn_steps=config.get("gnn_steps", 1),
            dtype=jnp.dtype(config.get("dtype", "float32")),
            param_init=config.get("init", "normal_0.1"),
            node_budget=config.get("node_budget", 0),
        )

    def _sessions(self, batch, node_budget, row_embeddings):
        """Session vectors ``[B * L, d]`` of every prefix (garbage where the prefix is empty, or where the
        batch has more pairs than ``node_budget``)."""
        prefix = prefix_session_graphs(batch["item_ids"], batch["student_index"], batch["positions"], node_budget)
        cell = GatedGraphCell(self.emb_dim, self.dtype, self.param_init, name="gnn")
        hidden = cell.first_step(prefix.graphs, row_embeddings, prefix.click)  # [P, d]
        for _ in range(self.gnn_steps - 1):
            hidden = cell(prefix.graphs, hidden)
        return AttentionReadout(self.emb_dim, self.dtype, self.param_init, name="readout")(
            hidden[prefix.click_node], prefix.graph, hidden[prefix.last_node.reshape(-1)])

    @nn.compact
    def __call__(self, batch, train: bool = False):
        del train
        if self.gnn_steps < 1:
            raise ValueError(f"gnn_steps must be >= 1 (config field model.gnn_steps), got {self.gnn_steps}")
        if self.node_budget < 0:
            raise ValueError(f"node_budget must be >= 0 (config field model.node_budget), got {self.node_budget}")
        item_ids = jnp.asarray(batch["item_ids"], jnp.int32)
        rows, length = item_ids.shape
        init = initializer(self.param_init)
        embedding = self.param(
            "item_embedding", nn.with_logical_partitioning(init, ("vocab", "embed")), (self.vocab_size, self.emb_dim),
        )
        # Every prefix graph's nodes start from the embeddings of the row's clicks: gathered once per click.
        row_embeddings = embedding[item_ids].astype(self.dtype).reshape(rows * length, self.emb_dim)
        worst = worst_case_pairs(rows, length)
        _, in_prefix = prefix_clicks(item_ids, batch["student_index"], batch["positions"])
        budget = min(self.node_budget or worst, worst)
        if budget == worst or self.is_initializing():
            session = self._sessions(batch, worst, row_embeddings)
        else:
            fits = jnp.sum(in_prefix) <= budget
            session = nn.cond(fits, lambda model, *args: model._sessions(args[0], budget, args[1]),
                              lambda model, *args: model._sessions(args[0], worst, args[1]), self, batch,
                              row_embeddings)
        has_history = jnp.any(in_prefix, axis=-1)
        no_history = self.param("no_history_session", init, (self.emb_dim,))
        session = jnp.where(has_history[..., None], session.reshape(rows, length, -1).astype(jnp.float32),
                            no_history)
        return jnp.einsum("bld,vd->blv", session, jnp.asarray(embedding, jnp.float32))


def session_next_item_loss(logits, batch, label_smoothing: float = 0.0):
    """``next_item_loss`` over the paper's targets only: every click but a student's first in the row.

    Same arguments and ``(loss_sum, weight_sum)`` result as ``study.models.losses.next_item_loss``; ``batch``
    also needs ``positions [B, L]``. Positions with ``positions == 0`` (no history) are not targets.
    """
    targets = jnp.where(batch["positions"] > 0, batch["item_ids"], reserved_ids.PAD)
    return next_item_loss(logits, {**batch, "item_ids": targets}, label_smoothing)
