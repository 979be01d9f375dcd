"""Training throughput of the default-size STUDY transformer on this machine's devices, in fp32 and bf16.

Model: 6 layers, width 256, 8 heads, MLP 1024, row length c = 65, vocab 2003; batch 64 (``--batch_size``).
Reports steps/s, rows/s, tokens/s, the model FLOPs per step (counted analytically and cross-checked with
XLA's ``cost_analysis``), the measured matmul peak (a large ``jnp.dot``) and the fraction of it reached.
Times exactly the training loop's update (``study.train.loop``, via ``benchmarks/train_step_timing.py``).
Prints and saves ``benchmarks/results/train_throughput.json`` (``--output`` for elsewhere). Reference: the
official STUDY code runs about 0.5 steps/s at batch 64 in bf16 on this machine.

Usage::

    python benchmarks/train_throughput.py [--batch_size=64] [--steps=10] [--attention=study] [--output=...]
"""

import json
import os
import sys
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io, train_step_timing  # noqa: E402

train_step_timing.define_flags(default_steps=10)  # --batch_size, --steps (timed steps per dtype)
flags.DEFINE_string("attention", "study", "attention policy of the model")
flags.DEFINE_float("dropout_rate", 0.1, "model dropout (the official default is 0.1)")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "compute dtypes to time")
results_io.define_output_flag("train_throughput")
FLAGS = flags.FLAGS


def analytic_train_flops(batch_size, row_length, num_layers, emb_dim, mlp_dim, vocab_size, two_stream=False):
    """Matmul FLOPs of one training step (forward + backward = 3x forward; 2 FLOPs per multiply-add).

    Per row and layer: Q, K, V and output projections ``4 * 2 L d^2``; attention scores and weighted
    values ``2 * 2 L (L + 1) d`` (one extra null key); MLP ``2 * 2 L d m``. Output layer ``2 L d V``.
    Embedding lookups, LayerNorms, softmax and masks are not counted (a few % at these sizes).
    """
    L, d, m = row_length, emb_dim, mlp_dim
    per_layer = 4 * 2 * L * d * d + 2 * 2 * L * (L + 1) * d + 2 * 2 * L * d * m
    forward = num_layers * per_layer * (2 if two_stream else 1) + 2 * L * d * vocab_size
    return 3 * batch_size * forward


def matmul_peak(dtype, size=2048, repeats=10):
    """Measured FLOP/s of a ``size x size`` matmul in ``dtype`` on the default device."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (size, size), dtype)
    b = jax.random.normal(jax.random.key(1), (size, size), dtype)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def time_training(dtype: str):
    from configs import study as study_config
    from tests.test_trainer import random_device_batch

    config = study_config.get_config("default")
    config.model.vocab_size = train_step_timing.VOCAB_SIZE
    config.model.attention = FLAGS.attention
    config.model.dtype = dtype
    config.model.dropout_rate = FLAGS.dropout_rate
    batch = random_device_batch(FLAGS.batch_size, config.model.row_length, config.model.vocab_size, seed=0)
    timing = train_step_timing.time_train_steps(config, batch, FLAGS.steps)
    return config.model, timing["steps_per_second"], timing["xla_flops"], timing["final_loss"]


def main(argv):
    del argv
    import jax.numpy as jnp

    results = {"batch_size": FLAGS.batch_size, "attention": FLAGS.attention, "dropout_rate": FLAGS.dropout_rate,
               "timed_steps": FLAGS.steps, "reference_official_steps_per_second_bf16": 0.5, "runs": {}}
    for dtype in FLAGS.dtypes:
        model_config, steps_per_second, xla_flops, loss = time_training(dtype)
        flops = analytic_train_flops(FLAGS.batch_size, model_config.row_length, model_config.num_layers,
                                     model_config.emb_dim, model_config.mlp_dim, model_config.vocab_size,
                                     two_stream=FLAGS.attention == "study_two_stream")
        peak = matmul_peak(jnp.dtype(dtype))
        achieved = flops * steps_per_second
        results["runs"][dtype] = {
            "steps_per_second": steps_per_second,
            "rows_per_second": steps_per_second * FLAGS.batch_size,
            "tokens_per_second": steps_per_second * FLAGS.batch_size * model_config.row_length,
            "analytic_flops_per_step": flops,
            "xla_cost_analysis_flops_per_step": xla_flops,
            "analytic_over_xla": flops / xla_flops if xla_flops == xla_flops and xla_flops else None,
            "achieved_flops_per_second": achieved,
            "matmul_peak_flops_per_second": peak,
            "fraction_of_matmul_peak": achieved / peak,
            "speed_vs_official_bf16": steps_per_second / 0.5,
            "final_loss": loss,
            "load_average_1min": os.getloadavg()[0],
        }
        print(dtype, json.dumps(results["runs"][dtype]), flush=True)
    results_io.write_results(FLAGS.output, results)


if __name__ == "__main__":
    app.run(main)
