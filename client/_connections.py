"""Blocking connections and the small pool of them that a ``Client`` shares.

Why a pool and not a lock.  A ``Client`` may be shared by threads.  Each
call needs a connection to itself from its first request to its last reply:
replies are matched to requests in order, so two threads interleaving on one
socket would read each other's pages.  A lock around one connection gives
that, but then eight threads wait for one round trip at a time; a pool gives
each thread a connection of its own for one call (or one whole batch, which
still pipelines on it), so round trips overlap, as redis-py's
``ConnectionPool`` and pymemcache's ``PooledClient`` do.  With
``max_connections=1`` the pool *is* a lock, and ``bench/client_threads.py``
measures both (docs/bench/client_threads.md has the figures).

Rules of the pool:

* Connections are made lazily, at most ``max_connections`` of them; a
  thread that finds all of them busy waits (up to the client's ``timeout``,
  then ``TmemTimeout``).  The most recently used idle connection is taken
  first, so a lightly used client keeps one warm connection and the others
  reach the daemon's idle timeout and close.
* A connection goes back to the pool only whole: open, no fatal error, no
  request in flight.  Anything else (an error while reading, a timeout, an
  interrupted batch) closes it: pymemcache's rule, so a late reply can never
  be read as the answer to another call.
* An idle connection is checked before reuse: if it is readable, the daemon
  closed it (idle timeout, restart) or sent something unasked; it is
  dropped and a fresh one opened, so a call after a long pause does not fail
  on a dead socket.
* ``close()`` closes the idle connections at once and each busy one when its
  call returns it; calls in progress finish undisturbed (a socket is never
  closed under a thread that is using it: its descriptor number could be
  reused by another socket meanwhile), and later calls open fresh
  connections.
"""

from __future__ import annotations

import select
import socket
import ssl as _ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from ._core import BatchCall, Call, ClientCore, window_plan
from ._errors import TmemConnectionError, TmemError, TmemTimeout

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "MAX_SEND_BUFFERS",
    "RECV_BUFFER_BYTES",
    "Connection",
    "ConnectionPool",
]

T = TypeVar("T")
X = TypeVar("X")

#: Size of each connection's receive buffer, reused by every read: 256 KiB
#: takes a burst of 64 replies of 4 KiB in one system call.
RECV_BUFFER_BYTES = 256 << 10
#: Most buffers passed to one ``sendmsg`` (Linux's IOV_MAX is 1024); larger
#: writes are joined into one buffer instead.
MAX_SEND_BUFFERS = 1024
#: Default bound on a client's connections: one per thread up to 8 threads.
#: The daemon serves on one core, so more connections add no throughput
#: (bench/client_threads.py), only buffers (256 KiB each here) and daemon
#: state.
DEFAULT_MAX_CONNECTIONS = 8


