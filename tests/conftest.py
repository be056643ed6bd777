"""Shared fixtures: the real daemon as a subprocess on 127.0.0.1, port 0.

The daemon is started exactly as a user starts it (the ``tmemd`` console
script's module, real flags), told to write its bound port to a file, and
stopped with SIGTERM; a test fails if the daemon exits uncleanly or logged
a traceback, so a crash can never hide behind a passing client assertion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: How long a daemon may take to start listening (a cold venv on a busy
#: 2-core CI box imports uvloop, lzo, zstd and msgpack in well under this).
DAEMON_START_TIMEOUT_S = 20.0


@dataclass
class Daemon:
    """A running tmemd subprocess."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_daemon(tmp_path: Path, *args: str, listen: str = "127.0.0.1:0") -> Daemon:
    """Start ``tmemd`` on ``listen`` (an ephemeral loopback port unless told
    otherwise) and wait until it listens."""
    port_file = tmp_path / f"port.{time.monotonic_ns()}"
    log_path = tmp_path / f"tmemd.{time.monotonic_ns()}.log"
    argv = [
        sys.executable,
        "-m",
        "tmemd.cli",
        "--listen",
        listen,
        "--port-file",
        str(port_file),
        "--log-level",
        "debug",
        *args,
    ]
    logf = open(log_path, "wb")  # noqa: SIM115 - the daemon owns it until it exits
    proc = subprocess.Popen(
        argv, stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    logf.close()
    deadline = time.monotonic() + DAEMON_START_TIMEOUT_S
    while not port_file.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"tmemd exited with {proc.returncode}:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tmemd did not start:\n{log_path.read_text()}")
        time.sleep(0.02)
    port = int(port_file.read_text())
    return Daemon(proc, listen.rpartition(":")[0], port, log_path, list(args))


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def factory(*args: str, listen: str = "127.0.0.1:0") -> Daemon:
        d = start_daemon(tmp_path, *args, listen=listen)
        started.append(d)
        return d

    yield factory
    for d in started:
        rc = d.stop()
        text = d.log()
        assert "Traceback" not in text, f"daemon logged a traceback:\n{text}"
        assert rc == 0, f"daemon exited with {rc}:\n{text}"


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon]) -> Daemon:
    return daemon_factory("--memory", "64MiB")


@pytest.fixture(params=["one-server", "three-servers"])
def address(
    request: pytest.FixtureRequest, daemon_factory: Callable[..., Daemon]
) -> str | list[str]:
    """One daemon's address, or three daemons' addresses: a test that takes
    it runs both ways, since a client over several servers keeps the
    single-server semantics (docs/multi-server.md)."""
    if request.param == "one-server":
        return daemon_factory("--memory", "64MiB").address
    return [daemon_factory("--memory", "64MiB").address for _ in range(3)]
