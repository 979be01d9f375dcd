#!/usr/bin/env bash
# The test command of the README: sets up .venv if needed, then runs the default (fast) test suite.
# Extra arguments go to pytest, e.g. `bash launch/run_tests.sh -m slow`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup_env.sh"
cd "$ROOT"
lint-imports --no-cache
# Test files run in parallel on every core (one worker per file, so module fixtures are built once).
exec python -m pytest -q -n "${STUDY_TEST_WORKERS:-auto}" --dist loadfile "$@"
