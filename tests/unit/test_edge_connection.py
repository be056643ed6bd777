"""A daemon ``Connection`` over a fake transport, in process: the asyncio
glue around ``tmemd._dispatch``.

- Backpressure: a transport that pauses and resumes its protocol at its
  water marks as asyncio's transports do, the per-connection reply budget
  and the server-wide one (``tmemd._backlog``); frames wait in the decoder
  and every reply arrives once, in order.
- Draining: what a connection had read before the drain is served, later
  frames are answered BUSY.
- Any split of a byte stream into reads gives the same replies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.proto import RESPONSE_HEADER_BYTES, Opcode, Request, Status, encode
from tmemd._backlog import ReplyBacklog
from tmemd.config import DaemonConfig
from tmemd.server import WRITE_BUFFER_HIGH_BYTES, WRITE_BUFFER_LOW_BYTES, Connection, Server

from .frames import PAGE, PERSISTENT, get, gets, hello, make_ctx, put, replies, wire
from .test_dispatch import WEB


class FakeTransport(asyncio.Transport):
    """Queues what is written until the test drains it, and pauses and
    resumes its protocol at the water marks as asyncio's transports do."""

    def __init__(self, protocol: Connection) -> None:
        super().__init__()
        self.protocol = protocol
        self.queued = bytearray()
        self.sent = bytearray()
        self.high = 64 << 10
        self.low = 16 << 10
        self.paused = False
        self.reading = True
        self.closed = False

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.queued += chunk
        self._maybe_pause()

    def write(self, data: Any) -> None:
        self.writelines([data])

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert high is not None and low is not None
        self.high, self.low = high, low
        self._maybe_pause()

    def get_write_buffer_size(self) -> int:
        return len(self.queued)

    def drain(self, count: int | None = None) -> None:
        """The peer reads ``count`` bytes (all by default)."""
        count = len(self.queued) if count is None else count
        self.sent += self.queued[:count]
        del self.queued[:count]
        if self.paused and len(self.queued) <= self.low:
            self.paused = False
            self.protocol.resume_writing()

    def _maybe_pause(self) -> None:
        if not self.paused and len(self.queued) > self.high:
            self.paused = True
            self.protocol.pause_writing()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4242) if name == "peername" else default

    def close(self) -> None:
        self.closed = True


def make_server(per_connection_bytes: int, total_bytes: int) -> Server:
    ctx = make_ctx()
    backlog = ReplyBacklog(per_connection_bytes, total_bytes)
    return Server(DaemonConfig(), ctx.engine, ctx, backlog)


def connect(server: Server) -> tuple[Connection, FakeTransport]:
    conn = Connection(server)
    transport = FakeTransport(conn)
    conn.connection_made(transport)
    return conn, transport


def ready(server: Server) -> tuple[Connection, FakeTransport]:
    """A connected client whose pool 0 holds pages 0-3 of object 7."""
    conn, transport = connect(server)
    setup = [hello("web", "good"), Request(Opcode.NEW_POOL, arg=PERSISTENT)]
    conn.data_received(wire(setup + [put(i) for i in range(4)]))
    transport.drain()
    transport.sent.clear()
    return conn, transport


def check_all_answered(data: bytes, count: int) -> None:
    got = replies(data)
    assert [r.request_id for r in got] == list(range(count))
    assert all(r.status == Status.OK and r.payload == PAGE for r in got)


def test_a_connection_stops_at_its_budget_and_resumes_in_order() -> None:
    frame = RESPONSE_HEADER_BYTES + len(PAGE)
    server = make_server(per_connection_bytes=8 * frame, total_bytes=1 << 30)
    conn, transport = ready(server)
    transport.set_write_buffer_limits(4 * frame, frame)
    count = 50
    conn.data_received(wire(gets(count)))
    # One round spent the connection's budget; writing it passed the
    # transport's high-water mark: answering and reading stopped.
    assert len(replies(bytes(transport.queued))) == 8
    assert (transport.paused, conn.write_paused, transport.reading) == (True, True, False)
    assert conn.decoder.buffered_bytes == (count - 8) * len(encode(get(0)))
    for _ in range(2 * count):  # a slow reader: one reply at a time
        transport.drain(frame)
    assert (conn.decoder.buffered_bytes, len(transport.queued), transport.reading) == (0, 0, True)
    check_all_answered(bytes(transport.sent), count)


