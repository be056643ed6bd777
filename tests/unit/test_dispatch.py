"""The daemon's answer to a read burst (``tmemd._dispatch``) in process,
without sockets or a transport.

- Every opcode and every status path through ``answer_burst`` gives the
  bytes the handlers give for the same requests (``handle``, one request at
  a time, on a twin engine), including NOT_AUTHENTICATED, a failed HELLO
  that closes, and BUSY while draining (``answer_draining``).
- The reply budget: a round stops after the frame that spends it, and the
  frames behind it are answered, in order, by the next round.
- A framing error keeps the replies before it; latency is counted per op.

The asyncio ``Connection`` around it: ``test_edge_connection.py``.
"""

from __future__ import annotations

import msgpack
import pytest

from tmem.proto import (
    FRAMING_ERRORS,
    PAGE_SHIFT_OFFSET,
    RESPONSE_HEADER_BYTES,
    SPEC_VERSION,
    VERSION_OFFSET,
    Opcode,
    RemoteProtocolError,
    Request,
    RequestDecoder,
    RequestFields,
    Status,
    encode,
    response_header,
)
from tmemd._dispatch import CLOSED, DONE, SPENT, Dispatch, answer_burst, answer_draining
from tmemd._handlers import handle
from tmemd._latency import LatencyRecorder
from tmemd._session import HandlerContext, Session

from .frames import (
    PAGE,
    PERSISTENT,
    control,
    fields_of,
    get,
    gets,
    hello,
    make_ctx,
    put,
    replies,
    wire,
)

#: A budget no test reaches: answer every whole frame.
UNBOUNDED = 1 << 40
VERSION_BITS = SPEC_VERSION << VERSION_OFFSET

