"""KNN baseline throughput: fit time, index size, and test-split evaluation rate on this machine.

    python benchmarks/knn_eval_throughput.py [--data_dir=<processed dir>] [--num_students=20000]
        [--scale=paper] [--work_dir=/tmp/knn_bench] [--batch_size=1024] [--context_size=2]

Without ``--data_dir`` it generates ``--num_students`` synthetic students
(``study.data.synthetic_learning_ally``; ``--scale=paper`` = the paper's 489k) and runs the Beam job
(``data_pipeline.build_dataset``, DirectRunner) into ``<work_dir>/<label>/processed`` (reused when it
is already there). Then:

* fits the index on the train split of the Individual rows (``study.models.knn.fit_from_data_dir``),
  saves and reloads it (size on disk);
* evaluates a fresh model (empty query cache) on every row of the test split with the project's evaluator
  (``study.eval.evaluate``, ``output="top_k"``), timing the ranking itself (``predict``) apart from the
  whole evaluation (TFRecord reading, ranking, metrics, bootstrap).

Rates are interactions scored per second of wall time and per CPU second of this process (the machine
is shared: per-CPU-second rates are the steadier figure). A run below paper scale also reports a linear
extrapolation of the ranking time to the paper's test split, labelled as such.
Prints and saves ``benchmarks/results/knn_eval_throughput.json`` (one entry per scale label).
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

flags.DEFINE_string("data_dir", "", "processed dataset; empty = generate synthetic students and run the Beam job")
flags.DEFINE_integer("num_students", 20_000, "synthetic students to generate (without --data_dir)")
flags.DEFINE_enum("scale", "", ["", "paper"], "paper = generate the paper's 489k students (without --data_dir)")
flags.DEFINE_string("work_dir", "", "where generated data goes (default: a new temporary folder)")
flags.DEFINE_string("label", "", "key of this run in the results (default: <N>k_students, paper or data_dir)")
flags.DEFINE_integer("batch_size", 1024, "evaluation rows per batch")
flags.DEFINE_integer("context_size", 2, "K, earlier interactions in a context")
flags.DEFINE_integer("top_k", 20, "ranked list length")
flags.DEFINE_integer("num_bootstrap", 20, "bootstrap resamples of the evaluation")
flags.DEFINE_string("output", os.path.join(REPO, "benchmarks", "results", "knn_eval_throughput.json"), "")
FLAGS = flags.FLAGS


def build_synthetic_dataset(num_students: int, folder: str) -> str:
    """Generates ``num_students`` students and runs the Beam job; returns the processed folder."""
    processed = os.path.join(folder, "processed")
    if os.path.exists(os.path.join(processed, "stats.json")):
        print(f"reusing {processed}", flush=True)
        return processed
    from study.data import synthetic_learning_ally

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


def measure(data_dir: str) -> dict:
    import numpy as np

    from study.data import input_pipeline
    from study.eval import evaluate
    from study.models import knn

    wall, cpu = time.perf_counter(), time.process_time()
    index = knn.fit_from_data_dir(data_dir, FLAGS.context_size)
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    with tempfile.TemporaryDirectory() as folder:
        knn.save_index(index, folder)
        index_bytes = directory_bytes(folder)
        wall = time.perf_counter()
        index = knn.load_index(folder)
        load_s = time.perf_counter() - wall

    model = knn.NearestContexts(index, top_k=FLAGS.top_k)
    timed = TimedPredict(model.predict)
    files = input_pipeline.dataset_files(data_dir, "individual", "test")
    wall, cpu = time.perf_counter(), time.process_time()
    result = evaluate.evaluate(
        timed, input_pipeline.eval_batches(files, FLAGS.batch_size, process_index=0, process_count=1),
        output="top_k", num_bootstrap=FLAGS.num_bootstrap)
    eval_wall, eval_cpu = time.perf_counter() - wall, time.process_time() - cpu
    overall = result.metrics["overall"]["all"]
    return {
        "data_dir": os.path.abspath(data_dir),
        "context_size": FLAGS.context_size,
        "top_k": FLAGS.top_k,
        "batch_size": FLAGS.batch_size,
        "fit": {"wall_s": round(fit_wall, 2), "cpu_s": round(fit_cpu, 2), **index.summary(),
                "index_bytes_on_disk": index_bytes, "load_s": round(load_s, 3)},
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
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
                    "platform": platform.machine()},
    }


def paper_extrapolation(measured: dict, num_students: int) -> dict:
    """Linear extrapolation of the measured ranking rate to the paper's test split (not a measurement)."""
    from study.data import synthetic_learning_ally

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
    from study.data import synthetic_learning_ally

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
    results = {}
    if os.path.exists(FLAGS.output):
        with open(FLAGS.output) as handle:
            results = json.load(handle)
    results[label] = measured
    os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
    with open(FLAGS.output, "w") as handle:
        json.dump(results, handle, indent=1)
    print(json.dumps({label: measured}, indent=1))


if __name__ == "__main__":
    app.run(main)
