#!/usr/bin/env bash
# Set up Moss (first run only) and start the server on the embedded default model.
# Options go to `moss serve` (e.g. --port 9000, --auth); MOSS_HOME picks the data directory.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/moss serve "$@"
