"""What the IRT benchmarks read back from a run of the loop: its ``metrics.jsonl`` records and the seconds of
training they account for."""

import json
import os


def records(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as handle:
        return [json.loads(line) for line in handle]


def training_seconds(workdir: str) -> dict:
    """``{logged step: seconds of training up to it}`` from the train records of a run: each logging window's
    timed updates divided by its updates per second, plus the first update of the process (which compiles)."""
    elapsed, clock, previous = {}, 0.0, 0
    for r in records(workdir):
        if r.get("split") == "train":
            first = r.get("first_step_seconds")
            timed = r["step"] - previous - (first is not None)
            clock += (first or 0.0) + (timed / r["steps_per_second"] if timed else 0.0)
            elapsed[r["step"]], previous = clock, r["step"]
    return elapsed