S = Status
#: Requests of one connection, and the status each must get (None: no answer).
Script = list[tuple[Request, Status | None]]
#: Connection by connection, requests and the status each must get: every
#: status but TIMEOUT and the framing ones (the decoder's:
#: test_proto_codec.py), every opcode, each check of PUT_PAGE and GET_PAGE.
WEB: Script = [
    (Request(Opcode.PING), S.OK),
    (put(0), S.NOT_AUTHENTICATED),
    (get(0), S.NOT_AUTHENTICATED),
    (Request(Opcode.FLUSH_PAGE, pool_id=0, object_id=7), S.NOT_AUTHENTICATED),
    (Request(99), S.BAD_OPCODE),
    (hello("web", "good"), S.OK),
    (hello("web", "good"), S.BAD_ARGUMENT),  # a second HELLO
    (Request(Opcode.NEW_POOL, arg=PERSISTENT), S.OK),
    (Request(Opcode.NEW_POOL, arg=VERSION_BITS | 5 << PAGE_SHIFT_OFFSET), S.BAD_PAGE_SIZE),
    (Request(Opcode.NEW_POOL, arg=2 << VERSION_OFFSET), S.BAD_SPEC_VERSION),
    (Request(Opcode.NEW_POOL, arg=VERSION_BITS | 1 << 3), S.BAD_FLAGS),
    (put(0), S.OK),
    (put(1), S.OK),
    (put(0, flags=1), S.BAD_FLAGS),
    (put(0, flags=1, arg=1), S.BAD_FLAGS),  # flags before arg (PROTOCOL.md section 13)
    (put(0, arg=1), S.BAD_ARGUMENT),
    (put(0, arg=1, pool_id=9), S.BAD_ARGUMENT),  # arg before the pool
    (Request(Opcode.PUT_PAGE, pool_id=9, object_id=7, payload=PAGE), S.BAD_POOL),
    (put(0, page=PAGE[:100]), S.BAD_LENGTH),
    (get(0), S.OK),
    (get(0, flags=1), S.OK),  # exclusive: the page goes
    (get(0), S.MISS),
    (get(1, flags=2), S.OK),
    (get(1, flags=3), S.BAD_FLAGS),
    (get(1, flags=3, arg=1, payload=b"x"), S.BAD_FLAGS),
    (get(1, arg=1), S.BAD_ARGUMENT),
    (get(1, arg=1, payload=b"x"), S.BAD_ARGUMENT),
    (get(1, payload=b"x"), S.BAD_ARGUMENT),
    (get(1, payload=b"x", pool_id=9), S.BAD_ARGUMENT),  # unused fields before the pool
    (get(1, pool_id=9), S.BAD_POOL),
    (Request(Opcode.FLUSH_PAGE, pool_id=0, object_id=7, index=1), S.OK),
    (Request(Opcode.FLUSH_OBJECT, pool_id=0, object_id=7), S.OK),
    (Request(Opcode.FLUSH_OBJECT, pool_id=0, object_id=7, index=1), S.BAD_ARGUMENT),
    (control(cmd="list_pools"), S.OK),
    (control(cmd="freeze", client="web"), S.FORBIDDEN),
    (control(cmd="no_such_command"), S.UNSUPPORTED),
    (Request(Opcode.CONTROL, payload=b"\xc1"), S.BAD_ARGUMENT),
    *[(Request(Opcode.NEW_POOL, arg=PERSISTENT), S.OK) for _ in range(3)],
    (Request(Opcode.NEW_POOL, arg=PERSISTENT), S.TOO_MANY_POOLS),
    (Request(Opcode.DESTROY_POOL, pool_id=1), S.OK),
    (Request(Opcode.DESTROY_POOL, pool_id=1), S.BAD_POOL),
]
OPS: Script = [
    (hello("ops", "good"), S.OK),
    (control(cmd="freeze", client="web"), S.OK),
    (control(cmd="save"), S.INTERNAL_ERROR),  # make_ctx's save_state has a bug
]
#: After the freeze: a refused put, which leaves its handle empty.
WEB_FROZEN: Script = [(put(1), S.REFUSED), (get(1), S.MISS)]
#: A failed HELLO closes: the PING behind it is never answered.
STRANGER: Script = [(hello("web", "bad"), S.AUTH_FAILED), (Request(Opcode.PING), None)]
SCRIPT: list[tuple[str, Script]] = [
    ("web", WEB),
    ("ops", OPS),
    ("web", WEB_FROZEN),
    ("stranger", STRANGER),
]


def by_handlers(ctx: HandlerContext, session: Session, requests: list[Request]) -> bytes:
    """What ``handle`` answers, request by request, up to a failed HELLO."""
    out = []
    for request in requests:
        status, value, payload = handle(ctx, session, fields_of(request))
        out.append(response_header(request.opcode, status, request.request_id, value, len(payload)))
        out.append(payload)
        if status == Status.AUTH_FAILED:
            break
    return b"".join(out)


class Edge:
    """One connection's sans-IO state, driven by the burst functions."""

    def __init__(self, dispatch: Dispatch, peer: str) -> None:
        self.dispatch = dispatch
        self.session = Session(peer)
        self.decoder = RequestDecoder()
        self.fields = RequestFields()

    def burst(self, data: bytes, budget: int = UNBOUNDED) -> tuple[int, bytes]:
        self.decoder.feed(data)
        out: list[bytes] = []
        outcome = answer_burst(self.dispatch, self.session, self.decoder, self.fields, out, budget)
        return outcome, b"".join(out)


def test_every_status_path_gives_the_handlers_bytes(caplog: pytest.LogCaptureFixture) -> None:
    dispatch = Dispatch(make_ctx(), LatencyRecorder())
    twin = make_ctx()
    edges: dict[str, Edge] = {}
    sessions: dict[str, Session] = {}
    for peer, script in SCRIPT:
        requests = [request for request, _ in script]
        edge = edges.setdefault(peer, Edge(dispatch, peer))
        outcome, got = edge.burst(wire(requests))
        statuses = [reply.status for reply in replies(got)]
        assert statuses == [status for _, status in script if status is not None], peer
        assert got == by_handlers(twin, sessions.setdefault(peer, Session(peer)), requests)
        assert outcome == (CLOSED if peer == "stranger" else DONE)
    reached = {status for _, script in SCRIPT for _, status in script}
    assert reached >= set(Status) - FRAMING_ERRORS - {Status.BUSY}  # BUSY: the next test
    assert edges["stranger"].decoder.buffered_bytes == len(encode(Request(Opcode.PING)))
    assert "internal error handling" in caplog.text


