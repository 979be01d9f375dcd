"""`study bandits`: the EduQate protocol in one command: every policy on every student model through the one
loop, the Table 1-style report, the topic-count sweep (appendix E.1), the replay ablation (E.2) and the
learning curves.

    python -m study.commands.bandit_protocol --workdir=runs/eduqate [--preset=paper|smoke] \\
        [--datasets=synthetic,junyi,oli] [--topics=20,30,40] [--policies=...] [--override=field=value,...]

Each run trains (or resumes) in ``<workdir>/<dataset>/<policy>/`` (the sweep in ``synthetic_<G>topics``) with
``configs/eduqate.py:<preset>``; ``--override`` fields (``model.num_trials=5,...``) apply to every run. Writes
``<workdir>/report/{report.md, report.json, learning_curves.png}``; ``report.json`` holds the per-trial
curves, the summaries and the wall time of each dataset's runs.
"""

import json
import os
import time

from absl import flags

from study import cli

FLAGS = flags.FLAGS
POLICIES = ("eduqate", "eduqate_no_replay", "wiql", "threshold_whittle", "myopic", "random", "none")
DATASETS = ("synthetic", "junyi", "oli")


def run_config(preset: str, dataset: str, policy: str, num_topics: int | None = None, overrides=None):
    """The config of one run of the protocol."""
    from configs import eduqate as eduqate_config

    config = eduqate_config.get_config(preset)
    config.name = f"{dataset}/{policy}"
    config.model.dataset = dataset
    config.model.policy = "eduqate" if policy == "eduqate_no_replay" else policy
    config.model.replay = policy != "eduqate_no_replay"
    if dataset != "synthetic" and preset != "smoke":
        config.model.num_arms = 100
    if num_topics is not None:
        config.model.num_topics = num_topics
    config.update_from_flattened_dict(dict(overrides or {}))
    return config


def run_policies(preset, dataset, policies, workdir, num_topics=None, overrides=None, log=print) -> dict:
    """Trains every policy on ``dataset``; returns ``{"curves": {policy: {"final", "mean"}}, "seconds": {...}}``."""
    from study.commands.train import train
    from study.tasks import build_task
    from study.train import loop

    curves, seconds = {}, {}
    for policy in policies:
        config = run_config(preset, dataset, policy, num_topics, overrides)
        run_dir = os.path.join(workdir, policy)
        start = time.perf_counter()
        train(config, run_dir)
        task = build_task(config)
        state = loop.restore_state(task, task.config, run_dir, checkpoint="latest")
        curves[policy] = {"final": task.curves(state, "final_reward").tolist(),
                          "mean": task.curves(state, "mean_reward").tolist()}
        seconds[policy] = time.perf_counter() - start
        log(f"{dataset} {policy}: {seconds[policy]:.1f} s")
    return {"curves": curves, "seconds": seconds}


def protocol(workdir: str, preset: str = "paper", datasets=DATASETS, policies=POLICIES, topics=(20, 30, 40),
             overrides=None, log=print) -> dict:
    """Runs the protocol and writes the report; returns the report's JSON content."""
    from study.eval import bandit_report

    results, timing, sweep_curves = {}, {}, {}
    for dataset in datasets:
        start = time.perf_counter()
        results[dataset] = run_policies(preset, dataset, policies, os.path.join(workdir, dataset),
                                        None, overrides, log)
        timing[dataset] = time.perf_counter() - start
    base_topics = run_config(preset, "synthetic", "eduqate", None, overrides).model.num_topics
    for count in topics if "synthetic" in datasets else ():
        if count == base_topics:
            sweep_curves[count] = results["synthetic"]["curves"]
            continue
        run = run_policies(preset, "synthetic", [p for p in policies if p != "eduqate_no_replay"],
                           os.path.join(workdir, f"synthetic_{count}topics"), count, overrides, log)
        sweep_curves[count] = run["curves"]
        timing[f"synthetic_{count}topics"] = sum(run["seconds"].values())
    curves = {dataset: result["curves"] for dataset, result in results.items()}
    summary = bandit_report.summarize(curves)
    sweep = {count: bandit_report.summarize({"synthetic": c})["synthetic"] for count, c in sweep_curves.items()}
    out = os.path.join(workdir, "report")
    os.makedirs(out, exist_ok=True)
    example = run_config(preset, "synthetic", "eduqate", None, overrides)
    markdown = "\n".join([
        "# EduQate protocol", "",
        f"Preset `{preset}`: {example.model.num_trials} trials x {example.model.num_episodes} episodes x "
        f"{example.model.episode_length} steps per policy and dataset, one pull per step. Final-episode reward: "
        "learned items after the last step of the last episode, mean ± standard error over trials (paper's "
        "Table 1 in parentheses); last 10 %: the same averaged over the last 10 % of the episodes. IB: "
        "Intervention Benefit (eq. 4) per trial on the last-10 % means, against no intervention, with "
        "Threshold Whittle as the reference (100 % = as good as it).", "",
        bandit_report.table1_markdown(summary),
        "## Topic count (appendix E.1, synthetic)", "", bandit_report.sweep_markdown(sweep) if sweep else "-", "",
        "## Experience replay (appendix E.2)", "", bandit_report.replay_markdown(summary), "",
        "## Wall time (seconds, all runs of the dataset: compile, train, checkpoints)", "",
        "\n".join(f"* {name}: {value:.1f}" for name, value in timing.items()), ""])
    report = {"preset": preset, "summary": summary, "topic_sweep": {str(k): v for k, v in sweep.items()},
              "seconds": timing, "seconds_per_run": {d: r["seconds"] for d, r in results.items()},
              "curves": curves}
    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown)
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle)
    bandit_report.plot_learning_curves(curves, os.path.join(out, "learning_curves.png"))
    log(markdown)
    return report


def main(argv):
    del argv
    unknown = [d for d in FLAGS.datasets if d not in DATASETS]
    if unknown:
        raise cli.InputError(f"--datasets: unknown {unknown}; choose from {', '.join(DATASETS)}")
    unknown = [p for p in FLAGS.policies if p not in POLICIES]
    if unknown:
        raise cli.InputError(f"--policies: unknown {unknown}; choose from {', '.join(POLICIES)}")
    if FLAGS.preset not in ("paper", "smoke"):
        raise cli.InputError(f"--preset={FLAGS.preset}: choose paper or smoke")
    try:
        topics = [int(t) for t in FLAGS.topics]
        overrides = dict(item.split("=", 1) for item in FLAGS.override)
        overrides = {key: json.loads(value) for key, value in overrides.items()}
    except ValueError as error:
        raise cli.InputError(f"--topics / --override: {error} (integers; field=JSON value)") from None
    protocol(FLAGS.workdir, FLAGS.preset, FLAGS.datasets, FLAGS.policies, topics, overrides)


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "folder of the runs and the report")
    flags.DEFINE_string("preset", "paper", "configs/eduqate.py preset: paper or smoke")
    flags.DEFINE_list("datasets", list(DATASETS), "student models: synthetic, junyi, oli")
    flags.DEFINE_list("policies", list(POLICIES), "policies to run")
    flags.DEFINE_list("topics", ["20", "30", "40"], "topic counts of the synthetic sweep (appendix E.1)")
    flags.DEFINE_list("override", [], "config fields for every run, field=JSON value (model.num_trials=5)")
    flags.mark_flags_as_required(["workdir"])
    cli.run(main)
