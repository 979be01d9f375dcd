"""IRT on OLI Engineering Statics 2011 (the DKVMN release in ``../shared/data/kt/statics2011_dkvmn``): test AUC and
F1 of the 2PL, the latent factorization (k = 3, 5, 10, 20) and the hierarchical factorization (questions' unit
labels and Q-matrix skills as covariates, each group its own latent block).

One random 80/10/10 split of the 189,297 responses (``data.split_seed``, default 0); each model is fitted with
the ``configs/irt.py`` statics preset for ``--steps`` updates of ``batch_size`` responses and evaluated on the
test split by the family's correctness evaluator (AUC, F1 at 0.5, accuracy, log-loss, by skill). Saves
``benchmarks/results/irt_statics.json`` and ``irt_statics.md`` (the table and the hierarchical model's AUC by
skill).

    python benchmarks/irt_statics.py [--steps=3000] [--models=2pl,factorization:3,...,hierarchical]
"""

import os
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402

flags.DEFINE_integer("steps", 3000, "updates per model")
flags.DEFINE_list("models", ["2pl", "factorization:3", "factorization:5", "factorization:10", "factorization:20",
                             "hierarchical:10"], "name[:k] of each model")
flags.DEFINE_string("data_dir", os.path.join(REPO, "..", "shared", "data", "kt", "statics2011_dkvmn"),
                    "the DKVMN statics2011 folder")
flags.DEFINE_string("work_dir", "", "runs (default: a temporary folder)")
results_io.define_output_flag("irt_statics")
FLAGS = flags.FLAGS


def fit_and_test(spec: str, workdir: str) -> dict:
    from configs import irt as irt_config
    from study.tasks import build_task
    from study.train import loop

    name, _, k = spec.partition(":")
    preset = {"2pl": "statics_2pl", "factorization": "statics_factorization",
              "hierarchical": "statics_hierarchical"}[name]
    config = irt_config.get_config(preset)
    config.data_dir = FLAGS.data_dir
    config.steps = FLAGS.steps
    config.checkpoint_every = 0
    if k:
        config.model.k = int(k)
    task = build_task(config)
    start = time.perf_counter()
    summary = loop.train(task, task.config, workdir)
    seconds = time.perf_counter() - start
    state = loop.restore_state(task, task.config, workdir)
    report = task.evaluators()["correctness"].evaluate(state, "test", num_bootstrap=200)
    overall = report.metrics["overall"]
    return {"model": spec, "train_seconds": seconds, "validation": summary["validation"],
            "test": {key: overall[key] for key in overall}, "by_skill": report.metrics["by_group"],
            "markdown": report.markdown}


def main(argv):
    del argv
    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="irt_statics_")
    rows = []
    for spec in FLAGS.models:
        rows.append(fit_and_test(spec, os.path.join(work, spec.replace(":", "_"))))
        test = rows[-1]["test"]
        print(f"{spec}: test AUC {test['auc']:.4f} F1 {test['f1']:.4f} ({rows[-1]['train_seconds']:.0f} s)", flush=True)
    lines = ["# IRT on statics2011 (random 80/10/10 split of responses, test split)", "",
             f"{FLAGS.steps} updates of 4,096 responses each; 95% bootstrap intervals over test responses.", "",
             "| model | AUC | F1 | accuracy | log-loss | fit seconds |", "|---|---|---|---|---|---|"]
    for row in rows:
        t = row["test"]
        lines.append(f"| {row['model']} | {t['auc']:.4f} [{t['auc_ci_low']:.4f}, {t['auc_ci_high']:.4f}] | "
                     f"{t['f1']:.4f} | {t['accuracy']:.4f} | {t['log_loss']:.4f} | {row['train_seconds']:.0f} |")
    best = max(rows, key=lambda r: r["test"]["auc"])
    lines += ["", f"## By skill: {best['model']} (the best test AUC)", "", best["markdown"]]
    for row in rows:
        row.pop("markdown")
    path = results_io.write_results(FLAGS.output, {"steps": FLAGS.steps, "models": rows})
    with open(path.replace(".json", ".md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    app.run(main)
