"""The cloud launch scripts: --dry_run prints complete gcloud / Beam commands; missing arguments are usage errors."""

import os
import shlex
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLEAN_ENV = {
    key: value for key, value in os.environ.items()
    if key not in {"TPU_NAME", "ZONE", "PROJECT", "WORKDIR", "DATA_DIR", "CONFIG", "REGION", "TEMP_LOCATION",
                   "INTERACTIONS", "ROSTER", "OUTPUT_DIR", "REPO_URL", "SETUP_FILE", "DRY_RUN"}
}


def run_script(name, *args, env=None):
    return subprocess.run(
        ["bash", os.path.join(ROOT, "launch", name), *args],
        capture_output=True, text=True, env=dict(CLEAN_ENV, **(env or {})), timeout=60,
    )


def commands(stdout):
    """Dry-run output -> list of argv lists (parsed back as a shell would)."""
    return [shlex.split(line) for line in stdout.splitlines() if line.strip()]


def ssh_command(argv):
    """The remote command of a `gcloud compute tpus tpu-vm ssh` argv."""
    (remote,) = [arg[len("--command="):] for arg in argv if arg.startswith("--command=")]
    return remote


def test_single_host_dry_run():
    result = run_script(
        "tpu_single_host.sh", "--tpu_name=study-v4", "--zone", "us-central2-b", "--workdir=gs://bucket/run1",
        "--data_dir=gs://bucket/processed", "--dry_run", "--", "--config.steps=100",
    )
    assert result.returncode == 0, result.stderr
    create, archive, copy, unpack, install, train = commands(result.stdout)
    assert create == ["gcloud", "compute", "tpus", "tpu-vm", "create", "study-v4", "--zone=us-central2-b",
                      "--accelerator-type=v4-8", "--version=tpu-ubuntu2204-base"]
    assert archive[:2] == ["tar", "czf"] and archive[-2:] == [ROOT, "."]
    assert copy[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and copy[6] == "study-v4:study-src.tar.gz"
    assert "tar xzf study-src.tar.gz" in ssh_command(unpack)
    assert "pip install -e ." in ssh_command(install) and "jax[tpu]" in ssh_command(install)
    assert train[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "study-v4"]
    remote = shlex.split(ssh_command(train).split("&&", 1)[1].split(">", 1)[0])
    assert remote == ["nohup", "python3", "-m", "study.commands.train", "--config=configs/study.py:learning_ally",
                      "--workdir=gs://bucket/run1", "--config.data_dir=gs://bucket/processed", "--config.steps=100"]
    # A single host: no --worker=all anywhere.
    assert not any("--worker=all" in argv for argv in commands(result.stdout))


def test_pod_dry_run_runs_every_step_on_all_workers():
    result = run_script(
        "tpu_pod.sh", "--tpu_name=study-pod", "--zone=us-central2-b", "--project=my-project",
        "--workdir=gs://bucket/pod", "--repo_url=https://example.org/study.git", "--dry_run",
        env={"ACCELERATOR_TYPE": "v4-64"},
    )
    assert result.returncode == 0, result.stderr
    create, clone, install, train = commands(result.stdout)
    assert create == ["gcloud", "compute", "tpus", "tpu-vm", "create", "study-pod", "--zone=us-central2-b",
                      "--project=my-project", "--accelerator-type=v4-64", "--version=tpu-ubuntu2204-base"]
    for argv in (clone, install, train):
        assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "study-pod"]
        assert "--worker=all" in argv and "--zone=us-central2-b" in argv and "--project=my-project" in argv
    assert "git clone https://example.org/study.git study" in ssh_command(clone)
    assert "python3 -m study.commands.train --config=configs/study.py:learning_ally --workdir=gs://bucket/pod" \
        in ssh_command(train)


def test_tpu_arguments_from_environment_variables():
    result = run_script("tpu_pod.sh", "--dry_run",
                        env={"TPU_NAME": "envpod", "ZONE": "europe-west4-a", "WORKDIR": "gs://b/w"})
    assert result.returncode == 0, result.stderr
    assert commands(result.stdout)[0][5:7] == ["envpod", "--zone=europe-west4-a"]
    assert commands(result.stdout)[0][7] == "--accelerator-type=v4-32"


@pytest.mark.parametrize("script", ["tpu_single_host.sh", "tpu_pod.sh"])
def test_tpu_missing_argument_is_a_usage_error(script):
    result = run_script(script, "--tpu_name=t", "--workdir=gs://b/w", "--dry_run")
    assert result.returncode == 2
    assert "missing required argument --zone" in result.stderr and "usage:" in result.stderr
    assert result.stdout == ""
    local = run_script(script, "--tpu_name=t", "--zone=z", "--workdir=/tmp/run", "--dry_run")
    assert local.returncode == 2 and "--workdir must be a gs:// path" in local.stderr


def test_dataflow_print_only():
    result = run_script(
        "dataflow.sh", "--project=my-project", "--region=us-central1", "--temp_location=gs://b/tmp",
        "--interactions=gs://b/logs/*.csv", "--roster=gs://b/roster.csv", "--output_dir=gs://b/processed",
        "--job_name=job-1", "--max_num_workers=50", "--print_only", "--", "--vocab_size=2000",
    )
    assert result.returncode == 0, result.stderr
    (argv,) = commands(result.stdout)
    assert argv[:4] == ["python3", "-m", "study.cli", "preprocess"]
    # No --setup_file: the job ships its own light worker package (data_pipeline/worker_package.py).
    assert set(argv[4:]) == {
        "--interactions=gs://b/logs/*.csv", "--roster=gs://b/roster.csv", "--output_dir=gs://b/processed",
        "--runner=DataflowRunner", "--project=my-project", "--region=us-central1",
        "--temp_location=gs://b/tmp", "--staging_location=gs://b/tmp/staging", "--job_name=job-1",
        "--max_num_workers=50", "--vocab_size=2000",
    }


def test_dataflow_refuses_paths_the_workers_cannot_reach():
    base = ["--project=p", "--region=r", "--temp_location=gs://b/t", "--roster=gs://b/roster.csv",
            "--output_dir=gs://b/o", "--print_only"]
    for flag, value in [("--interactions", "gs://b/a.csv,logs/b.csv"), ("--schools", "schools.csv"),
                        ("--staging_location", "/tmp/staging")]:
        args = [a for a in base if not a.startswith(flag + "=")]
        if flag != "--interactions":
            args.append("--interactions=gs://b/a.csv")
        result = run_script("dataflow.sh", *args, f"{flag}={value}")
        assert result.returncode == 2, (flag, result.stdout)
        assert f"{flag} must be gs:// path(s)" in result.stderr and value.split(",")[-1] in result.stderr


def test_dataflow_missing_argument_is_a_usage_error():
    result = run_script("dataflow.sh", "--project=p", "--region=r", "--temp_location=gs://b/t",
                        "--interactions=i.csv", "--output_dir=gs://b/o", "--dry_run")
    assert result.returncode == 2
    assert "missing required argument --roster" in result.stderr and "usage:" in result.stderr
    unknown = run_script("dataflow.sh", "--runnr=DataflowRunner")
    assert unknown.returncode == 2 and "unknown argument --runnr" in unknown.stderr


def test_usage_message():
    for script in ("tpu_single_host.sh", "tpu_pod.sh", "dataflow.sh"):
        result = run_script(script, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"usage: launch/{script}")
