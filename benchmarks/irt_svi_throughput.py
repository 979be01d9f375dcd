"""SVI throughput and time to a fit on a 17Zuoye-like sparse log, against py-irt (Pyro) on the same data.

Generates ``--num_students`` x ``--num_questions`` at ``--density`` (60,000 x 104,000 at 0.16%: about 10M
responses; ``study.sims.irt_responses.sparse_log``, 2PL truth), then for each model fits our SVI on the loop
(mini-batches of ``--batch_size`` responses, Adam on the warm-up / inverse-sqrt schedule) until the paper's
convergence rule (``--fraction`` of the first change, over 5 windows of ``log_every`` updates) or ``--max_steps``.
Reported: responses per second of the training steps (median over logging windows, compilation excluded),
training seconds to the convergence rule, and for the 2PL the training seconds until the difficulties'
Pearson correlation with the truth first reaches 0.9 (the retrieval evaluator runs every ``--eval_every``
updates; its time is not counted).

py-irt 2PL (full batch, its defaults, one process) runs on the same responses for ``--pyirt_epochs`` epochs in
the environment ``--ref_venv`` (``pip install py-irt`` when missing); its seconds per epoch, responses per
second and the difficulties' Pearson correlation after those epochs are reported beside ours.
Saves ``benchmarks/results/irt_svi_throughput.json``.

    python benchmarks/irt_svi_throughput.py [--num_students=60000 --num_questions=104000] [--pyirt_epochs=50]
"""

import json
import os
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402
from benchmarks.irt_reference_fit import reference_fit, reference_python  # noqa: E402
from benchmarks.irt_run_records import records, training_seconds  # noqa: E402

flags.DEFINE_integer("num_students", 60_000, "students of the generated log")
flags.DEFINE_integer("num_questions", 104_000, "questions of the generated log")
flags.DEFINE_float("density", 0.0016, "share of student x question pairs answered")
flags.DEFINE_list("models", ["2pl", "factorization:10"], "name[:k] of each model")
flags.DEFINE_integer("batch_size", 65_536, "responses per update")
flags.DEFINE_integer("max_steps", 3000, "updates at most")
flags.DEFINE_float("fraction", 0.001, "convergence rule fraction (0.001 or 0.0005 in the paper)")
flags.DEFINE_integer("log_every", 20, "updates per convergence window")
flags.DEFINE_integer("eval_every", 100, "updates between retrieval evaluations of the 2PL")
flags.DEFINE_float("peak_lr", 0.05, "peak learning rate")
flags.DEFINE_integer("pyirt_epochs", 50, "py-irt epochs (0: skip py-irt)")
flags.DEFINE_string("ref_venv", "/tmp/irt-ref-venv", "environment with py-irt (created when missing)")
flags.DEFINE_string("work_dir", "", "runs and data (default: a temporary folder)")
results_io.define_output_flag("irt_svi_throughput")
FLAGS = flags.FLAGS


def fit(spec: str, data_dir: str, workdir: str) -> dict:
    import numpy as np

    from configs import irt as irt_config
    from study.tasks import build_task
    from study.train import loop

    name, _, k = spec.partition(":")
    config = irt_config.get_config("sparse")
    config.data.source, config.data_dir = "npz", data_dir
    config.model.name = name
    config.model.k = int(k or 1)
    config.batch_size, config.steps, config.log_every = FLAGS.batch_size, FLAGS.max_steps, FLAGS.log_every
    config.convergence.fraction = FLAGS.fraction
    config.optimizer.peak_lr = FLAGS.peak_lr
    config.evals = {}
    task = build_task(config)
    if name == "2pl":
        from configs import common

        task.truth = TRUTH
        config.evals = {"retrieval": common.evaluation(every=FLAGS.eval_every, max_batches=0)}
        task.config.evals = config.evals
    start = time.perf_counter()
    summary = loop.train(task, task.config, workdir)
    wall = time.perf_counter() - start
    train = [r for r in records(workdir) if r.get("split") == "train"]
    elapsed = training_seconds(workdir)
    clock = max(elapsed.values())
    result = {"model": spec, "steps": summary["step"], "converged_at": summary.get("converged_at"),
              "responses_per_second": float(np.median([r["rows_per_second"] for r in train[1:]])),
              "train_seconds": clock, "wall_seconds_with_compile_and_evaluation": wall,
              "final_train_loss": train[-1]["loss"]}
    if name == "2pl":
        curve = [(r["step"], r["beta_pearson"]) for r in records(workdir) if r.get("split") == "validation"]
        result["beta_pearson_by_step"] = curve
        reached = [step for step, value in curve if value >= 0.9]
        result["train_seconds_to_beta_pearson_0.9"] = elapsed.get(reached[0]) if reached else None
        result["final_beta_pearson"] = curve[-1][1] if curve else None
    return result


TRUTH = {}


def main(argv):
    del argv
    import numpy as np

    from study.data import responses
    from study.eval import retrieval_metrics
    from study.sims import irt_responses

    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="irt_throughput_")
    start = time.perf_counter()
    simulation = irt_responses.sparse_log(FLAGS.num_students, FLAGS.num_questions, FLAGS.density, seed=0)
    generate_seconds = time.perf_counter() - start
    TRUTH.update(theta=simulation.truth["theta"], alpha=simulation.truth["alpha"], beta=simulation.truth["beta"])
    data_dir = os.path.join(work, "data")
    os.makedirs(data_dir, exist_ok=True)
    responses.save_npz(simulation.log, os.path.join(data_dir, "train.npz"))
    results = {"num_students": FLAGS.num_students, "num_questions": FLAGS.num_questions,
               "responses": len(simulation.log), "generate_seconds": generate_seconds,
               "batch_size": FLAGS.batch_size, "fraction": FLAGS.fraction, "log_every": FLAGS.log_every,
               "ours": []}
    print(f"{len(simulation.log):,} responses generated in {generate_seconds:.1f} s", flush=True)
    for spec in FLAGS.models:
        results["ours"].append(fit(spec, data_dir, os.path.join(work, spec.replace(":", "_"))))
        print(json.dumps(results["ours"][-1])[:600], flush=True)
    if FLAGS.pyirt_epochs > 0:
        python = reference_python(FLAGS.ref_venv, "py-irt")
        reference = reference_fit(python, "py-irt", os.path.join(data_dir, "train.npz"),
                                  os.path.join(work, "pyirt.json"), epochs=FLAGS.pyirt_epochs)
        beta = retrieval_metrics.retrieval(np.asarray(reference["difficulty"]), simulation.truth["beta"])
        results["py_irt"] = {"epochs": FLAGS.pyirt_epochs, "seconds": reference["seconds"],
                             "seconds_per_epoch": reference["seconds"] / FLAGS.pyirt_epochs,
                             "responses_per_second": len(simulation.log) * FLAGS.pyirt_epochs / reference["seconds"],
                             "beta_pearson": beta["pearson"]}
    results_io.write_results(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
