"""SR-GNN on the DIGINETICA sample: P@20 and MRR@20 of the paper's protocol, next to the paper's figures.

Pipeline: ``data_pipeline.diginetica`` (the paper's preprocessing: sessions of length 1 and items seen < 5
times dropped, the last 7 days as test, one session per row; the latest 10% of the training sessions held out
for validation) -> ``study.commands.train.train`` (the one training loop) with the reference settings of
``benchmarks/srgnn_sessions.py`` (``configs/srgnn.py:default``: d = 100, one GNN step, U(-0.1, 0.1)
initialisation, Adam at a constant 0.001, the paper's targets; validation P@20 / MRR@20 every epoch, early
stopping on MRR@20) -> the best state's scores of every test prefix -> P@20 / MRR@20 over every
(prefix, next click) test case. Also reports a most-popular-item baseline on the same test cases and 95%
bootstrap intervals over test sessions.

The sample holds a few hundred sessions and about a hundred test cases (``SOURCE.txt``: 12,391 views), so its
figures are NOT comparable with the paper's full DIGINETICA numbers (P@20 50.73, MRR@20 17.59); they show the
pipeline works end to end and beats popularity. ``benchmarks/srgnn_vs_recbole.py`` compares with RecBole.

Usage::

    python benchmarks/srgnn_diginetica.py \
        [--input=../shared/data/sessions_diginetica_sample/sample_train-item-views.csv] [--output=...]
"""

import os
import sys
import tempfile

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io, srgnn_sessions  # noqa: E402

flags.DEFINE_string("input", os.path.join(REPO, "..", "shared", "data", "sessions_diginetica_sample",
                                          "sample_train-item-views.csv"), "DIGINETICA train-item-views CSV")
flags.DEFINE_string("workdir", None, "run folder (default: a temporary folder, removed at the end)")
flags.DEFINE_float("validation_fraction", 0.1, "latest training sessions held out for early stopping")
flags.DEFINE_integer("max_epochs", 30, "most passes over the training sessions (the official code's 30)")
flags.DEFINE_integer("patience", 11, "epochs without a better validation MRR@20 before stopping")
flags.DEFINE_integer("batch_size", 43, "sessions (rows) per update: 430 training sessions = 10 full batches")
flags.DEFINE_integer("seed", 0, "training seed")
results_io.define_output_flag("srgnn_diginetica")
FLAGS = flags.FLAGS

PAPER = {"P@20": 50.73, "MRR@20": 17.59}  # SR-GNN, DIGINETICA (full data), Table 2 of the paper


def run(workdir):
    import jax.numpy as jnp
    import numpy as np

    from data_pipeline import diginetica
    from study.data import input_pipeline

    splits, report, row_length = srgnn_sessions.load_split(FLAGS.input, FLAGS.validation_fraction)
    data_dir = os.path.join(workdir, "processed")
    diginetica.write_processed(splits, data_dir, row_length)
    config, epoch_steps = srgnn_sessions.reference_config(
        splits, data_dir, row_length, batch_size=FLAGS.batch_size, max_epochs=FLAGS.max_epochs,
        patience=FLAGS.patience, seed=FLAGS.seed)
    result, ranks, sessions = srgnn_sessions.train_and_rank_test(config, os.path.join(workdir, "run"))

    test_files = input_pipeline.dataset_files(data_dir, "individual", "test")
    popularity = jnp.asarray(np.concatenate([np.zeros(3), np.asarray(splits.vocab.counts, np.float64)]))
    pop_ranks, _ = srgnn_sessions.case_ranks(
        lambda b: jnp.broadcast_to(popularity, b["item_ids"].shape + popularity.shape), test_files, row_length,
        FLAGS.batch_size)
    stopping = result["early_stopping"]
    return {
        "dataset": srgnn_sessions.relative_path(FLAGS.input, REPO),
        "data": {**splits.stats, "test_start": splits.test_start.isoformat(), "row_length": row_length,
                 "lines_skipped": report.skipped},
        "training": {"max_epochs": FLAGS.max_epochs, "epochs_run": result["step"] // epoch_steps,
                     "epoch_picked_by_validation": stopping["best_step"] // epoch_steps,
                     "validation_MRR@20_picked": stopping["best_value"], "patience_epochs": FLAGS.patience,
                     "batch_size": FLAGS.batch_size, "peak_lr": config.optimizer.peak_lr,
                     "schedule": config.schedule, "optimizer": config.optimizer.name,
                     "weight_decay": config.optimizer.weight_decay, "init": config.model.init,
                     "emb_dim": config.model.emb_dim, "gnn_steps": config.model.gnn_steps,
                     "click_budget": config.model.click_budget, "node_budget": config.model.node_budget,
                     "loss": config.model.loss,
                     "final_train_loss": result["train"].get("loss"), "seed": FLAGS.seed},
        "srgnn": srgnn_sessions.metrics_with_intervals(ranks, sessions),
        "most_popular_baseline": srgnn_sessions.metrics_with_intervals(pop_ranks, sessions),
        "paper_full_diginetica": PAPER,
        "note": ("Figures in percent over every (prefix, next click) test case of the SAMPLE file; the paper's "
                 "numbers are on the full DIGINETICA data (719,470 training and 60,858 test cases over 43,097 "
                 "items, the paper's Table 1), so the two are not comparable."),
    }


def main(argv):
    del argv
    if FLAGS.workdir:
        results = run(FLAGS.workdir)
    else:
        with tempfile.TemporaryDirectory() as workdir:
            results = run(workdir)
    results_io.write_results(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
