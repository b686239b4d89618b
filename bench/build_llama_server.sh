#!/usr/bin/env bash
# Build llama.cpp's own llama-server (the reference for bench/serve.py) from the llama.cpp tree
# inside the llama-cpp-python sdist that Moss pins, so both run the same llama.cpp. ~7 minutes.
# Prints the path of the binary. Usage: bash bench/build_llama_server.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml | head -1)
dir=${1:-${MOSS_HOME:-$HOME/.local/share/moss}/bench/llama.cpp-$version}
bin="$dir/src/vendor/llama.cpp/build/bin/llama-server"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
mkdir -p "$dir"
if [ ! -d "$dir/src" ]; then
  pip download --quiet --no-deps --no-binary :all: -d "$dir" "llama-cpp-python==$version" >&2
  tar -xzf "$dir"/llama_cpp_python-"$version".tar.gz -C "$dir"
  mv "$dir/llama_cpp_python-$version" "$dir/src"
fi
# The same CPU flags as Moss's own build (never -march=native, never AMX).
read -ra flags <<< "$(bash scripts/llama_flags.sh)"
cd "$dir/src/vendor/llama.cpp"
cmake -B build -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON -DCMAKE_BUILD_TYPE=Release "${flags[@]}" >&2
cmake --build build --target llama-server -j"$(nproc)" >&2
echo "$bin"
