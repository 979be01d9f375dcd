"""Percentile bootstrap over students: confidence intervals for any per-student statistic.

Students (not interactions) are the resampled unit, because one student's interactions are not
independent. A resample draws ``S`` students with replacement out of ``S``; it is represented by a
multiplicity vector ``weights [S] int64`` (how many times each student was drawn), so a statistic is a
function of per-student totals and weights and never copies the records.
"""

from typing import Callable, Iterator

import numpy as np


def resample_weights(num_students: int, num_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Yields ``num_resamples`` multiplicity vectors ``[num_students] int64``, each summing to ``num_students``.

    Deterministic for a given ``(num_students, num_resamples, seed)``.
    """
    rng = np.random.default_rng(seed)
    for _ in range(num_resamples):
        drawn = rng.integers(0, num_students, size=num_students)
        yield np.bincount(drawn, minlength=num_students).astype(np.int64)


def percentile_interval(
    statistic: Callable[[np.ndarray], np.ndarray],
    num_students: int,
    *,
    num_resamples: int = 50,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of ``statistic(weights)``.

    Args:
      statistic: maps student multiplicities ``[num_students]`` to a float array of any fixed shape;
        ``statistic(np.ones(num_students))`` is the point estimate. NaN (e.g. a subset with no student in
        the resample) is ignored when taking percentiles.
      num_students: number of resampled units.
      num_resamples: bootstrap resamples (50 by default; more give steadier interval ends).
      seed: seed of the resampling generator.
      confidence: central coverage of the interval, in (0, 1).

    Returns:
      ``(low, high)``, arrays of the statistic's shape: the ``(1 - confidence) / 2`` and
      ``(1 + confidence) / 2`` quantiles over resamples; NaN where every resample gave NaN or there are
      no students or no resamples.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if num_resamples < 0:
        raise ValueError(f"num_resamples must be >= 0, got {num_resamples}")
    shape = np.shape(statistic(np.ones(num_students, dtype=np.int64)))
    if num_students == 0 or num_resamples == 0:
        nan = np.full(shape, np.nan)
        return nan, nan.copy()
    samples = np.stack(
        [np.asarray(statistic(w), dtype=np.float64) for w in resample_weights(num_students, num_resamples, seed)]
    )
    tail = (1.0 - confidence) / 2.0
    all_nan = np.all(np.isnan(samples), axis=0)
    # Fill all-NaN columns before nanquantile so it does not warn; they are reset to NaN below.
    filled = np.where(all_nan[None], 0.0, samples)
    low, high = np.nanquantile(filled, [tail, 1.0 - tail], axis=0)
    low = np.where(all_nan, np.nan, low)
    high = np.where(all_nan, np.nan, high)
    return low, high
