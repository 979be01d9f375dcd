"""Training throughput of SAMN (``configs/samn.py:default``) on this machine's devices.

Model: width 64, 8 memory slots, friend attention 32, row length 65, friend slots ``(65 + 1) // 2 = 33``
(``--max_students`` to change), vocab 2003; batch 64 (``--batch_size``); BPR with one sampled negative.
Times whole jitted training steps (forward, backward, Adam) of the generic trainer on random STUDY-shaped
rows and reports steps/s and rows/s plus XLA's FLOP count of a step.
Prints and saves ``benchmarks/results/samn_train_throughput.json``.

Usage::

    python benchmarks/samn_train_throughput.py [--batch_size=64] [--steps=20] [--max_students=0]
"""

import json
import os
import platform
import sys

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

flags.DEFINE_integer("batch_size", 64, "rows per step")
flags.DEFINE_integer("steps", 20, "timed steps (after 2 warm-up steps)")
flags.DEFINE_integer("max_students", 0, "friend slots per row (0 = every student a row can hold)")
flags.DEFINE_string("output", os.path.join(REPO, "benchmarks", "results", "samn_train_throughput.json"), "")
FLAGS = flags.FLAGS


def time_training():
    """(model config, steps per second, XLA FLOPs per step, final loss) of the default SAMN."""
    from benchmarks.train_step_timing import time_train_steps
    from configs import samn as samn_config
    from study.models import registry
    from tests.test_trainer import random_device_batch

    config = samn_config.get_config("default")
    config.model.vocab_size = 2003
    config.model.max_students = FLAGS.max_students
    batch = random_device_batch(FLAGS.batch_size, config.model.row_length, config.model.vocab_size, seed=0)
    timing = time_train_steps(config, registry.build_model(config.model), registry.loss_for(config.model), batch,
                              FLAGS.steps)
    return config.model, timing["steps_per_second"], timing["xla_flops"], timing["final_loss"]


def main(argv):
    del argv
    import jax

    from study.models.samn import SAMN

    model_config, steps_per_second, xla_flops, loss = time_training()
    results = {
        "model": "samn",
        "batch_size": FLAGS.batch_size,
        "row_length": model_config.row_length,
        "emb_dim": model_config.emb_dim,
        "memory_slots": model_config.memory_slots,
        "attention_dim": model_config.attention_dim,
        "friend_slots": SAMN.from_config(model_config).num_friend_slots,
        "vocab_size": model_config.vocab_size,
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "steps_per_second": steps_per_second,
        "rows_per_second": steps_per_second * FLAGS.batch_size,
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