def test_the_server_wide_budget_stalls_until_the_own_queue_is_empty() -> None:
    frame = RESPONSE_HEADER_BYTES + len(PAGE)
    request = len(encode(get(0)))
    server = make_server(per_connection_bytes=1 << 30, total_bytes=6 * frame)
    first, first_transport = ready(server)
    second, second_transport = ready(server)
    for transport in (first_transport, second_transport):
        transport.set_write_buffer_limits(1 << 30, 1 << 29)  # only the ledger holds back

    def answered(transport: FakeTransport) -> int:
        return len(replies(bytes(transport.sent + transport.queued)))

    first.data_received(wire(gets(10)))
    # The first spends the server-wide budget and waits for its own queue
    # to empty (a low-water mark of 0), reading nothing meanwhile.
    assert answered(first_transport) == 6 and first.decoder.buffered_bytes == 4 * request
    assert (first.stalled, first_transport.reading) == (True, False)
    assert (first_transport.high, first_transport.low) == (0, 0)
    # The second, with nothing queued, may still answer one frame, and one
    # more each time its own queue is empty.
    second.data_received(wire(gets(3)))
    assert (answered(second_transport), second.stalled) == (1, True)
    second_transport.drain()
    assert answered(second_transport) == 2 and second.decoder.buffered_bytes == request
    # The first's peer reads: room for its four frames (5 left in the ledger).
    first_transport.drain()
    assert answered(first_transport) == 10
    assert (first.stalled, first_transport.reading) == (False, True)
    limits = (first_transport.high, first_transport.low)
    assert limits == (WRITE_BUFFER_HIGH_BYTES, WRITE_BUFFER_LOW_BYTES)
    second_transport.drain()
    assert (answered(second_transport), second.stalled) == (3, False)
    first_transport.drain()
    second_transport.drain()
    check_all_answered(bytes(first_transport.sent), 10)
    check_all_answered(bytes(second_transport.sent), 3)


def test_draining_through_a_connection_serves_what_waited() -> None:
    frame = RESPONSE_HEADER_BYTES + len(PAGE)
    server = make_server(per_connection_bytes=2 * frame, total_bytes=1 << 30)
    conn, transport = ready(server)
    transport.set_write_buffer_limits(frame, 0)
    conn.data_received(wire(gets(6)))  # read before the drain, mostly unanswered
    assert conn.decoder.buffered_bytes > 0
    server.begin_drain()
    later = Request(Opcode.PING, request_id=99)
    conn.data_received(encode(later))
    for _ in range(10):
        transport.drain()
    got = replies(bytes(transport.sent))
    assert [(r.request_id, r.status) for r in got[:6]] == [(i, Status.OK) for i in range(6)]
    assert [(r.request_id, r.status) for r in got[6:]] == [(99, Status.BUSY)]


# --- any split of the stream gives the same replies ------------------------------------------


STREAM = wire(
    [
        *(request for request, _ in WEB[:4]),
        hello("web", "good"),
        Request(Opcode.NEW_POOL, arg=PERSISTENT),
    ]
)
STREAM += wire([put(i, request_id=i) for i in range(3)] + gets(5) + [get(9), get(1, flags=3)])


def split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted(set(cuts)):
        yield data[start:cut]
        start = cut
    yield data[start:]


def through_connection(chunks: Iterator[bytes]) -> bytes:
    server = make_server(1 << 30, 1 << 30)
    conn, transport = connect(server)
    for chunk in chunks:
        conn.data_received(chunk)
    transport.drain()
    return bytes(transport.sent)


WHOLE = through_connection(iter([STREAM]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_any_split_into_reads_gives_the_same_replies(cuts: list[int]) -> None:
    assert through_connection(split(STREAM, cuts)) == WHOLE


def test_the_whole_stream_is_answered() -> None:
    got = replies(WHOLE)
    assert len(got) == 16
    assert got[-2].status == Status.MISS and got[-1].status == Status.BAD_FLAGS
