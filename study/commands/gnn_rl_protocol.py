"""`study gnn_rl`: the GNN-RL fine-tuning comparison in one command (Vassoyan et al. 2024, Table 1 / Figure 4).

    python -m study.commands.gnn_rl_protocol --workdir=runs/gnn_rl/compare --pretrained=runs/gnn_rl/pretrain \\
        [--seeds=10] [--scenarios=none,decreasing_exponential,uniform] \\
        [--methods=pretrained,scratch,linear_ts,ppo] [--override=field=JSON,...]

Every (scenario, method, seed) is one run of the one loop in ``<workdir>/<scenario>/<method>/seed<k>``
(``configs/gnn_rl.py:finetune``; "pretrained" takes its policy from ``--pretrained`` by ``init_from``,
"scratch" is the same model from its initialisation, "linear_ts" the Thompson-sampling bandit, "ppo" the
``ppo`` preset). The learning curve is the ``policy_return`` evaluation after each collect (20 test
students); the final return is its last point. Writes ``<workdir>/report/{report.md, report.json,
learning_curves.png}``.
"""

import json
import os
import time

import numpy as np
from absl import flags

from study import cli

FLAGS = flags.FLAGS
METHODS = ("pretrained", "scratch", "linear_ts", "ppo")
SCENARIOS = ("none", "decreasing_exponential", "uniform")
# The paper's Table 1: final return, mean (std) over 30 seeds; decreasing / uniform without std in the issue.
PAPER = {"none": {"pretrained": "24.81 (2.63)", "scratch": "18.63 (6.55)", "linear_ts": "18.34 (2.11)",
                  "ppo": "8.02 (1.62)"},
         "decreasing_exponential": {"pretrained": "22.62", "scratch": "16.28", "linear_ts": "11.32", "ppo": "4.64"},
         "uniform": {"pretrained": "13.33", "scratch": "7.51", "linear_ts": "4.19", "ppo": "2.49"}}
NAMES = {"pretrained": "GNN pre-trained", "scratch": "GNN not pre-trained", "linear_ts": "linear TS bandit",
         "ppo": "PPO MLP"}


def run_config(method: str, scenario: str, seed: int, pretrained: str, overrides=None):
    from configs import gnn_rl

    config = gnn_rl.get_config("ppo" if method == "ppo" else "finetune")
    config.name = f"{scenario}/{method}"
    config.seed = seed
    config.model.scenario = scenario
    if method == "linear_ts":
        config.model.policy = "linear_ts"
    if method == "pretrained":
        config.init_from.workdir = pretrained
    config.update_from_flattened_dict(dict(overrides or {}))
    return config


def learning_curve(run_dir: str) -> list:
    """The ``policy_return/return_mean`` of each validation record of the run, in step order."""
    points = {}
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record.get("split") == "validation" and "return_mean" in record:
                points[record["step"]] = record["return_mean"]
    return [points[step] for step in sorted(points)]


def finished_curve(run_dir: str) -> list:
    """The learning curve of a run that has one (empty for a new run)."""
    return learning_curve(run_dir) if os.path.exists(os.path.join(run_dir, "metrics.jsonl")) else []


