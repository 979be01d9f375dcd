"""ARI and NMI against hand-worked partitions."""

import numpy as np
import pytest

from study.eval.clustering_metrics import adjusted_rand_index, normalized_mutual_information


def test_identical_partitions_up_to_renaming_score_one():
    assert adjusted_rand_index([0, 0, 1, 1, 2], [5, 5, 3, 3, 9]) == pytest.approx(1.0)
    assert normalized_mutual_information([0, 0, 1, 1, 2], [5, 5, 3, 3, 9]) == pytest.approx(1.0)


def test_hand_worked_ari_and_nmi():
    # true {a,b,c}{d,e,f}, pred {a,b}{c,d,e,f}: contingency [[2, 1], [0, 3]].
    # pairs together in both: C(2,2) + C(3,2) = 4; rows 3 + 3 = 6; cols 1 + 6 = 7; all pairs 15.
    # expected 6 * 7 / 15 = 2.8; ARI = (4 - 2.8) / (6.5 - 2.8) = 0.324324...
    truth, pred = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]
    assert adjusted_rand_index(truth, pred) == pytest.approx(1.2 / 3.7)
    joint = np.array([[2, 1], [0, 3]]) / 6
    p_t, p_p = joint.sum(1), joint.sum(0)
    mutual = sum(joint[i, j] * np.log(joint[i, j] / (p_t[i] * p_p[j])) for i in range(2) for j in range(2)
                 if joint[i, j] > 0)
    entropy = -(p_t * np.log(p_t)).sum() - (p_p * np.log(p_p)).sum()
    assert normalized_mutual_information(truth, pred) == pytest.approx(mutual / (entropy / 2))


def test_independent_labels_score_near_zero():
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 5, 5000), rng.integers(0, 5, 5000)
    assert abs(adjusted_rand_index(truth, pred)) < 0.01
    assert normalized_mutual_information(truth, pred) < 0.01


def test_bad_shapes_are_an_error():
    with pytest.raises(ValueError, match="one length"):
        adjusted_rand_index([0, 1], [0])
