"""The code sandbox: normal code runs; writes outside, network, fork bombs, endless loops and the
escapes a review found do not."""

import glob
import os
import socket
import threading
import time
import uuid

import pytest

from moss.tools import sandbox
from moss.tools.sandbox import Limits, run_python


def test_ordinary_code_runs_with_stdlib_stdin_and_its_own_files():
    r = run_python("import collections, itertools, math, re, heapq\n"
                   "data = input()\nopen('note.txt', 'w').write(data)\n"
                   "print(open('note.txt').read().upper(), math.gcd(12, 18))", stdin="hello")
    assert r.ok and r.stdout == "HELLO 6\n"
    r = run_python("from helper import double\nprint(double(21))", files={"helper.py": "def double(x): return 2 * x"})
    assert r.stdout == "42\n"


def test_failures_are_reported_not_raised():
    r = run_python("raise ValueError('bad')")
    assert r.returncode == 1 and "ValueError: bad" in r.stderr and not r.timed_out


def test_writes_outside_its_directory_are_blocked(tmp_path):
    os.chmod(tmp_path, 0o777)  # even a world-writable directory stays out of reach
    target = tmp_path / "escaped.txt"
    for code in (f"open({str(target)!r}, 'w').write('x')",
                 f"import os; os.close(os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT))",
                 f"import shutil; shutil.copyfile(__file__, {str(target)!r})",
                 f"import os; os.rename(__file__, {str(target)!r})",
                 "open('../escaped.txt', 'w').write('x')"):
        r = run_python(code)
        assert not r.ok and "not allowed" in r.stderr, (code, r.stderr)
        assert not target.exists()


def test_network_is_blocked():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted = []
    listener.settimeout(3)
    waiter = threading.Thread(target=lambda: accepted.append(_accept(listener)))
    waiter.start()
    for code in (f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)",
                 f"import _socket; s = _socket.socket(); s.connect(('127.0.0.1', {port}))",
                 "import urllib.request; urllib.request.urlopen('http://example.com', timeout=2)"):
        r = run_python(code)
        assert not r.ok and ("not allowed" in r.stderr or "Network is unreachable" in r.stderr), r.stderr
    waiter.join()
    listener.close()
    assert accepted == [None], "nothing reached the listener"


def _accept(listener):
    try:
        return listener.accept()
    except socket.timeout:
        return None


def test_fork_bomb_and_subprocesses_are_stopped():
    start = time.monotonic()
    for code in ("import os\nwhile True:\n    os.fork()",
                 "import subprocess\nwhile True:\n    subprocess.Popen(['python3', '-c', 'pass'])",
                 "import os\nos.system('echo hi')",
                 "import ctypes\nctypes.CDLL(None).fork()"):
        r = run_python(code, limits=Limits(seconds=5))
        assert not r.ok and "not allowed" in r.stderr, (code, r.stderr)
    assert time.monotonic() - start < 20


def test_endless_loops_and_memory_hogs_are_cut_off():
    busy = run_python("while True:\n    pass", limits=Limits(seconds=4, cpu_seconds=2))
    assert busy.timed_out and busy.seconds < 4.5
    sleepy = run_python("import time\nwhile True:\n    time.sleep(1)", limits=Limits(seconds=2))
    assert sleepy.timed_out and sleepy.seconds < 3
    hog = run_python("x = bytearray(8 * 10**9)", limits=Limits(memory_mb=512))
    assert not hog.ok and "MemoryError" in hog.stderr
    chatty = run_python("print('x' * 10**7)", limits=Limits(output_bytes=1000))
    assert len(chatty.stdout) == 1000


def test_the_sandbox_directory_is_removed():
    r = run_python("import os; print(os.getcwd())")
    assert r.ok and r.stdout.strip().startswith("/") and not os.path.exists(r.stdout.strip())


# ---- escapes found in review: each is tried with both layers, and with the namespaces alone ----

