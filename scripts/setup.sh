#!/usr/bin/env bash
# Create .venv and install Moss into it (editable), with the extras named as arguments.
# Idempotent: a second run only installs what changed. pip's cache keeps the llama-cpp-python
# wheel, so its ~10 minute source build happens once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "error: Moss needs Python >= 3.11 (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "moss setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip

extras=$(IFS=,; echo "$*")
# torch first, from its CPU build: left to the resolver, the train extra would pull CUDA wheels.
if [[ ",$extras," =~ ,(train|test), ]] && ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  echo "moss setup: installing torch 2.13.0 (CPU build)"
  .venv/bin/python -m pip install --quiet --progress-bar off torch==2.13.0 \
    || { echo "error: installing torch failed (see above)" >&2; exit 1; }
fi
target="."
[ -n "$extras" ] && target=".[$extras]"
if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
  echo "moss setup: installing llama-cpp-python (a source build takes about 10 minutes the first time)"
fi
start=$(date +%s)
set +e
.venv/bin/python -m pip install --progress-bar off -e "$target" 2>&1 \
  | grep --line-buffered -vE "^(Requirement already satisfied|WARNING: Location)"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || { echo "error: installing Moss failed (pip exit $rc, see above)" >&2; exit 1; }
echo "moss setup: ready in $(( $(date +%s) - start ))s"
