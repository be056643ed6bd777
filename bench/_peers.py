"""Starting and stopping the servers under test: tmemd, memcached and redis.

Every server is a child process of the harness on a free 127.0.0.1 port,
started fresh for each case (so its CPU and RSS figures belong to that case
alone) and stopped with SIGTERM after it; its output goes to a log file in
the run's work directory, quoted when it fails to start.

* **tmemd** starts as a user starts it, ``python -m tmemd.cli --listen
  127.0.0.1:0 --port-file F --memory M --codec C``, and is ready when the
  port file appears (the daemon writes it once listening).  The harness
  never imports the daemon's internals: it talks through ``tmem.client``.
* **memcached** (Debian's): ``-l 127.0.0.1 -p PORT -U 0 -m MB -t 2`` (two
  worker threads for two cores), plus ``-u root`` when run as root, which
  memcached otherwise refuses; ready when it answers ``version``.
* **redis-server** (Debian's): ``--port PORT --bind 127.0.0.1 --save ''
  --appendonly no`` plus ``--maxmemory M --maxmemory-policy allkeys-lru``, so
  each server is held to the same memory and acts as a cache, as an
  ephemeral tmem pool does; ready when it answers ``PING``.

A peer whose binary is missing is reported by ``find_peer`` as None, and the
runner says so and goes on without it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ._proc import free_port

__all__ = ["START_TIMEOUT_S", "Server", "find_peer", "peer_version", "start_server"]

#: How long a server may take to answer after its start: a cold venv on a
#: busy 2-core box imports uvloop and the codecs in well under this.
START_TIMEOUT_S = 30.0
#: How long a server may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 10.0
#: Poll interval while waiting for a server to answer.
POLL_S = 0.02
#: Where Debian installs the peers, searched after PATH.
_PEER_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin")
_BINARIES = {"memcached": "memcached", "redis": "redis-server"}
#: (request, expected reply prefix) that proves a peer is serving.
_PINGS = {"memcached": (b"version\r\n", b"VERSION"), "redis": (b"PING\r\n", b"+PONG")}


@dataclass
class Server:
    """A running server under test."""

    system: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log_tail(self, chars: int = 2_000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it lingers; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def find_peer(system: str) -> str | None:
    """The path of a peer's server binary, or None if it is not installed."""
    name = _BINARIES[system]
    found = shutil.which(name)
    if found:
        return found
    for folder in _PEER_DIRS:
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


def peer_version(system: str) -> str | None:
    """The first line of ``memcached -V`` / ``redis-server --version``."""
    binary = find_peer(system)
    if binary is None:
        return None
    flag = "-V" if system == "memcached" else "--version"
    done = subprocess.run([binary, flag], capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else None


def _argv(
    system: str,
    port: int,
    memory_bytes: int,
    codec: str,
    port_file: Path,
    busy_poll_us: int,
) -> list[str]:
    if system == "tmemd":
        return [sys.executable, "-m", "tmemd.cli", "--listen", "127.0.0.1:0",
                "--port-file", str(port_file), "--memory", str(memory_bytes),
                "--codec", codec, "--log-level", "warning",
                "--busy-poll", str(busy_poll_us)]  # fmt: skip
    binary = find_peer(system)
    if binary is None:
        raise FileNotFoundError(f"{_BINARIES[system]} is not installed")
    if system == "memcached":
        argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0",
                "-m", str(max(1, memory_bytes >> 20)), "-t", "2"]  # fmt: skip
        return argv + (["-u", "root"] if os.geteuid() == 0 else [])
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--maxmemory", str(memory_bytes),
            "--maxmemory-policy", "allkeys-lru"]  # fmt: skip


def _answers(system: str, port: int) -> bool:
    request, expect = _PINGS[system]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(expect)
    except OSError:
        return False


def start_server(
    system: str,
    workdir: Path,
    memory_bytes: int,
    codec: str = "lz4",
    cpus: frozenset[int] | None = None,
    busy_poll_us: int = 0,
    extra_args: Sequence[str] = (),
) -> Server:
    """Start ``system`` on a free loopback port and wait until it answers.

    ``codec`` is tmemd's default codec (pools name theirs anyway) and
    ``busy_poll_us`` its ``--busy-poll``; ``cpus`` pins the server and every
    thread it starts to those CPUs; ``extra_args`` go at the end of the
    server's command line (tmemd's ``--auth-file``, memcached's ``-I``).  Raises
    ``RuntimeError`` with the log's tail when the server does not come up.
    """
    stamp = time.monotonic_ns()
    port_file = workdir / f"{system}.{stamp}.port"
    log_path = workdir / f"{system}.{stamp}.log"
    port = 0 if system == "tmemd" else free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*_argv(system, port, memory_bytes, codec, port_file, busy_poll_us), *extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            # Set between fork and exec, so threads the server starts inherit it.
            preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
        )  # fmt: skip
    server = Server(system, proc, "127.0.0.1", port, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _ready(server, port_file):
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(
                f"{system} did not start (exit {proc.returncode}):\n{server.log_tail()}"
            )
        time.sleep(POLL_S)
    return server


def _ready(server: Server, port_file: Path) -> bool:
    if server.system == "tmemd":
        try:
            server.port = int(port_file.read_text())
        except (OSError, ValueError):
            return False
        return True
    return _answers(server.system, server.port)
