"""Starting anywhere: llama.cpp built without -march=native or AMX, `moss doctor`, the one-token
decode that setup runs, and the messages a newcomer gets for a missing extra."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moss import doctor

ROOT = Path(__file__).parent.parent
FLAGS = ["bash", str(ROOT / "scripts" / "llama_flags.sh")]
SAPPHIRE_RAPIDS = ("flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2 avx_vnni avx512f avx512cd "
                   "avx512vl avx512dq avx512bw avx512vbmi avx512_vnni avx512_bf16 amx_tile amx_int8 amx_bf16\n")
HASWELL = "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma f16c bmi2\n"


def flags_for(tmp_path, cpuinfo: str, arch: str = "x86_64") -> list[str]:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    out = subprocess.run(FLAGS, capture_output=True, text=True, check=True,
                         env={**os.environ, "MOSS_CPUINFO": str(tmp_path / "cpuinfo"), "MOSS_ARCH": arch})
    return out.stdout.split()


def test_build_flags_are_explicit_and_never_native_or_amx(tmp_path):
    amx_cpu = flags_for(tmp_path, SAPPHIRE_RAPIDS)
    assert "-DGGML_NATIVE=OFF" in amx_cpu and "-DGGML_AVX512=ON" in amx_cpu and "-DGGML_AVX512_VNNI=ON" in amx_cpu
    assert {"-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"} <= set(amx_cpu)
    avx2_cpu = flags_for(tmp_path, HASWELL)
    assert "-DGGML_NATIVE=OFF" in avx2_cpu and "-DGGML_AVX2=ON" in avx2_cpu and "-DGGML_AVX512=OFF" in avx2_cpu
    assert amx_cpu != avx2_cpu  # different flags: setup keeps their wheels apart
    assert flags_for(tmp_path, HASWELL, arch="aarch64") == ["-DGGML_NATIVE=ON"]  # upstream's default there


def test_the_installed_llama_cpp_has_no_amx_path():
    info = doctor.llama_system_info()
    assert "AVX2 = 1" in info or not any(f.startswith("avx2") for f in doctor.cpu_features())
    assert "AMX" not in info, info


def test_doctor_reports_every_part(moss_home):
    out = subprocess.run([sys.executable, "-m", "moss", "doctor"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    for part in ("CPU", "llama.cpp build", "model qwen2.5-coder-0.5b-instruct", "database", "disk",
                 "one-token decode"):
        assert f"ok   {part}" in out.stderr, (part, out.stderr)


def test_a_crash_in_the_decode_names_cause_and_fix():
    crash = doctor.run_smoke([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"])
    assert not crash.ok and "crashed (SIGILL)" in crash.detail and "bash scripts/setup.sh" in crash.detail
    hang = doctor.run_smoke([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert not hang.ok and "no token" in hang.detail
    assert doctor.smoke("small").ok


def test_setup_stops_when_the_decode_crashes(tmp_path):
    """`moss doctor --smoke` is setup's last step: a failing decode is one line and a non-zero exit."""
    out = subprocess.run([sys.executable, "-m", "moss", "doctor", "--smoke", "-m", str(tmp_path / "missing.gguf")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "FAIL one-token decode" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("command, extra", [(["learn"], "train"), (["eval", "run", "--quick"], "eval")])
def test_a_missing_extra_is_named_with_the_command_that_installs_it(tmp_path, command, extra):
    (tmp_path / "reasoning_gym.py").write_text("raise ImportError('No module named reasoning_gym', name='reasoning_gym')")
    out = subprocess.run([sys.executable, "-m", "moss", *command], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 1, out.stderr
    line = " ".join(out.stderr.split())
    assert "missing: reasoning_gym" in line and f"bash scripts/setup.sh {extra}" in line
    assert "pip install 'moss" not in out.stderr and "Traceback" not in out.stderr
