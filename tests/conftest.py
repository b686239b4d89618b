"""Shared fixtures: a private Moss data directory and real engines on the real models."""

import os

import pytest

from moss.inference.loading import open_engine


@pytest.fixture(scope="session", autouse=True)
def moss_home(tmp_path_factory):
    """Each test run gets its own data directory, as a fresh machine would.
    MOSS_TEST_HOME keeps one between runs (saves re-assembling the default model)."""
    home = os.environ.get("MOSS_TEST_HOME") or str(tmp_path_factory.mktemp("moss-home"))
    os.environ["MOSS_HOME"] = home
    # Derived files (a model's training copy, its anchor answers) are shared by every data
    # directory of the run, as they are by a user's; a run starts without them, as on a fresh
    # machine (MOSS_TEST_CACHE keeps them between runs).
    os.environ["MOSS_CACHE_DIR"] = os.environ.get("MOSS_TEST_CACHE") or str(tmp_path_factory.mktemp("moss-cache"))
    return home


@pytest.fixture(scope="session")
def small_engine(moss_home):
    """SmolLM2-135M: fast, English only."""
    engine = open_engine("small", context_size=2048)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def default_engine(moss_home):
    """The default Qwen2.5-Coder-0.5B model, assembled from its wheels on first use."""
    engine = open_engine("default")
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on loopback, started for this test run and stopped after it."""
    import glob
    import shutil
    import socket
    import subprocess
    import tempfile

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.fail("PostgreSQL is not installed (scripts/test.sh installs it: apt-get install postgresql)")
    bindir = os.path.dirname(bins[-1])
    root = tempfile.mkdtemp(prefix="moss-pg-")
    os.chmod(root, 0o755)
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = os.path.join(root, "data")
    run = lambda *cmd: subprocess.run([*as_postgres, *cmd], check=True, capture_output=True)  # noqa: E731
    run(f"{bindir}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "--encoding=UTF8")
    run(f"{bindir}/pg_ctl", "-D", data, "-w", "-l", os.path.join(root, "log"), "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=on", "start")
    try:
        run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "moss_test")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/moss_test"
    finally:
        run(f"{bindir}/pg_ctl", "-D", data, "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)
