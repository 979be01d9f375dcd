"""Parameter retrieval: how well estimated parameters match the true ones of a simulation.

``retrieval(estimate [n], truth [n], sd [n] | None)`` returns the Pearson, Kendall (tau-b) and Spearman
correlations of the estimates (posterior means) with the truth, the RMSE, and the mean posterior standard
deviation (the error bars) when ``sd`` is given. Correlations are NaN when either side is constant.

Example::

    retrieval([0.1, 0.9, 0.4], [0.0, 1.0, 0.5])["kendall"]  # 1.0
"""

import numpy as np
from scipy import stats  # scipy is a hard dependency of jax, so always installed with study


def retrieval(estimate, truth, sd=None) -> dict:
    estimate = np.asarray(estimate, np.float64).ravel()
    truth = np.asarray(truth, np.float64).ravel()
    if estimate.shape != truth.shape or estimate.size < 2:
        raise ValueError(f"estimate and truth must be vectors of one length >= 2, got {estimate.shape} and "
                         f"{truth.shape}")
    constant = np.ptp(estimate) == 0 or np.ptp(truth) == 0
    nan = float("nan")
    result = {
        "pearson": nan if constant else float(stats.pearsonr(estimate, truth)[0]),
        "kendall": nan if constant else float(stats.kendalltau(estimate, truth)[0]),
        "spearman": nan if constant else float(stats.spearmanr(estimate, truth)[0]),
        "rmse": float(np.sqrt(np.mean((estimate - truth) ** 2))),
        "count": int(estimate.size),
    }
    if sd is not None:
        result["mean_posterior_sd"] = float(np.mean(np.asarray(sd, np.float64)))
    return result
