"""The flags every command defines the same way: ``--config`` (an ml_collections config file with a preset
suffix, any field overridable as ``--config.<field>=``) and ``--workdir`` (the run directory)."""

from absl import flags
from ml_collections import config_flags


def define_config_and_workdir(workdir_help: str = "run directory (checkpoints, metrics, TensorBoard)") -> None:
    config_flags.DEFINE_config_file("config", None, "config file with preset, e.g. configs/study.py:smoke",
                                    lock_config=False)
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])
