"""The STUDY and Individual transformer decoders: one module, three attention policies.

``SequenceTransformer(attention=...)`` maps a batch of model rows to next-item logits
``[batch, length, vocab_size] float32``, where ``logits[b, i]`` scores the item at position ``i`` using only
what the temporal-causality contract allows (``study.models.attention_masks``):

* ``"individual"``, ``"study"`` -- single stream, as the official STUDY code. The input at position ``i`` is
  the embedding of the same student's *previous* item in the segment (``SEP`` embedding for the first item of
  a segment) plus a learned embedding of ``positions`` (plus a grade embedding if ``use_grade``). The policy
  only changes the attention mask. A classmate's interaction is seen one step late (through the next key of
  that classmate) and each classmate's last interaction in the row is never seen.
* ``"study_two_stream"`` -- XLNet-style query/content streams without that lag. The content stream carries
  the item *at* each position; the query stream carries what the single-stream input holds (the student's
  previous item in the segment + position (+ grade)), never the item it predicts; queries read content keys
  under the query mask and the logits come from the query stream. Both streams use the same layer weights (as XLNet),
  so the parameter tree is that of the single-stream model plus one query-start vector.

Architecture: pre-LayerNorm blocks (LayerNorm -> attention -> dropout -> residual; LayerNorm -> MLP(gelu) ->
dropout -> residual), a final LayerNorm, and an untied output layer with bias. Every attention layer also
has one learned *null* key/value that every query may attend to, so a query with no allowed key (the
first item of a student with no earlier classmate in the two-stream model; PAD and SEP positions) gets a
well-defined output that depends on no interaction.

Parameters are float32 and carry logical axis names ("vocab", "embed", "mlp", "heads", "kv") through
``nn.with_logical_partitioning``; activations are constrained with ("batch", "length", "embed"/"vocab").
Compute runs in ``dtype`` (float32 or bfloat16); the softmax of attention and the logits are float32.
Dropout (``dropout_rate``) is applied to the input embeddings, the attention weights, the MLP hidden layer and
each residual branch, in training only.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from study.data import reserved_ids
from study.models import attention_masks

ATTENTION_POLICIES = ("individual", "study", "study_two_stream")



def default_config() -> ml_collections.ConfigDict:
    """The transformer's model config at the official STUDY code's defaults.

    Fields: ``name`` ("transformer", its name in ``study.models.registry``), ``vocab_size`` (including the
    reserved ids; 0 = read from the dataset's ``vocab.json``), ``row_length`` (positions embedded),
    ``num_layers``, ``emb_dim``, ``num_heads``, ``mlp_dim``, ``dropout_rate``, ``attention`` ("individual" |
    "study" | "study_two_stream"), ``use_grade``, ``num_grades``, ``dtype`` ("float32" | "bfloat16", compute
    only), ``label_smoothing`` (of the training loss).
    """
    config = ml_collections.ConfigDict()
    config.name = "transformer"
    config.vocab_size = 2003  # 2000 items + PAD, OOV, SEP
    config.row_length = 65
    config.num_layers = 6
    config.emb_dim = 256
    config.num_heads = 8
    config.mlp_dim = 1024
    config.dropout_rate = 0.1
    config.attention = "study"
    config.use_grade = False
    config.num_grades = 13
    config.dtype = "float32"
    config.label_smoothing = 0.0
    return config


_EMBED_INIT = nn.initializers.normal(stddev=1.0)
_KERNEL_INIT = nn.initializers.xavier_uniform()
_BIAS_INIT = nn.initializers.zeros_init()


def _partitioned(init, axes):
    return nn.with_logical_partitioning(init, axes)


def _constrain_hidden(x):
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


def previous_item_ids(item_ids, student_index, positions):
    """The item each position's student did just before it in this segment: ``[B, L] -> [B, L] int32``.

    ``result[b, i] = item_ids[b, j]`` for the item position ``j`` of the same student with
    ``positions[j] == positions[i] - 1``; ``SEP`` where there is none (first item of a segment, PAD, SEP).
    Matching on (student, position) rather than on ``i - 1`` keeps this right for any order of the row.
    """
    is_item = reserved_ids.is_item(item_ids)
    is_previous = (
        (student_index[:, :, None] == student_index[:, None, :])
        & (positions[:, None, :] == positions[:, :, None] - 1)
        & is_item[:, :, None]
        & is_item[:, None, :]
    )
    previous = jnp.max(jnp.where(is_previous, item_ids[:, None, :], -1), axis=-1)
    return jnp.where(previous >= 0, previous, reserved_ids.SEP).astype(jnp.int32)


class MultiHeadAttention(nn.Module):
    """Multi-head dot-product attention under a boolean mask.

    ``queries [B, Lq, embed]``, ``memory [B, Lk, embed]`` -> ``[B, Lq, embed]``.

    Projections are stored with their true shapes (``[embed, heads, kv]`` and ``[heads, kv, embed]``) so that
    each carries its logical axis names (flax's ``DenseGeneral`` initialises a flattened 2-D kernel, which a
    3-D logical annotation cannot describe). ``mask [B, 1, Lq, Lk] bool``; a row must allow at least one key.
    The softmax runs in float32 whatever ``dtype``; dropout is applied to the attention weights.
    """

    num_heads: int
    dropout_rate: float
    dtype: Any

    @nn.compact
    def __call__(self, queries, memory, mask, deterministic: bool):
        emb_dim = queries.shape[-1]
        head_dim = emb_dim // self.num_heads
        # Xavier-uniform over the (embed) x (heads * kv) matrix each projection is.
        in_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=0, out_axis=(1, 2))
        out_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform", in_axis=(0, 1), out_axis=2)

        def project(name, inputs):
            kernel = self.param(
                f"{name}_kernel",
                _partitioned(in_init, ("embed", "heads", "kv")),
                (emb_dim, self.num_heads, head_dim),
            )
            bias = self.param(
                f"{name}_bias", _partitioned(_BIAS_INIT, ("heads", "kv")), (self.num_heads, head_dim)
            )
            kernel, bias = kernel.astype(self.dtype), bias.astype(self.dtype)
            return jnp.einsum("ble,ehk->blhk", inputs.astype(self.dtype), kernel) + bias

        query = project("query", queries)
        key = project("key", memory)
        value = project("value", memory)
        dropout_rng = None
        if not deterministic and self.dropout_rate > 0:
            dropout_rng = self.make_rng("dropout")
        attended = nn.dot_product_attention(
            query,
            key,
            value,
            mask=mask,
            dropout_rng=dropout_rng,
            dropout_rate=self.dropout_rate,
            deterministic=deterministic,
            dtype=self.dtype,
            force_fp32_for_softmax=True,
        )
        out_kernel = self.param(
            "out_kernel",
            _partitioned(out_init, ("heads", "kv", "embed")),
            (self.num_heads, head_dim, emb_dim),
        )
        out_bias = self.param("out_bias", _partitioned(_BIAS_INIT, ("embed",)), (emb_dim,))
        output = jnp.einsum("blhk,hke->ble", attended, out_kernel.astype(self.dtype))
        return output + out_bias.astype(self.dtype)


class MlpBlock(nn.Module):
    """Position-wise feed-forward layer: ``[B, L, embed] -> [B, L, embed]``."""

    mlp_dim: int
    dropout_rate: float
    dtype: Any

    @nn.compact
    def __call__(self, x, deterministic: bool):
        emb_dim = x.shape[-1]
        hidden = nn.Dense(
            self.mlp_dim,
            dtype=self.dtype,
            kernel_init=_partitioned(_KERNEL_INIT, ("embed", "mlp")),
            bias_init=_partitioned(_BIAS_INIT, ("mlp",)),
            name="wi",
        )(x)
        hidden = nn.gelu(hidden)
        hidden = nn.with_logical_constraint(hidden, ("batch", "length", "mlp"))
        hidden = nn.Dropout(self.dropout_rate)(hidden, deterministic=deterministic)
        return nn.Dense(
            emb_dim,
            dtype=self.dtype,
            kernel_init=_partitioned(_KERNEL_INIT, ("mlp", "embed")),
            bias_init=_partitioned(_BIAS_INIT, ("embed",)),
            name="wo",
        )(hidden)


class DecoderBlock(nn.Module):
    """One pre-LayerNorm transformer layer whose queries read a (possibly different) memory.

    ``queries [B, Lq, embed]`` attend ``memory [B, Lk, embed]`` under ``mask [B, 1, Lq, Lk] bool`` plus one
    learned null key/value that is always visible. Single stream: ``memory is queries``. Two-stream: the
    content stream calls it with ``memory = content``, the query stream with the same (pre-update) content.
    Returns the updated queries ``[B, Lq, embed]``.
    """

    num_heads: int
    mlp_dim: int
    dropout_rate: float
    dtype: Any

    @nn.compact
    def __call__(self, queries, memory, mask, deterministic: bool):
        emb_dim = queries.shape[-1]
        norm = nn.LayerNorm(
            dtype=self.dtype,
            scale_init=_partitioned(nn.initializers.ones_init(), ("embed",)),
            bias_init=_partitioned(_BIAS_INIT, ("embed",)),
            name="attention_norm",
        )
        normed_queries = norm(queries)
        normed_memory = normed_queries if memory is queries else norm(memory)
        # A learned null memory slot keeps every softmax row non-empty without leaking any interaction.
        null_memory = self.param(
            "null_memory",
            _partitioned(nn.initializers.normal(stddev=0.02), ("embed",)),
            (emb_dim,),
        )
        batch_size = memory.shape[0]
        null_memory = jnp.broadcast_to(
            null_memory.astype(normed_memory.dtype), (batch_size, 1, emb_dim)
        )
        normed_memory = jnp.concatenate([null_memory, normed_memory], axis=1)
        mask = jnp.concatenate(
            [jnp.ones(mask.shape[:-1] + (1,), dtype=bool), mask], axis=-1
        )
        attended = MultiHeadAttention(
            num_heads=self.num_heads,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            name="attention",
        )(normed_queries, normed_memory, mask, deterministic)
        attended = nn.Dropout(self.dropout_rate)(attended, deterministic=deterministic)
        x = _constrain_hidden(queries + attended)

        normed = nn.LayerNorm(
            dtype=self.dtype,
            scale_init=_partitioned(nn.initializers.ones_init(), ("embed",)),
            bias_init=_partitioned(_BIAS_INIT, ("embed",)),
            name="mlp_norm",
        )(x)
        transformed = MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype, name="mlp")(
            normed, deterministic
        )
        transformed = nn.Dropout(self.dropout_rate)(transformed, deterministic=deterministic)
        return _constrain_hidden(x + transformed)


class SequenceTransformer(nn.Module):
    """Next-item transformer decoder over model rows (see the module docstring for the policies).

    Call: ``module.apply(variables, batch, train=bool, rngs={"dropout": key})`` with ``batch`` holding
    ``item_ids``, ``timestamps``, ``student_index``, ``positions`` (``[B, L]`` ints) and ``grade``
    (``[B]`` int, used when ``use_grade``). Returns ``[B, L, vocab_size] float32`` logits.
    """

    vocab_size: int = 2003
    row_length: int = 65
    num_layers: int = 6
    emb_dim: int = 256
    num_heads: int = 8
    mlp_dim: int = 1024
    dropout_rate: float = 0.1
    attention: str = "study"
    use_grade: bool = False
    num_grades: int = 13
    dtype: Any = jnp.float32

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict, attention: str | None = None):
        """Builds the module from a model config (:func:`default_config`)."""
        return cls(
            vocab_size=config.vocab_size,
            row_length=config.row_length,
            num_layers=config.num_layers,
            emb_dim=config.emb_dim,
            num_heads=config.num_heads,
            mlp_dim=config.mlp_dim,
            dropout_rate=config.dropout_rate,
            attention=attention or config.attention,
            use_grade=config.use_grade,
            num_grades=config.num_grades,
            dtype=jnp.dtype(config.dtype),
        )

    def _embed(self, name, num_embeddings, axes, ids):
        return nn.Embed(
            num_embeddings,
            self.emb_dim,
            dtype=self.dtype,
            embedding_init=_partitioned(_EMBED_INIT, axes),
            name=name,
        )(ids)

    @nn.compact
    def __call__(self, batch, train: bool = False):
        if self.attention not in ATTENTION_POLICIES:
            raise ValueError(
                f"unknown attention policy {self.attention!r} (model config field 'attention'); "
                f"choose one of {ATTENTION_POLICIES}"
            )
        if self.emb_dim % self.num_heads:
            raise ValueError(
                f"emb_dim={self.emb_dim} is not divisible by num_heads={self.num_heads}; "
                "change one of them in the model config"
            )
        deterministic = not train
        item_ids = batch["item_ids"]
        timestamps = batch["timestamps"]
        student_index = batch["student_index"]
        positions = batch["positions"]
        if item_ids.shape[1] > self.row_length:
            raise ValueError(
                f"rows have length {item_ids.shape[1]} but the model embeds at most "
                f"row_length={self.row_length} positions; raise model config row_length"
            )

        # Position (+ grade) embedding: the whole input of the query stream, part of every other input.
        context = self._embed(
            "position_embedding", self.row_length, (None, "embed"), jnp.clip(positions, 0)
        )
        if self.use_grade:
            grade = self._embed("grade_embedding", self.num_grades, (None, "embed"), batch["grade"])
            context = context + grade[:, None, :]

        if self.attention == "study_two_stream":
            x = self._two_stream(batch, context, deterministic)
        else:
            shifted_items = previous_item_ids(item_ids, student_index, positions)
            x = self._embed("item_embedding", self.vocab_size, ("vocab", "embed"), shifted_items)
            x = nn.Dropout(self.dropout_rate)(x + context, deterministic=deterministic)
            x = _constrain_hidden(x)
            mask = attention_masks.MASK_FUNCTIONS[self.attention](
                item_ids, timestamps, student_index, positions
            )
            for layer in range(self.num_layers):
                x = self._block(layer)(x, x, mask, deterministic)

        x = nn.LayerNorm(
            dtype=self.dtype,
            scale_init=_partitioned(nn.initializers.ones_init(), ("embed",)),
            bias_init=_partitioned(_BIAS_INIT, ("embed",)),
            name="final_norm",
        )(x)
        logits = nn.Dense(
            self.vocab_size,
            dtype=self.dtype,
            kernel_init=_partitioned(_KERNEL_INIT, ("embed", "vocab")),
            bias_init=_partitioned(_BIAS_INIT, ("vocab",)),
            name="output",
        )(x)
        logits = logits.astype(jnp.float32)
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))

    def _block(self, layer):
        return DecoderBlock(
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            dtype=self.dtype,
            name=f"layer_{layer}",
        )

    def _two_stream(self, batch, context, deterministic):
        """Runs content and query streams through shared layers; returns the query stream.

        Output: ``[B, L, embed]`` in ``dtype``.
        """
        item_ids = batch["item_ids"]
        content_mask, query_mask = attention_masks.two_stream_masks(
            item_ids, batch["timestamps"], batch["student_index"], batch["positions"]
        )
        embed_items = nn.Embed(self.vocab_size, self.emb_dim, dtype=self.dtype,
                               embedding_init=_partitioned(_EMBED_INIT, ("vocab", "embed")), name="item_embedding")
        items = embed_items(item_ids)
        # The query stream starts from what the single-stream input holds (the student's previous item in the
        # segment + position), marked by a learned start vector; it never holds the item it predicts.
        previous = embed_items(previous_item_ids(item_ids, batch["student_index"], batch["positions"]))
        query_start = self.param(
            "query_start", _partitioned(nn.initializers.normal(stddev=0.02), ("embed",)), (self.emb_dim,)
        )
        dropout = nn.Dropout(self.dropout_rate)
        content = _constrain_hidden(dropout(items + context, deterministic=deterministic))
        query = _constrain_hidden(
            dropout(previous + context + query_start.astype(context.dtype), deterministic=deterministic)
        )
        for layer in range(self.num_layers):
            block = self._block(layer)
            # The query stream reads the content stream of the same layer, before its update.
            query = block(query, content, query_mask, deterministic)
            if layer + 1 < self.num_layers:  # the last content update feeds nothing
                content = block(content, content, content_mask, deterministic)
        return query
