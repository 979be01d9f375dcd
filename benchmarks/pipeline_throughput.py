"""Throughput of the dataset job on synthetic Learning-Ally-shaped data.

For each scale: generate the raw files (study.sims.synthetic_learning_ally), then run the Beam job
(data_pipeline.build_dataset, DirectRunner) in a child process. Reports wall time of each stage,
interactions per second, CPU seconds of the job, peak memory (RSS summed over the process tree,
of the job's own process and of its largest child, a worker process in the DirectRunner's
multi-processing mode; sampled every 0.2 s), the load average around the run, and from the
job's stats.json the parallelism it chose: the student buckets and the largest grouped elements
(interactions in the biggest student bucket and classroom bucket).

    python benchmarks/pipeline_throughput.py --scales=1m,paper \\
        [--compare_repo=/path/to/other/checkout --repeats=2] \\
        [--output=benchmarks/results/pipeline_throughput.json]

``--compare_repo``: also run that checkout's job on the same files, interleaved with this one's
(this, other, this, other, ... ``--repeats`` times each), for a comparison in the same session.
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
flags.DEFINE_string("compare_repo", None, "Another checkout whose job runs on the same files, interleaved.")
flags.DEFINE_bool("reuse_raw", False, "Reuse raw files already generated in --work_dir (same seed).")
flags.DEFINE_integer("repeats", 1, "Runs of each checkout's job per scale.")
flags.DEFINE_string("label", None, "Results key suffix (scale-label), e.g. for a run with other --job_flags.")
flags.DEFINE_list("job_flags", [], "Extra flags of the job, e.g. --job_flags=--interactions_per_bucket=20000.")
FLAGS = flags.FLAGS


class PeakMemory:
    """Samples the RSS of a process and its children in a thread; keeps the peak (bytes)."""

    def __init__(self, pid: int, interval_s: float = 0.2):
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self.peak_bytes = 0
        self.peak_root_bytes = 0  # the job's own process (the runner, and the worker in-process)
        self.peak_child_bytes = 0  # its largest child (a worker process in multi-processing mode)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                processes = [self._process] + self._process.children(recursive=True)
                total = 0
                for index, process in enumerate(processes):
                    try:
                        rss = process.memory_info().rss
                    except psutil.Error:
                        continue
                    total += rss
                    if index == 0:
                        self.peak_root_bytes = max(self.peak_root_bytes, rss)
                    else:
                        self.peak_child_bytes = max(self.peak_child_bytes, rss)
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


def generate(scale: str, raw_dir: str, seed: int) -> tuple:
    """Writes the scale's raw files; returns (interactions, seconds)."""
    start = time.perf_counter()
    data = synthetic_learning_ally.generate(SCALES[scale], seed=seed)
    num_interactions = len(data.interactions)
    synthetic_learning_ally.write(data, raw_dir, formats=("canonical",))
    return num_interactions, time.perf_counter() - start


def run_job(repo: str, raw_dir: str, out_dir: str, num_interactions: int, job_flags: list) -> dict:
    """Runs ``repo``'s dataset job on the raw files in a child process; returns its figures."""
    command = [
        sys.executable,
        "-m",
        "data_pipeline.build_dataset",
        f"--interactions={raw_dir}/interactions.csv",
        f"--roster={raw_dir}/roster.csv",
        f"--schools={raw_dir}/schools.csv",
        f"--output_dir={out_dir}",
        "--overwrite",
        *job_flags,
    ]
    env = dict(os.environ, PYTHONPATH=repo)
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    child = psutil.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo, env=env
    )
    with PeakMemory(child.pid) as memory:
        output, _ = child.communicate()
    pipeline_s = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if child.returncode != 0:
        raise RuntimeError(f"{repo}: the dataset job failed:\n{output[-4000:]}")
    with open(os.path.join(out_dir, "stats.json")) as handle:
        stats = json.load(handle)
    return {
        "repo": repo,
        "pipeline_s": round(pipeline_s, 2),
        "interactions_per_s": round(num_interactions / pipeline_s, 1),
        "pipeline_cpu_s": round(cpu_s, 1),
        "interactions_per_cpu_s": round(num_interactions / max(cpu_s, 1e-9), 1),
        "peak_rss_mb": round(memory.peak_bytes / 2**20, 1),
        "peak_rss_job_process_mb": round(memory.peak_root_bytes / 2**20, 1),
        "peak_rss_worker_process_mb": round(memory.peak_child_bytes / 2**20, 1),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        # Older versions of the job do not report their parallelism.
        "elements": stats.get("elements"),
        "rows": stats["rows"],
    }


