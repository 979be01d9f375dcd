"""Where training metrics go: ``metrics.jsonl`` (one JSON object per line), TensorBoard events, and a tqdm
progress bar when stderr is a terminal. Only process 0 writes (``enabled``)."""

import contextlib
import json
import os
import sys
import time

import ml_collections


class MetricsLogger:
    """Writes ``{"step", "split", "time", <metric>: float ...}`` lines to ``<workdir>/metrics.jsonl`` and
    scalars ``<split>/<metric>`` to TensorBoard under ``<workdir>/tensorboard``."""

    def __init__(self, workdir: str, enabled: bool = True):
        self.workdir = workdir
        self.enabled = enabled
        self._writer = None
        self._jsonl = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def log(self, step: int, split: str, metrics: dict) -> None:
        if not self.enabled or not metrics:
            return
        record = {"step": int(step), "split": split, "time": time.time()}
        record.update({name: float(value) for name, value in metrics.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        for name, value in metrics.items():
            self._writer.add_scalar(f"{split}/{name}", float(value), int(step))
        if not sys.stderr.isatty():
            summary = " ".join(f"{name}={float(value):.4g}" for name, value in metrics.items())
            print(f"step {step} {split}: {summary}", file=sys.stderr, flush=True)

    def truncate_after(self, step: int) -> int:
        """Drops the records of steps after ``step`` from ``metrics.jsonl`` (a run resumed from checkpoint
        ``step`` logs them again, and a curve must not hold them twice); returns how many were dropped.
        TensorBoard readers keep the newest event of a step, so the event files are left as they are."""
        if not self.enabled:
            return 0
        path = os.path.join(self.workdir, "metrics.jsonl")
        self._jsonl.close()
        with open(path, encoding="utf-8") as handle:
            lines = [line for line in handle if line.strip()]
        kept = []
        for line in lines:
            try:
                record_step = json.loads(line)["step"]
            except (ValueError, KeyError):  # a line cut by a kill mid-write
                continue
            if record_step <= step:
                kept.append(line if line.endswith("\n") else line + "\n")
        temporary = path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.writelines(kept)
        os.replace(temporary, path)
        self._jsonl = open(path, "a", buffering=1)
        return len(lines) - len(kept)

    def info(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)

    def write_config(self, config: ml_collections.ConfigDict) -> None:
        """``<workdir>/config.json``: the resolved config of the run."""
        if self.enabled:
            with open(os.path.join(self.workdir, "config.json"), "w") as f:
                f.write(config.to_json(indent=1, sort_keys=True))

    @contextlib.contextmanager
    def progress_bar(self, start: int, total: int):
        """tqdm bar over steps on interactive runs; a no-op object otherwise."""
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            with tqdm(total=total, initial=start, unit="step", dynamic_ncols=True) as bar:
                yield bar
        else:
            yield _NoBar()

    def close(self) -> None:
        if self.enabled:
            self._writer.close()
            self._jsonl.close()


class _NoBar:
    def update(self, n: int = 1) -> None:
        del n