def test_bubblewrap_is_in_use():
    """The test setup installs bubblewrap (scripts/test.sh); without it the layers below are weaker."""
    assert sandbox.runner().bwrap, sandbox.runner().describe()


@pytest.fixture
def outside(tmp_path):
    os.chmod(tmp_path, 0o777)  # world-writable: file permissions alone would not stop nobody
    return tmp_path


@pytest.mark.parametrize("audit", [True, False], ids=["all-layers", "namespaces-alone"])
def test_writes_through_dir_fd_and_sqlite_stay_inside(outside, audit):
    for code in (f"import os\nfd = os.open({str(outside)!r}, os.O_RDONLY)\n"
                 "os.close(os.open('escaped.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd))",
                 f"import posix\nfd = posix.open({str(outside)!r}, posix.O_RDONLY)\n"
                 "posix.close(posix.open('escaped.txt', posix.O_WRONLY | posix.O_CREAT, dir_fd=fd))",
                 f"import sqlite3\nsqlite3.connect({str(outside / 'escaped.txt')!r}).execute('create table t (x)')"):
        r = run_python(code, audit=audit)
        assert not r.ok, (code, r.stdout)
        assert not (outside / "escaped.txt").exists(), code


@pytest.mark.parametrize("audit", [True, False], ids=["all-layers", "namespaces-alone"])
def test_no_shell_can_be_started(outside, audit):
    target = outside / "escaped.txt"
    for code in (f"import subprocess\nsubprocess.run(['/bin/sh', '-c', 'echo escaped > {target}'])",
                 # what subprocess does underneath: _posixsubprocess.fork_exec, which raises no audit event
                 f"import subprocess\np = subprocess.Popen.__new__(subprocess.Popen)\n"
                 f"subprocess.Popen.__init__(p, ['/bin/sh', '-c', 'echo escaped > {target}'])\np.wait()",
                 "import os\nos.execv('/bin/sh', ['/bin/sh', '-c', 'echo escaped'])"):
        r = run_python(code, audit=audit)
        assert not r.ok and "escaped" not in r.stdout, (code, r.stdout)
        assert not target.exists(), code


@pytest.mark.parametrize("audit", [True, False], ids=["all-layers", "namespaces-alone"])
def test_sendmsg_reaches_no_one(audit):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(1)
        port = listener.getsockname()[1]
        r = run_python("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                       f"s.sendmsg([b'escaped'], [], 0, ('127.0.0.1', {port}))", audit=audit)
        assert not r.ok or not audit, r.stdout  # alone, the namespace's own loopback takes it
        with pytest.raises(socket.timeout):
            listener.recvfrom(100)


@pytest.mark.parametrize("audit", [True, False], ids=["all-layers", "namespaces-alone"])
def test_a_setsid_child_does_not_outlive_the_timeout(audit):
    marker = f"moss-escape-{uuid.uuid4().hex}"
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
            "time.sleep(60)\n")
    r = run_python(code, limits=Limits(seconds=2), audit=audit)
    assert r.timed_out or not r.ok
    deadline = time.monotonic() + 5
    while _running(marker):
        assert time.monotonic() < deadline, "the setsid child outlived the sandbox"
        time.sleep(0.1)


def _running(marker: str) -> bool:
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if marker.encode() in open(cmdline, "rb").read():
                return True
        except OSError:
            pass  # the process ended while we looked
    return False


def test_a_fork_bomb_meets_the_process_limit_inside_the_namespaces():
    r = run_python("import os\nn = 0\ntry:\n    while n < 100:\n        if os.fork() == 0:\n"
                   "            import time; time.sleep(5); os._exit(0)\n        n += 1\n"
                   "except OSError:\n    print('limit', n)\n", audit=False, limits=Limits(seconds=5))
    assert r.stdout.startswith("limit") and int(r.stdout.split()[1]) < Limits().processes, r.stdout
