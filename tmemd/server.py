"""The server edge: asyncio glue between sockets, the decoder and the engine.

Theory of operation
-------------------
One ``Connection`` (an ``asyncio.Protocol``) per TCP connection, after
asyncpg/uvloop: its callbacks are a few lines each.  ``data_received`` feeds
the bytes to the connection's ``RequestDecoder``, answers every whole frame
through ``_handlers.handle`` (synchronous, no awaits: the engine is pure and
fast), and writes the answers of the whole read burst with one
``writelines``, so a pipelined client costs one syscall per burst rather
than one per page.

Backpressure: when a peer stops reading its replies the transport's write
buffer passes ``WRITE_BUFFER_HIGH_BYTES``, asyncio calls ``pause_writing``
and we stop reading from that peer until it drains; a client can therefore
not make the daemon buffer unbounded replies.

Timeouts: one sweeper task per server (not a timer per connection) wakes
every ``SWEEP_INTERVAL_S``, closes connections idle past ``idle_timeout``
and peers that began a frame and stalled past ``header_timeout`` (slow
loris), and expires the leases of clients with no connection left.

Errors: command errors are answered and the connection lives; framing errors
(bad magic, version, oversized length) poison the decoder, so the server
sends one error frame and closes, as memcached does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from bisect import bisect_left
from time import perf_counter
from typing import Any, cast

import msgpack

from tmem.proto import (
    MAX_REQUEST_PAYLOAD_BYTES,
    NO_OPCODE,
    PROTOCOL_VERSION,
    RESPONSE_HEADER,
    RESPONSE_MAGIC,
    Opcode,
    RemoteProtocolError,
    RequestDecoder,
    Status,
    response_header,
)

from ._handlers import GET_MODES as _GET_MODES
from ._handlers import HandlerContext, Session, failure, handle
from ._latency import LATENCY_BUCKETS_S, LatencyRecorder
from ._status import REFUSE_REASON
from .config import DaemonConfig
from .engine import MAX_PAGE_BYTES, MIN_PAGE_BYTES, Engine

__all__ = ["Server"]

log = logging.getLogger("tmemd.server")

#: Pause reading from a peer once this many reply bytes wait to be sent:
#: 4 MiB is ~1000 pages, deep enough for any sane pipeline.
WRITE_BUFFER_HIGH_BYTES = 4 << 20
WRITE_BUFFER_LOW_BYTES = 1 << 20
#: How often the sweeper checks timeouts and leases.  Timeouts are therefore
#: enforced with this much slack, which is fine for values of seconds.
SWEEP_INTERVAL_S = 0.5
_pack_response = RESPONSE_HEADER.pack
_RESPONSE_MAGIC = RESPONSE_MAGIC
_VERSION = PROTOCOL_VERSION
_AUTH_FAILED = int(Status.AUTH_FAILED)
#: Metric label per opcode: Prometheus labels are lower-case words.
OP_NAMES = {int(op): op.name.lower() for op in Opcode}
_PUT = int(Opcode.PUT_PAGE)
_GET = int(Opcode.GET_PAGE)
_OK = int(Status.OK)
_MISS = int(Status.MISS)
_REFUSED = int(Status.REFUSED)
_BUCKETS = LATENCY_BUCKETS_S


def hello_limits(config: DaemonConfig, engine: Engine) -> dict[str, Any]:
    """The limits HELLO announces, so a client can check before it sends."""
    return {
        "max_pools_per_client": engine.config.max_pools_per_client,
        "min_page_size": MIN_PAGE_BYTES,
        "max_page_size": MAX_PAGE_BYTES,
        "max_request_payload": MAX_REQUEST_PAYLOAD_BYTES,
        "idle_timeout_s": float(config.idle_timeout),
        "header_timeout_s": float(config.header_timeout),
        "lease_s": float(config.lease),
    }


class Connection(asyncio.Protocol):
    """One client connection; all state lives in the decoder and session."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.decoder = RequestDecoder()
        self.transport: asyncio.Transport | None = None
        self.session = Session(peer="?")
        self.last_rx = time.monotonic()
        #: When the buffered partial frame started arriving (slow-sender check).
        self.partial_since: float | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.session.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(WRITE_BUFFER_HIGH_BYTES, WRITE_BUFFER_LOW_BYTES)
        if not self.server.admit(self):
            self.fail(Status.BUSY, "too many connections", 0, NO_OPCODE)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.last_rx = now
        server = self.server
        if server.busy_poll_s:
            server.spin_until = now + server.busy_poll_s
            if not server.spinning:
                server.start_spinning()
        decoder, ctx, session, engine = self.decoder, server.ctx, self.session, server.engine
        next_fields = decoder.next_fields
        client = session.client
        latency = server.latency
        put_counts, put_sum = server.put_latency
        get_counts, get_sum = server.get_latency
        out: list[bytes] = []
        server.bytes_in += len(data)
        t0 = perf_counter()
        try:
            decoder.feed(data)
            while (raw := next_fields()) is not None:
                fields, payload = raw
                opcode = fields[2]
                # The put/get path, inline: the fields are read here instead
                # of building a Request and going through handle() and the
                # handler (measured: -1.5 µs per op of ~7 for a get).  Any
                # case off this path (unauthenticated, arg or flags set, an
                # error raised) answers exactly as handle() would.
                if opcode == _PUT and client is not None and not fields[3] and not fields[10]:
                    try:
                        refusal = engine.put(
                            client,
                            fields[5],
                            fields[7] | fields[8] << 64 | fields[9] << 128,
                            fields[6],
                            payload,
                        )
                    except Exception as exc:  # answered as handle() would
                        status, value, payload = failure(exc, session, decoder.build(*raw))
                    else:
                        payload = b""
                        if refusal is None:
                            status, value = _OK, 0
                        else:
                            status, value = _REFUSED, REFUSE_REASON[refusal]
                    t1 = perf_counter()
                    put_counts[bisect_left(_BUCKETS, t1 - t0)] += 1
                    put_sum[0] += t1 - t0
                elif (
                    opcode == _GET
                    and client is not None
                    and not fields[10]
                    and fields[3] in _GET_MODES
                ):
                    try:
                        page = engine.get(
                            client,
                            fields[5],
                            fields[7] | fields[8] << 64 | fields[9] << 128,
                            fields[6],
                            _GET_MODES[fields[3]],
                        )
                    except Exception as exc:  # answered as handle() would
                        status, value, payload = failure(exc, session, decoder.build(*raw))
                    else:
                        status, value, payload = (_MISS, 0, b"") if page is None else (_OK, 0, page)
                    t1 = perf_counter()
                    get_counts[bisect_left(_BUCKETS, t1 - t0)] += 1
                    get_sum[0] += t1 - t0
                else:
                    status, value, payload = handle(ctx, session, decoder.build(*raw))
                    client = session.client  # HELLO may have just named it
                    t1 = perf_counter()
                    latency.observe(OP_NAMES.get(opcode, "unknown"), t1 - t0)
                t0 = t1
                # Packed directly: every field is in range by construction
                # (echoed from a decoded header, or a handler's u32), so
                # response_header()'s checks would only cost time.
                out.append(
                    _pack_response(
                        _RESPONSE_MAGIC,
                        _VERSION,
                        opcode,
                        status,
                        fields[4],
                        value,
                        len(payload),
                    )
                )
                if payload:
                    out.append(payload)
                if status == _AUTH_FAILED:
                    # A failed HELLO ends the connection: no second guess on it.
                    self._write(out)
                    self.close()
                    return
        except RemoteProtocolError as exc:
            self._write(out)
            self.fail(exc.status, str(exc), exc.request_id, exc.opcode)
            return
        self._write(out)
        self.partial_since = (self.partial_since or now) if decoder.pending_header else None

    def _write(self, out: list[bytes]) -> None:
        if out and self.transport is not None and not self.closed:
            self.server.bytes_out += sum(map(len, out))
            self.transport.writelines(out)

    def fail(self, status: Status, message: str, request_id: int, opcode: int) -> None:
        """Send one error frame and close: the stream cannot be trusted."""
        log.info("closing %s: %s (%s)", self.session.peer, message, status.name)
        payload = msgpack.packb({"error": message})
        self._write([response_header(opcode, status, request_id, 0, len(payload)), payload])
        self.close()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.forget(self)


