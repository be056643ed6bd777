"""One client connection: the asyncio glue around the sans-IO edge.

After asyncpg/uvloop, the ``asyncio.Protocol`` callbacks are a few lines
each: ``data_received`` feeds the bytes to the connection's
``RequestDecoder`` and ``process`` has ``tmemd._dispatch`` answer every
whole frame (synchronously: the engine is pure and fast), writing the
replies of a round with one ``writelines``, so a pipelined client costs one
syscall per burst rather than one per page.  What a frame means, and how it
is answered, lives in ``_dispatch`` and ``_handlers``; this module owns the
socket, the timeouts' timestamps and backpressure.

Backpressure: replies, not requests, are what a peer that stops reading
makes us hold (a GET of 48 bytes asks for up to 64 KiB), so a burst is
answered only while the reply backlog (``tmemd._backlog``) has room:
``WRITE_BUFFER_HIGH_BYTES`` per connection and ``MAX_REPLY_BACKLOG_BYTES``
in all, plus one frame.  Once a round's replies spend the budget, the rest
of its frames stay in the decoder and reading stops; ``resume_writing``
(the transport drained) answers them later, in order.  A connection held
back by the server-wide bound waits until its own queue is empty: it lowers
the transport's low-water mark to 0 so that the transport says when.

Draining (SIGTERM, PROTOCOL.md section 12.5): every frame read after the
drain began is answered BUSY, unserved, within the same budget; frames read
before it but still waiting (behind replies their peer had not read yet) are
served as usual (``_dispatch.answer_draining``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, cast

import msgpack

from tmem.proto import (
    RemoteProtocolError,
    RequestDecoder,
    RequestFields,
    Status,
    response_header,
)

from .._dispatch import CLOSED, DONE, answer_burst, answer_draining
from .._session import Session

if TYPE_CHECKING:
    from . import Server

__all__ = [
    "MAX_REPLY_BACKLOG_BYTES",
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


class Connection(asyncio.Protocol):
    """One client connection; all state lives in the decoder and session."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.decoder = RequestDecoder()
        #: The frame being answered, filled in place by the decoder.
        self.fields = RequestFields()
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
        self.last_rx = time.monotonic()
        self.server.received(len(data), self.last_rx)
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
            if outcome == DONE:
                if not self.decoder.pending_header:
                    self.partial_since = None
                elif self.partial_since is None:
                    self.partial_since = time.monotonic()
                return
            if outcome == CLOSED or self.write_paused:
                break
        # Whole frames wait for our peer to read, not for it to send.
        self.partial_since = None

    def _round(self, budget: int) -> int:
        """Answer frames within ``budget`` and write them: ``DONE``, ``SPENT`` or ``CLOSED``."""
        out: list[bytes] = []
        server, session = self.server, self.session
        anonymous = session.client is None
        try:
            if server.draining:
                outcome, self.drain_owed = answer_draining(
                    server.dispatch,
                    session,
                    self.decoder,
                    self.fields,
                    out,
                    budget,
                    self.drain_owed,
                )
            else:
                outcome = answer_burst(
                    server.dispatch, session, self.decoder, self.fields, out, budget
                )
        except RemoteProtocolError as exc:
            self._write(out)
            self.fail(exc.status, str(exc), exc.request_id, exc.opcode)
            return CLOSED
        if anonymous and session.client is not None:
            server.admission.authenticated(self)  # HELLO has just named the client
        self._write(out)
        if outcome == CLOSED:
            self.close()
        return outcome

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
