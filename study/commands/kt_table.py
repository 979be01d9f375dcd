"""`study kt`: the knowledge-tracing AUC table (DKVMN, DQKT, DKT, BKT on the DKVMN releases' folds) and the
DQKT Q-matrix recovery on the synthetic release, every run on the one loop.

    python -m study.commands.kt_table --workdir=runs/kt [--datasets=assist2009,statics2011] \\
        [--models=dkvmn,dqkt,dkt,bkt] [--folds=1,2,3,4,5] [--statics_folds=1,2,3,4,5] [--epochs=3] \\
        [--synthetic_epochs=10] [--override=field=value,...]

Each run trains (or resumes) in ``<workdir>/<dataset>/<model>/fold<k>/`` with ``configs/kt.py:<dataset>_<model>``
on ``_train<k>`` for ``--epochs`` passes, then is evaluated on the release's ``_test`` file (test AUC over every
answer). ``--override`` fields apply to every run (``optimizer.peak_lr=0.01,...``). Writes
``<workdir>/report/{kt_auc.md, kt_auc.json}``: mean and standard deviation of the test AUC over folds with the
DKVMN paper's figures beside them, the ranking, and the Q-matrix recovery (adjusted Rand index and NMI of
each question's argmax concept against ``cluster_info_0``) with seconds per run.
"""

import json
import os
import time

import numpy as np
from absl import flags

from study import cli

FLAGS = flags.FLAGS
DATASETS = ("assist2009", "statics2011")
MODELS = ("dkvmn", "dqkt", "dkt", "bkt")
# Test AUC (%) of Zhang et al. 2017 (DKVMN), Table 3, as quoted by the issue; no others are quoted.
REFERENCE = {("assist2009", "dkvmn"): 81.57, ("assist2009", "dkt"): 80.53, ("statics2011", "dkvmn"): 82.84}


def run_config(dataset: str, model: str, fold: int, epochs: int, overrides=None):
    from configs import kt

    config = kt.get_config(f"{dataset}_{model}")
    config.data.fold = fold
    config.data.epochs = epochs
    for entry in config.evals.values():
        entry.every = -1  # the table reads the test split once, after training
    config.update_from_flattened_dict(dict(overrides or {}))
    return config


def train_and_test(config, run_dir: str) -> dict:
    """Trains (or resumes) the run and returns ``{"auc", "log_loss", "accuracy", "seconds", "task"}`` on test."""
    from study.commands.train import train
    from study.tasks import build_task
    from study.train import loop

    start = time.perf_counter()
    train(config, run_dir)
    task = build_task(config)
    state = loop.restore_state(task, task.config, run_dir, checkpoint="latest")
    scalars = task.evaluators()["correctness"].evaluate(state, "test").scalars
    return {"auc": scalars["auc"], "log_loss": scalars["log_loss"], "accuracy": scalars["accuracy"],
            "seconds": time.perf_counter() - start, "task": task, "state": state}


def q_matrix_recovery(workdir: str, epochs: int, overrides=None, log=print) -> dict:
    """DQKT (and DKVMN for contrast) on the synthetic release, version 0: test AUC and the agreement of each
    question's argmax concept with the true one."""
    from study.data import kt_sequences
    from study.eval.clustering_metrics import adjusted_rand_index, normalized_mutual_information

    spec = kt_sequences.DATASETS["synthetic"]
    truth = kt_sequences.read_cluster_info(os.path.join(spec.default_dir, "cluster_info_0"))
    found = {}
    for model in ("dqkt", "dkvmn"):
        config = run_config("synthetic", model, 1, epochs, overrides)
        result = train_and_test(config, os.path.join(workdir, "synthetic", model))
        weights = result["task"].q_matrix(result["state"].params)
        concept = np.argmax(weights, axis=1)
        found[model] = {"auc": result["auc"], "seconds": result["seconds"],
                        "ari": adjusted_rand_index(truth, concept), "nmi": normalized_mutual_information(truth, concept),
                        "concepts_used": int(len(np.unique(concept))),
                        "mean_nonzero_weights": float(np.mean(np.sum(weights > 0, axis=1))),
                        "argmax_concept": concept.tolist()}
        log(f"synthetic {model}: AUC {result['auc']:.4f} ARI {found[model]['ari']:.3f} NMI {found[model]['nmi']:.3f}")
    return found


