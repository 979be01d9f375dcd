"""Training throughput of SAMN (``configs/samn.py:default``) on this machine's devices.

Model: width 64, 8 memory slots, friend attention 32, row length 65, friend slots ``(65 + 1) // 2 = 33``
(``--max_students`` to change), vocab 2003; batch 64 (``--batch_size``); BPR with one sampled negative.
Times whole jitted training steps (forward, backward, Adam) of the training loop (``study.train.loop``, via
``benchmarks/train_step_timing.py``) on random STUDY-shaped rows and reports steps/s and rows/s plus XLA's
FLOP count of a step. Prints and saves ``benchmarks/results/samn_train_throughput.json`` (``--output`` for
elsewhere).

Usage::

    python benchmarks/samn_train_throughput.py [--batch_size=64] [--steps=20] [--max_students=0] [--output=...]
"""

import os
import sys

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import results_io, train_step_timing  # noqa: E402

train_step_timing.define_flags(default_steps=20)
flags.DEFINE_integer("max_students", 0, "friend slots per row (0 = every student a row can hold)")
results_io.define_output_flag("samn_train_throughput")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from configs import samn as samn_config
    from tests.test_trainer import random_device_batch

    config = samn_config.get_config("default")
    config.model.vocab_size = train_step_timing.VOCAB_SIZE
    config.model.max_students = FLAGS.max_students
    batch = random_device_batch(FLAGS.batch_size, config.model.row_length, config.model.vocab_size, seed=0)
    timing = train_step_timing.time_train_steps(config, batch, FLAGS.steps)
    model_config = timing["task"].config.model
    results_io.write_results(FLAGS.output, {
        "model": "samn",
        "batch_size": FLAGS.batch_size,
        "row_length": model_config.row_length,
        "emb_dim": model_config.emb_dim,
        "memory_slots": model_config.memory_slots,
        "attention_dim": model_config.attention_dim,
        "friend_slots": timing["task"].model.num_friend_slots,
        "vocab_size": model_config.vocab_size,
        **train_step_timing.summary(timing, FLAGS.batch_size, FLAGS.steps),
    })


if __name__ == "__main__":
    app.run(main)
