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
  cross-entropy. All parameters start from N(0, 0.1^2), as the paper states.

Where the official code differs and this module follows the paper: it marks each transition once (0/1)
before normalising; it uses PyTorch's GRU cell (biased gates, the update gate keeping the old state) and
biased linear maps; it initialises uniformly in +-1/sqrt(d).

**Adaptation to model rows.** A session is one student's sequence within a row (Individual rows: the whole
row). ``logits[b, i]`` scores the item at position ``i`` from the session *prefix* made of the same
student's clicks at strictly earlier ``positions``, so every position gets its own graph: the graph of the
prefix before ``i``. Training on a row therefore covers exactly the paper's sequence augmentation (every
prefix with its next click as target). A position with no earlier click of its student (``positions == 0``:
the first click, also PAD and SEP) is scored by a learned session vector ``no_history_session`` (a
popularity prior); the paper never predicts a first click, and :func:`session_next_item_loss` trains on the
paper's targets only. ``OOV`` clicks share one node, like any repeated item.

**Static layout** (``prefix_session_graphs``). In row ``b`` the graph of query position ``i`` has ``L`` node
slots and ``L`` edge slots (``L`` = row length): node slot ``k`` is the node of the item first clicked at
row position ``k``; edge slot ``j`` is the transition into click ``j`` from the click before it. Slots
outside the prefix are padding: nodes that no active edge touches (never read), and edges of weight 0
that point inside their own graph, so each graph's blocks stay contiguous as ``jraph.GraphsTuple`` wants.
One row holds ``L`` such graphs (``L^2`` nodes, ``L^2`` edges); message passing is ``jraph.segment_sum``
per row under ``jax.vmap``. The first propagation step starts from the item embeddings, which are the same in
every graph of a row, so its linear maps run once per row position (``GatedGraphCell.first_step``); only the
neighbour means and the reset-gated term run per node. Memory: ``B * L^2 * emb_dim`` values per hidden tensor
(B=64, L=65, d=100: 27M floats); ``configs/srgnn.py:learning_ally`` accumulates gradients over micro-batches
for that reason.
"""

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import ml_collections

from study.data import reserved_ids
from study.models.losses import next_item_loss

_INIT = nn.initializers.normal(stddev=0.1)  # the paper: every parameter ~ N(0, 0.1^2)


class PrefixGraphs(NamedTuple):
    """The session graphs of every prefix of a batch of rows (``B`` rows of length ``L``).

    Attributes:
      graphs: ``jraph.GraphsTuple`` whose fields all carry a leading row axis ``[B]``: per row ``L`` graphs
        (graph ``i`` = prefix before position ``i``) of ``L`` node and ``L`` edge slots each.
        ``nodes [B, L*L] int32`` item id of each node slot (``PAD`` for padding slots);
        ``edges [B, L*L] float32`` 1 for a transition of the prefix, 0 for padding;
        ``senders``/``receivers [B, L*L] int32`` row-local node indices ``i * L + slot``;
        ``n_node``/``n_edge [B, L] int32`` all ``L``; ``globals`` None.
      node_mask: ``[B, L, L] bool``, ``[b, i, k]``: node slot ``k`` is a node of the graph of position ``i``.
      click_slots: ``[B, L] int32``, node slot of the click at each position (the slot of the student's
        first click of that item).
      click_mask: ``[B, L, L] bool``, ``[b, i, j]``: click ``j`` belongs to the prefix of position ``i``.
      last_click: ``[B, L] int32``, row position of the last click of each prefix (0 where empty).
      has_history: ``[B, L] bool``, the prefix is not empty.
    """

    graphs: jraph.GraphsTuple
    node_mask: jax.Array
    click_slots: jax.Array
    click_mask: jax.Array
    last_click: jax.Array
    has_history: jax.Array


def prefix_session_graphs(item_ids, student_index, positions) -> PrefixGraphs:
    """Builds the session graph of the prefix before every position of every row (static shapes).

    Args:
      item_ids, student_index, positions: ``[B, L]`` int row features (``study.data.row_format``). The
        prefix of position ``i`` is the clicks ``j`` of the same student with ``positions[j] < positions[i]``;
        consecutive clicks are those whose ``positions`` differ by one.

    Returns:
      A :class:`PrefixGraphs`.
    """
    item_ids = jnp.asarray(item_ids, jnp.int32)
    student_index = jnp.asarray(student_index, jnp.int32)
    positions = jnp.asarray(positions, jnp.int32)
    batch, length = item_ids.shape
    is_item = reserved_ids.is_item(item_ids)
    # [b, i, j]: clicks i and j are of the same student.
    same_student = (
        (student_index[:, :, None] == student_index[:, None, :]) & is_item[:, :, None] & is_item[:, None, :]
    )
    click_mask = same_student & (positions[:, None, :] < positions[:, :, None])
    same_item = same_student & (item_ids[:, :, None] == item_ids[:, None, :])
    never = jnp.iinfo(jnp.int32).max
    click_slots = jnp.argmin(jnp.where(same_item, positions[:, None, :], never), axis=-1).astype(jnp.int32)
    # [b, j, k]: click k comes just before click j.
    is_previous = same_student & (positions[:, None, :] == positions[:, :, None] - 1)
    has_previous = jnp.any(is_previous, axis=-1)
    previous = jnp.argmax(is_previous, axis=-1)

    has_history = jnp.any(click_mask, axis=-1)
    last_click = jnp.argmax(jnp.where(click_mask, positions[:, None, :], -1), axis=-1).astype(jnp.int32)

    slots = jnp.arange(length, dtype=jnp.int32)
    node_mask = click_mask & (click_slots == slots)[:, None, :]
    edge_active = click_mask & has_previous[:, None, :]
    sender_slots = jnp.take_along_axis(click_slots, previous, axis=1)
    graph_offsets = (slots * length)[None, :, None]  # [1, L(graph), 1]
    shape = (batch, length * length)
    senders = jnp.broadcast_to(graph_offsets + sender_slots[:, None, :], (batch, length, length)).reshape(shape)
    receivers = jnp.broadcast_to(graph_offsets + click_slots[:, None, :], (batch, length, length)).reshape(shape)
    nodes = jnp.where(node_mask, item_ids[:, None, :], reserved_ids.PAD).reshape(shape)
    counts = jnp.full((batch, length), length, jnp.int32)
    graphs = jraph.GraphsTuple(
        nodes=nodes, edges=edge_active.reshape(shape).astype(jnp.float32), senders=senders.astype(jnp.int32),
        receivers=receivers.astype(jnp.int32), globals=None, n_node=counts, n_edge=counts,
    )
    return PrefixGraphs(graphs, node_mask, click_slots, click_mask, last_click, has_history)


def neighbour_mean(graph: jraph.GraphsTuple, features, direction: str):
    """``A_out @ features`` (``direction="out"``) or ``A_in @ features`` (``"in"``) of a padded session graph.

    Args:
      graph: one ``jraph.GraphsTuple`` (no leading row axis; ``jax.vmap`` it over rows) whose ``edges``
        ``[E] float`` weigh each transition (1, or 0 for a padding edge); parallel edges are repeated
        transitions.
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


