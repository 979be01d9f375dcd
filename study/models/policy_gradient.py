"""Losses of policies over documents: REINFORCE with an entropy bonus, imitation of an oracle's set of good
documents, PPO's clipped surrogate with a value loss, and the returns they read. Pure functions of arrays.

Shapes: ``logits [B, D]`` (one row per decision), ``doc_mask [B, D]`` or ``[D]`` bool (padding documents are
never chosen), ``actions [B] int32``, ``weights [B]`` (0 for padding decisions). Each loss returns
``(loss_sum, weight_sum, aux_sums)`` like ``study.train.task.GradientTask.loss``.
"""

import jax
import jax.numpy as jnp


NEVER = -1e9  # the logit of a padding document: finite, so that masked terms have zero (not NaN) gradients


def masked_log_softmax(logits, doc_mask):
    """``[B, D]`` log-probabilities over the real documents (about ``-1e9`` on padding)."""
    return jax.nn.log_softmax(jnp.where(doc_mask, logits, NEVER), axis=-1)


def entropy(log_probs, doc_mask):
    """``[B]`` entropy of each row's policy (nats)."""
    return -jnp.sum(jnp.where(doc_mask, jnp.exp(log_probs) * log_probs, 0.0), axis=-1)


def discounted_returns(rewards, valid, gamma: float):
    """``G_t = r_t + gamma G_{t+1}`` within each episode: ``rewards, valid [T, N]`` (time first; ``valid``
    False after an episode's end) -> ``[T, N]``."""

    def back(later, inputs):
        reward, ok = inputs
        now = jnp.where(ok, reward + gamma * later, 0.0)
        return now, now

    _, returns = jax.lax.scan(back, jnp.zeros(rewards.shape[1:]), (rewards, valid), reverse=True)
    return returns


def reinforce_loss(logits, doc_mask, actions, advantages, weights, entropy_coef: float):
    """``-sum w (log pi(a) A + c H(pi))``; aux: ``entropy``, ``log_prob`` sums."""
    log_probs = masked_log_softmax(logits, doc_mask)
    chosen = jnp.take_along_axis(log_probs, actions[:, None], axis=-1)[:, 0]
    ent = entropy(log_probs, doc_mask)
    loss = -jnp.sum(weights * (chosen * advantages + entropy_coef * ent))
    return loss, jnp.sum(weights), {"entropy": jnp.sum(weights * ent), "log_prob": jnp.sum(weights * chosen)}


def imitation_loss(logits, doc_mask, oracle, weights):
    """``-sum w log sum_{d good} pi(d)``: the probability the policy puts on the oracle's set of documents at
    the right level (``oracle [B, D]`` bool; rows with an empty set have no weight). aux: ``oracle_hit``
    (the argmax is in the set)."""
    log_probs = masked_log_softmax(logits, doc_mask)
    has_good = jnp.any(oracle & doc_mask, axis=-1)
    weights = weights * has_good
    mass = jax.nn.logsumexp(jnp.where(oracle & doc_mask, log_probs, NEVER), axis=-1)
    mass = jnp.where(has_good, mass, 0.0)
    hit = jnp.take_along_axis(oracle, jnp.argmax(log_probs, axis=-1)[:, None], axis=-1)[:, 0]
    return -jnp.sum(weights * mass), jnp.sum(weights), {"oracle_hit": jnp.sum(weights * hit)}


def generalized_advantages(rewards, values, valid, gamma: float, lam: float):
    """GAE(gamma, lambda): ``rewards, values, valid [T, N]`` -> advantages ``[T, N]`` (the value after an
    episode's last step is 0)."""
    next_values = jnp.concatenate([values[1:] * valid[1:], jnp.zeros_like(values[:1])], axis=0)
    deltas = jnp.where(valid, rewards + gamma * next_values - values, 0.0)

    def back(later, inputs):
        delta, ok = inputs
        now = jnp.where(ok, delta + gamma * lam * later, 0.0)
        return now, now

    _, advantages = jax.lax.scan(back, jnp.zeros(rewards.shape[1:]), (deltas, valid), reverse=True)
    return advantages


def ppo_loss(logits, values, doc_mask, actions, old_log_probs, advantages, returns, weights, clip: float,
             value_coef: float, entropy_coef: float):
    """PPO's clipped surrogate ``-min(r A, clip(r, 1 -+ eps) A)`` plus ``value_coef (V - G)^2`` minus the
    entropy bonus, summed with ``weights``; aux: ``entropy``, ``value_error`` sums."""
    log_probs = masked_log_softmax(logits, doc_mask)
    chosen = jnp.take_along_axis(log_probs, actions[:, None], axis=-1)[:, 0]
    ratio = jnp.exp(chosen - old_log_probs)
    surrogate = jnp.minimum(ratio * advantages, jnp.clip(ratio, 1 - clip, 1 + clip) * advantages)
    value_error = jnp.square(values - returns)
    ent = entropy(log_probs, doc_mask)
    loss = jnp.sum(weights * (-surrogate + value_coef * value_error - entropy_coef * ent))
    return loss, jnp.sum(weights), {"entropy": jnp.sum(weights * ent), "value_error": jnp.sum(weights * value_error)}
