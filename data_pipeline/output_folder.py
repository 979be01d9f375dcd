"""The dataset job's output folder: written whole or not at all, never mixed with older files.

The job writes into a temporary sibling folder (``.<name>.tmp-<random>`` beside ``output_dir``)
and, once everything is written and checked, puts it in the place of ``output_dir``: so a rerun
that writes fewer shards leaves no stale shard for the trainer's ``**/*-<split>.tfrecord-*`` glob,
and a failed run leaves the previous output as it was (and no ``beam-temp-*`` folder behind).

A non-empty ``output_dir`` is replaced only when it holds nothing but a previous output of this
job, or with ``overwrite``. On a local disk the swap is two renames; on an object store (``gs://``
...), which has no folders to rename, the old files are deleted and the new ones moved.
"""

import os
import shutil
import uuid

from apache_beam.io.filesystems import FileSystems

# What the job writes at the top of its output folder.
OUTPUT_ENTRIES = frozenset(
    {
        "individual",
        "study",
        "dead_letter",
        "vocab.json",
        "students.csv",
        "stats.json",
        "stats.md",
        "pipeline_config.json",
    }
)
CONFIG_FILE = "pipeline_config.json"
_BEAM_TEMP_PREFIX = "beam-temp-"  # Beam's file sinks stage their files there


class OutputDirError(ValueError):
    """The output folder cannot be used; the message says why and what to do."""


def _is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def _normalized(path: str) -> str:
    return os.path.realpath(path) if _is_local(path) else path.rstrip("/")


def entries(folder: str) -> list:
    """Names at the top of ``folder`` (files and sub-folders); [] when it does not exist."""
    if _is_local(folder):
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    prefix = folder.rstrip("/") + "/"
    matched = FileSystems.match([prefix + "**"])[0].metadata_list
    return sorted({m.path[len(prefix) :].split("/", 1)[0] for m in matched})


def is_previous_output(names: list) -> bool:
    """Whether top-level ``names`` are those of an output of this job (or of a failed run of it)."""
    return CONFIG_FILE in names and all(
        name in OUTPUT_ENTRIES or name.startswith(_BEAM_TEMP_PREFIX) for name in names
    )


def check_output_dir(output_dir: str, overwrite: bool, input_paths: list) -> None:
    """Raises ``OutputDirError`` unless the job may replace ``output_dir``."""
    folder = _normalized(output_dir)
    inside = [p for p in input_paths if _normalized(p).startswith(folder + "/")]
    if inside:
        raise OutputDirError(
            f"--output_dir={output_dir} holds input file(s) {inside}; the job replaces the whole "
            "folder. Write the output to another folder."
        )
    if _is_local(output_dir) and os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise OutputDirError(f"--output_dir={output_dir} is a file, not a folder.")
    names = entries(output_dir)
    if names and not overwrite and not is_previous_output(names):
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise OutputDirError(
            f"--output_dir={output_dir} is not empty and is not an output of this job (it holds "
            f"{shown}). Pass a new or empty folder, or --overwrite to replace everything in it."
        )


def temporary_sibling(output_dir: str, kind: str = "tmp") -> str:
    """A new path beside ``output_dir``: ``<parent>/.<name>.<kind>-<random>``."""
    path = os.path.abspath(output_dir) if _is_local(output_dir) else output_dir.rstrip("/")
    parent, name = path.rsplit("/", 1)
    return f"{parent}/.{name}.{kind}-{uuid.uuid4().hex[:12]}"


def replace_folder(new: str, output_dir: str) -> None:
    """Puts folder ``new`` in the place of ``output_dir`` (whose content is dropped)."""
    if _is_local(output_dir):
        old = None
        if os.path.lexists(output_dir):
            old = temporary_sibling(output_dir, "old")
            os.rename(output_dir, old)
        os.rename(new, output_dir)
        if old:
            shutil.rmtree(old)
        return
    target = output_dir.rstrip("/")
    stale = [m.path for m in FileSystems.match([target + "/**"])[0].metadata_list]
    if stale:
        FileSystems.delete(stale)
    moved = [m.path for m in FileSystems.match([new + "/**"])[0].metadata_list]
    FileSystems.rename(moved, [target + path[len(new) :] for path in moved])


def remove(folder: str) -> None:
    """Deletes ``folder`` and everything in it, if it exists."""
    if _is_local(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    leftover = [m.path for m in FileSystems.match([folder + "/**"])[0].metadata_list]
    if leftover:
        FileSystems.delete(leftover)
