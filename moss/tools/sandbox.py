"""Run untrusted Python (model-written code) in a subprocess that cannot hurt the machine.

Where bubblewrap (`bwrap`, Debian's `bubblewrap`) works, the code runs in namespaces of its own:
no network, its own process tree (everything in it dies with it, `setsid` or not), user nobody,
and a file system that holds only the interpreter, its standard library and the system's shared
libraries, read-only (no shell to start, no data of Moss's to read), a private /tmp, and its own
directory, the one place it can write. Inside, and alone where bubblewrap is missing:
- its own temporary directory as the working directory, removed afterwards;
- resource limits: CPU seconds, address space, file size, processes, no core dumps;
- a wall-clock timeout that kills the whole process group;
- an audit hook installed before the code runs (it cannot be removed) that refuses writes
  outside the directory, sockets, new processes and ctypes;
- without bubblewrap, where the OS allows it (root, or unprivileged user namespaces): a network
  namespace with no interfaces, and, as root, an unprivileged user (nobody) so file permissions
  and the process limit apply too (with an interpreter whose standard library nobody can read).
  This fallback is weaker: `posix.open(..., dir_fd=...)` and `_posixsubprocess` are reachable
  through builtins the audit hook cannot see, so install bubblewrap on a server."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

NOBODY = 65534
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000

# Runs inside the child before the untrusted code: it confines its own process (limits, network
# namespace, unprivileged user), then installs the audit hook and runs the script.
# sys.argv = [bootstrap, sandbox_dir, script, cpu_s, memory_mb, file_mb, processes, netns_flags, audit].
BOOTSTRAP = r'''
import os, sys, resource
root = os.path.realpath(sys.argv[1])
script = sys.argv[2]
cpu, memory, fsize, procs, netns, audit = (int(a) for a in sys.argv[3:9])
MB = 1 << 20
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_AS, (memory * MB, memory * MB))
resource.setrlimit(resource.RLIMIT_FSIZE, (fsize * MB, fsize * MB))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
if netns:
    import ctypes
    if ctypes.CDLL(None, use_errno=True).unshare(netns) != 0:
        sys.exit("sandbox: could not isolate the network")
if procs > 0:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    resource.setrlimit(resource.RLIMIT_NPROC, (procs, procs))
WRITE = ("w", "a", "x", "+")
PATHS = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link",
         "os.symlink", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"}
DENY = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
        "socket.gethostbyname",
        "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.kill",
        "os.killpg", "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym",
        "ctypes.cdata", "ctypes.call_function", "sys.addaudithook", "os.chroot", "os.setuid",
        "webbrowser.open", "urllib.Request", "ftplib.connect", "smtplib.connect"}
MODULES = {"_posixsubprocess", "_ctypes", "_multiprocessing", "_xxsubinterpreters"}  # no audit events inside

def inside(path):
    if isinstance(path, int):
        return True  # an already-open descriptor
    return os.path.realpath(os.fsdecode(path)).startswith(root + os.sep)

def hook(event, args):
    if event in DENY:
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "import" and args and args[0] in MODULES:
        raise PermissionError(f"sandbox: importing {args[0]} is not allowed")
    if event == "sqlite3.connect" and args and not inside(args[0]) and args[0] != ":memory:":
        raise PermissionError(f"sandbox: a database outside the sandbox is not allowed: {args[0]}")
    if event == "open" and args and isinstance(args[1], str) and any(c in args[1] for c in WRITE) \
            and not inside(args[0]):
        raise PermissionError(f"sandbox: writing outside the sandbox is not allowed: {args[0]}")
    if event == "open" and args and isinstance(args[2], int) and args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) \
            and not inside(args[0]):
        raise PermissionError(f"sandbox: writing outside the sandbox is not allowed: {args[0]}")
    if event in PATHS and args and not all(inside(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
        raise PermissionError(f"sandbox: {event} outside the sandbox is not allowed")

if audit:
    sys.addaudithook(hook)
del hook
_open = os.open
def open_here(path, flags, mode=0o777, *, dir_fd=None):
    # the audit event does not say which directory dir_fd names: writes through one are refused
    if dir_fd is not None and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
        raise PermissionError("sandbox: writing through dir_fd is not allowed")
    return _open(path, flags, mode, dir_fd=dir_fd)
os.open = open_here
sys.argv = [script]
sys.path.insert(0, root)  # its own modules import, as for `python main.py`
import runpy
runpy.run_path(script, run_name="__main__")
'''


@dataclass
class Limits:
    seconds: float = 10.0  # wall clock
    cpu_seconds: int = 10
    memory_mb: int = 1024  # address space
    file_mb: int = 16  # largest file it may write
    processes: int = 8  # for the unprivileged user (a fork-bomb stop)
    output_bytes: int = 1 << 20  # stdout and stderr kept, each


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float
    isolated_network: bool  # the network namespace was in place

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run_python(code: str, stdin: str = "", limits: Limits | None = None,
               files: dict[str, str] | None = None, audit: bool = True) -> RunResult:
    """Run `code` as a script in a fresh sandbox directory (with optional extra `files`).
    audit=False leaves out the audit hook, so that tests can try the namespaces alone."""
    limits = limits or Limits()
    workdir = Path(tempfile.mkdtemp(prefix="moss-sandbox-"))
    try:
        (workdir / "main.py").write_text(code, encoding="utf-8")
        for name, text in (files or {}).items():
            (workdir / name).write_text(text, encoding="utf-8")
        command, extra, isolated = _command(workdir, limits, audit)
        start = time.monotonic()
        proc = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
                 "PYTHONIOENCODING": "utf-8", "LANG": "C.UTF-8"},
            start_new_session=True, close_fds=True, **extra)
        timed_out = False
        try:
            out, err = proc.communicate(stdin.encode(), timeout=limits.seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = proc.communicate()
        code_ = proc.returncode
        if runner().bwrap and code_ > 128:  # bubblewrap passes a signal on as 128 + its number
            code_ = 128 - code_  # (so code that exits with 129..255 itself reads as a signal too)
        if code_ == -signal.SIGXCPU or code_ == -signal.SIGKILL:
            timed_out = timed_out or code_ == -signal.SIGXCPU
        return RunResult(code_, _text(out, limits), _text(err, limits), timed_out,
                         time.monotonic() - start, isolated)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass(frozen=True)
class Runner:
    """How this machine runs sandboxed code (worked out once)."""
    python: str  # the interpreter
    as_nobody: bool  # started as user nobody (when Moss runs as root and nobody can read it)
    bwrap: bool  # inside bubblewrap's namespaces
    netns: int  # without bubblewrap: unshare() flags for a network namespace of its own, or 0

    def describe(self) -> str:
        who = "as nobody" if self.as_nobody else "as this user"
        if self.bwrap:
            return f"bubblewrap namespaces (no network, own processes, read-only system), {who}, audit hook"
        return (f"audit hook and limits only, {who}{', no network' if self.netns else ''}: install "
                f"bubblewrap (apt-get install bubblewrap) for namespaces")


@cache
def runner() -> Runner:
    as_root = os.geteuid() == 0
    python, drop = _interpreter(as_root)
    if shutil.which("bwrap") and _bwrap_works(python, drop):
        return Runner(python, drop, True, 0)
    return Runner(python, drop, False, _netns_flags(as_root))


def _command(workdir: Path, limits: Limits, audit: bool) -> tuple[list[str], dict, bool]:
    """The command line that runs workdir/main.py, Popen's extra arguments, and whether its
    network is isolated."""
    run = runner()
    if run.as_nobody:
        for path in [workdir, *workdir.iterdir()]:
            os.chown(path, NOBODY, NOBODY)
    root = "/sandbox" if run.bwrap else str(workdir)
    # Without bubblewrap the child drops to nobody itself, after making its network namespace.
    processes = limits.processes if run.as_nobody or run.bwrap else 0
    bootstrap = [run.python, "-I", "-B", "-c", BOOTSTRAP, root, f"{root}/main.py", str(limits.cpu_seconds),
                 str(limits.memory_mb), str(limits.file_mb), str(processes), str(run.netns), str(int(audit))]
    if not run.bwrap:
        return bootstrap, {}, bool(run.netns)
    return [*_bwrap(run.python, workdir), *bootstrap], _as(run.as_nobody), True


def _as(nobody: bool) -> dict:
    """Popen arguments that start bubblewrap as nobody: as root, the process limit would not hold."""
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if nobody else {}


def _bwrap(python: str, workdir: Path) -> list[str]:
    """bubblewrap's arguments: new namespaces, user nobody, only what Python needs, read-only."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", str(NOBODY), "--gid", str(NOBODY), "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", "--bind", str(workdir), "/sandbox", "--chdir", "/sandbox"]
    for path in _readable(python):
        if os.path.islink(path):  # /lib -> usr/lib on merged-/usr systems
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind", path, path]
    return [*args, "--ro-bind", python, python]


