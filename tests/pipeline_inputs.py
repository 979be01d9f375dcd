"""Hand-written raw inputs for the dataset job's tests: write them, run the job, read what it wrote."""

import json
import pathlib
import subprocess
import sys

from data_pipeline import build_dataset

ROSTER = "student_id,school_id,grade\ns1,sch,3\ns2,sch,3\n"
SMALL_ROWS = {"row_length": 4, "segment_length": 2, "num_packings": 1}


def write(path: pathlib.Path, content) -> str:
    """Writes ``content`` (str as UTF-8, or bytes as given) to ``path``; returns the path."""
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return str(path)


def job_config(folder: pathlib.Path, interactions, roster=ROSTER, schools=None, **options):
    """A small job over files written into ``folder`` (``interactions.csv``, ``roster.csv``, ...);
    the output goes to ``folder/out`` unless ``output_dir`` is given."""
    paths = {"interactions": write(folder / "interactions.csv", interactions)}
    paths["roster"] = write(folder / "roster.csv", roster)
    if schools is not None:
        paths["schools"] = write(folder / "schools.csv", schools)
    options = {**SMALL_ROWS, "output_dir": str(folder / "out"), **options}
    return build_dataset.PipelineConfig(**paths, **options)


def run_job(folder: pathlib.Path, interactions, roster=ROSTER, schools=None, **options) -> tuple:
    """Runs the job (DirectRunner); returns (output folder, stats)."""
    config = job_config(folder, interactions, roster, schools, **options)
    return pathlib.Path(config.output_dir), build_dataset.build_dataset(config)


def dead_letters(out: pathlib.Path) -> list:
    return [
        json.loads(line)
        for path in sorted((out / "dead_letter").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def letter_keys(out: pathlib.Path) -> list:
    """Sorted ``(file name, line, reason)`` of every dead letter."""
    return sorted((l["source"].rsplit("/", 1)[-1], l["line"], l["reason"]) for l in dead_letters(out))


def run_command(*flags: str) -> subprocess.CompletedProcess:
    """``python -m data_pipeline.build_dataset FLAGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "data_pipeline.build_dataset", *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )


def error_lines(result: subprocess.CompletedProcess) -> list:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]
