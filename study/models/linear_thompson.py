"""The contextual-bandit baseline of GNN-RL: linear Thompson sampling with one linear model per document.

Context of document ``d`` for the current student: ``x_d = [1, times recommended, times understood]`` (this
episode). Each document keeps the ridge posterior ``A_d = I + sum x x^T``, ``b_d = sum r x`` of the rewards
it earned; a decision samples ``theta_d ~ N(A_d^-1 b_d, v^2 A_d^-1)`` for every document and recommends the
largest ``theta_d . x_d``. The posterior learns online across students (no gradient, no pre-training).
"""

import jax
import jax.numpy as jnp

CONTEXT = 3


def init(num_docs: int) -> dict:
    """``{"A": [D, 3, 3], "b": [D, 3]}``: the prior N(0, I)."""
    return {"A": jnp.tile(jnp.eye(CONTEXT), (num_docs, 1, 1)), "b": jnp.zeros((num_docs, CONTEXT))}


def contexts(recommended, understood):
    """``[D, 3]`` contexts from per-document counts ``[D]``."""
    return jnp.stack([jnp.ones_like(recommended), recommended, understood], axis=-1).astype(jnp.float32)


def sample_scores(posterior: dict, x, key, scale: float = 1.0):
    """``[D]`` sampled expected rewards ``theta_d . x_d``."""
    cov = jnp.linalg.inv(posterior["A"])
    mean = jnp.einsum("dij,dj->di", cov, posterior["b"])
    chol = jnp.linalg.cholesky(0.5 * (cov + jnp.swapaxes(cov, 1, 2)))
    theta = mean + scale * jnp.einsum("dij,dj->di", chol, jax.random.normal(key, mean.shape))
    return jnp.sum(theta * x, axis=-1)


def observe(posterior: dict, x, doc, reward) -> dict:
    """The posterior after ``reward`` for recommending ``doc`` in context ``x [D, 3]``."""
    chosen = x[doc]
    return {"A": posterior["A"].at[doc].add(jnp.outer(chosen, chosen)),
            "b": posterior["b"].at[doc].add(reward * chosen)}