class Server:
    """Owns the listening socket, the live connections and the sweeper."""

    def __init__(self, config: DaemonConfig, engine: Engine, ctx: HandlerContext) -> None:
        self.config = config
        self.engine = engine
        self.ctx = ctx
        self.connections: set[Connection] = set()
        self.latency = LatencyRecorder()
        #: --busy-poll: keep polling this long after the last read (0: off).
        self.busy_poll_s = config.busy_poll / 1e6
        self.spin_until = 0.0
        self.spinning = False
        #: Held by connections: put/get latency is recorded inline.
        self.put_latency = self.latency.series(OP_NAMES[_PUT])
        self.get_latency = self.latency.series(OP_NAMES[_GET])
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

    def start_spinning(self) -> None:
        """Busy-poll until ``spin_until`` (``--busy-poll``).

        A callback that re-queues itself keeps uvloop's poll timeout at
        zero, so the loop spins through epoll instead of sleeping in it, and
        a request arriving meanwhile is read at once rather than after the
        scheduler wakes the daemon: on the 2-vCPU reference VM a wake-up
        costs ~30 µs of a ~60 µs depth-1 op (perf: finish_task_switch and
        irqrestore), and ``--busy-poll 200`` took depth-1 gets from 7.0k/s
        to 11.9k/s (tmemd-bench --quick --depths 1).  The price is a core
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

    def admit(self, conn: Connection) -> bool:
        if len(self.connections) >= self.config.max_connections:
            self.connections_refused += 1
            return False
        self.connections_total += 1
        self.connections.add(conn)
        return True

    def forget(self, conn: Connection) -> None:
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
            for conn in list(self.connections):
                if conn.partial_since is not None and now - conn.partial_since > cfg.header_timeout:
                    conn.fail(Status.TIMEOUT, "frame not completed in time", 0, NO_OPCODE)
                elif now - conn.last_rx > cfg.idle_timeout:
                    conn.fail(Status.TIMEOUT, "idle timeout", 0, NO_OPCODE)
            for name in self.engine.expire_leases():
                log.info("lease of client %s ended; its pools are freed", name)
            self.engine.maintain()  # bounded: compaction, dictionary training

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
