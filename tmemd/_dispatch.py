"""The answer to one read burst, without I/O: the daemon's sans-IO edge.

Why
---
After asyncpg and h11, the protocol work of a connection knows nothing of
the event loop.  The asyncio ``Connection`` (``tmemd.server._connection``)
feeds what it read to its ``RequestDecoder`` and calls ``answer_burst``;
this module turns the whole frames now buffered into reply buffers appended
to a list, and says how the round ended.  The connection writes the list
with one ``writelines`` (one syscall per burst, not per page) and keeps the
backpressure bookkeeping.  Nothing here touches a transport, a clock of the
loop or asyncio, so the loop is tested in process with plain bytes
(``tests/unit/test_dispatch.py``) and compiled with mypyc with the handlers
and the decoder it drives.

How
---
Each frame is read by name from one ``RequestFields`` per connection that
the decoder fills in place, and dispatched on its opcode straight into its
handler, PUT_PAGE and GET_PAGE first (``_handlers.answer_put`` and
``answer_get``), everything else through ``_handlers.handle``: one handler
path, with no ``Request`` object built per frame.

Bounds: the caller grants a budget of reply bytes (``tmemd._backlog``), and
answering stops after the frame that spends it (``SPENT``), leaving the
frames behind it in the decoder, in order, for the next round.  A failed
HELLO (AUTH_FAILED) ends the connection (``CLOSED``): no second guess on
it.  A framing error is the decoder's ``RemoteProtocolError``, raised to the
caller with the replies of the frames before it already in the list.

Draining (SIGTERM, PROTOCOL.md section 12.5): ``answer_draining`` serves the
frames read before the drain began (``owed`` request bytes, left by a peer
that was not reading its replies) and answers every later frame BUSY,
unserved, within the same budget.

Latency: every answered frame is timed from the end of the previous one
(decoding included) into per-op histogram counters (``tmemd._latency``);
PUT_PAGE and GET_PAGE use series held here, saving two dictionary look-ups
per frame.
"""

from __future__ import annotations

from bisect import bisect_left
from time import perf_counter
from typing import Final

import msgpack

from tmem.proto import (
    PROTOCOL_VERSION,
    REQUEST_HEADER_BYTES,
    RESPONSE_HEADER,
    RESPONSE_HEADER_BYTES,
    RESPONSE_MAGIC,
    Opcode,
    RequestDecoder,
    RequestFields,
    Status,
)

from ._handlers import answer_get, answer_put, handle
from ._latency import LATENCY_BUCKETS_S, LatencyRecorder
from ._session import HandlerContext, Session

__all__ = [
    "CLOSED",
    "DONE",
    "OP_NAMES",
    "SPENT",
    "Dispatch",
    "answer_burst",
    "answer_draining",
]

#: How a round of answering ended: no whole frame left in the decoder ...
DONE: Final = 0
#: ... the reply budget spent (whole frames may wait in the decoder) ...
SPENT: Final = 1
#: ... or the connection must close (a failed HELLO).
CLOSED: Final = 2
#: Metric label per opcode: Prometheus labels are lower-case words.
OP_NAMES: dict[int, str] = {int(op): op.name.lower() for op in Opcode}
#: The label of an opcode the protocol does not define (answered BAD_OPCODE).
_UNKNOWN_OP: Final = "unknown"
#: The body of every BUSY answer while draining (PROTOCOL.md section 12.5).
_DRAINING_BODY: Final = msgpack.packb({"error": "server shutting down; retry elsewhere or later"})
_PUT: Final = int(Opcode.PUT_PAGE)
_GET: Final = int(Opcode.GET_PAGE)
_BUSY: Final = int(Status.BUSY)
_AUTH_FAILED: Final = int(Status.AUTH_FAILED)
_REPLY_HEADER_BYTES: Final = RESPONSE_HEADER_BYTES
_FRAME_HEADER_BYTES: Final = REQUEST_HEADER_BYTES
_MAGIC: Final = RESPONSE_MAGIC
_VERSION: Final = PROTOCOL_VERSION
_BUCKETS: Final = LATENCY_BUCKETS_S
_pack_reply_header: Final = RESPONSE_HEADER.pack


