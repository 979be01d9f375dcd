"""Shared by every benchmark: where its results go and how they are written.

``write_results(name_or_path, results)`` adds a ``"machine"`` entry (CPU count, load average, platform,
Python and JAX versions, JAX devices when JAX is loaded, UTC timestamp) to ``results``, writes indented JSON
atomically (a temporary file in the same folder, then ``os.replace``) and prints it. ``name_or_path`` is
either a bare name (``"train_throughput"`` -> ``benchmarks/results/train_throughput.json``) or a path.
With ``key``, the file holds one entry per key (a scale, a label): the other entries are kept.

``define_output_flag(name)`` defines the ``--output`` flag every benchmark has, defaulting to
``benchmarks/results/<name>.json``; point it elsewhere for a toy run so the saved figures stay.
"""

import datetime
import importlib.metadata
import json
import os
import platform
import sys
import tempfile

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def results_path(name_or_path: str) -> str:
    """``benchmarks/results/<name>.json`` for a bare name; a path (with a folder or ``.json``) as given."""
    if os.path.dirname(name_or_path) or name_or_path.endswith(".json"):
        return os.path.abspath(name_or_path)
    return os.path.join(RESULTS_DIR, f"{name_or_path}.json")


def define_output_flag(name: str) -> None:
    """``--output``: where the benchmark's JSON goes (default ``benchmarks/results/<name>.json``)."""
    from absl import flags

    flags.DEFINE_string("output", results_path(name), "results JSON (point it elsewhere for a toy run)")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """This machine at the time of writing. JAX devices only when the benchmark imported JAX."""
    info = {
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "platform": platform.machine(),
        "python": platform.python_version(),
        "jax_version": _version("jax"),
        "timestamp_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        info.update(devices=jax.device_count(), device_kind=jax.devices()[0].device_kind)
    return info


def _write_atomic(path: str, payload: dict) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp_", suffix=".json")
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(payload, f, indent=1)
            f.write("\n")
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_results(name_or_path: str, results: dict, *, key: str | None = None) -> str:
    """Writes ``results`` plus ``"machine"`` (see the module docstring) and prints them; returns the path.

    ``key``: the file is ``{key: results, ...}`` and only this key's entry is replaced.
    """
    path = results_path(name_or_path)
    entry = {**results, "machine": machine_info()}
    payload = entry
    if key is not None:
        payload = {}
        if os.path.exists(path):
            with open(path) as f:
                payload = json.load(f)
        payload[key] = entry
    _write_atomic(path, payload)
    print(json.dumps(entry if key is None else {key: entry}, indent=1))
    print(f"saved {path}", flush=True)
    return path