def auc_markdown(results: dict, epochs: int) -> str:
    lines = ["| model | " + " | ".join(f"{d} test AUC % (folds) | reference" for d in results) + " |",
             "|---|" + "---|---|" * len(results)]
    models = [m for m in MODELS if any(m in per for per in results.values())]
    for model in models:
        cells = []
        for dataset, per in results.items():
            runs = per.get(model, {})
            aucs = [100 * r["auc"] for r in runs.values()]
            cell = (f"{np.mean(aucs):.2f} ± {np.std(aucs, ddof=1) if len(aucs) > 1 else 0:.2f} ({len(aucs)})"
                    if aucs else "-")
            reference = REFERENCE.get((dataset, model))
            cells.append(f"{cell} | {reference if reference is not None else '-'}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    rankings = []
    for dataset, per in results.items():
        means = {m: np.mean([r["auc"] for r in per[m].values()]) for m in per if per[m]}
        rankings.append(f"* {dataset}: " + " > ".join(f"{m} ({100 * v:.2f})" for m, v in
                                                       sorted(means.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines + ["", f"Mean ± standard deviation over folds of the test AUC after {epochs} epochs; "
                              "reference: the DKVMN paper (Zhang et al. 2017).", "", "Ranking:", ""] + rankings)


def table(workdir: str, datasets=DATASETS, models=MODELS, folds=(1, 2, 3, 4, 5), statics_folds=(1, 2, 3, 4, 5),
          epochs: int = 3, synthetic_epochs: int = 10, overrides=None, log=print) -> dict:
    """Runs everything asked and writes the report, rewritten after every run (a partial table is readable
    while later runs train)."""
    recovery = q_matrix_recovery(workdir, synthetic_epochs, overrides, log) if synthetic_epochs > 0 else {}
    results = {dataset: {} for dataset in datasets}
    report = write_report(workdir, results, recovery, epochs, synthetic_epochs)
    for dataset in datasets:
        for fold in (statics_folds if dataset == "statics2011" else folds):
            for model in models:
                config = run_config(dataset, model, fold, epochs, overrides)
                out = train_and_test(config, os.path.join(workdir, dataset, model, f"fold{fold}"))
                results[dataset].setdefault(model, {})[fold] = {k: out[k] for k in ("auc", "log_loss", "accuracy",
                                                                                     "seconds")}
                log(f"{dataset} fold {fold} {model}: test AUC {out['auc']:.4f} ({out['seconds']:.0f} s)")
                report = write_report(workdir, results, recovery, epochs, synthetic_epochs)
    log(report["markdown"])
    return report


def write_report(workdir: str, results: dict, recovery: dict, epochs: int, synthetic_epochs: int) -> dict:
    """Writes ``<workdir>/report/kt_auc.{md,json}``; returns the JSON content (with the markdown)."""
    markdown = ["# Knowledge tracing: test AUC", "", auc_markdown(results, epochs), ""]
    if recovery:
        markdown += ["## Q-matrix recovery (synthetic release v0, 5 true concepts, 50 questions)", "",
                     "| model | test AUC | ARI | NMI | concepts used | mean non-zero weights per question | s |",
                     "|---|---|---|---|---|---|---|"]
        markdown += [f"| {m} | {r['auc']:.4f} | {r['ari']:.3f} | {r['nmi']:.3f} | {r['concepts_used']} | "
                     f"{r['mean_nonzero_weights']:.2f} | {r['seconds']:.0f} |" for m, r in recovery.items()]
        markdown += ["", f"{synthetic_epochs} epochs; a question's concept is the memory slot of its largest "
                     "correlation weight; the truth is the first line of `cluster_info_0`.", ""]
    seconds = {f"{d}/{m}/fold{f}": r["seconds"] for d, per in results.items() for m, runs in per.items()
               for f, r in runs.items()}
    markdown += ["## Seconds per run (train + test evaluation, compile included)", "",
                 ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()), ""]
    report = {"epochs": epochs, "synthetic_epochs": synthetic_epochs, "results": results,
              "reference": {f"{d}/{m}": v for (d, m), v in REFERENCE.items()}, "q_matrix_recovery": recovery,
              "markdown": "\n".join(markdown)}
    out = os.path.join(workdir, "report")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "kt_auc.md"), "w", encoding="utf-8") as handle:
        handle.write(report["markdown"])
    with open(os.path.join(out, "kt_auc.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    return report


def main(argv):
    del argv
    for name, allowed in (("datasets", DATASETS), ("models", MODELS)):
        unknown = [v for v in getattr(FLAGS, name) if v not in allowed]
        if unknown:
            raise cli.InputError(f"--{name}: unknown {unknown}; choose from {', '.join(allowed)}")
    try:
        folds = [int(f) for f in FLAGS.folds]
        statics_folds = [int(f) for f in FLAGS.statics_folds]
        overrides = {key: json.loads(value) for key, value in (item.split("=", 1) for item in FLAGS.override)}
    except ValueError as error:
        raise cli.InputError(f"--folds / --statics_folds / --override: {error} (integers 1-5; field=JSON value)") \
            from None
    if any(f not in range(1, 6) for f in folds + statics_folds):
        raise cli.InputError("--folds / --statics_folds: the releases have folds 1 to 5")
    table(FLAGS.workdir, FLAGS.datasets, FLAGS.models, folds, statics_folds, FLAGS.epochs, FLAGS.synthetic_epochs,
          overrides)


if __name__ == "__main__":
    flags.DEFINE_string("workdir", None, "folder of the runs and the report", required=True)
    flags.DEFINE_list("datasets", list(DATASETS), "assist2009, statics2011")
    flags.DEFINE_list("models", list(MODELS), "dkvmn, dqkt, dkt, bkt")
    flags.DEFINE_list("folds", ["1", "2", "3", "4", "5"], "ASSIST2009 folds")
    flags.DEFINE_list("statics_folds", ["1", "2", "3", "4", "5"], "Statics2011 folds")
    flags.DEFINE_integer("epochs", 3, "training epochs of every ASSIST2009 / Statics2011 run")
    flags.DEFINE_integer("synthetic_epochs", 10, "epochs of the Q-matrix recovery runs (0: skip them)")
    flags.DEFINE_list("override", [], "config fields for every run: field=JSON value")
    cli.run(main)
