#!/usr/bin/env bash
# Runs the dataset job (`study preprocess`, i.e. data_pipeline.build_dataset) on Google Cloud Dataflow.
# Workers get the job's modules and their libraries only (data_pipeline/worker_package.py) unless
# --setup_file names another package. Every input and output path must be a gs:// path. --dry_run builds
# the whole job offline (Beam's DataflowRunner dry run: nothing listed, read, written or submitted) and
# prints its step count and staged files; --print_only prints the command and runs nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/cloud_common.sh"

usage() {
  cat <<'USAGE'
usage: launch/dataflow.sh --project=P --region=R --temp_location=gs://B/tmp --interactions=gs://B/logs/*.csv \
         --roster=gs://B/roster.csv --output_dir=gs://B/processed [options] [-- PIPELINE_FLAGS...]

required (flag or environment variable):
  --project           PROJECT           Google Cloud project
  --region            REGION            Dataflow region, e.g. us-central1
  --temp_location     TEMP_LOCATION     gs:// folder for Dataflow temporary files
  --interactions      INTERACTIONS      interactions file(s): comma-separated paths or globs
  --roster            ROSTER            roster file
  --output_dir        OUTPUT_DIR        gs:// output directory of the processed dataset
options:
  --schools           SCHOOLS           schools file (school -> district, wealth)
  --staging_location  STAGING_LOCATION  default TEMP_LOCATION/staging
  --job_name          JOB_NAME          default study-dataset-<UTC time>
  --setup_file        SETUP_FILE        package for the workers (default: the job's modules only)
  --max_num_workers   MAX_NUM_WORKERS   autoscaling cap
  --machine_type      MACHINE_TYPE      worker machine type, e.g. n2-standard-4
  --python            PYTHON            interpreter that submits the job, default python3
  --dry_run                             build the job offline, print its steps and staged files
  --print_only                          print the command, run nothing
Flags after `--` go to the job unchanged (e.g. -- --vocab_size=2000 --num_packings=4).
USAGE
}

PROJECT="${PROJECT:-}"
REGION="${REGION:-}"
TEMP_LOCATION="${TEMP_LOCATION:-}"
STAGING_LOCATION="${STAGING_LOCATION:-}"
INTERACTIONS="${INTERACTIONS:-}"
ROSTER="${ROSTER:-}"
SCHOOLS="${SCHOOLS:-}"
OUTPUT_DIR="${OUTPUT_DIR:-}"
JOB_NAME="${JOB_NAME:-study-dataset-$(date -u +%Y%m%d-%H%M%S)}"
SETUP_FILE="${SETUP_FILE:-}"
MAX_NUM_WORKERS="${MAX_NUM_WORKERS:-}"
MACHINE_TYPE="${MACHINE_TYPE:-}"
PYTHON="${PYTHON:-python3}"
DRY_RUN="${DRY_RUN:-0}"
JOB_DRY_RUN=0
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --project|--project=*) flag_value "$@"; PROJECT="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --region|--region=*) flag_value "$@"; REGION="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --temp_location|--temp_location=*) flag_value "$@"; TEMP_LOCATION="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --staging_location|--staging_location=*) flag_value "$@"; STAGING_LOCATION="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --interactions|--interactions=*) flag_value "$@"; INTERACTIONS="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --roster|--roster=*) flag_value "$@"; ROSTER="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --schools|--schools=*) flag_value "$@"; SCHOOLS="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --output_dir|--output_dir=*) flag_value "$@"; OUTPUT_DIR="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --job_name|--job_name=*) flag_value "$@"; JOB_NAME="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --setup_file|--setup_file=*) flag_value "$@"; SETUP_FILE="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --max_num_workers|--max_num_workers=*) flag_value "$@"; MAX_NUM_WORKERS="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --machine_type|--machine_type=*) flag_value "$@"; MACHINE_TYPE="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --python|--python=*) flag_value "$@"; PYTHON="$FLAG_VALUE"; shift "$SHIFT_BY" ;;
    --dry_run) JOB_DRY_RUN=1; shift ;;
    --print_only) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) usage_error "unknown argument $1" ;;
  esac
done
require PROJECT --project
require REGION --region
require TEMP_LOCATION --temp_location
require INTERACTIONS --interactions
require ROSTER --roster
require OUTPUT_DIR --output_dir
# Workers read and write through Cloud Storage: a local path would pass here and fail on every worker.
check_gs() {
  local name="$1" value="$2" part
  IFS=',' read -r -a parts <<< "$value"
  for part in "${parts[@]}"; do
    part="${part#"${part%%[![:space:]]*}"}"
    if [[ -n "$part" && "$part" != gs://* ]]; then
      usage_error "$name must be gs:// path(s) that the Dataflow workers can reach, got $part"
    fi
  done
}
for location in TEMP_LOCATION STAGING_LOCATION INTERACTIONS ROSTER SCHOOLS OUTPUT_DIR; do
  check_gs "--$(tr '[:upper:]' '[:lower:]' <<< "$location")" "${!location}"
done
STAGING_LOCATION="${STAGING_LOCATION:-${TEMP_LOCATION%/}/staging}"
if [[ -n "$SETUP_FILE" && "$DRY_RUN" != 1 && "$(basename "$SETUP_FILE")" == pyproject.toml ]] \
    && ! "$PYTHON" -c "import build" 2>/dev/null; then
  echo "error: Beam builds the package from $SETUP_FILE with 'python -m build', which is not installed;" >&2
  echo "       run '$PYTHON -m pip install build' (or pass a setup.py) and retry" >&2
  exit 1
fi

COMMAND=("$PYTHON" -m study.cli preprocess
  --interactions="$INTERACTIONS" --roster="$ROSTER" --output_dir="$OUTPUT_DIR")
if [[ -n "$SCHOOLS" ]]; then
  COMMAND+=(--schools="$SCHOOLS")
fi
COMMAND+=(--runner=DataflowRunner --project="$PROJECT" --region="$REGION"
  --temp_location="$TEMP_LOCATION" --staging_location="$STAGING_LOCATION"
  --job_name="$JOB_NAME")
if [[ -n "$SETUP_FILE" ]]; then
  COMMAND+=(--setup_file="$SETUP_FILE")
fi
if [[ "$JOB_DRY_RUN" == 1 ]]; then
  COMMAND+=(--dry_run)
fi
if [[ -n "$MAX_NUM_WORKERS" ]]; then
  COMMAND+=(--max_num_workers="$MAX_NUM_WORKERS")
fi
if [[ -n "$MACHINE_TYPE" ]]; then
  COMMAND+=(--machine_type="$MACHINE_TYPE")
fi
COMMAND+=("${EXTRA[@]}")
cd "$ROOT"
run "${COMMAND[@]}"
