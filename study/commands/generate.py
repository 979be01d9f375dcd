"""`study generate`: synthetic Learning-Ally-shaped raw data (``study.sims.synthetic_learning_ally``).

    python -m study.commands.generate --num_students=20000 --seed=0 --out_dir=data/la \\
        [--formats=canonical,official] [--file_format=csv|parquet]

Writes the interactions, roster and schools tables into ``--out_dir`` in the canonical column names and/or
the official STUDY release's (``--formats``); deterministic from the seed. The generative story and its
parameters: ``docs/synthetic_data.md``.
"""

import os

from absl import flags

from study import cli
from study.sims import synthetic_learning_ally as generator

FLAGS = flags.FLAGS
FORMATS = (generator.CANONICAL, generator.OFFICIAL)


def main(argv) -> None:
    unknown = [name for name in FLAGS.formats if name not in FORMATS]
    if unknown or not FLAGS.formats:
        raise cli.InputError(f"--formats={','.join(FLAGS.formats)}: choose one or both of {', '.join(FORMATS)}")
    if os.path.exists(FLAGS.out_dir) and not os.path.isdir(FLAGS.out_dir):
        raise cli.InputError(f"--out_dir={FLAGS.out_dir} is a file, not a folder")
    generator.main(argv)


if __name__ == "__main__":
    generator._define_flags()  # the generator's own flags (num_students, seed, out_dir, formats, file_format)
    cli.run(main)
