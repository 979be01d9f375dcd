"""Metrics of binary correctness predictions (knowledge tracing, IRT): AUC, F1, accuracy, log-loss.

Every function takes ``labels [N]`` (1 = the student answered correctly, 0 = not; int, bool or float
0/1) and ``probabilities [N]`` (predicted probability of a correct answer, float in [0, 1]), and
optionally ``weights [N]``: a boolean mask or non-negative integer counts, applied as "response ``i``
counts ``weights[i]`` times" (a mask keeps the ``True`` responses). All results are plain Python floats
(fractions, not percent; log-loss in nats), NaN where a metric is undefined (e.g. AUC with one class).

Example::

    from study.eval import correctness_metrics as cm

    labels = [0, 0, 1, 1]
    probabilities = [0.1, 0.4, 0.35, 0.8]
    cm.roc_auc(labels, probabilities)  # 0.75
    report = cm.correctness_report(labels, probabilities, groups=["a", "a", "b", "b"], num_bootstrap=200)
    report["overall"]["auc"], report["overall"]["auc_ci_low"], report["by_group"]["a"]["num_responses"]
"""

import numpy as np

from study.eval.bootstrap import percentile_interval

# The overall metrics that get a bootstrap interval (``<name>_ci_low`` / ``<name>_ci_high``).
INTERVAL_METRICS = ("auc", "f1", "accuracy", "log_loss")


