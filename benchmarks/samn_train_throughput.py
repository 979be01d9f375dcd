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
import time

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
    import jax
    import numpy as np

    from configs import samn as samn_config
    from study.models import registry
    from study.train import schedules, sharding, trainer
    from tests.test_trainer import random_device_batch

    config = samn_config.get_config("default")
    config.model.vocab_size = 2003
    config.model.max_students = FLAGS.max_students
    model = registry.build_model(config.model)
    tx = schedules.make_optimizer(config)
    batch = random_device_batch(FLAGS.batch_size, config.model.row_length, config.model.vocab_size, seed=0)
    mesh = sharding.make_mesh({"data": -1, "model": 1})
    state, shardings = trainer.create_train_state(model, tx, mesh, {k: v[:2] for k, v in batch.items()}, 0)
    step = trainer.jit_train_step(
        trainer.make_train_step(model, registry.loss_for(config.model), tx, schedules.make_schedule(config)),
        mesh, shardings, sharding.batch_shardings(batch, mesh))
    global_batch = sharding.to_global_batch(batch, mesh)
    rng = np.asarray(jax.random.key_data(jax.random.key(0)))
    cost = step.lower(state, global_batch, rng).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    for _ in range(2):
        state, metrics = step(state, global_batch, rng)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        state, metrics = step(state, global_batch, rng)
    jax.block_until_ready(state)
    elapsed = time.perf_counter() - start
    return config.model, FLAGS.steps / elapsed, xla_flops, float(metrics["loss"])


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
