"""Training losses of the sequence recommenders.

Losses return a ``(loss_sum, weight_sum)`` pair rather than a mean, so that the trainer can add them up
across devices and gradient-accumulation steps and divide once.
"""

import jax
import jax.numpy as jnp
import optax

from study.data import reserved_ids


def next_item_loss(logits, batch, label_smoothing: float = 0.0):
    """Softmax cross-entropy of the next-item scores against the items that happened.

    Args:
      logits: ``[batch, length, vocab] float`` scores; ``logits[b, i]`` is for the item at position ``i``.
      batch: dict with ``item_ids [batch, length] int32``. Targets are the item positions (not ``PAD``,
        not ``SEP``); ``OOV`` is a valid target.
      label_smoothing: mass in [0, 1) spread uniformly over the ``vocab`` classes (0 = plain one-hot).

    Returns:
      ``(loss_sum, weight_sum)``, float32 scalars: the summed cross-entropy over targets and the number of
      targets. ``loss_sum / weight_sum`` is the mean loss (define it as 0 when ``weight_sum`` is 0).
    """
    targets = batch["item_ids"]
    logits = logits.astype(jnp.float32)
    weights = reserved_ids.is_item(targets).astype(jnp.float32)
    if label_smoothing:
        labels = optax.smooth_labels(jax.nn.one_hot(targets, logits.shape[-1]), label_smoothing)
        losses = optax.softmax_cross_entropy(logits, labels)
    else:
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    # where() keeps a NaN/inf at a masked position (e.g. PAD logits) out of the sum.
    loss_sum = jnp.sum(jnp.where(weights > 0, losses, 0.0))
    return loss_sum, jnp.sum(weights)

