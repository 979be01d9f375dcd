#!/usr/bin/env bash
# The test command of the README: sets up .venv if needed, then runs the default (fast) test suite.
# Extra arguments go to pytest, e.g. `bash launch/run_tests.sh -m slow`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/launch/setup_env.sh"
cd "$ROOT"
lint-imports --no-cache
# XLA programs compiled by one test (or test subprocess) are reused by the others: a compilation cache shared by
# every process of this run, empty at the start and removed at the end (no state carried between runs).
JAX_COMPILATION_CACHE_DIR="$(mktemp -d -t study-test-xla-cache.XXXXXX)"
trap 'rm -rf "$JAX_COMPILATION_CACHE_DIR"' EXIT
export JAX_COMPILATION_CACHE_DIR JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
# Tests check results, not speed: XLA compiles without LLVM's optimisation passes (compiling dominates the tiny
# models of the tests; the golden-loss test pins the numbers to 1e-6 either way).
export XLA_FLAGS="${XLA_FLAGS:-} --xla_backend_optimization_level=0"
# Test files run in parallel on every core (one worker per file, so module fixtures are built once).
python -m pytest -q -n "${STUDY_TEST_WORKERS:-auto}" --dist loadfile "$@"