# Asked of the interpreter itself: it may not be the one Moss runs on.
_LAYOUT = ("import json, os, sysconfig; v = sysconfig.get_config_var; print(json.dumps("
           "[os.path.dirname(os.__file__), os.path.join(v('LIBDIR') or '', v('INSTSONAME') or ''), v('MULTIARCH') or '']))")


@cache
def _readable(python: str) -> list[str]:
    """What the interpreter needs to start: its standard library, libpython, the shared libraries."""
    stdlib, libpython, multiarch = json.loads(subprocess.run(
        [python, "-I", "-c", _LAYOUT], capture_output=True, text=True, check=True).stdout)
    paths = [stdlib]
    if os.path.isfile(libpython) and not libpython.startswith(stdlib):
        paths.append(libpython)
    for path in (f"/usr/lib/{multiarch}" if multiarch else "/usr/lib", "/usr/lib64", "/lib64", "/lib"):
        if os.path.lexists(path) and not any(path.startswith(p + "/") for p in paths):
            paths.append(path)
    return paths


def _bwrap_works(python: str, as_nobody: bool) -> bool:
    """Whether bubblewrap can make its namespaces here (a container may forbid it)."""
    try:
        probe = subprocess.run([*_bwrap(python, Path(tempfile.gettempdir())), python, "-I", "-c", "pass"],
                               capture_output=True, timeout=30, **_as(as_nobody))
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _text(data: bytes, limits: Limits) -> str:
    return data[:limits.output_bytes].decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _interpreter(as_root: bool) -> tuple[str, bool]:
    """The Python to run, and whether it can run as nobody: its standard library must be
    readable by others (pyenv under /root is not; Debian's /usr/bin/python3 is)."""
    if not as_root:
        return sys.executable, False
    for python in (sys.executable, "/usr/bin/python3"):
        real = Path(os.path.realpath(python))
        stdlib = Path(os.__file__).parent if python == sys.executable else None
        if real.is_file() and _world_readable(real) and (stdlib is None or _world_readable(stdlib)):
            return str(real), True
    return sys.executable, False


def _world_readable(path: Path) -> bool:
    return all(p.stat().st_mode & 0o005 == 0o005 for p in [path, *path.parents] if p.is_dir()) \
        and path.stat().st_mode & 0o004 != 0


_netns: dict[bool, int] = {}


def _netns_flags(as_root: bool) -> int:
    """unshare() flags that give the child a network of its own here, or 0 (checked once)."""
    if as_root not in _netns:
        flags = CLONE_NEWNET if as_root else CLONE_NEWUSER | CLONE_NEWNET
        probe = subprocess.run([sys.executable, "-c",
                                f"import ctypes,sys; sys.exit(ctypes.CDLL(None).unshare({flags}) != 0)"],
                               capture_output=True)
        _netns[as_root] = flags if probe.returncode == 0 else 0
    return _netns[as_root]