def test_busy_while_draining_serves_only_what_was_owed() -> None:
    dispatch = Dispatch(make_ctx(), LatencyRecorder())
    twin = make_ctx()
    edge = Edge(dispatch, "web")
    served = [hello("web", "good"), Request(Opcode.NEW_POOL, arg=PERSISTENT), put(0)]
    refused = [get(0), Request(Opcode.PING), hello("x", "y")]
    edge.decoder.feed(wire(served + refused))
    out: list[bytes] = []
    outcome, owed = answer_draining(
        dispatch, edge.session, edge.decoder, edge.fields, out, UNBOUNDED, len(wire(served))
    )
    assert (outcome, owed) == (DONE, 0)
    got = replies(b"".join(out))
    expected = replies(by_handlers(twin, Session("web"), served))
    assert got[: len(served)] == expected
    for reply, request in zip(got[len(served) :], refused, strict=True):
        assert (reply.opcode, reply.status, reply.request_id) == (
            request.opcode,
            Status.BUSY,
            request.request_id,
        )
        assert msgpack.unpackb(reply.payload) == {
            "error": "server shutting down; retry elsewhere or later"
        }


def started(dispatch: Dispatch) -> Edge:
    """A connection with one pool holding pages 0-3 of object 7."""
    edge = Edge(dispatch, "web")
    setup = [hello("web", "good"), Request(Opcode.NEW_POOL, arg=PERSISTENT)]
    outcome, _ = edge.burst(wire(setup + [put(i) for i in range(4)]))
    assert outcome == DONE
    return edge


def test_a_round_stops_after_the_frame_that_spends_the_budget() -> None:
    edge = started(Dispatch(make_ctx(), LatencyRecorder()))
    frame = RESPONSE_HEADER_BYTES + len(PAGE)
    outcome, first = edge.burst(wire(gets(10)), budget=2 * frame + 1)
    assert outcome == SPENT
    assert [r.request_id for r in replies(first)] == [0, 1, 2]  # the third crossed the line
    outcome, second = edge.burst(b"", budget=4 * frame)
    assert outcome == SPENT and [r.request_id for r in replies(second)] == [3, 4, 5, 6]
    outcome, rest = edge.burst(b"")
    assert outcome == DONE and [r.request_id for r in replies(rest)] == [7, 8, 9]
    assert all(r.payload == PAGE for r in replies(first + second + rest))


def test_a_framing_error_keeps_the_replies_before_it() -> None:
    edge = Edge(Dispatch(make_ctx(), LatencyRecorder()), "web")
    edge.decoder.feed(wire([Request(Opcode.PING, request_id=5)]) + b"GET / HTTP/1.1\r\n")
    out: list[bytes] = []
    with pytest.raises(RemoteProtocolError) as info:
        answer_burst(edge.dispatch, edge.session, edge.decoder, edge.fields, out, UNBOUNDED)
    assert info.value.status == Status.BAD_MAGIC
    assert [(r.request_id, r.status) for r in replies(b"".join(out))] == [(5, Status.OK)]


def test_latency_is_counted_per_op() -> None:
    latency = LatencyRecorder()
    edge = started(Dispatch(make_ctx(), latency))
    edge.burst(wire([*gets(3), Request(99)]))
    counts = {snapshot.op: snapshot.count for snapshot in latency.snapshot()}
    assert counts == {"hello": 1, "new_pool": 1, "put_page": 4, "get_page": 3, "unknown": 1}
