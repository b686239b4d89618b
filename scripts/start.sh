#!/usr/bin/env bash
# Set up Moss (first run only) and start it on the embedded default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/moss chat "$@"
