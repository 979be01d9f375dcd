#!/usr/bin/env bash
# Shared pieces of the cloud launch scripts (tpu_single_host.sh, tpu_pod.sh, dataflow.sh): flag parsing,
# a --dry_run that prints every command instead of running it, usage errors. Sourced, not run.

# quote_word WORD: WORD as a shell reads it back: bare when plain, else --flag='value' or 'word'.
quote_word() {
  local word="$1" plain='^[A-Za-z0-9_./:=@,+%-]+$'
  if [[ "$word" =~ $plain ]]; then
    printf '%s' "$word"
  elif [[ "$word" =~ ^(--?[A-Za-z0-9_.-]+=)(.*)$ ]]; then
    printf '%s%s' "${BASH_REMATCH[1]}" "$(quote_word "${BASH_REMATCH[2]}")"
  else
    printf '%s' "${word@Q}"
  fi
}

# Prints one command the way a shell would read it back.
print_command() {
  local out="" arg
  for arg in "$@"; do
    out+="$(quote_word "$arg") "
  done
  echo "${out% }"
}

# Runs a command, or only prints it when DRY_RUN=1. Every cloud command goes through here.
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    print_command "$@"
  else
    echo "+ $(print_command "$@")" >&2
    "$@"
  fi
}

# usage_error MESSAGE: prints the message and the calling script's usage, exits 2.
usage_error() {
  echo "error: $1" >&2
  echo >&2
  usage >&2
  exit 2
}

# require NAME FLAG: fails with a usage error when variable NAME is empty.
require() {
  if [[ -z "${!1:-}" ]]; then
    usage_error "missing required argument $2 (or environment variable $1)"
  fi
}

# flag_value ARG NEXT: the value of "--flag=value" or "--flag value"; sets SHIFT_BY to 1 or 2.
flag_value() {
  if [[ "$1" == *=* ]]; then
    FLAG_VALUE="${1#*=}"
    SHIFT_BY=1
  elif [[ $# -ge 2 ]]; then
    FLAG_VALUE="$2"
    SHIFT_BY=2
  else
    usage_error "flag $1 needs a value"
  fi
}

# tpu_launch KIND "$@": the body of tpu_single_host.sh (KIND=single_host) and tpu_pod.sh (KIND=pod).
# Creates the TPU VM, copies this checkout (or clones --repo_url) to every host, installs the package
# with jax[tpu], and starts the trainer on every host (a pod needs all hosts; jax.distributed.initialize()
# reads the TPU environment). Trainer flags after `--` are passed on.
tpu_launch() {
  local kind="$1"
  shift
  TPU_NAME="${TPU_NAME:-}"
  ZONE="${ZONE:-}"
  PROJECT="${PROJECT:-}"
  WORKDIR="${WORKDIR:-}"
  DATA_DIR="${DATA_DIR:-}"
  CONFIG="${CONFIG:-configs/study.py:learning_ally}"
  TPU_VERSION="${TPU_VERSION:-tpu-ubuntu2204-base}"
  REPO_URL="${REPO_URL:-}"
  SPOT="${SPOT:-0}"
  DRY_RUN="${DRY_RUN:-0}"
  if [[ "$kind" == pod ]]; then
    ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-32}"
  else
    ACCELERATOR_TYPE="${ACCELERATOR_TYPE:-v4-8}"
  fi
  local trainer_extra=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --tpu_name|--tpu_name=*) flag_value "$@"; TPU_NAME="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
      --zone|--zone=*) flag_value "$@"; ZONE="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
      --project|--project=*) flag_value "$@"; PROJECT="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
      --accelerator_type|--accelerator_type=*) flag_value "$@"; ACCELERATOR_TYPE="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
      --version|--version=*) flag_value "$@"; TPU_VERSION="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
      --workdir|--workdir=*) flag_value "$@"; WORKDIR="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
      --data_dir|--data_dir=*) flag_value "$@"; DATA_DIR="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
      --config|--config=*) flag_value "$@"; CONFIG="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
      --repo_url|--repo_url=*) flag_value "$@"; REPO_URL="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
      --spot) SPOT=1; shift ;;
      --dry_run) DRY_RUN=1; shift ;;
      -h|--help) usage; exit 0 ;;
      --) shift; trainer_extra=("$@"); break ;;
      *) usage_error "unknown argument $1" ;;
    esac
  done
  require TPU_NAME --tpu_name
  require ZONE --zone
  require WORKDIR --workdir
  if [[ "$WORKDIR" != gs://* ]]; then
    usage_error "--workdir must be a gs:// path (every host writes checkpoints there), got $WORKDIR"
  fi

  local where=(--zone="$ZONE")
  if [[ -n "$PROJECT" ]]; then
    where+=(--project="$PROJECT")
  fi
  local workers=()
  if [[ "$kind" == pod ]]; then
    workers=(--worker=all)
  fi
  local create=(gcloud compute tpus tpu-vm create "$TPU_NAME" "${where[@]}"
    --accelerator-type="$ACCELERATOR_TYPE" --version="$TPU_VERSION")
  if [[ "$SPOT" == 1 ]]; then
    create+=(--spot)
  fi
  run "${create[@]}"

  local remote_dir="study"
  if [[ -n "$REPO_URL" ]]; then
    run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${where[@]}" "${workers[@]}" \
      --command="rm -rf $remote_dir && git clone $REPO_URL $remote_dir"
  else
    local archive="${TMPDIR:-/tmp}/study-src-$TPU_NAME.tar.gz"
    run tar czf "$archive" --exclude=.venv --exclude=.git --exclude=__pycache__ -C "$ROOT" .
    run gcloud compute tpus tpu-vm scp "$archive" "$TPU_NAME:study-src.tar.gz" "${where[@]}" "${workers[@]}"
    run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${where[@]}" "${workers[@]}" \
      --command="rm -rf $remote_dir && mkdir -p $remote_dir && tar xzf study-src.tar.gz -C $remote_dir"
  fi
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${where[@]}" "${workers[@]}" \
    --command="cd $remote_dir && python3 -m pip install --upgrade pip && python3 -m pip install -e . && python3 -m pip install \"jax[tpu]>=0.7,<0.11\""

  local train_args=(--config="$CONFIG" --workdir="$WORKDIR")
  if [[ -n "$DATA_DIR" ]]; then
    train_args+=(--config.data_dir="$DATA_DIR")
  fi
  train_args+=("${trainer_extra[@]}")
  local train_command="cd $remote_dir && nohup python3 -m study.commands.train"
  local arg
  for arg in "${train_args[@]}"; do
    train_command+=" $(quote_word "$arg")"
  done
  # nohup + background: the run survives the ssh session; its log stays on each host.
  train_command+=" > train.log 2>&1 &"
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${where[@]}" "${workers[@]}" --command="$train_command"
  if [[ "$DRY_RUN" != 1 ]]; then
    echo "training started on $TPU_NAME; follow it with:" >&2
    echo "  gcloud compute tpus tpu-vm ssh $TPU_NAME --zone=$ZONE --command='tail -f $remote_dir/train.log'" >&2
  fi
}
