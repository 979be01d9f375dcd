"""The curriculum-bandit protocol's report: a Table 1-style summary (final-episode reward and Intervention
Benefit with standard errors over trials), the topic-count sweep (appendix E.1), the replay ablation (E.2),
learning-curve plots, and the paper's figures beside ours.

Input: ``curves[dataset][policy]`` = ``{"final": [trials, episodes], "mean": [trials, episodes]}``, the
learned items after each episode and the mean over its steps, per trial (``study.tasks.curriculum_bandits``).
Trials of different policies on one dataset are paired: trial ``i`` is the same student everywhere.
"""

import numpy as np

from study.eval import policy_metrics

# Final-episode reward of Table 1 of the EduQate paper (Tio et al.), synthetic / Junyi / OLI.
PAPER_FINAL_REWARD = {
    "random": {"synthetic": 26.84, "junyi": 15.82, "oli": 18.46},
    "wiql": {"synthetic": 24.60, "junyi": 14.01, "oli": 14.33},
    "myopic": {"synthetic": 27.07, "junyi": 16.86, "oli": 20.51},
    "threshold_whittle": {"synthetic": 28.50, "junyi": 15.82, "oli": 18.07},
    "eduqate": {"synthetic": 34.33, "junyi": 24.53, "oli": 25.47},
}
POLICY_NAMES = {"eduqate": "EduQate", "eduqate_no_replay": "EduQate, no replay", "wiql": "WIQL",
                "threshold_whittle": "Threshold Whittle", "myopic": "Myopic", "random": "Random",
                "none": "No intervention"}
NO_INTERVENTION, REFERENCE = "none", "threshold_whittle"
LAST_SHARE = 0.1


def _fmt(summary: dict) -> str:
    return f"{summary['mean']:.2f} ± {summary['stderr']:.2f}"


def last_share(curve, share: float = LAST_SHARE) -> np.ndarray:
    """``[trials, last episodes]``: the last ``share`` of the episodes of a ``[trials, episodes]`` curve."""
    curve = np.asarray(curve, np.float64)
    return curve[:, -max(1, int(round(share * curve.shape[1]))):]


def summarize(curves: dict) -> dict:
    """Per dataset and policy, over trials: final-episode reward (learned items after the last step of the
    last episode), its mean over the last 10 % of the episodes, the mean per-step reward of the last episode,
    and the Intervention Benefit (eq. 4, percent) against no intervention with Threshold Whittle as the
    reference, per trial on the last-10 % means (one episode's integer counts tie too often for a per-trial
    ratio), when both were run."""
    summary = {}
    for dataset, policies in curves.items():
        rows = {}
        for policy, curve in policies.items():
            final = np.asarray(curve["final"], np.float64)
            rows[policy] = {"final_reward": policy_metrics.return_summary(final[:, -1]),
                            "final_reward_last_10pct": policy_metrics.return_summary(last_share(final)),
                            "mean_reward": policy_metrics.return_summary(np.asarray(curve["mean"])[:, -1]),
                            "episodes": int(final.shape[1])}
        if NO_INTERVENTION in policies and REFERENCE in policies:
            none = last_share(policies[NO_INTERVENTION]["final"])
            best = last_share(policies[REFERENCE]["final"])
            for policy, curve in policies.items():
                if policy in (NO_INTERVENTION, REFERENCE):
                    continue
                try:
                    rows[policy]["intervention_benefit"] = policy_metrics.intervention_benefit(
                        last_share(curve["final"]), none, best)
                except ValueError as undefined:  # a trial where the reference ties no intervention
                    rows[policy]["intervention_benefit"] = {"error": str(undefined)}
        summary[dataset] = rows
    return summary


def table1_markdown(summary: dict, datasets=("synthetic", "junyi", "oli")) -> str:
    """Final-episode reward (ours ± standard error | paper) and Intervention Benefit per policy and dataset."""
    datasets = [d for d in datasets if d in summary]
    policies = [p for p in POLICY_NAMES if any(p in summary[d] for d in datasets)]
    head = "| policy | " + " | ".join(f"{d}: final reward (paper) | last 10 % | IB %" for d in datasets) + " |\n"
    head += "|---|" + "---|---|---|" * len(datasets) + "\n"
    lines = []
    for policy in policies:
        cells = []
        for dataset in datasets:
            row = summary[dataset].get(policy)
            if row is None:
                cells += ["-", "-", "-"]
                continue
            paper = PAPER_FINAL_REWARD.get(policy, {}).get(dataset)
            cells.append(_fmt(row["final_reward"]) + (f" ({paper:.2f})" if paper is not None else ""))
            cells.append(_fmt(row["final_reward_last_10pct"]))
            benefit = row.get("intervention_benefit")
            cells.append(_fmt(benefit) if benefit and "mean" in benefit else "-")
        lines.append(f"| {POLICY_NAMES[policy]} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def sweep_markdown(summary_by_topics: dict) -> str:
    """Appendix E.1: final-episode reward per policy for each topic count (synthetic students)."""
    counts = sorted(summary_by_topics)
    policies = [p for p in POLICY_NAMES if any(p in summary_by_topics[c] for c in counts)]
    head = "| policy | " + " | ".join(f"{c} topics" for c in counts) + " |\n|---|" + "---|" * len(counts) + "\n"
    lines = [f"| {POLICY_NAMES[p]} | " + " | ".join(
        _fmt(summary_by_topics[c][p]["final_reward"]) if p in summary_by_topics[c] else "-" for c in counts) + " |"
        for p in policies]
    return head + "\n".join(lines) + "\n"


def replay_markdown(summary: dict) -> str:
    """Appendix E.2: EduQate with and without experience replay, per dataset."""
    lines = ["| dataset | with replay | without replay |", "|---|---|---|"]
    for dataset, rows in summary.items():
        if "eduqate" in rows and "eduqate_no_replay" in rows:
            lines.append(f"| {dataset} | {_fmt(rows['eduqate']['final_reward'])} | "
                         f"{_fmt(rows['eduqate_no_replay']['final_reward'])} |")
    return "\n".join(lines) + "\n"


def plot_learning_curves(curves: dict, path: str, smooth: int = 20) -> None:
    """One panel per dataset: learned items after each episode, mean over trials (moving average over
    ``smooth`` episodes, at most a tenth of them) with a band of one standard error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(curves)
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for policy, curve in curves[dataset].items():
            final = np.asarray(curve["final"], np.float64)
            stats = policy_metrics.learning_curve(final)
            mean, stderr = np.asarray(stats["mean"]), np.asarray(stats["stderr"])
            width = max(1, min(smooth, len(mean) // 10))  # short runs: a tenth of their episodes
            kernel = np.ones(width) / width
            mean_s, stderr_s = np.convolve(mean, kernel, "valid"), np.convolve(stderr, kernel, "valid")
            episodes = np.arange(width, len(mean) + 1)
            axis.plot(episodes, mean_s, label=POLICY_NAMES.get(policy, policy))
            axis.fill_between(episodes, mean_s - stderr_s, mean_s + stderr_s, alpha=0.2)
        axis.set_title(dataset)
        axis.set_xlabel("episode")
        axis.set_ylabel(f"learned items after the episode ({smooth}-episode mean)")
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
