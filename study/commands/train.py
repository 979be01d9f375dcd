"""`study train`: train (or resume) any model family on the one loop.

    python -m study.commands.train --config=configs/study.py:smoke --workdir=runs/study \\
        --config.data_dir=data/processed [--config.<field>=value ...]

The config's ``task`` picks the family (``study.tasks``); the loop is ``study.train.loop.train``.
"""

import json

from absl import flags

from study import cli
from study.commands.flags import check_config_data, check_output_dir, define_config_and_workdir


def train(config, workdir: str) -> dict:
    """Builds the task of ``config`` and trains it in ``workdir``; returns the loop's summary."""
    from study.tasks import build_task
    from study.train import loop

    task = build_task(config)
    return loop.train(task, task.config, workdir)


def main(argv):
    del argv
    # Inputs are checked before JAX and TensorFlow are imported and before the workdir is created.
    check_config_data(flags.FLAGS.config)
    check_output_dir(flags.FLAGS.workdir, "--workdir")
    import jax

    result = train(flags.FLAGS.config, flags.FLAGS.workdir)
    if jax.process_index() == 0:
        print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    define_config_and_workdir()
    cli.run(main)
