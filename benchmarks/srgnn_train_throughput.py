"""Training throughput of SR-GNN (``configs/srgnn.py:default``: d = 100, one GNN step) on this machine.

Rows are full Individual rows (one student, ``row_length`` = 65 clicks, random items of a 2003-token
vocabulary), so every row holds 65 prefix graphs of up to 64 nodes. Times the training loop's jitted update
(``study.train.loop`` with the config's ``model.loss = "next_item"``, via ``benchmarks/train_step_timing.py``)
and reports steps/s, rows/s and prefix graphs/s. Prints and saves
``benchmarks/results/srgnn_train_throughput.json`` (``--output`` for elsewhere).

Usage::

    python benchmarks/srgnn_train_throughput.py [--batch_size=64] [--steps=5] [--output=...]
"""

import os
import sys

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io, train_step_timing  # noqa: E402

train_step_timing.define_flags(default_steps=5)
flags.DEFINE_integer("gnn_steps", 1, "GNN propagation steps")
results_io.define_output_flag("srgnn_train_throughput")
FLAGS = flags.FLAGS


def individual_rows(batch_size: int, row_length: int, vocab_size: int, seed: int = 0) -> dict:
    """A device batch of full one-student rows with random items (``int32 [B, L]`` features)."""
    import numpy as np

    from study.data import reserved_ids

    rng = np.random.default_rng(seed)
    shape = (batch_size, row_length)
    return {
        "item_ids": rng.integers(reserved_ids.FIRST_ITEM_ID, vocab_size, size=shape).astype(np.int32),
        "timestamps": np.cumsum(rng.integers(1, 1000, size=shape), axis=1).astype(np.int32),
        "student_index": np.zeros(shape, np.int32),
        "positions": np.broadcast_to(np.arange(row_length, dtype=np.int32), shape).copy(),
        "history_len": np.broadcast_to(np.arange(row_length, dtype=np.int32), shape).copy(),
        "is_novel": np.ones(shape, np.int32),
        "is_continuation": np.zeros(shape, np.int32),
        "grade": np.zeros((batch_size,), np.int32),
        "wealth": np.zeros((batch_size,), np.int32),
        "row_valid": np.ones((batch_size,), np.int32),
    }


def main(argv):
    del argv
    from configs import srgnn as srgnn_config

    config = srgnn_config.get_config("default")
    config.model.vocab_size = train_step_timing.VOCAB_SIZE
    config.model.gnn_steps = FLAGS.gnn_steps
    batch = individual_rows(FLAGS.batch_size, config.model.row_length, config.model.vocab_size)
    timing = train_step_timing.time_train_steps(config, batch, FLAGS.steps)
    model_config = timing["task"].config.model
    length = model_config.row_length
    results_io.write_results(FLAGS.output, {
        "model": "srgnn", "batch_size": FLAGS.batch_size, "row_length": length, "emb_dim": model_config.emb_dim,
        "gnn_steps": model_config.gnn_steps, "loss": model_config.loss, "vocab_size": model_config.vocab_size,
        **train_step_timing.summary(timing, FLAGS.batch_size, FLAGS.steps),
        "prefix_graphs_per_second": timing["steps_per_second"] * FLAGS.batch_size * length,
    })


if __name__ == "__main__":
    app.run(main)
