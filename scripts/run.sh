#!/usr/bin/env bash
# Set up .venv (first run only) and run the xrdpipe pipeline on the offline demo subset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
export DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false
exec .venv/bin/xrdpipe run "${@:-demo}"
