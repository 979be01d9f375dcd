"""SAMN, the Social Attentional Memory Network (Chen et al., WSDM 2019), on STUDY classroom rows.

The original model scores item ``j`` for user ``u`` with friends ``F(u)``:

* joint user-friend vector ``s = e_u / |e_u| * e_l / |e_l|`` (element-wise);
* attention-based memory: ``a = softmax(s K)`` over ``N`` slots of a key matrix ``K [d, N]``; the relation
  vector of the pair is ``f_(u,l) = (a M) * e_l`` with the memory matrix ``M [N, d]``;
* friend-level attention: ``b_l = softmax_l(h . relu(W1 e_u + W2 f_(u,l) + c))`` over the user's friends;
* user vector ``p_u = e_u + sum_l b_l f_(u,l)`` and score ``p_u . q_j``;
* training by BPR: ``-log sigmoid(p_u . q_i - p_u . q_j)`` for an observed item ``i`` and one uniformly
  sampled item ``j`` per observation (:func:`bpr_loss`).

Adaptation to STUDY rows (``[B, L]`` features ``item_ids``, ``timestamps``, ``student_index``, ``positions``;
several students of one classroom per row, segments separated by ``SEP``):

* There are no user ids shared across splits (test students are unseen in training), so a user is the bag
  of items they did: the user at position ``i`` is ``e_u = mean of H[x_j]`` over the same student's
  interactions at earlier ``positions`` (``H`` a learned history embedding table, separate from the output
  item table ``Q`` as ``P`` and ``Q`` are in the original). A student with no earlier interaction gets a
  learned ``empty_user`` vector.
* The friends of that user are the other students of the row (classmates). Friend ``l`` at position ``i``
  is ``e_l = mean of H[x_j]`` over ``l``'s interactions with timestamp strictly earlier than
  ``timestamps[i]`` (the causality contract). A classmate with no such interaction is not a friend at
  ``i``: it gets friend-attention weight 0, and the weights of the present friends sum to one. When no
  classmate is present the friend part is zero and ``p_u = e_u`` (the original's user without friends).
* ``logits[b, i] = p_u . Q^T`` scores the whole vocabulary at every position (``[B, L, vocab_size]``), so
  the trainer, the evaluator and serving treat SAMN like every other model. Reserved ids get scores too;
  the evaluator never ranks them and :func:`bpr_loss` never samples them.
* Friends are indexed by ``student_index`` in ``[0, max_students)``. The default ``max_students = 0`` means
  ``(row_length + 1) // 2``, the most students a row can hold (one item each, ``SEP`` between), so no
  classmate is ever dropped; a smaller value runs faster and ignores students of higher index as friends.
* Negatives are uniform over the real items other than the target; the original draws among items the user
  has not consumed, which a row-local user cannot list.
* Left out: the original's L2 penalty on the batch's embeddings (the trainer's loss sees logits only) and
  item biases (the paper's score is the plain inner product). No dropout.

Everything is computed for all positions at once from two ``[B, L, L]`` masks (own history, classmates'
earlier interactions); the friend tensors are ``[B, L, S, d]`` and a forward pass costs ``O(B L^2 S d)``
multiply-adds for the friend means plus ``O(B L V d)`` for the logits.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from study.data import reserved_ids

_EMBED_INIT = nn.initializers.normal(stddev=0.1)
_KERNEL_INIT = nn.initializers.xavier_uniform()


def _partitioned(init, axes):
    return nn.with_logical_partitioning(init, axes)


def own_history_mask(item_ids, student_index, positions):
    """Which interactions form each position's own history: ``[B, L]`` ints -> ``[B, L, L] bool``.

    ``mask[b, i, j]`` is true when ``j`` is an interaction (item or OOV) of the student at ``i`` with
    ``positions[j] < positions[i]``, and ``i`` is itself an interaction.
    """
    is_item = reserved_ids.is_item(item_ids)
    return (
        is_item[:, :, None]
        & is_item[:, None, :]
        & (student_index[:, :, None] == student_index[:, None, :])
        & (positions[:, None, :] < positions[:, :, None])
    )


def earlier_classmate_mask(item_ids, timestamps, student_index):
    """Which interactions of classmates precede each position: ``[B, L]`` ints -> ``[B, L, L] bool``.

    ``mask[b, i, j]`` is true when ``j`` is an interaction of another student than the one at ``i`` with
    ``timestamps[j] < timestamps[i]``, and ``i`` is an interaction.
    """
    is_item = reserved_ids.is_item(item_ids)
    return (
        is_item[:, :, None]
        & is_item[:, None, :]
        & (student_index[:, :, None] != student_index[:, None, :])
        & (timestamps[:, None, :] < timestamps[:, :, None])
    )


def masked_mean(mask, values):
    """Mean of the selected rows: ``mask [B, L, J] bool``, ``values [B, J, d]`` ->
    ``(means [B, L, d] float32, 0 where nothing is selected; counts [B, L] float32)``."""
    weights = mask.astype(jnp.float32)
    count = jnp.sum(weights, axis=-1)
    return jnp.einsum("bij,bjd->bid", weights, values) / jnp.maximum(count, 1.0)[..., None], count


def classmate_means(mask, student_index, values, max_students: int):
    """Per-classmate means of the selected rows: ``mask [B, L, J] bool`` (e.g. :func:`earlier_classmate_mask`),
    ``student_index [B, J] int``, ``values [B, J, d]`` -> ``(means [B, L, S, d] float32, 0 where nothing is
    selected; counts [B, L, S] float32)`` with ``S = max_students`` slots, slot ``s`` for ``student_index == s``.
    """
    weights = mask.astype(jnp.float32)
    of_student = (student_index[:, :, None] == jnp.arange(max_students)).astype(jnp.float32)  # [B, J, S]
    count = jnp.einsum("bij,bjs->bis", weights, of_student)
    # Split the values by student first: [B, J, S, d] is the size of the result, no [B, L, S, J] is built.
    total = jnp.einsum("bij,bjsd->bisd", weights, of_student[..., None] * values[:, :, None, :])
    return total / jnp.maximum(count, 1.0)[..., None], count


def masked_softmax(scores, mask, axis: int = -1):
    """Softmax of ``scores`` over the entries where ``mask`` is true; 0 elsewhere, and 0 everywhere along
    ``axis`` when the mask has no true entry there (so an empty set contributes nothing)."""
    scores = jnp.where(mask, scores, -jnp.inf)
    peak = jnp.max(scores, axis=axis, keepdims=True)
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    exps = jnp.where(mask, jnp.exp(scores - peak), 0.0)
    total = jnp.sum(exps, axis=axis, keepdims=True)
    return exps / jnp.where(total > 0, total, 1.0)


def _unit(x, eps: float = 1e-12):
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


class AttentionMemory(nn.Module):
    """SAMN's attention-based memory module.

    ``users [..., d]`` and ``friends [..., S, d]`` -> ``(relations [..., S, d], slot_weights [..., S, N])``:
    the joint vector ``unit(e_u) * unit(e_l)`` addresses the key matrix ``[d, N]``, the softmax over the
    ``N`` slots reads the memory matrix ``[N, d]``, and the read is gated element-wise by ``e_l``.
    """

    memory_slots: int

    @nn.compact
    def __call__(self, users, friends):
        emb_dim = users.shape[-1]
        keys = self.param("keys", _partitioned(_KERNEL_INIT, ("embed", None)), (emb_dim, self.memory_slots))
        memory = self.param("memory", _partitioned(_KERNEL_INIT, (None, "embed")), (self.memory_slots, emb_dim))
        joint = _unit(users)[..., None, :] * _unit(friends)
        slot_weights = jax.nn.softmax(joint @ keys, axis=-1)
        return (slot_weights @ memory) * friends, slot_weights


class FriendAttention(nn.Module):
    """SAMN's friend-level attention: ``b_l = softmax over present friends of h . relu(W1 e_u + W2 f_l + c)``.

    ``users [..., d]``, ``relations [..., S, d]``, ``present [..., S] bool`` -> ``[..., S] float32`` weights
    that sum to one over the present friends (all 0 when none is present).
    """

    attention_dim: int

    @nn.compact
    def __call__(self, users, relations, present):
        dense = functools.partial(
            nn.Dense, self.attention_dim, kernel_init=_partitioned(_KERNEL_INIT, ("embed", "mlp"))
        )
        hidden = dense(use_bias=False, name="user")(users)[..., None, :] + dense(
            bias_init=_partitioned(nn.initializers.zeros_init(), ("mlp",)), name="relation"
        )(relations)
        query = self.param("query", _partitioned(_KERNEL_INIT, ("mlp", None)), (self.attention_dim, 1))
        scores = (nn.relu(hidden) @ query)[..., 0]
        return masked_softmax(scores, present)


class SAMN(nn.Module):
    """SAMN next-item scorer on STUDY rows (see the module docstring for the adaptation).

    Call: ``module.apply({"params": p}, batch, train=bool)`` with ``batch`` holding ``item_ids``,
    ``timestamps``, ``student_index``, ``positions`` (``[B, L]`` ints); returns ``[B, L, vocab_size] float32``
    logits. ``train`` and ``rngs`` are accepted for the common model interface and unused (no dropout).
    With ``mutable=["intermediates"]`` the call also sows ``friend_weights [B, L, S]`` and
    ``slot_weights [B, L, S, N]``.
    """

    vocab_size: int = 2003
    row_length: int = 65
    emb_dim: int = 64
    memory_slots: int = 8
    attention_dim: int = 32
    max_students: int = 0  # 0: (row_length + 1) // 2, every student a row can hold

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "SAMN":
        """Builds the module from a model config (``configs/samn.py``: ``vocab_size``, ``row_length``,
        ``emb_dim``, ``memory_slots``, ``attention_dim``, ``max_students``)."""
        return cls(
            vocab_size=config.vocab_size,
            row_length=config.row_length,
            emb_dim=config.emb_dim,
            memory_slots=config.memory_slots,
            attention_dim=config.attention_dim,
            max_students=config.get("max_students", 0),
        )

    @property
    def num_friend_slots(self) -> int:
        """``S``, the friend slots per row (student indices ``0 .. S - 1``)."""
        return self.max_students or (self.row_length + 1) // 2

    @nn.compact
    def __call__(self, batch, train: bool = False):
        del train  # no dropout: the interface's flag has nothing to switch
        item_ids, student_index = batch["item_ids"], batch["student_index"]
        history_table = self.param(
            "history_embedding", _partitioned(_EMBED_INIT, ("vocab", "embed")), (self.vocab_size, self.emb_dim)
        )
        item_table = self.param(
            "item_embedding", _partitioned(_EMBED_INIT, ("vocab", "embed")), (self.vocab_size, self.emb_dim)
        )
        empty_user = self.param("empty_user", _partitioned(_EMBED_INIT, ("embed",)), (self.emb_dim,))
        history = jnp.take(history_table, item_ids, axis=0)  # [B, L, d]

        users, own_count = masked_mean(own_history_mask(item_ids, student_index, batch["positions"]), history)
        users = jnp.where(own_count[..., None] > 0, users, empty_user)
        friends, friend_count = classmate_means(  # [B, L, S, d], [B, L, S]
            earlier_classmate_mask(item_ids, batch["timestamps"], student_index), student_index, history,
            self.num_friend_slots,
        )

        relations, slot_weights = AttentionMemory(self.memory_slots, name="memory")(users, friends)
        friend_weights = FriendAttention(self.attention_dim, name="friend_attention")(
            users, relations, friend_count > 0
        )
        self.sow("intermediates", "friend_weights", friend_weights)
        self.sow("intermediates", "slot_weights", slot_weights)
        user_vectors = users + jnp.einsum("bls,blsd->bld", friend_weights, relations)
        user_vectors = nn.with_logical_constraint(user_vectors, ("batch", "length", "embed"))
        logits = jnp.einsum("bld,vd->blv", user_vectors, item_table)
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))


def sample_negatives(rng, targets, vocab_size: int, num_negatives: int):
    """Uniform negatives for BPR: ``targets [B, L] int`` -> ``[B, L, num_negatives] int32``.

    Each draw is uniform over the real items ``FIRST_ITEM_ID .. vocab_size - 1`` other than the target (an
    OOV/PAD/SEP target excludes nothing), so a negative is never PAD, OOV, SEP or the observed item.
    """
    real_items = vocab_size - reserved_ids.FIRST_ITEM_ID
    if real_items < 2:
        raise ValueError(f"vocab_size={vocab_size} leaves {real_items} real item(s); BPR needs at least 2")
    is_real = targets >= reserved_ids.FIRST_ITEM_ID
    choices = (real_items - is_real.astype(jnp.int32))[..., None]
    draws = jax.random.randint(rng, targets.shape + (num_negatives,), 0, choices) + reserved_ids.FIRST_ITEM_ID
    skip_target = is_real[..., None] & (draws >= targets[..., None])
    return (draws + skip_target.astype(draws.dtype)).astype(jnp.int32)


def bpr_loss(logits, batch, rng=None, num_negatives: int = 1, negatives=None):
    """Bayesian personalised ranking loss with sampled negatives.

    Args:
      logits: ``[B, L, V] float`` scores; ``logits[b, i]`` is for the item at position ``i``.
      batch: dict with ``item_ids [B, L] int``; targets are the interaction positions (not PAD, not SEP;
        OOV counts, as in ``next_item_loss``).
      rng: key for :func:`sample_negatives` (unused when ``negatives`` is given).
      num_negatives: negatives per target, each a BPR pair.
      negatives: optional ``[B, L, K] int`` negatives to use instead of sampling.

    Returns:
      ``(loss_sum, weight_sum)`` float32 scalars: the sum over targets of the mean over the target's
      negatives ``n`` of ``-log sigmoid(logits[target] - logits[n])``, and the number of targets.
    """
    targets = batch["item_ids"]
    if negatives is None:
        if rng is None:
            raise ValueError("bpr_loss needs rng to sample negatives (or pass negatives=)")
        negatives = sample_negatives(rng, targets, logits.shape[-1], num_negatives)
    logits = logits.astype(jnp.float32)
    positive = jnp.take_along_axis(logits, targets[..., None].astype(jnp.int32), axis=-1)
    negative = jnp.take_along_axis(logits, negatives, axis=-1)
    per_target = jnp.mean(jax.nn.softplus(negative - positive), axis=-1)  # softplus(-x) = -log sigmoid(x)
    weights = reserved_ids.is_item(targets)
    return jnp.sum(jnp.where(weights, per_target, 0.0)), jnp.sum(weights, dtype=jnp.float32)
