"""Small data sets (5k-100k interactions): the ``small`` preset against ``smoke``, with KNN and popularity.

Generates ``--num_students`` synthetic students (``study.sims.synthetic_learning_ally``), runs the Beam job,
then trains STUDY and Individual with the ``smoke`` preset (300 updates of a tiny model, no early stopping) and
with the ``small`` preset (AdamW with weight decay, validation every 50 updates, early stopping on the
validation loss, the best state evaluated), fits KNN, and evaluates all on the test split with the same
evaluator, next to the most-popular-item ranking (training counts). Prints and saves
``benchmarks/results/small_data.json`` and ``.md``.

Usage::

    python benchmarks/small_data.py [--num_students=2000] [--work_dir=/tmp/small_data]
"""

import os
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402
from benchmarks.synthetic_dataset import prepare_data  # noqa: E402

flags.DEFINE_integer("num_students", 2000, "synthetic students (2,000 give about 50k interactions)")
flags.DEFINE_integer("seed", 0, "generator seed")
flags.DEFINE_string("work_dir", "/tmp/small_data", "raw data, processed data and runs")
flags.DEFINE_list("runs", ["study:smoke", "study:small", "individual:smoke", "individual:small", "knn:small"],
                  "config:preset pairs to train and evaluate")
flags.DEFINE_integer("num_bootstrap", 50, "bootstrap resamples")
results_io.define_output_flag("small_data")
FLAGS = flags.FLAGS
HEADLINE = ("hits@1", "hits@20")


def headline(metrics: dict) -> dict:
    """Macro hits@1 / hits@20 of all and novel interactions, with intervals."""
    return {f"{subset}/{hits}": metrics["overall"][subset]["macro"][hits]
            for subset in ("all", "novel") for hits in HEADLINE}


def popularity(data_dir: str, num_bootstrap: int) -> dict:
    """The test-split metrics of ranking every item by its training count."""
    import numpy as np

    from study.data import input_pipeline, reserved_ids, vocabulary
    from study.eval import evaluate

    vocab = vocabulary.load_vocab(os.path.join(data_dir, "vocab.json"))
    scores = np.concatenate([np.full(reserved_ids.FIRST_ITEM_ID, -1.0), np.asarray(vocab.counts, np.float32)])
    files = input_pipeline.dataset_files(data_dir, "individual", "test")
    batches = input_pipeline.eval_batches(files, 256, process_index=0, process_count=1)
    result = evaluate.evaluate(lambda b: np.broadcast_to(scores, b["item_ids"].shape + scores.shape).astype(np.float32),
                               batches, num_bootstrap=num_bootstrap)
    return headline(result.metrics)


def run_one(name: str, preset: str, data_dir: str, work_dir: str, num_bootstrap: int) -> dict:
    import importlib

    from study.commands import evaluate, train

    config = importlib.import_module(f"configs.{name}").get_config(preset)
    config.data_dir = data_dir
    workdir = os.path.join(work_dir, f"{name}_{preset}")
    started = time.perf_counter()
    result = train.train(config, workdir)
    train_seconds = time.perf_counter() - started
    reports = evaluate.evaluate_run(config, workdir, split="test", evaluators=["hits"], num_bootstrap=num_bootstrap)
    return {"preset": preset, "train_seconds": train_seconds, "steps": result["step"],
            "final_train_loss": result["train"].get("loss"), "validation": result["validation"],
            "early_stopping": result.get("early_stopping"), "test": headline(reports["hits"].metrics)}


def markdown(results: dict) -> str:
    columns = [f"{s}/{h}" for s in ("all", "novel") for h in HEADLINE]
    lines = ["| run | updates | best step | " + " | ".join(columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for run, entry in results["runs"].items():
        best = (entry.get("early_stopping") or {}).get("best_step") or "-"
        cells = [f"{entry['test'][c]['value']:.3f} [{entry['test'][c]['ci_low']:.3f}, {entry['test'][c]['ci_high']:.3f}]"
                 for c in columns]
        lines.append(f"| {run} | {entry.get('steps', '-')} | {best} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    data_dir, stats = prepare_data(FLAGS.work_dir, FLAGS.num_students, FLAGS.seed)
    results = {"num_students": FLAGS.num_students, "data_stats": stats.get("splits", stats), "runs": {}}
    results["runs"]["popularity"] = {"test": popularity(data_dir, FLAGS.num_bootstrap)}
    for spec in FLAGS.runs:
        name, _, preset = spec.partition(":")
        results["runs"][spec] = run_one(name, preset or "small", data_dir, FLAGS.work_dir, FLAGS.num_bootstrap)
    table = markdown(results)
    results["table"] = table
    path = results_io.write_results(FLAGS.output, results)
    with open(path.replace(".json", ".md"), "w") as handle:
        handle.write(table)
    print(table)


if __name__ == "__main__":
    app.run(main)