def _checked(labels, probabilities, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Validates the inputs; returns ``(labels [M] int64, probabilities [M] float64)`` with weights applied."""
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {labels.shape}")
    if probabilities.shape != labels.shape:
        raise ValueError(f"probabilities must have the shape of labels {labels.shape}, got {probabilities.shape}")
    if labels.size == 0:
        raise ValueError("labels is empty: the metrics need at least one response")
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"labels must be numbers 0 or 1, got dtype {labels.dtype}")
    if not np.all((labels == 0) | (labels == 1)):
        raise ValueError(f"labels must all be 0 or 1, got e.g. {labels[(labels != 0) & (labels != 1)][:5]}")
    if not np.all((probabilities >= 0.0) & (probabilities <= 1.0)):  # NaN fails too
        bad = probabilities[~((probabilities >= 0.0) & (probabilities <= 1.0))]
        raise ValueError(f"probabilities must lie in [0, 1], got e.g. {bad[:5]}")
    labels = labels.astype(np.int64)
    if weights is None:
        return labels, probabilities
    weights = np.asarray(weights)
    if weights.shape != labels.shape:
        raise ValueError(f"weights must have the shape of labels {labels.shape}, got {weights.shape}")
    if weights.dtype.kind not in "biu" or np.any(weights < 0):
        raise ValueError(f"weights must be a boolean mask or non-negative integer counts, got dtype {weights.dtype}")
    labels, probabilities = np.repeat(labels, weights), np.repeat(probabilities, weights)
    if labels.size == 0:
        raise ValueError("weights select no response: the metrics need at least one")
    return labels, probabilities


def roc_auc(labels, probabilities, *, weights=None) -> float:
    """Exact ROC AUC: the fraction of (correct, incorrect) response pairs where the correct one scores higher,
    ties counting 1/2 (the Mann-Whitney U statistic from average ranks, divided by ``P * N``).

    ``labels [N]`` in {0, 1}, ``probabilities [N]`` in [0, 1] (only their order matters). Returns a fraction in
    [0, 1], or NaN when only one class is present.
    """
    labels, probabilities = _checked(labels, probabilities, weights)
    num_positive = int(labels.sum())
    num_negative = labels.size - num_positive
    if num_positive == 0 or num_negative == 0:
        return float("nan")
    from scipy.stats import rankdata  # here, not at the top: scipy.stats costs every process a second to import

    ranks = rankdata(probabilities, method="average")  # 1-based, tied scores share their mean rank
    u_statistic = ranks[labels == 1].sum() - num_positive * (num_positive + 1) / 2.0
    return float(u_statistic / (num_positive * num_negative))


def _confusion(labels, probabilities, threshold, weights) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)``, predicting "correct" where ``probability >= threshold``."""
    labels, probabilities = _checked(labels, probabilities, weights)
    predicted = probabilities >= threshold
    actual = labels == 1
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    return tp, fp, fn, labels.size - tp - fp - fn


def f1_at_threshold(labels, probabilities, threshold: float = 0.5, *, weights=None) -> float:
    """F1 of the "correct" class, predicting correct where ``probability >= threshold``:
    ``2 TP / (2 TP + FP + FN)``. ``labels [N]``, ``probabilities [N]``. Returns a fraction in [0, 1], or NaN
    when there is no correct label and no correct prediction (F1 is 0 / 0).
    """
    tp, fp, fn, _ = _confusion(labels, probabilities, threshold, weights)
    denominator = 2 * tp + fp + fn
    return float("nan") if denominator == 0 else 2.0 * tp / denominator


def accuracy_at_threshold(labels, probabilities, threshold: float = 0.5, *, weights=None) -> float:
    """Fraction of responses whose prediction (correct where ``probability >= threshold``) equals the label.
    ``labels [N]``, ``probabilities [N]``."""
    tp, fp, fn, tn = _confusion(labels, probabilities, threshold, weights)
    return (tp + tn) / (tp + fp + fn + tn)


def log_loss(labels, probabilities, eps: float = 1e-7, *, weights=None) -> float:
    """Mean negative log-likelihood in nats, ``-mean(y log p + (1 - y) log(1 - p))``, with ``p`` clipped to
    ``[eps, 1 - eps]`` so a confident mistake costs ``-log(eps)`` (16.1 for 1e-7) instead of infinity.
    ``labels [N]``, ``probabilities [N]``."""
    labels, probabilities = _checked(labels, probabilities, weights)
    clipped = np.clip(probabilities, eps, 1.0 - eps)
    return float(-np.mean(np.where(labels == 1, np.log(clipped), np.log1p(-clipped))))


def _summary(labels, probabilities) -> dict:
    return {
        "auc": roc_auc(labels, probabilities),
        "f1": f1_at_threshold(labels, probabilities),
        "accuracy": accuracy_at_threshold(labels, probabilities),
        "log_loss": log_loss(labels, probabilities),
        "num_responses": int(len(labels)),
        "positive_rate": float(np.mean(labels)),
    }


def correctness_report(
    labels, probabilities, groups=None, *, weights=None, num_bootstrap: int = 0, seed: int = 0, confidence: float = 0.95
) -> dict:
    """All metrics at threshold 0.5, overall and per group.

    Args:
      labels: ``[N]`` in {0, 1}.
      probabilities: ``[N]`` predicted probabilities of a correct answer, in [0, 1].
      groups: optional ``[N]`` group of each response (any value, e.g. skill id or grade); groups are told
        apart by ``str(group)``, which is also their key in ``by_group``.
      weights: optional ``[N]`` boolean mask or non-negative integer counts (see the module docstring).
      num_bootstrap: percentile-bootstrap resamples over *responses* for the overall intervals (0: none).
      seed: seed of the bootstrap generator (same seed, same intervals).
      confidence: central coverage of the intervals, in (0, 1).

    Returns:
      JSON-ready dict ``{"overall": m, "by_group": {str(group): m}}`` where ``m`` is
      ``{"auc", "f1", "accuracy", "log_loss", "num_responses", "positive_rate"}`` (NaN where undefined);
      with ``num_bootstrap > 0`` the overall ``m`` also has ``<metric>_ci_low`` and ``<metric>_ci_high`` for
      every metric of ``INTERVAL_METRICS``. ``by_group`` is ``{}`` without groups.
    """
    labels_in = labels
    labels, probabilities = _checked(labels, probabilities, weights)
    report = {"overall": _summary(labels, probabilities), "by_group": {}}
    if num_bootstrap > 0:

        def statistic(counts):
            summary = _summary(np.repeat(labels, counts), np.repeat(probabilities, counts))
            return np.array([summary[name] for name in INTERVAL_METRICS])

        low, high = percentile_interval(
            statistic, len(labels), num_resamples=num_bootstrap, seed=seed, confidence=confidence
        )
        for name, name_low, name_high in zip(INTERVAL_METRICS, low, high):
            report["overall"][f"{name}_ci_low"] = float(name_low)
            report["overall"][f"{name}_ci_high"] = float(name_high)
    if groups is not None:
        keys = np.array([str(group) for group in groups], dtype=object)
        if keys.shape != np.shape(labels_in):
            raise ValueError(f"groups must have the length of labels ({len(labels_in)}), got {len(keys)}")
        if weights is not None:
            keys = np.repeat(keys, np.asarray(weights).astype(np.int64))
        for key in sorted(set(keys)):
            members = keys == key
            report["by_group"][key] = _summary(labels[members], probabilities[members])
    return report
