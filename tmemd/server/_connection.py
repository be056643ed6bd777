"""One client connection: bytes in, frames answered, replies out, within bounds.

After asyncpg/uvloop, the ``asyncio.Protocol`` callbacks are a few lines
each.  ``data_received`` feeds the bytes to the connection's
``RequestDecoder`` and ``process`` answers every whole frame (synchronously:
the engine is pure and fast), writing the answers of a read burst with one
``writelines``, so a pipelined client costs one syscall per burst rather than
one per page.  PUT_PAGE and GET_PAGE are answered inline (the fields read
straight from the decoder); everything else goes through
``_handlers.handle``, and both paths answer errors alike.

Backpressure: replies, not requests, are what a peer that stops reading
makes us hold (a GET of 48 bytes asks for up to 64 KiB), so a burst is
answered only while the reply backlog (``tmemd._backlog``) has room:
``WRITE_BUFFER_HIGH_BYTES`` per connection and ``MAX_REPLY_BACKLOG_BYTES``
in all, plus one frame.  Once a burst's replies spend the budget, the rest of
its frames stay in the decoder and reading stops; ``resume_writing`` (the
transport drained) answers them later, in order.  A connection held back by
the server-wide bound waits until its own queue is empty: it lowers the
transport's low-water mark to 0 so that the transport says when.

Draining (SIGTERM, PROTOCOL.md section 12.5): every frame read after the
drain began is answered BUSY, unserved, within the same budget; frames read
before it but still waiting (behind replies their peer had not read yet) are
served as usual.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from bisect import bisect_left
from time import perf_counter
from typing import TYPE_CHECKING, cast

import msgpack

from tmem.proto import (
    PROTOCOL_VERSION,
    REQUEST_HEADER_BYTES,
    RESPONSE_HEADER,
    RESPONSE_HEADER_BYTES,
    RESPONSE_MAGIC,
    Opcode,
    RemoteProtocolError,
    RequestDecoder,
    Status,
    response_header,
)

from .._handlers import GET_MODES as _GET_MODES
from .._handlers import Session, failure, handle
from .._latency import LATENCY_BUCKETS_S
from .._status import REFUSE_REASON

if TYPE_CHECKING:
    from . import Server

__all__ = [
    "MAX_REPLY_BACKLOG_BYTES",
    "OP_NAMES",
    "WRITE_BUFFER_HIGH_BYTES",
    "WRITE_BUFFER_LOW_BYTES",
    "Connection",
]

log = logging.getLogger("tmemd.server")

#: Reply bytes one connection may have waiting for its peer (plus one
#: frame): 4 MiB is ~1000 pages of 4 KiB, deep enough for any sane pipeline.
#: Past it the daemon stops answering and reading that peer until it drains.
WRITE_BUFFER_HIGH_BYTES = 4 << 20
#: Answering resumes once the queue drains below this: a few bursts' worth,
#: so a draining peer is not woken for every packet.
WRITE_BUFFER_LOW_BYTES = 1 << 20
#: Reply bytes all connections together may have waiting (plus one frame per
#: connection, see ``_backlog``): two stalled peers' worth, so that clients
#: that stop reading cost the daemon a bounded, small share of its overhead
#: beyond ``--memory`` (deploy/README.md, "Memory").
MAX_REPLY_BACKLOG_BYTES = 8 << 20
_HEADER_BYTES = RESPONSE_HEADER_BYTES
_REQUEST_HEADER_BYTES = REQUEST_HEADER_BYTES
_BUSY = int(Status.BUSY)
#: How a round of answering ended: no whole frame left, the reply budget
#: spent (frames may wait in the decoder), or the connection closed.
_DONE, _SPENT, _CLOSED = 0, 1, 2
#: The body of every BUSY answer while draining (PROTOCOL.md section 12.5).
_DRAINING_BODY = msgpack.packb({"error": "server shutting down; retry elsewhere or later"})
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
        #: Reply bytes queued in the transport at the last sample (``ReplyBacklog``).
        self.queued = 0
        #: The transport's buffer passed its high-water mark (``pause_writing``).
        self.write_paused = False
        #: Waiting for our queue to empty: the server-wide backlog was spent.
        self.stalled = False
        #: While draining: request bytes read before the drain began and not
        #: yet answered; the frames in them are served, later ones get BUSY.
        self.drain_owed = 0

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
        self.server.admit(self)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.last_rx = now
        server = self.server
        if server.busy_poll_s:
            server.spin_until = now + server.busy_poll_s
            if not server.spinning:
                server.start_spinning()
        server.bytes_in += len(data)
        try:
            self.decoder.feed(data)
        except RemoteProtocolError as exc:
            self.fail(exc.status, str(exc), exc.request_id, exc.opcode)
            return
        if not self.write_paused:
            self.process()

    def process(self) -> None:
        """Answer the buffered frames while the reply backlog has room.

        Each round answers frames until the budget is spent, writes them,
        and goes again if the transport took the bytes at once; it stops
        when no whole frame is left, when the transport paused writing
        (``resume_writing`` comes back here) or when the server-wide backlog
        is full (``stall``: resumed once our own queue is empty).
        """
        backlog = self.server.backlog
        while not self.closed:
            budget = backlog.budget(self)
            if budget <= 0:
                self.stall()
                break
            outcome = self._round(budget)
            if outcome == _DONE:
                if not self.decoder.pending_header:
                    self.partial_since = None
                elif self.partial_since is None:
                    self.partial_since = time.monotonic()
                return
            if outcome == _CLOSED or self.write_paused:
                break
        # Whole frames wait for our peer to read, not for it to send.
        self.partial_since = None

    def _round(self, budget: int) -> int:
        """Answer frames within ``budget`` and write them: ``_DONE``, ``_SPENT`` or ``_CLOSED``."""
        out: list[bytes] = []
        answer = self._answer_draining if self.server.draining else self._answer
        try:
            outcome = answer(out, budget)
        except RemoteProtocolError as exc:
            self._write(out)
            self.fail(exc.status, str(exc), exc.request_id, exc.opcode)
            return _CLOSED
        self._write(out)
        if outcome == _CLOSED:
            self.close()
        return outcome

    def _answer(self, out: list[bytes], budget: int) -> int:
        """Append the answers of whole frames to ``out`` until ``budget`` reply
        bytes are spent: ``_SPENT`` then (frames may be left in the decoder),
        ``_DONE`` when no whole frame is left, ``_CLOSED`` after a failed HELLO.
        """
        server = self.server
        decoder, ctx, session, engine = self.decoder, server.ctx, self.session, server.engine
        next_fields = decoder.next_fields
        client = session.client
        latency = server.latency
        put_counts, put_sum = server.put_latency
        get_counts, get_sum = server.get_latency
        t0 = perf_counter()
        while (raw := next_fields()) is not None:
            fields, payload = raw
            opcode = fields[2]
            # The put/get path, inline: the fields are read here instead
            # of building a Request and going through handle() and the
            # handler (measured: -1.5 µs per op of ~7 for a get).  Any
            # case off this path (unauthenticated, arg or flags set, a
            # get's payload set, an error raised) answers exactly as
            # handle() would.
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
                and not payload
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
                if client is None and session.client is not None:
                    client = session.client  # HELLO has just named it
                    server.admission.authenticated(self)
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
                return _CLOSED  # a failed HELLO ends the connection: no second guess on it
            budget -= _HEADER_BYTES + len(payload)
            if budget <= 0:
                return _SPENT
        return _DONE

    def _answer_draining(self, out: list[bytes], budget: int) -> int:
        """``_answer`` while the daemon drains: frames read before it began
        (``drain_owed``, left by a peer that was not reading its replies) are
        served; every later frame gets BUSY, unserved."""
        decoder = self.decoder
        while (raw := decoder.next_fields()) is not None:
            fields, payload = raw
            if self.drain_owed > 0:
                self.drain_owed -= _REQUEST_HEADER_BYTES + len(payload)
                status, value, payload = handle(self.server.ctx, self.session, decoder.build(*raw))
            else:
                status, value, payload = _BUSY, 0, _DRAINING_BODY
            out.append(
                _pack_response(
                    _RESPONSE_MAGIC, _VERSION, fields[2], status, fields[4], value, len(payload)
                )
            )
            if payload:
                out.append(payload)
            if status == _AUTH_FAILED:
                return _CLOSED
            budget -= _HEADER_BYTES + len(payload)
            if budget <= 0:
                return _SPENT
        return _DONE

    def _write(self, out: list[bytes]) -> None:
        if out and self.transport is not None and not self.closed:
            self.server.bytes_out += sum(map(len, out))
            self.transport.writelines(out)
            self.server.backlog.sample(self)

    def write_buffer_size(self) -> int:
        transport = self.transport
        return 0 if transport is None or self.closed else transport.get_write_buffer_size()

    def stall(self) -> None:
        """The server-wide backlog is spent: wait until our own queue is empty.

        A low-water mark of 0 makes the transport call ``pause_writing`` now
        and ``resume_writing`` once it has handed every queued byte to the
        kernel; with an empty queue the backlog grants a frame again.
        """
        if self.transport is not None and not self.stalled:
            self.stalled = True
            self.transport.set_write_buffer_limits(0, 0)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.server.backlog.sample(self)
        if self.transport is None or self.closed:
            return
        if self.stalled:
            self.stalled = False
            self.transport.set_write_buffer_limits(WRITE_BUFFER_HIGH_BYTES, WRITE_BUFFER_LOW_BYTES)
        self.transport.resume_reading()
        self.process()

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

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.forget(self)
