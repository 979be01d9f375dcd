"""KNN baseline throughput: fit time, index size, and test-split evaluation rate on this machine.

    python benchmarks/knn_eval_throughput.py [--data_dir=<processed dir>] [--num_students=20000]
        [--scale=paper] [--work_dir=/tmp/knn_bench] [--batch_size=1024] [--context_size=2]

Without ``--data_dir`` it generates ``--num_students`` synthetic students
(``study.sims.synthetic_learning_ally``; ``--scale=paper`` = the paper's 489k) and runs the Beam job
(``data_pipeline.build_dataset``, DirectRunner) into ``<work_dir>/<label>/processed`` (reused when it
is already there). Then:

* fits the index as ``study train --config=configs/knn.py`` does: ``study.commands.train.train`` (the one
  training loop: one pass over the train split of the Individual rows, then the final checkpoint), then
  restores the run (``study.train.loop.restore_state``) and builds the index (``NearestContextsTask.index``);
  saves and reloads it (size on disk);
* evaluates a fresh model (empty query cache) on every row of the test split with the project's evaluator
  (``study.eval.evaluate``, ``output="top_k"``, as the task's ``hits`` evaluator), timing the ranking itself
  (``predict``) apart from the whole evaluation (TFRecord reading, ranking, metrics, bootstrap).

Rates are interactions scored per second of wall time and per CPU second of this process (the machine
is shared: per-CPU-second rates are the steadier figure). A run below paper scale also reports a linear
extrapolation of the ranking time to the paper's test split, labelled as such.
Prints and saves ``benchmarks/results/knn_eval_throughput.json`` (one entry per scale label; ``--output``
for elsewhere).
"""

import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402

flags.DEFINE_string("data_dir", "", "processed dataset; empty = generate synthetic students and run the Beam job")
flags.DEFINE_integer("num_students", 20_000, "synthetic students to generate (without --data_dir)")
flags.DEFINE_enum("scale", "", ["", "paper"], "paper = generate the paper's 489k students (without --data_dir)")
flags.DEFINE_string("work_dir", "", "where generated data goes (default: a new temporary folder)")
flags.DEFINE_string("label", "", "key of this run in the results (default: <N>k_students, paper or data_dir)")
flags.DEFINE_integer("batch_size", 1024, "evaluation rows per batch")
flags.DEFINE_integer("context_size", 2, "K, earlier interactions in a context")
flags.DEFINE_integer("top_k", 20, "ranked list length")
flags.DEFINE_integer("num_bootstrap", 20, "bootstrap resamples of the evaluation")
results_io.define_output_flag("knn_eval_throughput")
FLAGS = flags.FLAGS


def build_synthetic_dataset(num_students: int, folder: str) -> str:
    """Generates ``num_students`` students and runs the Beam job; returns the processed folder."""
    processed = os.path.join(folder, "processed")
    if os.path.exists(os.path.join(processed, "stats.json")):
        print(f"reusing {processed}", flush=True)
        return processed
    from study.sims import synthetic_learning_ally

    raw = os.path.join(folder, "raw")
    start = time.perf_counter()
    data = synthetic_learning_ally.generate(num_students, seed=0)
    synthetic_learning_ally.write(data, raw, formats=("canonical",))
    del data
    print(f"generated {num_students:,} students in {time.perf_counter() - start:.0f} s; running the Beam job",
          flush=True)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "data_pipeline.build_dataset", f"--interactions={raw}/interactions.csv",
         f"--roster={raw}/roster.csv", f"--schools={raw}/schools.csv", f"--output_dir={processed}",
         "--num_packings=1", "--runner=DirectRunner"],
        check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    print(f"Beam job done in {time.perf_counter() - start:.0f} s", flush=True)
    return processed


def directory_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))


class TimedPredict:
    """Wraps ``predict`` to add up its wall and CPU seconds and the interactions it scored."""

    def __init__(self, predict):
        self.predict = predict
        self.wall_s = self.cpu_s = 0.0
        self.interactions = 0

    def __call__(self, batch):
        from study.data.reserved_ids import is_item

        wall, cpu = time.perf_counter(), time.process_time()
        ranked = self.predict(batch)
        self.wall_s += time.perf_counter() - wall
        self.cpu_s += time.process_time() - cpu
        self.interactions += int((is_item(batch["item_ids"]) & (batch["row_valid"][:, None] > 0)).sum())
        return ranked


def knn_config(data_dir: str):
    """``configs/knn.py:default`` on ``data_dir`` with this run's batch size, K and list length."""
    from configs import knn as knn_config

    config = knn_config.get_config("default")
    config.data_dir = data_dir
    config.batch_size = FLAGS.batch_size
    config.model.context_size = FLAGS.context_size
    config.model.top_k = FLAGS.top_k
    return config


