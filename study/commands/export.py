"""`study export`: what a trained run serves, from its checkpoint.

    python -m study.commands.export --config=configs/study.py:smoke --workdir=runs/study \
        --output_dir=artifacts/study [--config.data_dir=...] [--step=N] [--top_k=100]

Each family exports its own way (``Task.export``): the next-item models a ``jax.export`` serving artifact
(``study.serve.export``, loadable with ``study.serve.serving_artifact`` alone), KNN its index files.
"""

from absl import app, flags

from study.commands.flags import define_config_and_workdir
from study.serve import export as export_lib
from study.tasks import build_task
from study.train import loop

FLAGS = flags.FLAGS


def export_run(config, workdir: str, output_dir: str, *, vocab_path: str | None = None, step: int | None = None,
               top_k: int = export_lib.DEFAULT_TOP_K, batch_size: int | None = None,
               checkpoint: str = "auto") -> str:
    """Exports a checkpoint of the run in ``workdir`` to ``output_dir`` (``checkpoint``: "auto" = the
    early-stopping best when the run kept one, else the newest intact or ``step``; "latest"; "best")."""
    task = build_task(config)
    state = loop.restore_state(task, task.config, workdir, step, checkpoint, log=print)
    return task.export(state, output_dir, vocab_path=vocab_path, top_k=top_k, batch_size=batch_size)


def main(argv) -> None:
    del argv
    out_dir = export_run(FLAGS.config, FLAGS.workdir, FLAGS.output_dir, vocab_path=FLAGS.vocab, step=FLAGS.step,
                         top_k=FLAGS.top_k, batch_size=FLAGS.batch_size)
    print(f"serving artifact written to {out_dir}")


if __name__ == "__main__":
    define_config_and_workdir("run directory of the trainer (holds checkpoints/)")
    flags.DEFINE_string("output_dir", None, "where to write the serving artifact")
    flags.DEFINE_string("vocab", None, "vocab.json (default <config.data_dir>/vocab.json)")
    flags.DEFINE_integer("step", None, "checkpoint step (default: the newest intact one)")
    flags.DEFINE_integer("top_k", export_lib.DEFAULT_TOP_K, "candidates returned per position")
    flags.DEFINE_integer("batch_size", None, "fixed batch size (default: symbolic)")
    flags.mark_flags_as_required(["output_dir"])
    app.run(main)
