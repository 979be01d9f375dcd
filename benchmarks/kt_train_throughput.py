"""Knowledge-tracing training throughput on the one loop: windows (sequences of at most 200 answers) and answers
per second of DKVMN, DQKT, DKT and BKT on ASSIST2009 fold 1, at the ``configs/kt.py`` sizes (batch 32).

Each model trains ``--steps`` updates; the figure is the median over logging windows of ``--log_every`` updates,
the first window (compilation) left out. Answers per second = windows per second x the mean number of real
answers in a training window. Saves ``benchmarks/results/kt_train_throughput.json``.

    python benchmarks/kt_train_throughput.py [--models=dkvmn,dqkt,dkt,bkt] [--steps=40] [--log_every=10]
"""

import os
import sys
import tempfile

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402
from benchmarks.irt_run_records import records  # noqa: E402

flags.DEFINE_list("models", ["dkvmn", "dqkt", "dkt", "bkt"], "models to time")
flags.DEFINE_string("dataset", "assist2009", "assist2009, statics2011 or synthetic")
flags.DEFINE_integer("steps", 40, "updates per model")
flags.DEFINE_integer("log_every", 10, "updates per logging window")
results_io.define_output_flag("kt_train_throughput")
FLAGS = flags.FLAGS


def measure(model: str, workdir: str) -> dict:
    import numpy as np

    from configs import kt
    from study.tasks import build_task
    from study.train import loop

    config = kt.get_config(f"{FLAGS.dataset}_{model}")
    config.data.epochs, config.steps, config.log_every = 0, FLAGS.steps, FLAGS.log_every
    config.checkpoint_every, config.evals = 0, {}
    task = build_task(config)
    loop.train(task, task.config, workdir)
    windows = [r["rows_per_second"] for r in records(workdir) if r.get("split") == "train"][1:]
    answers_per_window = float(task.windows["train"]["mask"].sum() / len(task.windows["train"]["mask"]))
    median = float(np.median(windows))
    return {"windows_per_second": median, "answers_per_second": median * answers_per_window,
            "answers_per_window": answers_per_window, "batch_size": config.batch_size,
            "window": config.data.window, "steps": FLAGS.steps, "logging_windows": len(windows)}


def main(argv):
    del argv
    results = {"dataset": FLAGS.dataset, "models": {}}
    with tempfile.TemporaryDirectory() as root:
        for model in FLAGS.models:
            results["models"][model] = measure(model, os.path.join(root, model))
            print(model, results["models"][model], flush=True)
    results_io.write_results(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
