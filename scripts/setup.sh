#!/usr/bin/env bash
# Create .venv and install Moss into it (editable), with the extras named as arguments
# (train, eval, teacher, small, postgres, test; `learn` = train + eval + teacher's client).
# Idempotent: a second run only installs what changed. llama-cpp-python is built once per set of
# CPU flags (scripts/llama_flags.sh) into Moss's own wheel cache, never taken from pip's cache
# (which ignores CMAKE_ARGS and would hand back a wheel built with other flags). Setup ends
# with a one-token decode in a subprocess (`moss doctor --smoke`): it says ready only if that works.
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
start=$(date +%s)

extras=$(IFS=,; echo "$*")
# torch first, from its CPU build: left to the resolver, the train extra would pull CUDA wheels.
if [[ ",$extras," =~ ,(train|learn|test), ]] && ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  echo "moss setup: installing torch 2.13.0 (CPU build)"
  .venv/bin/python -m pip install --quiet --progress-bar off torch==2.13.0 \
    || { echo "error: installing torch failed (see above)" >&2; exit 1; }
fi

# llama-cpp-python, built with this machine's flags into a folder named by them.
version=$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml | head -1)
flags=$(bash scripts/llama_flags.sh)
key=$(printf '%s %s' "$version" "$flags" | sha256sum | cut -c1-12)
wheels="${XDG_CACHE_HOME:-$HOME/.cache}/moss/wheels/llama-cpp-python-$version-$key"
stamp=.venv/moss-llama-build
if [ "$(cat "$stamp" 2>/dev/null)" != "$key" ]; then
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "moss setup: building llama-cpp-python $version from source (4-10 minutes on 2 cores)"
    echo "moss setup: llama.cpp flags: $flags"
    mkdir -p "$wheels.partial"
    CMAKE_ARGS="$flags" FORCE_CMAKE=1 .venv/bin/python -m pip wheel --quiet --no-deps --no-cache-dir \
        --no-binary llama-cpp-python -w "$wheels.partial" "llama-cpp-python==$version" \
      || { echo "error: building llama-cpp-python failed (see above; it needs a C/C++ compiler and cmake)" >&2; exit 1; }
    rm -rf "$wheels" && mv "$wheels.partial" "$wheels"
  fi
  .venv/bin/python -m pip install --quiet --no-deps --force-reinstall "$wheels"/llama_cpp_python-*.whl
  echo "$key" > "$stamp"
fi

target="."
[ -n "$extras" ] && target=".[$extras]"
set +e
.venv/bin/python -m pip install --progress-bar off -e "$target" 2>&1 \
  | grep --line-buffered -vE "^(Requirement already satisfied|WARNING: Location)"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" -eq 0 ] || { echo "error: installing Moss failed (pip exit $rc, see above)" >&2; exit 1; }

# What was built must run here: a one-token decode in a subprocess (a crash names cause and fix).
.venv/bin/moss doctor --smoke || exit 1
# Learning asks the base model the same questions every cycle: answered once now, not in the first cycle.
if [[ ",$extras," =~ ,(train|learn), ]]; then
  echo "moss setup: the base model's answers for learning (once per model, a few minutes)"
  .venv/bin/moss learn --prepare || exit 1
fi
echo "moss setup: ready in $(( $(date +%s) - start ))s"
