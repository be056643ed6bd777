"""The two frame types of the protocol, as frozen values.

A frame is a header plus an opaque payload.  Frames are ``NamedTuple``s:
immutable like a frozen dataclass, but built in a fraction of its time
(docs/bench/micro.md), which matters at one frame per page on both ends of
the wire.  The payload is kept as whatever
bytes-like object the decoder or the caller handed in (``bytes`` or a
``memoryview``), so that a 4 KiB page crosses the codec without a copy.
Meaning (is this page length right for that pool?) is not checked here: the
frame layer checks only what the bytes alone can tell.

``RequestFields`` is the receiving side's other form of a request: the same
named fields in a plain mutable object that ``RequestDecoder.next_into``
fills in place, one frame after another.  A server answers every frame of a
read burst and keeps none of them, so one object per connection is enough,
and filling it costs a few attribute stores where building a ``Request``
costs a whole object (docs/bench/server-path.md has the figures).  Compiled
(mypyc), its attributes are typed C fields, so the fields a handler reads
cost no more than locals.
"""

from __future__ import annotations

from typing import NamedTuple

from ._constants import NO_POOL, Opcode, Status

__all__ = ["Request", "RequestFields", "Response"]

Payload = bytes | bytearray | memoryview


class Request(NamedTuple):
    """One request frame (client to server).

    ``opcode`` is kept as a plain int when it is not a known ``Opcode`` so
    that the server can answer BAD_OPCODE without the decoder losing sync.
    """

    opcode: int
    request_id: int = 0
    pool_id: int = NO_POOL
    object_id: int = 0
    # The field shadows tuple.index on purpose: "index" is the tmem name of
    # the page's position in its object, and frames are never searched.
    index: int = 0  # type: ignore[assignment]
    flags: int = 0
    arg: int = 0
    payload: Payload = b""

    def describe(self) -> str:
        """One human line for logs and ``python -m tmem.proto dump``."""
        try:
            name = Opcode(self.opcode).name
        except ValueError:
            name = f"OPCODE_{self.opcode}"
        pool = "-" if self.pool_id == NO_POOL else str(self.pool_id)
        return (
            f"req #{self.request_id} {name} pool={pool} oid={self.object_id:#x} "
            f"index={self.index} flags={self.flags:#x} arg={self.arg:#x} "
            f"payload={len(self.payload)}B"
        )


class Response(NamedTuple):
    """One response frame (server to client).

    ``value`` is the op's small result: the new pool id for NEW_POOL, the
    ``RefuseReason`` of a refused put, 0 otherwise.
    """

    opcode: int
    status: int
    request_id: int = 0
    value: int = 0
    payload: Payload = b""

    def describe(self) -> str:
        """One human line for logs and ``python -m tmem.proto dump``."""
        try:
            name = Opcode(self.opcode).name
        except ValueError:
            name = f"OPCODE_{self.opcode}"
        try:
            status = Status(self.status).name
        except ValueError:
            status = f"STATUS_{self.status}"
        return (
            f"resp #{self.request_id} {name} {status} value={self.value} "
            f"payload={len(self.payload)}B"
        )


class RequestFields:
    """One request's fields, named, overwritten by each ``next_into`` call.

    The same fields as ``Request`` (``object_id`` joined from its three
    words), for code that answers a frame and moves on; ``request()`` makes
    the frozen ``Request`` for anything that keeps it.
    """

    def __init__(self) -> None:
        self.opcode: int = 0
        self.flags: int = 0
        self.request_id: int = 0
        self.pool_id: int = NO_POOL
        self.object_id: int = 0
        self.index: int = 0
        self.arg: int = 0
        self.payload: bytes = b""

    def request(self) -> Request:
        """The fields now held, as a frozen ``Request``."""
        return Request(
            self.opcode,
            self.request_id,
            self.pool_id,
            self.object_id,
            self.index,
            self.flags,
            self.arg,
            self.payload,
        )