class Dispatch:
    """What every connection's bursts share: the handlers' context and the
    latency counters."""

    def __init__(self, ctx: HandlerContext, latency: LatencyRecorder) -> None:
        self.ctx: HandlerContext = ctx
        self.latency: LatencyRecorder = latency
        put_counts, put_sum = latency.series(OP_NAMES[_PUT])
        get_counts, get_sum = latency.series(OP_NAMES[_GET])
        self.put_counts: list[int] = put_counts
        self.put_sum: list[float] = put_sum
        self.get_counts: list[int] = get_counts
        self.get_sum: list[float] = get_sum


def answer_burst(
    dispatch: Dispatch,
    session: Session,
    decoder: RequestDecoder,
    fields: RequestFields,
    out: list[bytes],
    budget: int,
) -> int:
    """Append the replies of the whole frames in ``decoder`` to ``out`` until
    ``budget`` reply bytes are spent: ``SPENT`` then, ``DONE`` when no whole
    frame is left, ``CLOSED`` after a failed HELLO.  Raises the decoder's
    ``RemoteProtocolError`` on a framing error."""
    ctx = dispatch.ctx
    put_counts, put_sum = dispatch.put_counts, dispatch.put_sum
    get_counts, get_sum = dispatch.get_counts, dispatch.get_sum
    t0 = perf_counter()
    while decoder.next_into(fields):
        opcode = fields.opcode
        if opcode == _PUT:
            status, value, reply = answer_put(ctx, session, fields)
            counts, sums = put_counts, put_sum
        elif opcode == _GET:
            status, value, reply = answer_get(ctx, session, fields)
            counts, sums = get_counts, get_sum
        else:
            status, value, reply = handle(ctx, session, fields)
            counts, sums = dispatch.latency.series(OP_NAMES.get(opcode, _UNKNOWN_OP))
        t1 = perf_counter()
        counts[bisect_left(_BUCKETS, t1 - t0)] += 1
        sums[0] += t1 - t0
        t0 = t1
        # _append_reply, inline: the call is a measurable share of an
        # interpreted get (docs/bench/server-path.md).
        out.append(
            _pack_reply_header(
                _MAGIC, _VERSION, opcode, status, fields.request_id, value, len(reply)
            )
        )
        if reply:
            out.append(reply)
        if status == _AUTH_FAILED:
            return CLOSED
        budget -= _REPLY_HEADER_BYTES + len(reply)
        if budget <= 0:
            return SPENT
    return DONE


def answer_draining(
    dispatch: Dispatch,
    session: Session,
    decoder: RequestDecoder,
    fields: RequestFields,
    out: list[bytes],
    budget: int,
    owed: int,
) -> tuple[int, int]:
    """``answer_burst`` while the daemon drains: the frames within the first
    ``owed`` request bytes are served, every later one is answered BUSY.
    Returns the outcome and the request bytes still owed."""
    while decoder.next_into(fields):
        if owed > 0:
            owed -= _FRAME_HEADER_BYTES + len(fields.payload)
            status, value, reply = handle(dispatch.ctx, session, fields)
        else:
            status, value, reply = _BUSY, 0, _DRAINING_BODY
        budget -= _append_reply(out, fields.opcode, status, fields.request_id, value, reply)
        if status == _AUTH_FAILED:
            return CLOSED, owed
        if budget <= 0:
            return SPENT, owed
    return DONE, owed


def _append_reply(
    out: list[bytes], opcode: int, status: int, request_id: int, value: int, reply: bytes
) -> int:
    """Append one reply frame to ``out``; return its size in bytes."""
    # Packed directly: every field is in range by construction (echoed from
    # a decoded header, or a handler's u32), so response_header()'s checks
    # would only cost time.
    out.append(_pack_reply_header(_MAGIC, _VERSION, opcode, status, request_id, value, len(reply)))
    if reply:
        out.append(reply)
    return _REPLY_HEADER_BYTES + len(reply)
