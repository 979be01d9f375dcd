"""Throughput of the dataset job on synthetic Learning-Ally-shaped data.

For each scale: generate the raw files (study.sims.synthetic_learning_ally), then run the Beam job
(data_pipeline.build_dataset, DirectRunner) in a child process. Reports wall time of each stage,
interactions per second, CPU seconds of the job, and peak memory (RSS summed over the process
tree, sampled every 0.2 s).

    python benchmarks/pipeline_throughput.py --scales=1m,paper \\
        [--output=benchmarks/results/pipeline_throughput.json]

Results: one entry per scale in ``--output`` (``--out`` is an alias), other scales' entries kept.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil
from absl import app
from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402
from study.sims import synthetic_learning_ally  # noqa: E402

# Students per scale; the generator gives about 24 interactions per student.
SCALES = {
    "10k": 400,
    "100k": 4_100,
    "1m": 41_000,
    "paper": synthetic_learning_ally.PAPER_NUM_STUDENTS,
}

flags.DEFINE_list("scales", ["1m", "paper"], f"Scales to run, from {sorted(SCALES)}.")
results_io.define_output_flag("pipeline_throughput")
flags.DEFINE_alias("out", "output")
flags.DEFINE_string("work_dir", None, "Where raw files and outputs go (default: a temp dir).")
flags.DEFINE_integer("seed", 0, "Generator seed.")
flags.DEFINE_bool("keep", False, "Keep the generated files and the job's output.")
FLAGS = flags.FLAGS


class PeakMemory:
    """Samples the RSS of a process and its children in a thread; keeps the peak (bytes)."""

    def __init__(self, pid: int, interval_s: float = 0.2):
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                processes = [self._process] + self._process.children(recursive=True)
                total = 0
                for process in processes:
                    try:
                        total += process.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak_bytes = max(self.peak_bytes, total)
            except psutil.Error:
                return
            self._stop.wait(self._interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_scale(scale: str, work_dir: str, seed: int) -> dict:
    raw_dir = os.path.join(work_dir, scale, "raw")
    out_dir = os.path.join(work_dir, scale, "processed")
    shutil.rmtree(os.path.join(work_dir, scale), ignore_errors=True)

    start = time.perf_counter()
    data = synthetic_learning_ally.generate(SCALES[scale], seed=seed)
    num_interactions = len(data.interactions)
    synthetic_learning_ally.write(data, raw_dir, formats=("canonical",))
    del data
    generate_s = time.perf_counter() - start

    command = [
        sys.executable,
        "-m",
        "data_pipeline.build_dataset",
        f"--interactions={raw_dir}/interactions.csv",
        f"--roster={raw_dir}/roster.csv",
        f"--schools={raw_dir}/schools.csv",
        f"--output_dir={out_dir}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    child = psutil.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with PeakMemory(child.pid) as memory:
        output, _ = child.communicate()
    pipeline_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if child.returncode != 0:
        raise RuntimeError(f"{scale}: the dataset job failed:\n{output[-4000:]}")
    with open(os.path.join(out_dir, "stats.json")) as handle:
        stats = json.load(handle)
    return {
        "students": SCALES[scale],
        "interactions": num_interactions,
        "generate_s": round(generate_s, 2),
        "pipeline_s": round(pipeline_s, 2),
        "interactions_per_s": round(num_interactions / pipeline_s, 1),
        "pipeline_cpu_s": round(cpu_s, 1),
        "interactions_per_cpu_s": round(num_interactions / max(cpu_s, 1e-9), 1),
        "peak_rss_mb": round(memory.peak_bytes / 2**20, 1),
        "rows": stats["rows"],
    }


def main(argv):
    del argv
    unknown = [s for s in FLAGS.scales if s not in SCALES]
    if unknown:
        raise app.UsageError(f"unknown scales {unknown}; choose from {sorted(SCALES)}")
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="pipeline_throughput_")
    for scale in FLAGS.scales:
        print(f"[{scale}] generating {SCALES[scale]:,} students ...", flush=True)
        result = run_scale(scale, work_dir, FLAGS.seed)
        print(
            f"[{scale}] {result['interactions']:,} interactions: generate {result['generate_s']} s, "
            f"pipeline {result['pipeline_s']} s ({result['interactions_per_s']:,.0f} interactions/s "
            f"wall, {result['interactions_per_cpu_s']:,.0f} per CPU-second), "
            f"peak RSS {result['peak_rss_mb']:,.0f} MiB",
            flush=True,
        )
        results_io.write_results(FLAGS.output, result, key=scale)
        if not FLAGS.keep:
            shutil.rmtree(os.path.join(work_dir, scale), ignore_errors=True)
    if not FLAGS.keep and not FLAGS.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
