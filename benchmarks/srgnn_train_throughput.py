"""Training throughput of SR-GNN (``configs/srgnn.py:default``: d = 100, one GNN step) on this machine.

Rows are full Individual rows (one student, ``row_length`` = 65 clicks, random items of a 2003-token
vocabulary), so every row holds 65 prefix graphs of up to 64 nodes. Times the trainer's jitted train step
(``study.train.trainer.make_train_step`` with ``next_item_loss``) and reports steps/s, rows/s and
prefix graphs/s. Prints and saves ``benchmarks/results/srgnn_train_throughput.json``.

Usage::

    python benchmarks/srgnn_train_throughput.py [--batch_size=64] [--steps=5]
"""

import json
import os
import platform
import sys

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

flags.DEFINE_integer("batch_size", 64, "rows per step")
flags.DEFINE_integer("steps", 5, "timed steps (after 2 warm-up steps)")
flags.DEFINE_integer("gnn_steps", 1, "GNN propagation steps")
flags.DEFINE_string("output", os.path.join(REPO, "benchmarks", "results", "srgnn_train_throughput.json"), "")
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


def time_training():
    from benchmarks.train_step_timing import time_train_steps
    from configs import srgnn as srgnn_config
    from study.models import registry

    config = srgnn_config.get_config("default")
    config.model.vocab_size = 2003
    config.model.gnn_steps = FLAGS.gnn_steps
    batch = individual_rows(FLAGS.batch_size, config.model.row_length, config.model.vocab_size)
    timing = time_train_steps(config, registry.build_model(config.model), registry.next_item_loss, batch, FLAGS.steps)
    return (config.model, timing["steps_per_second"], timing["compile_seconds"], timing["xla_flops"],
            timing["final_loss"])


def main(argv):
    del argv
    import jax

    model_config, steps_per_second, compile_seconds, xla_flops, loss = time_training()
    length = model_config.row_length
    results = {
        "model": "srgnn", "batch_size": FLAGS.batch_size, "row_length": length, "emb_dim": model_config.emb_dim,
        "gnn_steps": model_config.gnn_steps, "vocab_size": model_config.vocab_size,
        "devices": jax.device_count(), "device_kind": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "timed_steps": FLAGS.steps,
        "steps_per_second": steps_per_second,
        "rows_per_second": steps_per_second * FLAGS.batch_size,
        "prefix_graphs_per_second": steps_per_second * FLAGS.batch_size * length,
        "compile_seconds": compile_seconds,
        "xla_cost_analysis_flops_per_step": xla_flops,
        "final_loss": loss,
        "load_average_1min": os.getloadavg()[0],
    }
    os.makedirs(os.path.dirname(FLAGS.output), exist_ok=True)
    with open(FLAGS.output, "w") as f:
        json.dump(results, f, indent=1)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    app.run(main)
