"""`study export`: what a trained run serves, from its checkpoint.

    python -m study.commands.export --config=configs/study.py:smoke --workdir=runs/study \\
        --config.data_dir=data/processed --output_dir=artifacts/study [--step=N] [--top_k=100] [--vocab=...]

Each family exports its own way (``Task.export``): the next-item models a ``jax.export`` serving artifact
(``study.serve.export``, loadable with ``study.serve.serving_artifact`` alone; the files are listed in
``docs/serving.md``) plus a TensorFlow SavedModel (``--saved_model``, default on), KNN its index files.
The vocabulary is ``<config.data_dir>/vocab.json`` unless ``--vocab``.
"""

import os

from absl import flags

from study import cli
from study.commands.flags import (check_checkpoint, check_config_data, check_output_dir, check_vocab_items,
                                  define_config_and_workdir)

FLAGS = flags.FLAGS
DEFAULT_TOP_K = 100  # study.serve.export.DEFAULT_TOP_K (not imported here: it pulls in JAX)


def export_run(config, workdir: str, output_dir: str, *, vocab_path: str | None = None, step: int | None = None,
               top_k: int = DEFAULT_TOP_K, batch_size: int | None = None, checkpoint: str = "auto",
               saved_model: bool = False) -> str:
    """Exports a checkpoint of the run in ``workdir`` to ``output_dir`` (``checkpoint``: "auto" = the
    early-stopping best when the run kept one, else the newest intact or ``step``; "latest"; "best").
    ``saved_model``: the next-item families also write a TensorFlow SavedModel (KNN has none)."""
    from study.tasks import build_task
    from study.train import loop

    task = build_task(config)
    state = loop.restore_state(task, task.config, workdir, step, checkpoint, log=print)
    if saved_model:
        return task.export(state, output_dir, vocab_path=vocab_path, top_k=top_k, batch_size=batch_size,
                           saved_model=True)
    return task.export(state, output_dir, vocab_path=vocab_path, top_k=top_k, batch_size=batch_size)


def check_flags() -> int:
    """Checks the inputs before JAX is imported and before anything is written; returns ``top_k``.

    ``--top_k`` must be in ``1..number of candidate items``; the default is ``min(100, candidates)``."""
    config = FLAGS.config
    if FLAGS.vocab:
        vocab_path = FLAGS.vocab
        if config.get("data_dir") and os.path.isdir(config.data_dir):
            check_config_data(config)
    else:
        vocab_path = check_config_data(config)
    if not vocab_path:  # a family that reads no processed dataset has no vocabulary (config.dataset = "")
        check_checkpoint(FLAGS.workdir, FLAGS.step)
        check_output_dir(FLAGS.output_dir)
        return FLAGS.top_k or DEFAULT_TOP_K
    num_items = check_vocab_items(vocab_path, "--vocab" if FLAGS.vocab else "--config.data_dir")
    check_checkpoint(FLAGS.workdir, FLAGS.step)
    check_output_dir(FLAGS.output_dir)
    if FLAGS.batch_size is not None and FLAGS.batch_size < 1:
        raise cli.InputError(f"--batch_size={FLAGS.batch_size}: must be >= 1 (or left out: any batch size)")
    if FLAGS.top_k is None:
        return min(DEFAULT_TOP_K, num_items) if num_items > 0 else DEFAULT_TOP_K
    if FLAGS.top_k < 1 or (num_items > 0 and FLAGS.top_k > num_items):
        raise cli.InputError(f"--top_k={FLAGS.top_k} is out of range: the vocabulary {vocab_path} has {num_items} "
                             f"candidate items, so --top_k must be in 1..{num_items}")
    return FLAGS.top_k


def main(argv) -> None:
    del argv
    top_k = check_flags()
    out_dir = export_run(FLAGS.config, FLAGS.workdir, FLAGS.output_dir, vocab_path=FLAGS.vocab, step=FLAGS.step,
                         top_k=top_k, batch_size=FLAGS.batch_size, checkpoint=FLAGS.checkpoint,
                         saved_model=FLAGS.saved_model)
    print(f"serving artifact written to {out_dir}")


if __name__ == "__main__":
    define_config_and_workdir("run directory of the trainer (holds checkpoints/)")
    flags.DEFINE_string("output_dir", None, "where to write the serving artifact")
    flags.DEFINE_string("vocab", None, "vocab.json (default <config.data_dir>/vocab.json)")
    flags.DEFINE_integer("step", None, "checkpoint step (default: see --checkpoint)")
    flags.DEFINE_enum("checkpoint", "auto", ["auto", "latest", "best"],
                      "auto: the early-stopping best state when the run kept one (<workdir>/best/), else the newest "
                      "intact checkpoint; latest; best")
    flags.DEFINE_integer("top_k", None, "candidates returned per position, 1..number of items (default: 100, or "
                                        "every item when the vocabulary has fewer)")
    flags.DEFINE_integer("batch_size", None, "fixed batch size (default: symbolic, any batch size)")
    flags.DEFINE_boolean("saved_model", True, "next-item families: also write a TensorFlow SavedModel to "
                                              "<output_dir>/saved_model (docs/serving.md); KNN: ignored")
    flags.mark_flags_as_required(["output_dir"])
    cli.run(main)
