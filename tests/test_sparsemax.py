"""Sparsemax against its closed form (two entries), a loop-by-loop sort reference, a bisection on the threshold,
and the analytic Jacobian ``diag(s) - s s^T / |S|`` on the support."""

import jax
import jax.numpy as jnp
import numpy as np

from study.models.sparsemax import sparsemax


def sorted_reference(z):
    """Martins & Astudillo's Algorithm 1, written as loops."""
    ordered = sorted(z, reverse=True)
    k, running = 0, 0.0
    for j, value in enumerate(ordered, start=1):
        running += value
        if 1 + j * value > running:
            k, support_sum = j, running
    tau = (support_sum - 1) / k
    return np.array([max(v - tau, 0.0) for v in z])


def bisection_reference(z, iterations=200):
    """tau solving sum(max(z - tau, 0)) = 1 by bisection (a different route to the same projection)."""
    low, high = min(z) - 1.0, max(z)
    for _ in range(iterations):
        mid = (low + high) / 2
        if np.maximum(np.asarray(z) - mid, 0).sum() > 1:
            low = mid
        else:
            high = mid
    return np.maximum(np.asarray(z) - (low + high) / 2, 0)


def test_two_entries_closed_form():
    # sparsemax([t, 0]) = [clip((t + 1) / 2, 0, 1), 1 - that].
    for t in (-3.0, -1.0, -0.4, 0.0, 0.3, 0.99, 1.0, 2.5):
        first = min(max((t + 1) / 2, 0.0), 1.0)
        np.testing.assert_allclose(np.asarray(sparsemax(jnp.array([t, 0.0]))), [first, 1 - first], atol=1e-6)


def test_hand_worked_vectors():
    np.testing.assert_allclose(np.asarray(sparsemax(jnp.array([1.0, 0.0, -1.0]))), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(np.asarray(sparsemax(jnp.array([0.5, 0.3, -0.5]))), [0.6, 0.4, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(sparsemax(jnp.full(4, 7.0))), [0.25] * 4)


def test_sums_to_one_exact_zeros_and_matches_references():
    rng = np.random.default_rng(0)
    z = rng.normal(scale=2.0, size=(200, 9)).astype(np.float32)
    got = np.asarray(sparsemax(jnp.asarray(z)))
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(got >= 0) and (got == 0).any(axis=1).mean() > 0.9  # exact zeros, not tiny positives
    for row, out in zip(z, got):
        np.testing.assert_allclose(out, sorted_reference(row.astype(np.float64)), atol=1e-5)
        np.testing.assert_allclose(out, bisection_reference(row.astype(np.float64)), atol=1e-5)
        # Entries at or below the threshold are exactly zero; the largest is always kept.
        assert out[np.argmax(row)] > 0


def test_other_axis_and_batch_shapes():
    z = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(np.float32)
    along_1 = np.asarray(sparsemax(jnp.asarray(z), axis=1))
    np.testing.assert_allclose(along_1, np.moveaxis(np.asarray(sparsemax(jnp.moveaxis(z, 1, -1))), -1, 1),
                               atol=1e-6)
    np.testing.assert_allclose(along_1.sum(axis=1), 1.0, atol=1e-5)


def test_jacobian_on_the_support():
    z = jnp.array([0.9, 0.5, 0.45, -1.0])
    s = np.asarray(sparsemax(z))
    support = s > 0
    expected = np.diag(support.astype(float)) - np.outer(support, support) / support.sum()
    np.testing.assert_allclose(np.asarray(jax.jacobian(sparsemax)(z)), expected, atol=1e-6)
