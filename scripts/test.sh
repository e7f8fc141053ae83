#!/usr/bin/env bash
# Install everything the tests need (system packages, .venv, test tools) and run the whole suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k indexer`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
mkdir -p test-artifacts
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest --durations=15 "$@"  # the slowest tests are listed: keep the suite near 15 minutes
