"""STUDY vs Individual (and the two-stream STUDY ablation) on generated Learning-Ally-shaped data.

Generates ``--num_students`` synthetic students (``study.sims.synthetic_learning_ally``), runs the Beam job,
then ``study.commands.suite`` trains each model with the same budget (steps x batch rows) and evaluates it
on the test split: hits@{1,3,5,10,20} over all / non-continuation / novel interactions, macro and micro, 95%
bootstrap intervals over students, and the gap to Individual by history length. Every stage resumes.

Each model is a config file of ``configs/`` (``study``, ``individual``, ``study_two_stream``; also ``knn``,
``samn``, ``srgnn``). Prints and saves ``benchmarks/results/study_vs_individual.json`` (+ ``.md``, the
comparison table and gaps; ``--output`` for elsewhere).

Usage::

    python benchmarks/study_vs_individual.py [--num_students=20000] [--work_dir=/tmp/study_vs_individual] \
        [--models=study,individual,study_two_stream] [--override=steps=1500,...]
"""

import os
import sys

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402
from benchmarks.synthetic_dataset import prepare_data  # noqa: E402
from study.commands import suite  # noqa: E402

flags.DEFINE_integer("num_students", 20_000, "synthetic students")
flags.DEFINE_integer("seed", 0, "generator seed")
flags.DEFINE_string("work_dir", "/tmp/study_vs_individual", "raw data, processed data and runs")
flags.DEFINE_list("models", ["study", "individual", "study_two_stream"],
                  "models of the suite: config files of configs/")
flags.DEFINE_string("preset", "default", "config preset")
# A mid-size transformer trained for the same number of rows: fits a 2-core CPU in well under an hour.
flags.DEFINE_list("override", [
    "steps=1500", "batch_size=64", "model.num_layers=2", "model.emb_dim=128", "model.num_heads=4",
    "model.mlp_dim=512", "optimizer.peak_lr=0.01", "optimizer.warmup_steps=100", "evals.loss.every=500",
    "evals.loss.max_batches=10", "checkpoint_every=500", "log_every=100",
], "KEY=VALUE settings applied to every model config that has KEY")
flags.DEFINE_integer("num_bootstrap", 50, "bootstrap resamples")
results_io.define_output_flag("study_vs_individual")
FLAGS = flags.FLAGS


def headline(metrics_overall: dict) -> dict:
    """``{subset: {hits@n: [value, ci_low, ci_high]}}`` of the macro average."""
    return {subset: {hits: [round(v["value"], 4), round(v["ci_low"], 4), round(v["ci_high"], 4)]
                     for hits, v in entry["macro"].items()}
            for subset, entry in metrics_overall.items()}


def gap_markdown(gaps: dict, reference: str) -> str:
    lines = []
    for name, subsets in gaps.items():
        buckets = list(subsets.get("all", {}))
        hits_names = list(next(iter(subsets["all"].values())))
        lines += [f"\n### {name} minus {reference}, macro, by history length (all interactions)\n",
                  "| history | " + " | ".join(hits_names) + " |", "|---|" + "---|" * len(hits_names)]
        for bucket in buckets:
            values = subsets["all"][bucket]
            lines.append(f"| {bucket} | " + " | ".join(f"{values[h]:+.4f}" for h in hits_names) + " |")
    return "\n".join(lines) + "\n"


def paired_markdown(differences: dict, reference: str) -> str:
    lines = []
    for name, subsets in differences.items():
        hits_names = list(subsets["all"])
        lines += [f"\n### {name} minus {reference}: macro difference on the same students, paired 95% bootstrap\n",
                  "| subset | " + " | ".join(hits_names) + " |", "|---|" + "---|" * len(hits_names)]
        for subset, values in subsets.items():
            lines.append(f"| {subset} | " + " | ".join(
                f"{values[h]['value']:+.4f} [{values[h]['ci_low']:+.4f}, {values[h]['ci_high']:+.4f}]"
                for h in hits_names) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    processed, stats = prepare_data(FLAGS.work_dir, FLAGS.num_students, FLAGS.seed)
    summary = suite.run_suite(
        processed, os.path.join(FLAGS.work_dir, "runs"), FLAGS.models, FLAGS.preset,
        suite.parse_overrides(FLAGS.override), num_bootstrap=FLAGS.num_bootstrap)
    result = {
        "num_students": FLAGS.num_students,
        "seed": FLAGS.seed,
        "preset": FLAGS.preset,
        "overrides": FLAGS.override,
        "dataset_splits": stats.get("splits", stats.get("interactions")),
        "models": {name: {"overall_macro": headline(entry["overall"]),
                          "skipped_overrides": entry.get("skipped_overrides"),
                          "train_seconds": entry.get("train_seconds"),
                          "final_train": entry.get("train"), "final_validation": entry.get("validation")}
                   for name, entry in summary["models"].items()},
        "gap_reference": summary["gap_reference"],
        "history_gaps_macro": summary["history_gaps_macro"],
        "paired_macro_differences": summary["paired_macro_differences"],
    }
    path = results_io.write_results(FLAGS.output, result)
    with open(summary["comparison"]["table"]) as handle:
        table = handle.read()
    markdown = (table + paired_markdown(summary["paired_macro_differences"], summary["gap_reference"])
                + gap_markdown(summary["history_gaps_macro"], summary["gap_reference"]))
    with open(os.path.splitext(path)[0] + ".md", "w") as handle:
        handle.write(markdown)
    print(markdown)


if __name__ == "__main__":
    app.run(main)
