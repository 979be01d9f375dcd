"""`study eval`: the reports of a run's evaluators on a whole split.

    python -m study.commands.evaluate --config=configs/study.py:smoke --workdir=runs/study \\
        [--split=test] [--output_dir=runs/study/eval_test] [--step=N] [--config.data_dir=...]

Restores the run's checkpoint (latest intact one, or ``--step``) and runs every evaluator named in
``config.evals`` (or ``--evaluators``) on the split: the same evaluator objects the loop runs during
training. Each writes ``<output_dir>/<evaluator>/`` (``metrics.json``, ``summary.md``, tables, plots;
``study.eval.report_writer``); ``<output_dir>/scalars.json`` holds every evaluator's headline numbers.
"""

import os

from absl import flags

from study import cli
from study.commands.flags import check_checkpoint, check_config_data, check_output_dir, define_config_and_workdir

FLAGS = flags.FLAGS
SPLITS = ("train", "validation", "test")


def evaluate_run(config, workdir: str, split: str = "test", output_dir: str | None = None, step: int | None = None,
                 evaluators=None, num_bootstrap: int = 50, checkpoint: str = "auto") -> dict:
    """Evaluates a checkpoint of ``workdir`` on ``split`` (``checkpoint``: "auto" = the early-stopping best
    when the run kept one, else the latest; "latest"; "best"), writes the reports; returns
    ``{evaluator: Report}``."""
    from study.eval import report_writer
    from study.tasks import build_task
    from study.train import loop

    task = build_task(config)
    available = task.evaluators()
    names = list(evaluators or task.config.evals.keys())
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ValueError(f"evaluators {unknown} are not defined for the {task.family} family; "
                         f"choose from {sorted(available)}")
    state = loop.restore_state(task, task.config, workdir, step, checkpoint, log=print)
    chosen = {name: available[name] for name in names}
    reports = loop.evaluate(chosen, state, split, num_bootstrap=num_bootstrap)
    report_writer.write_reports(reports, output_dir or os.path.join(workdir, f"eval_{split}"))
    return reports


def main(argv):
    del argv
    # Inputs are checked before JAX and TensorFlow are imported and before anything is written.
    if FLAGS.split not in SPLITS:
        raise cli.InputError(f"--split={FLAGS.split}: choose one of {', '.join(SPLITS)}")
    if FLAGS.num_bootstrap < 0:
        raise cli.InputError(f"--num_bootstrap={FLAGS.num_bootstrap}: must be >= 0 (0 = no intervals)")
    check_config_data(FLAGS.config)
    check_checkpoint(FLAGS.workdir, FLAGS.step)
    output_dir = FLAGS.output_dir or os.path.join(FLAGS.workdir, f"eval_{FLAGS.split}")
    check_output_dir(output_dir)
    try:
        reports = evaluate_run(FLAGS.config, FLAGS.workdir, FLAGS.split, output_dir, FLAGS.step, FLAGS.evaluators,
                               FLAGS.num_bootstrap, FLAGS.checkpoint)
    except ValueError as error:
        if not str(error).startswith("evaluators "):  # the one input error evaluate_run finds
            raise
        raise cli.InputError(f"--evaluators: {error}") from None
    print(f"evaluation of {FLAGS.workdir} on {FLAGS.split}: reports in {output_dir}")
    for report in reports.values():
        if report.markdown:
            print(report.markdown)


if __name__ == "__main__":
    define_config_and_workdir("run directory of the trainer (holds checkpoints/)")
    flags.DEFINE_string("split", "test", "evaluation split: validation or test")
    flags.DEFINE_string("output_dir", None, "where to write the reports (default <workdir>/eval_<split>)")
    flags.DEFINE_integer("step", None, "checkpoint step (default: see --checkpoint)")
    flags.DEFINE_enum("checkpoint", "auto", ["auto", "latest", "best"],
                      "auto: the early-stopping best state when the run kept one (<workdir>/best/), else the newest "
                      "intact checkpoint; latest; best")
    flags.DEFINE_list("evaluators", None, "evaluators to run (default: those in config.evals)")
    flags.DEFINE_integer("num_bootstrap", 50, "bootstrap resamples over students for the 95% intervals")
    cli.run(main)