class Connection:
    """One blocking connection: a socket, its ``ClientCore`` and a buffer.

    Not thread-safe: the pool hands it to one thread at a time.
    """

    def __init__(
        self,
        address: tuple[str, int],
        client_name: str,
        token: str | None,
        timeout: float | None,
        ssl: _ssl.SSLContext | None,
    ) -> None:
        self._host, self._port = address
        self._client_name = client_name
        self._token = token
        self._timeout = timeout
        self._ssl = ssl
        self._sock: socket.socket | None = None
        self._poller: select.poll | None = None
        self._core: ClientCore | None = None
        self._buffer = bytearray(RECV_BUFFER_BYTES)
        self._view = memoryview(self._buffer)
        #: HELLO's reply on this connection.
        self.server_info: dict[str, Any] = {}
        #: The pool's generation when this connection was made (see close()).
        self.generation = 0

    @property
    def server_id(self) -> str | None:
        """The daemon instance this connection said HELLO to."""
        value = self.server_info.get("server_id")
        return value if isinstance(value, str) else None

    @property
    def reusable(self) -> bool:
        """Open, in step, and nothing in flight: safe to hand to another call."""
        core = self._core
        return core is not None and core.idle

    def stale(self) -> bool:
        """True if an idle connection has something to read: the daemon closed
        it or sent something unasked.  Either way it must not be used.  One
        ``poll`` system call on a poller kept with the socket."""
        poller = self._poller
        return poller is not None and bool(poller.poll(0))

    def close(self) -> None:
        sock, self._sock, self._core, self._poller = self._sock, None, None, None
        if sock is not None:
            sock.close()

    def _where(self) -> str:
        return f"{self._host}:{self._port}"

    def _open_socket(self) -> socket.socket:
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        except TimeoutError as exc:
            raise TmemTimeout(
                f"connecting to {self._where()} timed out after {self._timeout}s"
            ) from exc
        except OSError as exc:
            raise TmemConnectionError(f"cannot connect to {self._where()}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._host)
        except OSError as exc:
            sock.close()
            raise TmemConnectionError(
                f"cannot set up the connection to {self._where()}: {exc}"
            ) from exc
        return sock

    def core(self) -> ClientCore:
        """The open connection's core; opens it (and says HELLO) if needed."""
        if self._core is not None:
            return self._core
        sock = self._sock = self._open_socket()
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        core = self._core = ClientCore(self._client_name, self._token)
        call = core.hello()
        self.transfer(core, call)
        try:
            self.server_info = call.result()
        except BaseException:
            self.close()
            raise
        return core

    def transfer(self, core: ClientCore, until: Call[Any] | None) -> None:
        """Send what ``core`` has queued; then read until ``until`` completes.

        Any error closes the connection; OS errors become TmemConnectionError
        (TmemTimeout for timeouts).
        """
        try:
            chunks = core.data_to_send()
            if chunks:
                self._send(chunks)
            while until is not None and not until.done:
                self._receive(core)
        except TmemError:
            self.close()
            raise
        except TimeoutError as exc:
            self.close()
            raise TmemTimeout(f"no reply from {self._where()} within {self._timeout}s") from exc
        except OSError as exc:
            self.close()
            raise TmemConnectionError(f"connection to {self._where()}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        if core.error is not None:
            self.close()

    def _send(self, chunks: list[bytes | bytearray | memoryview]) -> None:
        sock = self._sock
        assert sock is not None
        if self._ssl is not None or len(chunks) > MAX_SEND_BUFFERS:
            sock.sendall(b"".join(chunks))
            return
        while True:
            sent = sock.sendmsg(chunks)
            done = 0
            while done < len(chunks) and sent >= len(chunks[done]):
                sent -= len(chunks[done])
                done += 1
            if done == len(chunks):
                return
            chunks = [memoryview(chunks[done])[sent:], *chunks[done + 1 :]]

    def _receive(self, core: ClientCore) -> None:
        sock = self._sock
        assert sock is not None
        count = sock.recv_into(self._buffer)
        if count == 0:
            core.connection_lost(None)
        else:
            core.receive_data(self._view[:count])

    def exchange(self, build: Callable[[ClientCore], Call[T]]) -> T:
        """One request, one reply."""
        core = self.core()
        call = build(core)
        self.transfer(core, call)
        return call.result()

    def batch(
        self,
        items: Sequence[X],
        build: Callable[[ClientCore, Sequence[X]], BatchCall[T]],
        window: int,
    ) -> list[T]:
        """Pipelined requests in chunks of half a window, at most a window in
        flight (``window_plan``); replies in order."""
        if not items:
            return []
        core = self.core()
        calls: list[BatchCall[T]] = []
        for start, stop, wait_chunk in window_plan(len(items), window):
            if wait_chunk >= 0:
                self.transfer(core, calls[wait_chunk])
            calls.append(build(core, items[start:stop]))
            self.transfer(core, None)
        self.transfer(core, calls[-1])
        return [value for call in calls for value in call.result()]


class ConnectionPool:
    """At most ``max_connections`` connections made by ``factory``, lent to
    one thread at a time (``checkout``)."""

    def __init__(
        self, factory: Callable[[], Connection], max_connections: int, timeout: float | None
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._factory = factory
        self.max_connections = max_connections
        self._timeout = timeout
        self._ready = threading.Condition(threading.Lock())
        self._idle: list[Connection] = []
        self._count = 0  # connections made and not yet discarded (idle or lent)
        self._waiting = 0  # threads waiting in acquire (notify only when some are)
        self._generation = 0

    @property
    def size(self) -> int:
        """Connections open or lent out now."""
        return self._count

    def acquire(self) -> Connection:
        """A connection for this thread alone until ``release``; waits (at
        most ``timeout``) while all ``max_connections`` are lent out."""
        with self._ready:
            if self._idle:
                conn = self._idle.pop()
            elif self._count < self.max_connections:
                self._count += 1
                conn = None
            else:
                conn = self._wait_for_one()
            generation = self._generation
        if conn is None:
            return self._made(generation)
        if conn.stale():
            conn.close()  # a fresh core opens on first use, in this thread
        return conn

    def _wait_for_one(self) -> Connection | None:
        """Under the lock: wait for an idle connection (returned) or room for
        a new one (None, counted)."""
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        self._waiting += 1
        try:
            while not self._idle and self._count >= self.max_connections:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TmemTimeout(
                        f"all {self.max_connections} connections stayed busy for {self._timeout}s"
                    )
                self._ready.wait(left)
        finally:
            self._waiting -= 1
        if self._idle:
            return self._idle.pop()
        self._count += 1
        return None

    def _made(self, generation: int) -> Connection:
        try:
            conn = self._factory()
        except BaseException:
            self._forget()
            raise
        conn.generation = generation
        return conn

    def release(self, conn: Connection) -> None:
        """Take ``conn`` back: into the pool if ``reusable``, else closed."""
        with self._ready:
            if conn.reusable and conn.generation == self._generation:
                self._idle.append(conn)
                if self._waiting:
                    self._ready.notify()
                return
        conn.close()
        self._forget()

    def _forget(self) -> None:
        with self._ready:
            self._count -= 1
            if self._waiting:
                self._ready.notify()

    @contextmanager
    def checkout(self) -> Iterator[Connection]:
        """``acquire`` and ``release`` as a context manager."""
        conn = self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)

    def close(self) -> None:
        """Close the idle connections now and the lent ones when returned."""
        with self._ready:
            idle, self._idle = self._idle, []
            self._generation += 1
            self._count -= len(idle)
            self._ready.notify_all()
        for conn in idle:
            conn.close()
