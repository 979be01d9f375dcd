"""Policy metrics (return summary, learning curve, Intervention Benefit) against hand-worked values."""

import math

import numpy as np
import pytest

from study.eval.policy_metrics import intervention_benefit, learning_curve, return_summary


def t_quantile_df2(q):
    """Student t quantile with 2 degrees of freedom, in closed form: the CDF is 1/2 + t / (2 sqrt(2 + t^2)),
    so t / sqrt(2 + t^2) = 2q - 1 =: a and t = a sqrt(2 / (1 - a^2))."""
    a = 2 * q - 1
    return a * math.sqrt(2 / (1 - a * a))


def test_t_quantile_closed_form_matches_the_table():
    # Printed t tables: t_{0.975, 2} = 4.303, t_{0.95, 2} = 2.920.
    assert t_quantile_df2(0.975) == pytest.approx(4.303, abs=5e-4)
    assert t_quantile_df2(0.95) == pytest.approx(2.920, abs=5e-4)


def test_return_summary_three_seeds_hand_worked():
    # mean 2; deviations -1, 0, 1 -> sum of squares 2, / (3 - 1) = 1 -> std 1; stderr 1 / sqrt(3).
    # 95%: 2 -+ t_{0.975, 2} / sqrt(3) = 2 -+ 4.3027 * 0.57735 = 2 -+ 2.4841.
    summary = return_summary([1.0, 2.0, 3.0])
    half_width = t_quantile_df2(0.975) / math.sqrt(3)
    assert half_width == pytest.approx(2.4841, abs=1e-4)
    assert summary == pytest.approx(
        {
            "mean": 2.0,
            "std": 1.0,
            "stderr": 1 / math.sqrt(3),
            "num_seeds": 3,
            "ci_low": 2.0 - half_width,
            "ci_high": 2.0 + half_width,
        },
        rel=1e-9,
    )
    assert isinstance(summary["num_seeds"], int)


def test_return_summary_other_confidence():
    # 90%: t_{0.95, 2} = 2.92 -> 2 -+ 2.92 / sqrt(3).
    summary = return_summary([1.0, 2.0, 3.0], confidence=0.9)
    assert summary["ci_high"] == pytest.approx(2.0 + t_quantile_df2(0.95) / math.sqrt(3), rel=1e-9)
    assert summary["ci_low"] == pytest.approx(2.0 - t_quantile_df2(0.95) / math.sqrt(3), rel=1e-9)


def test_return_summary_two_seeds_uses_cauchy_quantile():
    # One degree of freedom: the t distribution is Cauchy, quantile tan(pi (q - 1/2)); t_{0.975, 1} = 12.706.
    # returns 1, 3: mean 2, std sqrt(2), stderr sqrt(2) / sqrt(2) = 1.
    t_975 = math.tan(math.pi * 0.475)
    assert t_975 == pytest.approx(12.706, abs=1e-3)
    summary = return_summary([1.0, 3.0])
    assert summary["std"] == pytest.approx(math.sqrt(2))
    assert summary["stderr"] == pytest.approx(1.0)
    assert summary["ci_low"] == pytest.approx(2.0 - t_975, rel=1e-9)
    assert summary["ci_high"] == pytest.approx(2.0 + t_975, rel=1e-9)


def test_return_summary_averages_episodes_first():
    # Episode means per seed: (1+3)/2 = 2, (2+2)/2 = 2, (5+1)/2 = 3 -> mean 7/3; deviations -1/3, -1/3, 2/3:
    # sum of squares 6/9, / 2 = 1/3 -> std sqrt(1/3), stderr sqrt(1/3) / sqrt(3) = 1/3.
    summary = return_summary([[1.0, 3.0], [2.0, 2.0], [5.0, 1.0]])
    assert summary["num_seeds"] == 3
    assert summary["mean"] == pytest.approx(7 / 3)
    assert summary["std"] == pytest.approx(math.sqrt(1 / 3))
    assert summary["stderr"] == pytest.approx(1 / 3)
    assert summary["ci_high"] == pytest.approx(7 / 3 + t_quantile_df2(0.975) / 3)


def test_return_summary_one_seed():
    summary = return_summary([4.5])
    assert (summary["mean"], summary["std"], summary["stderr"], summary["num_seeds"]) == (4.5, 0.0, 0.0, 1)
    assert math.isnan(summary["ci_low"]) and math.isnan(summary["ci_high"])


