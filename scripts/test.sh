#!/usr/bin/env bash
# Set up .venv (first run only) and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
export DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false
.venv/bin/ruff check xrdpipe flows tests benchmarks
exec .venv/bin/python -m pytest -q "$@"