def run_scale(scale: str, work_dir: str, seed: int, repos: list, repeats: int, job_flags: list) -> dict:
    raw_dir = os.path.join(work_dir, scale, "raw")
    interactions_csv = os.path.join(raw_dir, "interactions.csv")
    if FLAGS.reuse_raw and os.path.exists(os.path.join(raw_dir, "schools.csv")):
        with open(interactions_csv, "rb") as handle:  # the generator writes a header, no blank line
            num_interactions, generate_s = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 24), b"")) - 1, 0.0
    else:
        shutil.rmtree(os.path.join(work_dir, scale), ignore_errors=True)
        num_interactions, generate_s = generate(scale, raw_dir, seed)
    runs = {repo: [] for repo in repos}
    for repeat in range(repeats):
        for index, repo in enumerate(repos):
            out_dir = os.path.join(work_dir, scale, f"processed-{index}")
            flags_here = job_flags if index == 0 else []
            result = run_job(repo, raw_dir, out_dir, num_interactions, flags_here)
            print(
                f"[{scale}] run {repeat + 1} of {repo}: {result['pipeline_s']} s "
                f"({result['interactions_per_s']:,.0f} interactions/s wall, "
                f"{result['interactions_per_cpu_s']:,.0f} per CPU-second), peak RSS "
                f"{result['peak_rss_mb']:,.0f} MiB, load {result['load_average_1min']}, "
                f"elements {result['elements']}",
                flush=True,
            )
            runs[repo].append(result)
    rows = {json.dumps(r["rows"], sort_keys=True) for results in runs.values() for r in results}
    if len(rows) != 1:
        raise RuntimeError(f"{scale}: the checkouts wrote different row counts: {rows}")
    best = {repo: min(results, key=lambda r: r["pipeline_s"]) for repo, results in runs.items()}
    this = best[repos[0]]
    entry = {
        "students": SCALES[scale],
        "interactions": num_interactions,
        "generate_s": round(generate_s, 2),
        "job_flags": job_flags,
        **{k: v for k, v in this.items() if k != "repo"},
        "runs": runs,
    }
    if len(repos) > 1:
        other = best[repos[1]]
        entry["compared_with"] = {
            "repo": repos[1],
            "pipeline_s": other["pipeline_s"],
            "interactions_per_s": other["interactions_per_s"],
            "peak_rss_mb": other["peak_rss_mb"],
            "throughput_ratio": round(this["interactions_per_s"] / other["interactions_per_s"], 3),
        }
    return entry


def main(argv):
    del argv
    unknown = [s for s in FLAGS.scales if s not in SCALES]
    if unknown:
        raise app.UsageError(f"unknown scales {unknown}; choose from {sorted(SCALES)}")
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="pipeline_throughput_")
    repos = [REPO] + ([os.path.abspath(FLAGS.compare_repo)] if FLAGS.compare_repo else [])
    for scale in FLAGS.scales:
        print(f"[{scale}] generating {SCALES[scale]:,} students ...", flush=True)
        result = run_scale(scale, work_dir, FLAGS.seed, repos, FLAGS.repeats, FLAGS.job_flags)
        key = f"{scale}-{FLAGS.label}" if FLAGS.label else scale
        results_io.write_results(FLAGS.output, result, key=key)
        if not FLAGS.keep:
            shutil.rmtree(os.path.join(work_dir, scale), ignore_errors=True)
    if not FLAGS.keep and not FLAGS.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    app.run(main)