def test_learning_curve_hand_worked():
    # point 0: 0, 2, 1 -> mean 1, std 1 -> stderr 1/sqrt(3)
    # point 1: 1, 3, 2 -> mean 2, std 1 -> stderr 1/sqrt(3)
    # point 2: 2, 2, 5 -> mean 3, deviations -1, -1, 2: 6 / 2 = 3 -> std sqrt(3) -> stderr 1
    curve = learning_curve(np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 2.0], [1.0, 2.0, 5.0]]))
    assert isinstance(curve["mean"], list) and len(curve["mean"]) == 3 and len(curve["stderr"]) == 3
    assert curve["mean"] == pytest.approx([1.0, 2.0, 3.0])
    assert curve["stderr"] == pytest.approx([1 / math.sqrt(3), 1 / math.sqrt(3), 1.0])
    assert curve["num_seeds"] == 3


def test_learning_curve_one_seed_has_zero_stderr():
    curve = learning_curve([[1.0, 4.0, 9.0, 16.0]])
    assert curve == {"mean": [1.0, 4.0, 9.0, 16.0], "stderr": [0.0, 0.0, 0.0, 0.0], "num_seeds": 1}


def test_intervention_benefit_hand_worked():
    # seed 1: (6 - 2) / (10 - 2) = 50%; seed 2: (5 - 1) / (9 - 1) = 50%; seed 3: (8 - 4) / (8 - 4) = 100%.
    # mean 200/3 = 66.67; deviations -50/3, -50/3, 100/3: squares sum 15000/9, / 2 -> std sqrt(2500/3) = 50/sqrt(3);
    # stderr 50/3.
    summary = intervention_benefit([6.0, 5.0, 8.0], [2.0, 1.0, 4.0], [10.0, 9.0, 8.0])
    assert summary["mean"] == pytest.approx(200 / 3)
    assert summary["std"] == pytest.approx(50 / math.sqrt(3))
    assert summary["stderr"] == pytest.approx(50 / 3)
    assert summary["ci_low"] == pytest.approx(200 / 3 - t_quantile_df2(0.975) * 50 / 3)
    assert summary["num_seeds"] == 3


def test_intervention_benefit_can_be_negative_and_averages_episodes():
    # Policy worse than doing nothing: (1 - 3) / (7 - 3) = -50% on both seeds. Seed 2's episodes average to
    # policy (0 + 2) / 2 = 1, none (2 + 4) / 2 = 3, best (6 + 8) / 2 = 7.
    summary = intervention_benefit([[1.0, 1.0], [0.0, 2.0]], [[3.0, 3.0], [2.0, 4.0]], [[7.0, 7.0], [6.0, 8.0]])
    assert summary["mean"] == pytest.approx(-50.0)
    assert summary["std"] == pytest.approx(0.0)


def test_intervention_benefit_bad_input():
    with pytest.raises(ValueError, match="must hold the same seeds"):
        intervention_benefit([1.0, 2.0], [0.0, 0.0, 0.0], [3.0, 3.0])
    with pytest.raises(ValueError, match=r"best_returns equals no_intervention_returns for seed\(s\) \[1\]"):
        intervention_benefit([1.0, 2.0], [0.0, 2.0], [3.0, 2.0])
    with pytest.raises(ValueError, match="no_intervention_returns is empty"):
        intervention_benefit([1.0], [], [3.0])


@pytest.mark.parametrize(
    "returns, match",
    [
        ([], "returns is empty"),
        ([[]], "returns is empty"),
        (np.zeros((2, 2, 2)), r"returns must be \[num_seeds\] or \[num_seeds, num_episodes\]"),
        ([1.0, float("nan")], "returns must be finite"),
    ],
)
def test_return_summary_bad_input(returns, match):
    with pytest.raises(ValueError, match=match):
        return_summary(returns)


def test_bad_confidence_and_curves():
    with pytest.raises(ValueError, match="confidence must be in"):
        return_summary([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="curves must be a non-empty"):
        learning_curve([1.0, 2.0])
    with pytest.raises(ValueError, match="curves must be finite"):
        learning_curve([[1.0, float("inf")]])
