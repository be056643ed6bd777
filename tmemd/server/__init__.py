"""The server edge: asyncio glue between sockets, the decoder and the engine.

Theory of operation
-------------------
``Server`` owns the listening socket, the live connections (one
``_connection.Connection``, an ``asyncio.Protocol``, per TCP connection) and
the bounds that protect every client from the others:

* the reply backlog (``tmemd._backlog``): reply bytes waiting for peers
  that do not read, per connection and in all;
* admission (``tmemd._admission``): ``--max-connections``, and for
  connections without a successful HELLO ``--max-unauthenticated`` and
  ``--hello-timeout``, so sockets without a token never take the slots of
  authenticated clients;
* the failed-HELLO throttle (``tmemd._throttle``), with an auth file.

Timeouts: one sweeper task per server (not a timer per connection) wakes
every ``SWEEP_INTERVAL_S``, closes connections past their HELLO deadline,
idle past ``idle_timeout`` and peers that began a frame and stalled past
``header_timeout`` (slow loris), re-samples the reply backlog, and expires
the leases of clients with no connection left.

Shutdown: ``drain`` (SIGTERM) stops accepting and has every request read from
then on answered BUSY for up to ``--drain-timeout`` seconds, then closes
(PROTOCOL.md section 12.5).

Errors: command errors are answered and the connection lives; framing errors
(bad magic, version, oversized length) poison the decoder, so the server
sends one error frame and closes, as memcached does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from tmem.proto import MAX_REQUEST_PAYLOAD_BYTES, NO_OPCODE, Status

from .._admission import Admission
from .._backlog import ReplyBacklog
from .._dispatch import Dispatch
from .._latency import LatencyRecorder
from .._session import HandlerContext
from .._throttle import AuthThrottle
from ..config import DaemonConfig
from ..engine import MAX_PAGE_BYTES, MIN_PAGE_BYTES, Engine
from ._connection import (
    MAX_REPLY_BACKLOG_BYTES,
    WRITE_BUFFER_HIGH_BYTES,
    WRITE_BUFFER_LOW_BYTES,
    Connection,
)

__all__ = [
    "MAX_REPLY_BACKLOG_BYTES",
    "WRITE_BUFFER_HIGH_BYTES",
    "WRITE_BUFFER_LOW_BYTES",
    "Connection",
    "Server",
]

log = logging.getLogger("tmemd.server")

#: While draining, how often to look whether every client has left.
DRAIN_POLL_S = 0.05
#: How often the sweeper checks timeouts and leases.  Timeouts are therefore
#: enforced with this much slack, which is fine for values of seconds.
SWEEP_INTERVAL_S = 0.5


def hello_limits(config: DaemonConfig, engine: Engine) -> dict[str, Any]:
    """The limits HELLO announces, so a client can check before it sends."""
    return {
        "max_pools_per_client": engine.config.max_pools_per_client,
        "min_page_size": MIN_PAGE_BYTES,
        "max_page_size": MAX_PAGE_BYTES,
        "max_request_payload": MAX_REQUEST_PAYLOAD_BYTES,
        "idle_timeout_s": float(config.idle_timeout),
        "header_timeout_s": float(config.header_timeout),
        "hello_timeout_s": float(config.hello_timeout),
        "lease_s": float(config.lease),
    }


class Server:
    """Owns the listening socket, the live connections and the sweeper."""

    def __init__(
        self,
        config: DaemonConfig,
        engine: Engine,
        ctx: HandlerContext,
        backlog: ReplyBacklog | None = None,
    ) -> None:
        self.config = config
        self.engine = engine
        self.ctx = ctx
        self.connections: set[Connection] = set()
        #: The reply budgets; tests pass a small one to exercise backpressure.
        self.backlog = backlog or ReplyBacklog(WRITE_BUFFER_HIGH_BYTES, MAX_REPLY_BACKLOG_BYTES)
        self.admission: Admission[Connection] = Admission(
            config.max_connections, config.max_unauthenticated, config.hello_timeout
        )
        #: SIGTERM: every request read from now on is answered BUSY.
        self.draining = False
        self.latency = LatencyRecorder()
        #: --busy-poll: keep polling this long after the last read (0: off).
        self.busy_poll_s = config.busy_poll / 1e6
        self.spin_until = 0.0
        self.spinning = False
        #: What every connection's bursts share (``tmemd._dispatch``).
        self.dispatch = Dispatch(ctx, self.latency)
        self.bytes_in = 0
        #: Connections accepted and refused since start (for metrics).
        self.connections_total = 0
        self.connections_refused = 0
        self.bytes_out = 0
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @classmethod
    def build(
        cls, config: DaemonConfig, engine: Engine, server_id: str | None = None, **ctx_extra: Any
    ) -> Server:
        """A server for ``engine``; ``server_id`` None draws a new identity.

        A daemon that starts without saved state is a new instance: its pool
        ids start afresh, so it must not share an id with the last instance
        (PROTOCOL.md §11.2).  128 random bits make a collision negligible.
        """
        ctx = HandlerContext(
            engine=engine,
            lease_s=config.lease,
            max_request_payload=MAX_REQUEST_PAYLOAD_BYTES,
            server_id=secrets.token_hex(16) if server_id is None else server_id,
            limits=hello_limits(config, engine),
            **ctx_extra,
        )
        if ctx.authenticate is not None and ctx.auth_throttle is None:
            ctx.auth_throttle = AuthThrottle(time.monotonic)
        return cls(config, engine, ctx)

    @property
    def server_id(self) -> str:
        return self.ctx.server_id

    async def start(self, ssl: Any = None) -> tuple[str, int]:
        """Listen; return the bound (host, port), which matters for port 0."""
        loop = asyncio.get_running_loop()
        host, port = self.config.address
        self._server = await loop.create_server(
            lambda: Connection(self), host, port, ssl=ssl, reuse_address=True, backlog=1024
        )
        self._sweeper = loop.create_task(self._sweep())
        bound = self._server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    def received(self, nbytes: int, now: float) -> None:
        """A connection read ``nbytes`` at ``now``: count them, and keep
        polling for ``--busy-poll`` after this read."""
        self.bytes_in += nbytes
        if self.busy_poll_s:
            self.spin_until = now + self.busy_poll_s
            if not self.spinning:
                self.start_spinning()

    def start_spinning(self) -> None:
        """Busy-poll until ``spin_until`` (``--busy-poll``).

        A callback that re-queues itself keeps uvloop's poll timeout at
        zero, so the loop spins through epoll instead of sleeping in it, and
        a request arriving meanwhile is read at once rather than after the
        scheduler wakes the daemon: on the 2-vCPU reference VM a wake-up
        is about half of a depth-1 op, and ``--busy-poll 200`` takes depth-1
        gets up by well over half (docs/bench/ has the figures of each run).  The price is a core
        kept busy while traffic flows and for the window after it; an idle
        daemon does not spin.  Like the kernel's net.core.busy_poll.
        """
        self.spinning = True
        asyncio.get_running_loop().call_soon(self._spin)

    def _spin(self) -> None:
        if time.monotonic() < self.spin_until:
            asyncio.get_running_loop().call_soon(self._spin)
        else:
            self.spinning = False

    def admit(self, conn: Connection) -> None:
        """Keep ``conn``, or answer it BUSY; close the oldest unauthenticated one for room."""
        verdict = self.admission.admit(conn, len(self.connections), time.monotonic())
        if not verdict.admitted:
            self.connections_refused += 1
            conn.fail(Status.BUSY, "too many connections", 0, NO_OPCODE)
            return
        self.connections_total += 1
        self.connections.add(conn)
        if verdict.evict is not None:
            verdict.evict.fail(Status.BUSY, "too many connections without HELLO", 0, NO_OPCODE)

    @property
    def unauthenticated_connections(self) -> int:
        return len(self.admission.unauthenticated)

    @property
    def hello_timeouts(self) -> int:
        return self.admission.hello_timeouts

    @property
    def unauthenticated_evicted(self) -> int:
        return self.admission.evicted

    @property
    def auth_failures(self) -> int:
        throttle = self.ctx.auth_throttle
        return 0 if throttle is None else throttle.failures

    @property
    def auth_throttled(self) -> int:
        throttle = self.ctx.auth_throttle
        return 0 if throttle is None else throttle.throttled

    def forget(self, conn: Connection) -> None:
        self.backlog.forget(conn)
        self.admission.forget(conn)
        if conn in self.connections:
            self.connections.discard(conn)
            if conn.session.client is not None:
                self.engine.disconnect(conn.session.client)
                log.info("client %s disconnected from %s", conn.session.client, conn.session.peer)

    async def _sweep(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = time.monotonic()
            for conn in self.admission.overdue(now):
                conn.fail(Status.TIMEOUT, "no HELLO in time", 0, NO_OPCODE)
            for conn in list(self.connections):
                if conn.partial_since is not None and now - conn.partial_since > cfg.header_timeout:
                    conn.fail(Status.TIMEOUT, "frame not completed in time", 0, NO_OPCODE)
                elif now - conn.last_rx > cfg.idle_timeout:
                    conn.fail(Status.TIMEOUT, "idle timeout", 0, NO_OPCODE)
            self.backlog.resample()
            for name in self.engine.expire_leases():
                log.info("lease of client %s ended; its pools are freed", name)
            self.engine.maintain()  # bounded: compaction, dictionary training

    async def drain(self, timeout_s: float, hurry: asyncio.Event) -> None:
        """SIGTERM: stop accepting, answer BUSY to every request read from now
        on, and close once every client has left, ``timeout_s`` has passed or
        ``hurry`` is set (a second signal).

        What was read before is answered as usual, including frames still
        waiting behind replies their peer had not read.  Closing flushes what was
        written, so a client sees whole replies and then the end of the
        stream, never a reset in the middle of a reply.
        """
        self.begin_drain()
        if self._server is not None:
            self._server.close()
        log.info("draining %d connections for up to %g s", len(self.connections), timeout_s)
        deadline = time.monotonic() + timeout_s
        while self.connections and not hurry.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        await self.close()

    def begin_drain(self) -> None:
        """Answer BUSY to every request read from now on; what each
        connection has read already is still served."""
        self.draining = True
        for conn in self.connections:
            conn.drain_owed = conn.decoder.buffered_bytes

    async def close(self) -> None:
        """Stop listening, close every connection, stop the sweeper."""
        self.spin_until = 0.0
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