def _rows_mean(graphs, features, direction):
    """:func:`neighbour_mean` over rows: ``graphs`` fields ``[B, ...]``, ``features [B, N, f]``."""
    return jax.vmap(lambda graph, x: neighbour_mean(graph, x, direction))(graphs, features)


class GatedGraphCell(nn.Module):
    """One gated-GNN propagation step over the rows' prefix graphs (``PrefixGraphs.graphs``).

    Parameters (the paper's names): ``out_edges`` H_out and ``in_edges`` H_in ``[d, d]``, ``edge_bias`` b
    ``[2d]``, ``input_gates`` [W_z | W_r | W_o] ``[2d, 3d]``, ``hidden_gates`` [U_z | U_r | U_o] ``[d, 3d]``.
    """

    emb_dim: int
    dtype: Any = jnp.float32

    def setup(self):
        d = self.emb_dim
        self.out_edges = self.param("out_edges", _INIT, (d, d))
        self.in_edges = self.param("in_edges", _INIT, (d, d))
        self.edge_bias = self.param("edge_bias", _INIT, (2 * d,))
        self.input_gates = self.param("input_gates", _INIT, (2 * d, 3 * d))
        self.hidden_gates = self.param("hidden_gates", _INIT, (d, 3 * d))

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
        """A step from any node vectors ``hidden [B, N, d]`` -> ``[B, N, d]``."""
        d = self.emb_dim
        a = jnp.concatenate([
            self._cast(_rows_mean(graphs, hidden, "out")) @ self._cast(self.out_edges),
            self._cast(_rows_mean(graphs, hidden, "in")) @ self._cast(self.in_edges),
        ], axis=-1) + self._cast(self.edge_bias)
        return self._gru(a @ self._cast(self.input_gates), hidden, hidden @ self._cast(self.hidden_gates[:, :2 * d]))

    def first_step(self, graphs: jraph.GraphsTuple, row_embeddings):
        """The same step when node slot ``k`` of every graph holds ``row_embeddings[:, k]`` (``[B, L, d]``,
        graphs of ``L`` slots) -> ``[B, L * L, d]``.

        The linear maps commute with the neighbour means (``W A V H = A (V H W)``), so they are applied
        once per row position instead of once per node of every graph; only the means and the reset-gated
        term are per node. Equal to ``__call__`` on the broadcast embeddings up to float rounding.
        """
        d = self.emb_dim
        rows, length, _ = row_embeddings.shape
        gates = self._cast(self.input_gates)

        def per_node(x):  # [B, L, f] -> [B, L * L, f]: the value of slot k in every graph
            return jnp.broadcast_to(x[:, None], (rows, length) + x.shape[1:]).reshape(rows, length * length, -1)

        out_terms = row_embeddings @ (self._cast(self.out_edges) @ gates[:d])  # [B, L, 3d]
        in_terms = row_embeddings @ (self._cast(self.in_edges) @ gates[d:])
        input_terms = (self._cast(_rows_mean(graphs, per_node(out_terms), "out"))
                       + self._cast(_rows_mean(graphs, per_node(in_terms), "in"))
                       + self._cast(self.edge_bias) @ gates)
        hidden_terms = row_embeddings @ self._cast(self.hidden_gates[:, :2 * d])
        return self._gru(input_terms, per_node(row_embeddings), per_node(hidden_terms))


