"""The EduQate protocol report: Table 1 numbers and the Intervention Benefit from hand-made curves, and the
protocol command end to end on the smoke preset (slow)."""

import json
import os

import numpy as np
import pytest

from study.eval import bandit_report


def curves(final_last):
    """Curves of 2 trials x 10 episodes whose last episode is ``final_last`` and earlier ones 1 less."""
    final = np.repeat(np.asarray(final_last, float)[:, None] - 1, 10, axis=1)
    final[:, -1] = final_last
    return {"final": final, "mean": final / 2}


def test_final_reward_and_intervention_benefit_by_hand():
    summary = bandit_report.summarize({"synthetic": {
        "none": curves([10, 20]), "threshold_whittle": curves([20, 30]), "eduqate": curves([25, 25])}})
    rows = summary["synthetic"]
    assert rows["eduqate"]["final_reward"]["mean"] == 25 and rows["eduqate"]["final_reward"]["stderr"] == 0
    # Last 10 % of 10 episodes = the last episode. IB per trial: (25 - 10) / (20 - 10) = 150 %,
    # (25 - 20) / (30 - 20) = 50 %: mean 100, stderr 50.
    assert rows["eduqate"]["intervention_benefit"]["mean"] == pytest.approx(100.0)
    assert rows["eduqate"]["intervention_benefit"]["stderr"] == pytest.approx(50.0)
    assert "intervention_benefit" not in rows["none"] and "intervention_benefit" not in rows["threshold_whittle"]
    table = bandit_report.table1_markdown(summary)
    assert "| EduQate | 25.00 ± 0.00 (34.33) | 25.00 ± 0.00 | 100.00 ± 50.00 |" in table
    assert "| Threshold Whittle | 25.00 ± 5.00 (28.50) | 25.00 ± 5.00 | - |" in table


@pytest.mark.slow
def test_protocol_command_writes_the_report(tmp_path):
    from study.commands import bandit_protocol

    report = bandit_protocol.protocol(str(tmp_path), "smoke", datasets=("synthetic",),
                                      policies=("eduqate", "threshold_whittle", "none"), topics=(4, 6),
                                      log=lambda *_: None)
    out = tmp_path / "report"
    assert {"report.md", "report.json", "learning_curves.png"} <= set(os.listdir(out))
    saved = json.loads((out / "report.json").read_text())
    assert saved["summary"]["synthetic"]["eduqate"]["episodes"] == 20
    assert set(saved["topic_sweep"]) == {"4", "6"} and report["seconds"]["synthetic"] > 0
