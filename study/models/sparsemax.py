"""Sparsemax (Martins & Astudillo 2016): the Euclidean projection of a score vector onto the probability simplex.

``sparsemax(z) = argmin_{p in simplex} ||p - z||^2 = max(z - tau(z), 0)``, with the threshold ``tau`` chosen so
the result sums to 1. Unlike softmax it gives exact zeros, which is what makes DQKT's question-concept weights a
sparse Q-matrix row. Computed by sorting: with ``z`` sorted descending, the support size is
``k = max{j : 1 + j z_(j) > sum_{i<=j} z_(i)}`` and ``tau = (sum_{i<=k} z_(i) - 1) / k``. Gradients come from
JAX differentiating ``max(z - tau, 0)`` through ``tau`` (the support is locally constant).

Example::

    sparsemax(jnp.array([1.0, 0.0, -1.0]))  # [1., 0., 0.]
    sparsemax(jnp.array([0.5, 0.3, -0.5]))   # [0.6, 0.4, 0.]
"""

import jax
import jax.numpy as jnp


def sparsemax_threshold(z: jnp.ndarray, axis: int = -1) -> jnp.ndarray:
    """``tau(z)`` along ``axis`` (kept as a size-1 axis), float like ``z``."""
    z = jnp.moveaxis(z, axis, -1)
    ordered = -jnp.sort(-z, axis=-1)  # descending
    cumulative = jnp.cumsum(ordered, axis=-1)
    ranks = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    in_support = 1 + ranks * ordered > cumulative
    support = jnp.sum(in_support, axis=-1, keepdims=True)  # >= 1: the largest entry is always in
    tau = (jnp.take_along_axis(cumulative, support - 1, axis=-1) - 1) / support.astype(z.dtype)
    return jnp.moveaxis(tau, -1, axis)


def sparsemax(z: jnp.ndarray, axis: int = -1) -> jnp.ndarray:
    """Sparsemax of ``z`` along ``axis``: non-negative, sums to 1, exact zeros below the threshold."""
    return jax.nn.relu(z - sparsemax_threshold(z, axis))
