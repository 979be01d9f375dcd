"""The flags every command defines the same way: ``--config`` (an ml_collections config file with a preset
suffix, any field overridable as ``--config.<field>=``) and ``--workdir`` (the run directory), and the checks
of their values that a command makes before its heavy imports (each raises ``study.cli.InputError``, which
``study.cli.run`` prints as one ``error: ...`` line, exit 2)."""

import json
import os

from absl import flags
from ml_collections import config_flags

from study.cli import InputError

VOCAB_FILE = "vocab.json"  # written by `study preprocess` into the processed dataset folder


def define_config_and_workdir(workdir_help: str = "run directory (checkpoints, metrics, TensorBoard)") -> None:
    config_flags.DEFINE_config_file("config", None, "config file with preset, e.g. configs/study.py:smoke",
                                    lock_config=False)
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])


def _is_local(path: str) -> bool:
    return "://" not in path  # gs://... and other remote filesystems are not checked here


def check_data_dir(data_dir: str, flag: str = "--config.data_dir", dataset: str | None = None) -> str:
    """The processed dataset folder named by ``flag`` exists and holds ``vocab.json`` (and ``dataset/``).

    Returns the path of ``vocab.json``. Remote paths (``gs://``) are not checked."""
    if not data_dir:
        raise InputError(f"{flag} is not set: pass the processed dataset folder written by `study preprocess` "
                         f"(it holds {VOCAB_FILE}), e.g. {flag}=data/processed")
    vocab_path = os.path.join(data_dir, VOCAB_FILE)
    if not _is_local(data_dir):
        return vocab_path
    if not os.path.isdir(data_dir):
        raise InputError(f"{flag}={data_dir}: no such directory; pass the output folder of `study preprocess`")
    if not os.path.isfile(vocab_path):
        raise InputError(f"{flag}={data_dir} holds no {VOCAB_FILE}: it is not a processed dataset; pass the output "
                         "folder of `study preprocess`")
    if dataset and not os.path.isdir(os.path.join(data_dir, dataset)):
        present = sorted(name for name in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, name)))
        raise InputError(f"{flag}={data_dir} holds no {dataset}/ rows (config.dataset={dataset!r}); "
                         f"it has {present}")
    return vocab_path


def check_config_data(config) -> str:
    """``check_data_dir`` for a run config (``config.data_dir``, ``config.dataset``); returns vocab.json's path
    ("" for a family that reads no processed dataset: both fields empty, e.g. the bandit simulations)."""
    if not config.get("data_dir", "") and not config.get("dataset", ""):
        return ""
    return check_data_dir(config.get("data_dir", ""), dataset=config.get("dataset") or None)


def check_checkpoint(workdir: str, step: int | None = None) -> None:
    """``<workdir>/checkpoints`` holds a checkpoint (``step`` when given). Remote workdirs are not checked."""
    if not _is_local(workdir):
        return
    directory = os.path.join(workdir, "checkpoints")
    steps = sorted(int(name) for name in os.listdir(directory) if name.isdigit()) if os.path.isdir(directory) else []
    if not steps:
        raise InputError(f"--workdir={workdir}: no checkpoint in {directory}; train the run first "
                         f"(`study train --workdir={workdir} ...`) or pass the run directory it trained in")
    if step is not None and step not in steps:
        raise InputError(f"--step={step}: {directory} has no checkpoint of step {step}; it has steps {steps}")


def check_vocab_items(vocab_path: str, flag: str = "--vocab") -> int:
    """The number of candidate items (non-reserved ids) of a ``vocab.json``; an error naming the file otherwise."""
    if _is_local(vocab_path) and not os.path.isfile(vocab_path):
        raise InputError(f"{flag}: vocabulary file {vocab_path} does not exist; pass the vocab.json of the "
                         "processed dataset the model was trained on")
    if not _is_local(vocab_path):
        return -1
    try:
        with open(vocab_path, encoding="utf-8") as handle:
            items = json.load(handle)["items"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise InputError(f"{vocab_path}: not a vocabulary written by `study preprocess` "
                         f"(JSON with an 'items' list): {error}") from None
    return len(items)


def check_output_dir(path: str, flag: str = "--output_dir") -> None:
    """``path`` is not an existing file (it is created as a folder)."""
    if path and _is_local(path) and os.path.exists(path) and not os.path.isdir(path):
        raise InputError(f"{flag}={path} is a file, not a folder; name a folder to write into")
