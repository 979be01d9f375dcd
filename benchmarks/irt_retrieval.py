"""Parameter retrieval of the Bayesian 2PL (SVI on the loop) against girth's maximum-likelihood 2PL.

The paper's two settings (``study.sims.irt_responses``): ``dense`` (50 students x 30 questions, every pair
answered once) and ``overlap`` (two groups of 50 students; 10 shared questions, 10 for each group alone with
difficulties from N(0.5, 0.7)). For each of ``--seeds`` simulations, our 2PL is fitted with the
``configs/irt.py`` preset of the setting (full batch, ``--steps`` updates) and girth's ``twopl_mml`` on the same
responses (in a separate environment, ``--ref_venv``, created with ``pip install girth`` when missing); the
Pearson, Kendall and Spearman correlations of the estimated difficulties (our posterior means) with the true
ones are averaged over seeds, with our mean posterior standard deviation. Saves
``benchmarks/results/irt_retrieval.json``.

    python benchmarks/irt_retrieval.py [--seeds=10] [--settings=dense,overlap] [--ref_venv=/tmp/irt-ref-venv]
"""

import os
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io  # noqa: E402
from benchmarks.irt_reference_fit import reference_fit, reference_python  # noqa: E402

flags.DEFINE_integer("seeds", 10, "simulations per setting (seeds 0..n-1)")
flags.DEFINE_list("settings", ["dense", "overlap"], "dense and/or overlap")
flags.DEFINE_integer("steps", 2000, "SVI updates per fit (full batch)")
flags.DEFINE_string("ref_venv", "/tmp/irt-ref-venv", "environment with girth (created when missing)")
flags.DEFINE_string("work_dir", "", "runs and data (default: a temporary folder)")
results_io.define_output_flag("irt_retrieval")
FLAGS = flags.FLAGS
STATS = ("pearson", "kendall", "spearman")


def ours(setting: str, seed: int, steps: int, workdir: str):
    """(config, state, task, seconds) of our 2PL fitted on the simulation of ``setting`` and ``seed``."""
    from configs import irt as irt_config
    from study.tasks import build_task
    from study.train import loop

    config = irt_config.get_config(setting)
    config.data.sim.seed = seed
    config.steps = steps
    config.batch_size = 1500 if setting == "dense" else 2000  # every response in every update
    config.log_every = steps
    task = build_task(config)
    start = time.perf_counter()
    loop.train(task, task.config, workdir)
    seconds = time.perf_counter() - start
    return task, loop.restore_state(task, task.config, workdir), seconds


def summarize(rows: list[dict]) -> dict:
    import numpy as np

    keys = rows[0].keys()
    return {key: {"mean": float(np.mean([r[key] for r in rows])), "sd": float(np.std([r[key] for r in rows]))}
            for key in keys}


def main(argv):
    del argv
    import numpy as np

    from study.data import responses
    from study.eval import retrieval_metrics

    python = reference_python(FLAGS.ref_venv, "girth")
    work = FLAGS.work_dir or tempfile.mkdtemp(prefix="irt_retrieval_")
    results = {"seeds": list(range(FLAGS.seeds)), "steps": FLAGS.steps, "settings": {}}
    for setting in FLAGS.settings:
        per_seed = {"ours": [], "girth": []}
        for seed in range(FLAGS.seeds):
            task, state, seconds = ours(setting, seed, FLAGS.steps, os.path.join(work, f"{setting}_{seed}"))
            truth = task.truth["beta"]
            estimates = task.estimates(state)
            mean, sd = estimates["beta"]
            row = retrieval_metrics.retrieval(mean, truth, sd)
            per_seed["ours"].append({**{s: row[s] for s in STATS}, "mean_posterior_sd": row["mean_posterior_sd"],
                                     "theta_pearson": retrieval_metrics.retrieval(estimates["theta"][0],
                                                                                   task.truth["theta"])["pearson"],
                                     "seconds": seconds})
            log_path = os.path.join(work, f"{setting}_{seed}.npz")
            responses.save_npz(task.logs["train"], log_path)
            fit = reference_fit(python, "girth", log_path, os.path.join(work, f"{setting}_{seed}_girth.json"))
            row = retrieval_metrics.retrieval(np.asarray(fit["difficulty"]), truth)
            per_seed["girth"].append({**{s: row[s] for s in STATS}, "seconds": fit["seconds"]})
            print(setting, seed, {k: round(v[-1]["pearson"], 3) for k, v in per_seed.items()}, flush=True)
        results["settings"][setting] = {"per_seed": per_seed,
                                        "summary": {name: summarize(rows) for name, rows in per_seed.items()}}
    results["paper_bayesian_2pl_beta"] = {"dense": {"pearson": 0.95, "kendall": 0.83, "spearman": 0.93},
                                          "overlap": {"pearson": 0.96, "kendall": 0.84, "spearman": 0.96}}
    results_io.write_results(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