def plot(curves: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4), squeeze=False)
    for axis, (scenario, by_method) in zip(axes[0], curves.items()):
        for method, runs in by_method.items():
            values = np.asarray(runs, np.float64)
            mean, std = values.mean(0), values.std(0)
            epochs = np.arange(1, values.shape[1] + 1)
            axis.plot(epochs, mean, label=NAMES[method])
            axis.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        axis.set_title(f"prior knowledge: {scenario}")
        axis.set_xlabel("epoch (5 training students each)")
        axis.set_ylabel("test episodic return")
    axes[0][-1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def protocol(workdir: str, pretrained: str, seeds: int = 10, scenarios=SCENARIOS, methods=METHODS, overrides=None,
             log=print) -> dict:
    """Runs (or resumes) every run and writes the report; returns the report's JSON content."""
    import jax

    from study.commands.train import train

    # Seeds share their compiled programs (the seed enters as data): one XLA cache for the whole comparison.
    jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "xla_cache"))
    curves, seconds = {}, {}
    for scenario in scenarios:
        curves[scenario] = {}
        for method in methods:
            start = time.perf_counter()
            curves[scenario][method] = []
            for seed in range(seeds):
                run_dir = os.path.join(workdir, scenario, method, f"seed{seed}")
                config = run_config(method, scenario, seed, pretrained, overrides)
                if len(finished_curve(run_dir)) < config.model.num_collects:  # a finished run is read, not re-run
                    train(config, run_dir)
                curves[scenario][method].append(learning_curve(run_dir))
            seconds[f"{scenario}/{method}"] = time.perf_counter() - start
            final = np.asarray(curves[scenario][method])[:, -1]
            log(f"{scenario} {method}: final return {final.mean():.2f} ({final.std():.2f}), "
                f"{seconds[f'{scenario}/{method}']:.0f} s")
    summary = {s: {m: {"mean": float(np.mean(np.asarray(c)[:, -1])), "std": float(np.std(np.asarray(c)[:, -1]))}
                   for m, c in by.items()} for s, by in curves.items()}
    rows = [f"| {NAMES[m]} | " + " | ".join(f"{summary[s][m]['mean']:.2f} ({summary[s][m]['std']:.2f}) "
                                            f"[paper {PAPER[s][m]}]" for s in curves) + " |" for m in methods]
    markdown = "\n".join([
        "# GNN-RL fine-tuning comparison on intro_to_ml", "",
        f"{seeds} seeds per scenario and method; final return = mean test episodic return (20 test students) "
        "after the last epoch, mean (std) over seeds; the paper's Table 1 (30 seeds) in brackets.", "",
        "| method | " + " | ".join(curves) + " |", "|---|" + "---|" * len(curves), *rows, "",
        "Wall time of this invocation (seconds; finished runs are read, not re-run): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()), ""])
    out = os.path.join(workdir, "report")
    os.makedirs(out, exist_ok=True)
    report = {"seeds": seeds, "pretrained": pretrained, "summary": summary, "curves": curves, "seconds": seconds}
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown)
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle)
    plot(curves, os.path.join(out, "learning_curves.png"))
    log(markdown)
    return report


def main(argv):
    del argv
    for name, given, known in (("--methods", FLAGS.methods, METHODS), ("--scenarios", FLAGS.scenarios, SCENARIOS)):
        unknown = [value for value in given if value not in known]
        if unknown:
            raise cli.InputError(f"{name}: unknown {unknown}; choose from {', '.join(known)}")
    if "pretrained" in FLAGS.methods and not os.path.isdir(os.path.join(FLAGS.pretrained, "checkpoints")):
        raise cli.InputError(f"--pretrained={FLAGS.pretrained!r}: no checkpoints there; pre-train first "
                             "(study train --config=configs/gnn_rl.py:pretrain ...) or leave out the method "
                             "'pretrained'")
    try:
        overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in FLAGS.override)}
    except ValueError as error:
        raise cli.InputError(f"--override: {error} (field=JSON value)") from None
    protocol(FLAGS.workdir, FLAGS.pretrained, FLAGS.seeds, FLAGS.scenarios, FLAGS.methods, overrides)


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "folder of the runs and the report")
    flags.DEFINE_string("pretrained", "", "workdir of the pre-trained run (configs/gnn_rl.py:pretrain)")
    flags.DEFINE_integer("seeds", 10, "seeds per scenario and method")
    flags.DEFINE_list("scenarios", list(SCENARIOS), "prior-knowledge scenarios")
    flags.DEFINE_list("methods", list(METHODS), "methods to compare")
    flags.DEFINE_list("override", [], "config fields for every run, field=JSON value (model.num_collects=5)")
    flags.mark_flags_as_required(["workdir"])
    cli.run(main)