def measure(data_dir: str) -> dict:
    import numpy as np

    from study.commands import train
    from study.data import input_pipeline
    from study.eval import evaluate
    from study.models import knn
    from study.tasks import build_task
    from study.train import loop

    config = knn_config(data_dir)
    with tempfile.TemporaryDirectory() as folder:
        run_dir = os.path.join(folder, "run")
        wall, cpu = time.perf_counter(), time.process_time()
        train.train(config, run_dir)
        train_wall, train_cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        task = build_task(config)
        index = task.index(loop.restore_state(task, task.config, run_dir))
        index_wall, index_cpu = time.perf_counter() - wall, time.process_time() - cpu
        index_dir = os.path.join(folder, "index")
        knn.save_index(index, index_dir)
        index_bytes = directory_bytes(index_dir)
        wall = time.perf_counter()
        index = knn.load_index(index_dir)
        load_s = time.perf_counter() - wall

    model_config = task.config.model
    model = knn.NearestContexts(index, top_k=model_config.top_k, cache_size=model_config.cache_size)
    timed = TimedPredict(model.predict)
    files = input_pipeline.dataset_files(data_dir, task.config.dataset, "test")
    wall, cpu = time.perf_counter(), time.process_time()
    result = evaluate.evaluate(
        timed, input_pipeline.eval_batches(files, FLAGS.batch_size, row_length=model_config.row_length,
                                           process_index=0, process_count=1),
        output="top_k", num_bootstrap=FLAGS.num_bootstrap, seed=task.config.seed)
    eval_wall, eval_cpu = time.perf_counter() - wall, time.process_time() - cpu
    overall = result.metrics["overall"]["all"]
    return {
        "data_dir": os.path.abspath(data_dir),
        "context_size": FLAGS.context_size,
        "top_k": FLAGS.top_k,
        "batch_size": FLAGS.batch_size,
        # wall_s / cpu_s: the whole fit, i.e. the training loop's pass (with its checkpoint) + building the index.
        "fit": {"wall_s": round(train_wall + index_wall, 2), "cpu_s": round(train_cpu + index_cpu, 2),
                "train_loop_wall_s": round(train_wall, 2), "train_loop_cpu_s": round(train_cpu, 2),
                "restore_and_index_wall_s": round(index_wall, 2), "restore_and_index_cpu_s": round(index_cpu, 2),
                **index.summary(), "index_bytes_on_disk": index_bytes, "load_s": round(load_s, 3)},
        "test": {
            "rows": int(np.sum(input_pipeline.count_records(files))),
            "interactions": timed.interactions,
            "distinct_queries": model.num_cached_queries,
            "predict_wall_s": round(timed.wall_s, 2),
            "predict_cpu_s": round(timed.cpu_s, 2),
            "interactions_per_s": round(timed.interactions / timed.wall_s),
            "interactions_per_cpu_s": round(timed.interactions / timed.cpu_s),
            "evaluate_wall_s": round(eval_wall, 2),
            "evaluate_cpu_s": round(eval_cpu, 2),
            "end_to_end_interactions_per_s": round(timed.interactions / eval_wall),
        },
        "hits_micro": {name: round(value["value"], 4) for name, value in overall["micro"].items()},
        "hits_macro": {name: round(value["value"], 4) for name, value in overall["macro"].items()},
    }


def paper_extrapolation(measured: dict, num_students: int) -> dict:
    """Linear extrapolation of the measured ranking rate to the paper's test split (not a measurement)."""
    from study.sims import synthetic_learning_ally

    factor = synthetic_learning_ally.PAPER_NUM_STUDENTS / num_students
    interactions = measured["test"]["interactions"] * factor
    return {
        "note": "linear extrapolation from this run's per-interaction cost, NOT a measurement; the cost per "
                "distinct query grows with the posting lists of a larger training split, while reuse of "
                "repeated queries (the cache) grows too",
        "test_interactions": round(interactions),
        "predict_wall_s": round(interactions / measured["test"]["interactions_per_s"]),
        "predict_cpu_s": round(interactions / measured["test"]["interactions_per_cpu_s"]),
        "evaluate_wall_s": round(interactions / measured["test"]["end_to_end_interactions_per_s"]),
    }


def main(argv):
    del argv
    from study.sims import synthetic_learning_ally

    num_students = synthetic_learning_ally.PAPER_NUM_STUDENTS if FLAGS.scale == "paper" else FLAGS.num_students
    data_dir = FLAGS.data_dir
    label = FLAGS.label or ("data_dir" if data_dir else "paper" if FLAGS.scale == "paper"
                            else f"{num_students // 1000}k_students")
    if not data_dir:
        work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="knn_eval_throughput_")
        data_dir = build_synthetic_dataset(num_students, os.path.join(work_dir, label))
    measured = measure(data_dir)
    if not FLAGS.data_dir:
        measured["num_students"] = num_students
        if FLAGS.scale != "paper":
            measured["paper_extrapolation"] = paper_extrapolation(measured, num_students)
    results_io.write_results(FLAGS.output, measured, key=label)


if __name__ == "__main__":
    app.run(main)
