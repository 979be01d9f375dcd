#!/usr/bin/env bash
# Trains on one Cloud TPU VM host (e.g. v4-8): creates the VM, installs this checkout with jax[tpu] and
# starts `python -m study.commands.train` there. --dry_run prints the commands instead of running them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/cloud_common.sh"

usage() {
  cat <<'USAGE'
usage: launch/tpu_single_host.sh --tpu_name=NAME --zone=ZONE --workdir=gs://BUCKET/RUN [options] [-- TRAINER_FLAGS...]

required (flag or environment variable):
  --tpu_name          TPU_NAME          name of the TPU VM to create
  --zone              ZONE              e.g. us-central2-b
  --workdir           WORKDIR           gs:// run directory (checkpoints, metrics)
options:
  --project           PROJECT           Google Cloud project (default: gcloud's configured project)
  --accelerator_type  ACCELERATOR_TYPE  default v4-8
  --version           TPU_VERSION       TPU VM software version, default tpu-ubuntu2204-base
  --config            CONFIG            default configs/study.py:learning_ally
  --data_dir          DATA_DIR          gs:// processed dataset (sets --config.data_dir)
  --repo_url          REPO_URL          git clone this URL on the VM instead of copying this checkout
  --spot                                create a Spot VM
  --dry_run                             print the commands, run nothing
Flags after `--` go to the trainer, e.g. -- --config.steps=100
USAGE
}

tpu_launch single_host "$@"
