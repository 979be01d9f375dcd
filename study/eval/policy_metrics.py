"""Metrics of a policy's episodic returns over seeds (bandits, RL tutors): mean with a t interval, learning
curves, and the Intervention Benefit of the EduQate paper.

A *seed* is one independent run (environment and policy seeded together); its return is the total reward
of an episode in the environment's reward units, averaged over the episodes of that run when several are
given. Seeds are the unit of uncertainty: ``stderr = std(ddof=1) / sqrt(num_seeds)``.

Example::

    from study.eval import policy_metrics as pm

    pm.return_summary([10.0, 12.0, 14.0])  # mean 12, std 2, stderr 2 / sqrt(3), 95% t interval
    pm.learning_curve([[0.0, 5.0, 9.0], [1.0, 6.0, 8.0]])  # {"mean": [0.5, 5.5, 8.5], "stderr": [...]}
    pm.intervention_benefit([6.0, 5.0], [2.0, 1.0], [10.0, 9.0])["mean"]  # 50.0 (percent)
"""

import math

import numpy as np
from scipy.special import stdtrit  # Student t quantile; scipy is a hard dependency of jax


def _per_seed(returns, name: str) -> np.ndarray:
    """``[num_seeds]`` float64 from ``[num_seeds]`` or ``[num_seeds, num_episodes]`` (mean over episodes)."""
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim not in (1, 2):
        raise ValueError(f"{name} must be [num_seeds] or [num_seeds, num_episodes], got shape {returns.shape}")
    if returns.size == 0:
        raise ValueError(f"{name} is empty: need at least one seed and one episode, got shape {returns.shape}")
    if not np.all(np.isfinite(returns)):
        raise ValueError(f"{name} must be finite, got NaN or inf")
    return returns.mean(axis=1) if returns.ndim == 2 else returns


def _stderr(values: np.ndarray) -> np.ndarray:
    """``std(ddof=1) / sqrt(n)`` along axis 0 (0 when ``n = 1``)."""
    n = values.shape[0]
    return np.zeros(values.shape[1:]) if n == 1 else values.std(axis=0, ddof=1) / math.sqrt(n)


def return_summary(returns, *, confidence: float = 0.95) -> dict:
    """Mean return over seeds with a Student-t confidence interval.

    Args:
      returns: ``[num_seeds]`` or ``[num_seeds, num_episodes]`` returns (reward units); the latter is
        averaged over episodes first.
      confidence: central coverage of the interval, in (0, 1); 0.95 uses ``t_{0.975, n - 1}``.

    Returns:
      ``{"mean", "std", "stderr", "num_seeds", "ci_low", "ci_high"}``: ``std`` has ``ddof=1`` (0 for one
      seed), ``stderr = std / sqrt(n)``, interval ``mean -+ t_{(1 + confidence) / 2, n - 1} * stderr``;
      NaN interval ends for one seed (no spread can be estimated from it).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    per_seed = _per_seed(returns, "returns")
    n = per_seed.size
    mean = float(per_seed.mean())
    std = float(per_seed.std(ddof=1)) if n > 1 else 0.0
    stderr = std / math.sqrt(n)
    half_width = float(stdtrit(n - 1, (1.0 + confidence) / 2.0)) * stderr if n > 1 else float("nan")
    return {
        "mean": mean,
        "std": std,
        "stderr": stderr,
        "num_seeds": int(n),
        "ci_low": mean - half_width,
        "ci_high": mean + half_width,
    }


def learning_curve(curves) -> dict:
    """Per-point mean and standard error over seeds.

    Args:
      curves: ``[num_seeds, num_points]``, e.g. the return after each training chunk of each seed.

    Returns:
      ``{"mean": [num_points floats], "stderr": [num_points floats], "num_seeds": int}``, stderr
      ``std(ddof=1) / sqrt(num_seeds)`` (all 0 for one seed).
    """
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2 or curves.size == 0:
        raise ValueError(f"curves must be a non-empty [num_seeds, num_points] array, got shape {curves.shape}")
    if not np.all(np.isfinite(curves)):
        raise ValueError("curves must be finite, got NaN or inf")
    return {
        "mean": curves.mean(axis=0).tolist(),
        "stderr": _stderr(curves).tolist(),
        "num_seeds": int(curves.shape[0]),
    }


def intervention_benefit(policy_returns, no_intervention_returns, best_returns, *, confidence: float = 0.95) -> dict:
    """Intervention Benefit (EduQate) in percent, per seed, summarised with :func:`return_summary`.

    IB = (R_policy - R_none) / (R_best - R_none) * 100, per seed: 0 = no better than never intervening,
    100 = as good as the best (reference) policy; negative or above 100 are possible.

    Args:
      policy_returns: ``[num_seeds]`` or ``[num_seeds, num_episodes]`` returns of the evaluated policy.
      no_intervention_returns: same shape, returns of the policy that never intervenes.
      best_returns: same shape, returns of the reference best policy.
      Row ``i`` of all three must come from the same seed (paired runs); episodes are averaged first.
      confidence: as in :func:`return_summary`.

    Returns:
      :func:`return_summary` of the per-seed IB values (percent).
    """
    policy = _per_seed(policy_returns, "policy_returns")
    none = _per_seed(no_intervention_returns, "no_intervention_returns")
    best = _per_seed(best_returns, "best_returns")
    if not policy.shape == none.shape == best.shape:
        raise ValueError(
            "policy_returns, no_intervention_returns and best_returns must hold the same seeds, got "
            f"{policy.shape[0]}, {none.shape[0]} and {best.shape[0]} seeds"
        )
    gap = best - none
    if np.any(gap == 0.0):
        raise ValueError(
            f"best_returns equals no_intervention_returns for seed(s) {np.flatnonzero(gap == 0.0).tolist()}: "
            "Intervention Benefit is undefined (0 / 0)"
        )
    return return_summary((policy - none) / gap * 100.0, confidence=confidence)