class AttentionReadout(nn.Module):
    """Hybrid session embedding ``s_h = W_3 [s_l; s_g]`` with the soft-attention global part ``s_g``.

    ``nodes [..., n, d]`` node vectors, ``last [..., d]`` (``s_l``), ``clicks [..., n]`` how many clicks of
    the session each node stands for (0 for padding) -> ``[..., d]``. Summing ``alpha`` over nodes weighted by
    their clicks equals the paper's sum over the session's clicks. Parameters: ``last_click`` W_1, ``click``
    W_2 with bias c, ``attention`` q, ``hybrid`` W_3.
    """

    emb_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, nodes, last, clicks):
        def dense(name, features, x, use_bias=False):
            return nn.Dense(features, use_bias=use_bias, dtype=self.dtype, kernel_init=_INIT, bias_init=_INIT,
                            name=name)(x)

        query = dense("last_click", self.emb_dim, last)[..., None, :]
        alpha = dense("attention", 1, nn.sigmoid(query + dense("click", self.emb_dim, nodes, use_bias=True)))
        weights = clicks.astype(alpha.dtype) * alpha[..., 0]
        global_part = jnp.sum(weights[..., None] * nodes, axis=-2)
        return dense("hybrid", self.emb_dim, jnp.concatenate([last, global_part], axis=-1))


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

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "SRGNN":
        """From a model config: ``vocab_size``, ``emb_dim``, ``gnn_steps`` (default 1), ``dtype``."""
        return cls(
            vocab_size=config.vocab_size,
            emb_dim=config.emb_dim,
            gnn_steps=config.get("gnn_steps", 1),
            dtype=jnp.dtype(config.get("dtype", "float32")),
        )

    @nn.compact
    def __call__(self, batch, train: bool = False):
        del train
        if self.gnn_steps < 1:
            raise ValueError(f"gnn_steps must be >= 1 (config field model.gnn_steps), got {self.gnn_steps}")
        prefix = prefix_session_graphs(batch["item_ids"], batch["student_index"], batch["positions"])
        rows, length = prefix.click_slots.shape
        embedding = self.param(
            "item_embedding", nn.with_logical_partitioning(_INIT, ("vocab", "embed")),
            (self.vocab_size, self.emb_dim),
        )
        # Node slot k of every graph holds the item at row position k, so the first step starts from the
        # row's embeddings (no per-node gather, whose backward pass would scatter B * L^2 rows).
        row_embeddings = embedding[batch["item_ids"]].astype(self.dtype)  # [B, L, d]
        cell = GatedGraphCell(self.emb_dim, self.dtype, name="gnn")
        hidden = cell.first_step(prefix.graphs, row_embeddings)
        for _ in range(self.gnn_steps - 1):
            hidden = cell(prefix.graphs, hidden)
        hidden = hidden.reshape(rows, length, length, self.emb_dim)  # [row, graph, node slot, d]
        last_slot = jnp.take_along_axis(prefix.click_slots, prefix.last_click, axis=1)  # [B, L]
        last = jnp.take_along_axis(hidden, last_slot[:, :, None, None], axis=2)[:, :, 0]
        # [b, i, k]: how many clicks of the prefix of position i have node slot k.
        node_clicks = jnp.einsum("bij,bjk->bik", prefix.click_mask.astype(jnp.float32),
                                 jax.nn.one_hot(prefix.click_slots, length, dtype=jnp.float32))
        session = AttentionReadout(self.emb_dim, self.dtype, name="readout")(hidden, last, node_clicks)
        no_history = self.param("no_history_session", _INIT, (self.emb_dim,))
        session = jnp.where(prefix.has_history[..., None], session.astype(jnp.float32), no_history)
        return jnp.einsum("bld,vd->blv", session, jnp.asarray(embedding, jnp.float32))


def session_next_item_loss(logits, batch, label_smoothing: float = 0.0):
    """``next_item_loss`` over the paper's targets only: every click but a student's first in the row.

    Same arguments and ``(loss_sum, weight_sum)`` result as ``study.models.losses.next_item_loss``; ``batch``
    also needs ``positions [B, L]``. Positions with ``positions == 0`` (no history) are not targets.
    """
    targets = jnp.where(batch["positions"] > 0, batch["item_ids"], reserved_ids.PAD)
    return next_item_loss(logits, {**batch, "item_ids": targets}, label_smoothing)
