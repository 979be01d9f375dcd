"""Two ``jax.distributed`` processes on localhost (one CPU device each) train to the same parameters as one
process with two devices: each process reads its share of every global batch (``data_sharding="row"``)
and contributes it with ``jax.make_array_from_process_local_data``."""

import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.device_env import cpu_devices_env
from tests.test_input_pipeline import write_dataset
from tests.test_trainer import REPO, checkpoint_leaves, flag_overrides, progress_at, tiny_config

pytestmark = pytest.mark.multiprocess


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trainer_command(overrides: dict, workdir: str) -> list[str]:
    args = [sys.executable, "-m", "study.commands.train", "--config=configs/study.py:smoke", f"--workdir={workdir}"]
    return args + [f"--config.{key}={value}" for key, value in overrides.items()]


def test_two_processes_match_one_process(tmp_path):
    data_dir = tmp_path / "data"
    write_dataset(data_dir, rows_per_split={"train": 40}, num_shards=3)  # no validation split: no eval
    overrides = dict(flag_overrides(tiny_config(str(data_dir))), steps=4, checkpoint_every=100,
                     data_sharding="row")

    port = _free_port()
    multi = str(tmp_path / "two_processes")
    processes = []
    for process_id in range(2):
        flags = dict(overrides, **{"distributed.enabled": True,
                                   "distributed.coordinator_address": f"127.0.0.1:{port}",
                                   "distributed.num_processes": 2, "distributed.process_id": process_id})
        processes.append(subprocess.Popen(
            _trainer_command(flags, multi), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cpu_devices_env(1)))
    single = str(tmp_path / "one_process")
    reference = subprocess.run(_trainer_command(overrides, single), cwd=REPO, capture_output=True, text=True,
                               timeout=400, env=cpu_devices_env(2))
    outputs = []
    for proc in processes:
        try:
            outputs.append(proc.communicate(timeout=400))
        finally:
            proc.kill()
    for proc, (_, stderr) in zip(processes, outputs):
        assert proc.returncode == 0, stderr[-4000:]
    assert reference.returncode == 0, reference.stderr[-4000:]
    assert '"step": 4' in outputs[0][0]  # process 0 prints the final metrics

    two, two_progress = checkpoint_leaves(multi)
    one, one_progress = checkpoint_leaves(single)
    assert two_progress == one_progress == progress_at(4)
    assert two.keys() == one.keys()
    for name in one:  # fp32, same 2-way data layout: equal up to collective summation order
        np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-6, err_msg=name)
