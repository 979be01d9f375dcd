"""Batch update (posterior as prior) against a refit on all responses, on a generated 17Zuoye-like log.

The log (``study.sims.irt_responses.sparse_log``, 2PL truth) is split at random into old responses A
(``1 - --new_fraction``), new responses B and a held-out set. Three 2PL fits run to the convergence rule
(``--fraction``): on A + B (the refit), on A; then the update: B alone with A's posterior as the prior and A's
guide as the start (``model.prior_from`` and ``init_from``), for a fixed ``--update_steps`` at a lower peak
learning rate (the convergence rule measures progress against the first change, which is tiny for a start at
the old optimum, so it suits fits from scratch, not updates). Reported: training seconds and updates of the refit
and of the update, and the mean absolute difference of the held-out predictions of the update (and of A alone,
and of the refit started from another seed: SVI's own noise) from the refit's. Saves ``benchmarks/results/irt_batch_update.json``.

    python benchmarks/irt_batch_update.py [--num_students=20000 --num_questions=30000] [--new_fraction=0.1]
"""

import os
import sys
import tempfile

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402
from benchmarks.irt_run_records import training_seconds  # noqa: E402

flags.DEFINE_integer("num_students", 20_000, "students of the generated log")
flags.DEFINE_integer("num_questions", 30_000, "questions of the generated log")
flags.DEFINE_float("density", 0.0016, "share of student x question pairs answered")
flags.DEFINE_float("new_fraction", 0.1, "share of the responses that arrive as the new batch B")
flags.DEFINE_integer("batch_size", 16_384, "responses per update")
flags.DEFINE_float("fraction", 0.001, "convergence rule fraction")
flags.DEFINE_integer("log_every", 20, "updates per convergence window")
flags.DEFINE_integer("update_steps", 100, "updates of the batch update (fixed: see the module docstring)")
flags.DEFINE_float("update_peak_lr", 0.005, "peak learning rate of the batch update")
flags.DEFINE_string("work_dir", "", "runs and data (default: a temporary folder)")
results_io.define_output_flag("irt_batch_update")
FLAGS = flags.FLAGS


def fit(data_dir: str, workdir: str, held_out, **fields) -> dict:
    import numpy as np

    from configs import irt as irt_config
    from study.tasks import build_task
    from study.train import loop

    config = irt_config.get_config("sparse")
    config.data.source, config.data_dir = "npz", data_dir
    config.batch_size, config.steps, config.log_every = FLAGS.batch_size, 5000, FLAGS.log_every
    config.convergence.fraction = FLAGS.fraction
    config.evals = {}
    config.update_from_flattened_dict(fields)
    task = build_task(config)
    summary = loop.train(task, task.config, workdir)
    seconds = max(training_seconds(workdir).values())
    state = loop.restore_state(task, task.config, workdir)
    predictions = task.probabilities(state.params, held_out.student, held_out.question)
    return {"updates": summary["step"], "converged_at": summary.get("converged_at"), "train_seconds": seconds,
            "responses": task.num_train, "predictions": np.asarray(predictions)}


def main(argv):
    del argv
    import numpy as np

    from study.data import responses
    from study.sims import irt_responses

    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="irt_batch_update_")
    log = irt_responses.sparse_log(FLAGS.num_students, FLAGS.num_questions, FLAGS.density, seed=1).log
    old, new, held_out = responses.random_split(log, (0.98 - FLAGS.new_fraction, FLAGS.new_fraction, 0.02), seed=0)
    for name, part in {"a": old, "b": new, "ab": old.concat(new)}.items():
        os.makedirs(os.path.join(work, name), exist_ok=True)
        responses.save_npz(part, os.path.join(work, name, "train.npz"))
    refit = fit(os.path.join(work, "ab"), os.path.join(work, "run_ab"), held_out)
    # The yardstick: the same refit from another seed differs from the first by SVI's own noise.
    other_seed = fit(os.path.join(work, "ab"), os.path.join(work, "run_ab_seed1"), held_out, seed=1)
    only_a = fit(os.path.join(work, "a"), os.path.join(work, "run_a"), held_out)
    update = fit(os.path.join(work, "b"), os.path.join(work, "run_b"), held_out,
                 **{"model.prior_from": os.path.join(work, "run_a"), "init_from.workdir": os.path.join(work, "run_a"),
                    "convergence.fraction": 0.0, "steps": FLAGS.update_steps,
                    "optimizer.peak_lr": FLAGS.update_peak_lr})
    results = {"responses": len(log), "old": len(old), "new": len(new), "held_out": len(held_out)}
    reference = refit["predictions"]
    for name, run in (("refit_a_plus_b", refit), ("refit_other_seed", other_seed), ("fit_a", only_a),
                      ("update_on_b", update)):
        run["mean_abs_difference_from_refit"] = float(np.mean(np.abs(run.pop("predictions") - reference)))
        results[name] = run
    results_io.write_results(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
