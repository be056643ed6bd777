"""The reliability suite's tools: a daemon process, a fault-injecting proxy,
and a model that tells a right answer from a wrong one when replies get lost.

``DaemonProcess`` starts ``tmemd`` as a user does (``python -m tmemd.cli``,
real flags, a port file, 127.0.0.1 only) and can stop it with SIGTERM or
kill it, and restart it on the same port.

``FaultProxy`` sits between clients and the daemon on loopback and, per
chunk forwarded, with seeded probabilities: delays it, cuts the connection
after part of it (mid-frame), or drops the connection without forwarding
it.  It counts every fault it injected, so the suite reports figures, not
intentions.  One thread accepts; one thread per connection pumps both ways
with ``select``; every loop is bounded by the suite's deadline.

``Model`` is what a client may see.  Each handle holds the set of values
it may hold: one after an acknowledged put or flush, several after an
operation whose reply was lost (it may or may not have happened).  A get
that returns bytes outside the set is a *wrong read*; a persistent get
that misses while the set does not allow a miss is a *lost page*.  An
ephemeral page may always be missing (the daemon may drop it), never wrong.
"""

from __future__ import annotations

import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DaemonProcess", "FaultProxy", "Faults", "Model"]

#: How long a daemon may take to listen on a loaded 2-core box.
START_TIMEOUT_S = 30.0
#: How long SIGTERM may take (it saves the state with ``--state-dir``).
STOP_TIMEOUT_S = 60.0
#: Bytes read per ``recv`` in the proxy: one large pipelined batch.
PROXY_CHUNK_BYTES = 1 << 16
#: ``select`` timeout in the proxy's loops, so they notice the deadline.
PROXY_POLL_S = 0.2


class DaemonProcess:
    """One ``tmemd`` subprocess on 127.0.0.1 (see the module docstring)."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        self.args = list(args)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "tmemd.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (on the previous port if there was one) and wait until it listens."""
        port_file = self.workdir / f"port.{time.monotonic_ns()}"
        argv = [sys.executable, "-m", "tmemd.cli", "--listen", f"127.0.0.1:{self.port}"]
        argv += ["--port-file", str(port_file), *self.args]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"tmemd did not start; see {self.log_path}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_bytes(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> int:
        """SIGTERM and wait; the exit status (killed after ``STOP_TIMEOUT_S``)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self.proc.returncode)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tracebacks(self) -> int:
        """Tracebacks in the daemon's log: each is a crash of some request."""
        return self.log_path.read_text(errors="replace").count("Traceback")


@dataclass
class Faults:
    """What the proxy injected (counters) and how often (probabilities per chunk)."""

    delay_p: float = 0.02
    cut_p: float = 0.004
    drop_p: float = 0.002
    delays: int = 0
    cuts: int = 0
    drops: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, kind: str) -> None:
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)


class FaultProxy:
    """A loopback TCP proxy that injects ``Faults`` (module docstring)."""

    def __init__(self, target_port: int, faults: Faults, seed: int, deadline: float) -> None:
        self.target = ("127.0.0.1", target_port)
        self.faults = faults
        self.deadline = deadline
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self.deadline

    def _accept(self) -> None:
        while self._running():
            ready, _, _ = select.select([self._listener], [], [], PROXY_POLL_S)
            if not ready:
                continue
            try:
                conn, _ = self._listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                continue
            self.faults.count("connections")
            thread = threading.Thread(target=self._pump, args=(conn, upstream), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _draw(self) -> tuple[float, int]:
        with self._rng_lock:
            return self._rng.random(), self._rng.randrange(1 << 30)

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        try:
            while self._running():
                ready, _, _ = select.select(list(peers), [], [], PROXY_POLL_S)
                for sock in ready:
                    data = sock.recv(PROXY_CHUNK_BYTES)
                    if not data or not self._forward(data, peers[sock]):
                        return
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def _forward(self, data: bytes, to: socket.socket) -> bool:
        """Forward one chunk, maybe with a fault; False when the connection ends."""
        roll, pick = self._draw()
        faults = self.faults
        if roll < faults.drop_p:
            faults.count("drops")
            return False
        if roll < faults.drop_p + faults.cut_p:
            faults.count("cuts")
            to.sendall(data[: pick % len(data)])
            return False
        if roll < faults.drop_p + faults.cut_p + faults.delay_p:
            faults.count("delays")
            time.sleep(0.001 + (pick % 20) / 1000)
        to.sendall(data)
        return True


class Model:
    """Possible values per handle (module docstring); ``None`` means no page."""

    def __init__(self, persistent: bool) -> None:
        self.persistent = persistent
        self.values: dict[tuple[int, int], set[bytes | None]] = {}

    def allowed(self, handle: tuple[int, int]) -> set[bytes | None]:
        return self.values.get(handle, {None})

    def settle(self, handle: tuple[int, int], value: bytes | None) -> None:
        """The operation was acknowledged: the handle holds exactly ``value``."""
        self.values[handle] = {value}

    def unsure(self, handle: tuple[int, int], value: bytes | None) -> None:
        """The reply was lost: the operation may or may not have happened."""
        self.values[handle] = self.allowed(handle) | {value}

    def check(self, handle: tuple[int, int], got: bytes | None) -> str | None:
        """'wrong', 'lost' or None (fine) for what a get returned; a fine get
        settles the handle."""
        allowed = self.allowed(handle)
        if got is not None and got not in allowed:
            return "wrong"
        if got is None and self.persistent and None not in allowed:
            return "lost"
        # A persistent page stays; an ephemeral get took it (private pools
        # default to exclusive gets) or found none.
        self.values[handle] = {got} if self.persistent else {None}
        return None
