#!/usr/bin/env bash
# Print the CMake flags llama.cpp is built with here: never -march=native and never AMX on x86-64.
# A native build compiles llama.cpp's AMX path on CPUs that advertise AMX; inside many VMs the
# first decode then dies on `ldtilecfg` (tile permission is per thread; llama.cpp PR 26954).
# So each instruction set is named explicitly, from a safe list, and only if this CPU has it:
# the build runs here and on any CPU with the same features. Other architectures keep upstream's
# defaults. The output also keys the wheel cache (scripts/setup.sh), so a wheel built with other
# flags is never reused. (MOSS_CPUINFO and MOSS_ARCH stand in for /proc/cpuinfo and uname -m in tests.)
set -euo pipefail
[ "${MOSS_ARCH:-$(uname -m)}" = x86_64 ] || { echo "-DGGML_NATIVE=ON"; exit 0; }

cpu_flags=" $(grep -m1 '^flags' "${MOSS_CPUINFO:-/proc/cpuinfo}" 2>/dev/null | cut -d: -f2) "
has() { [[ "$cpu_flags" == *" $1 "* ]]; }
args=(-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C bmi2:BMI2 avx_vnni:AVX_VNNI; do
  if has "${pair%%:*}"; then args+=("-DGGML_${pair#*:}=ON"); else args+=("-DGGML_${pair#*:}=OFF"); fi
done
# ggml's AVX512 switch turns on F, CD, VL, DQ and BW together: only when all five are there.
if has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw; then
  args+=(-DGGML_AVX512=ON)
  for pair in avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
    has "${pair%%:*}" && args+=("-DGGML_${pair#*:}=ON") || args+=("-DGGML_${pair#*:}=OFF")
  done
else
  args+=(-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_BF16=OFF)
fi
echo "${args[*]}"
