"""A real `moss serve` process on loopback for tests, with its own data directory."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx


class ServerProcess:
    def __init__(self, home, *args: str, model: str = "small", env: dict | None = None):
        self.home, self.args, self.model = str(home), args, model
        self.env = {**os.environ, "MOSS_HOME": self.home, **(env or {})}
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def moss(self, *args: str) -> subprocess.CompletedProcess:
        """Run another moss command against the same data directory."""
        return subprocess.run([sys.executable, "-m", "moss", *args], capture_output=True, text=True,
                              env=self.env, timeout=60)

    def start(self) -> "ServerProcess":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moss", "serve", "--port", str(self.port), "-m", self.model,
             "--ctx", "2048", *self.args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start in 60 s")

    def kill(self, sig=signal.SIGKILL) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.kill(signal.SIGTERM)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
