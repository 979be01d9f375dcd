"""Agreement of two clusterings of the same items: adjusted Rand index and normalised mutual information.

``labels_true [N]``, ``labels_pred [N]``: any hashable cluster labels. Both scores are 1 for identical
partitions (up to renaming clusters); ARI is 0 in expectation for random labels (can be negative), NMI
(arithmetic-mean normalisation, natural logs) lies in [0, 1]. Used to judge a learned Q-matrix against the
true question concepts (each question's concept = the column of its largest weight).
"""

import numpy as np


def contingency(labels_true, labels_pred) -> np.ndarray:
    """``[K_true, K_pred]`` counts of items in each pair of clusters."""
    labels_true, labels_pred = np.asarray(labels_true), np.asarray(labels_pred)
    if labels_true.shape != labels_pred.shape or labels_true.ndim != 1 or labels_true.size == 0:
        raise ValueError(f"labels must be two non-empty 1-D arrays of one length, got {labels_true.shape} and "
                         f"{labels_pred.shape}")
    _, rows = np.unique(labels_true, return_inverse=True)
    _, cols = np.unique(labels_pred, return_inverse=True)
    table = np.zeros((rows.max() + 1, cols.max() + 1), np.int64)
    np.add.at(table, (rows, cols), 1)
    return table


def _pairs(counts) -> float:
    counts = np.asarray(counts, np.float64)
    return float(np.sum(counts * (counts - 1) / 2))


def adjusted_rand_index(labels_true, labels_pred) -> float:
    """Hubert & Arabie's ARI: (pairs together in both - expected) / (mean of the pair counts - expected)."""
    table = contingency(labels_true, labels_pred)
    n = table.sum()
    together = _pairs(table)
    rows, cols = _pairs(table.sum(axis=1)), _pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    maximum = (rows + cols) / 2
    if maximum == expected:  # both partitions trivial (one cluster, or all singletons) and identical
        return 1.0
    return float((together - expected) / (maximum - expected))


def normalized_mutual_information(labels_true, labels_pred) -> float:
    """``I(true; pred) / ((H(true) + H(pred)) / 2)``; 1 when both are a single cluster."""
    table = contingency(labels_true, labels_pred).astype(np.float64)
    joint = table / table.sum()
    p_true, p_pred = joint.sum(axis=1), joint.sum(axis=0)
    nonzero = joint > 0
    mutual = float(np.sum(joint[nonzero] * np.log(joint[nonzero] / np.outer(p_true, p_pred)[nonzero])))
    entropy = float(-np.sum(p_true * np.log(p_true)) - np.sum(p_pred * np.log(p_pred)))
    if entropy == 0.0:
        return 1.0
    return max(0.0, mutual / (entropy / 2))
