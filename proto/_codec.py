"""Encoding and incremental decoding of frames (sans-IO).

Theory of operation
-------------------
The decoder keeps the bytes received past its read offset.  ``feed()``
takes whatever chunk the transport read; ``next_frame()`` looks at the bytes
past the offset and returns a frame when a whole one is there, or
``NEED_DATA``.  A server's ``RequestDecoder.next_into(fields)`` does the same
without building a frame: it fills a ``RequestFields`` in place and says
whether it did, so the daemon reads each request's fields by name at the cost
of a few attribute stores.  Each header field is judged as soon as its bytes arrive:
the magic on the first byte and the framing version on the second (a peer
speaking HTTP is told at once, not after a 48-byte wait), the payload
length against the limit on the last header byte, so a peer cannot make us
buffer a bogus 4 GiB payload.

The buffer is a ``bytes`` chunk as received whenever it can be, because a
page sliced out of ``bytes`` is one copy and out of a ``bytearray`` two: a
chunk that starts with nothing pending is kept as it is, and a frame that
spans two chunks joins the small pending tail with the new chunk.  Only a
tail longer than the new chunk (a large frame trickling in) is appended to
a ``bytearray`` in place, so that a slow sender costs linear, not quadratic,
copying.  Consumed bytes are not deleted one frame at a time (that would be
quadratic in a pipelined burst); the offset moves, and a ``bytearray`` is
compacted once its dead prefix passes ``COMPACT_THRESHOLD_BYTES``.

A framing error poisons the decoder: every later call raises the same
``RemoteProtocolError``, because nothing after a bad header can be trusted.

Encoding is split so that the hot path never copies a page: ``*_header()``
packs only the fixed header and the caller writes ``[header, payload]`` with
``writelines``/``sendmsg``; ``encode()`` joins both for tests and tools.
"""

from __future__ import annotations

import struct
from typing import ClassVar, Final, Generic, TypeVar

from ._constants import (
    MAX_REQUEST_PAYLOAD_BYTES,
    MAX_RESPONSE_PAYLOAD_BYTES,
    NO_OPCODE,
    OBJECT_ID_LIMIT,
    PROTOCOL_VERSION,
    REQUEST_HEADER,
    REQUEST_MAGIC,
    RESPONSE_HEADER,
    RESPONSE_MAGIC,
    Status,
)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._frames import Payload, Request, RequestFields, Response

__all__ = [
    "NEED_DATA",
    "NeedData",
    "RequestDecoder",
    "ResponseDecoder",
    "encode",
    "join_object_id",
    "pack_request_header",
    "request_header",
    "response_header",
    "split_object_id",
]

_U64: Final = (1 << 64) - 1
_REQUEST_HEADER_BYTES: Final = REQUEST_HEADER.size
_RESPONSE_HEADER_BYTES: Final = RESPONSE_HEADER.size
_unpack_request_header: Final = REQUEST_HEADER.unpack_from
_unpack_response_header: Final = RESPONSE_HEADER.unpack_from
#: Once this many consumed bytes sit at the front of the buffer, drop them.
#: 256 KiB: large enough that compaction is rare in a pipelined burst of
#: 4 KiB pages, small enough that the dead prefix costs little memory.
COMPACT_THRESHOLD_BYTES: Final = 256 << 10


class NeedData:
    """Sentinel type: the buffer holds no complete frame yet."""

    _instance: ClassVar[NeedData | None] = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


def split_object_id(object_id: int) -> tuple[int, int, int]:
    """The three u64 words of a 192-bit object id, least significant first."""
    return object_id & _U64, (object_id >> 64) & _U64, object_id >> 128


def join_object_id(lo: int, mid: int, hi: int) -> int:
    """Inverse of ``split_object_id``."""
    return lo | (mid << 64) | (hi << 128)


def request_header(
    opcode: int,
    request_id: int,
    pool_id: int,
    object_id: int,
    index: int,
    flags: int,
    arg: int,
    payload_length: int,
) -> bytes:
    """Pack a request header; raise ``LocalProtocolError`` on a bad field."""
    if not 0 <= object_id < OBJECT_ID_LIMIT:
        raise LocalProtocolError(f"object_id {object_id} is not a 192-bit unsigned integer")
    if payload_length > MAX_REQUEST_PAYLOAD_BYTES:
        raise LocalProtocolError(
            f"payload of {payload_length} bytes exceeds {MAX_REQUEST_PAYLOAD_BYTES}"
        )
    return pack_request_header(
        opcode, request_id, pool_id, object_id, index, flags, arg, payload_length
    )


def pack_request_header(
    opcode: int,
    request_id: int,
    pool_id: int,
    object_id: int,
    index: int,
    flags: int,
    arg: int,
    payload_length: int,
) -> bytes:
    """``request_header`` without its own checks, for callers that checked
    the fields already (the client's per-page path, where the checks would
    be a measurable share: docs/bench/micro.md).
    struct still refuses any field outside its width (a negative or 2**192
    object id included), so nothing malformed is ever packed."""
    try:
        return REQUEST_HEADER.pack(
            REQUEST_MAGIC,
            PROTOCOL_VERSION,
            opcode,
            flags,
            request_id,
            pool_id,
            index,
            object_id & _U64,
            (object_id >> 64) & _U64,
            object_id >> 128,
            arg,
            payload_length,
        )
    except struct.error as exc:
        raise LocalProtocolError(f"request field out of range: {exc}") from None


def response_header(
    opcode: int, status: int, request_id: int, value: int, payload_length: int
) -> bytes:
    """Pack a response header; raise ``LocalProtocolError`` on a bad field."""
    if payload_length > MAX_RESPONSE_PAYLOAD_BYTES:
        raise LocalProtocolError(
            f"payload of {payload_length} bytes exceeds {MAX_RESPONSE_PAYLOAD_BYTES}"
        )
    try:
        return RESPONSE_HEADER.pack(
            RESPONSE_MAGIC, PROTOCOL_VERSION, opcode, status, request_id, value, payload_length
        )
    except struct.error as exc:
        raise LocalProtocolError(f"response field out of range: {exc}") from None


def encode(frame: Request | Response) -> bytes:
    """Whole wire bytes of one frame (header and payload joined)."""
    # Measure the bytes, not len(payload): a memoryview with a wider item
    # format (e.g. over an array('I')) has fewer items than bytes.
    body = bytes(frame.payload)
    if isinstance(frame, Request):
        header = request_header(
            frame.opcode,
            frame.request_id,
            frame.pool_id,
            frame.object_id,
            frame.index,
            frame.flags,
            frame.arg,
            len(body),
        )
    else:
        header = response_header(
            frame.opcode, frame.status, frame.request_id, frame.value, len(body)
        )
    return header + body


FrameT = TypeVar("FrameT", Request, Response)


class _Decoder(Generic[FrameT]):
    """The buffer both directions share; each subclass reads its own header
    layout, by name, in its ``next_frame`` (and the server's ``next_into``)."""

    def __init__(self, magic: int, max_payload_bytes: int) -> None:
        #: ``bytes`` while it is one chunk as received (the fast path),
        #: ``bytearray`` once chunks had to be joined.
        self._buf: bytes | bytearray = b""
        self._pos: int = 0
        self._error: RemoteProtocolError | None = None
        self._magic: int = magic
        self._max_payload: int = max_payload_bytes

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf) - self._pos

    @property
    def pending_header(self) -> bool:
        """True when a partial frame is buffered (for slow-sender timeouts)."""
        return len(self._buf) > self._pos

    def feed(self, data: Payload) -> None:
        """Append received bytes (any chunking, including empty)."""
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        tail = len(buf) - pos
        if not tail:
            # Nothing pending: parse the chunk in place.  Slicing a page out
            # of ``bytes`` is one copy; out of a ``bytearray`` it is two, and
            # slower ones (docs/bench/micro.md).
            self._buf = data if isinstance(data, bytes) else bytes(data)
            self._pos = 0
        elif tail <= len(data):
            # A frame spans the chunk boundary (nearly every read of a
            # pipelined burst ends mid-page): join the pending tail and the
            # chunk into one new ``bytes`` so the fast path above still holds.
            # Copying the tail is bounded by the chunk, so this stays linear.
            self._buf = b"".join((memoryview(buf)[pos:], data))
            self._pos = 0
        elif isinstance(buf, bytes):
            # A large frame trickling in: append in place (amortised), not
            # copy the growing tail on every chunk.
            joined = bytearray(memoryview(buf)[pos:])
            joined += data
            self._buf, self._pos = joined, 0
        else:
            buf += data

    def next_frame(self) -> FrameT | NeedData:
        """The next whole frame, or ``NEED_DATA``; raises on a framing error."""
        raise NotImplementedError

    def frames(self) -> list[FrameT]:
        """Every whole frame now buffered (may be empty)."""
        out: list[FrameT] = []
        while True:
            frame = self.next_frame()
            if isinstance(frame, NeedData):
                return out
            out.append(frame)

    def _maybe_compact(self) -> NeedData:
        # A ``bytes`` chunk is replaced whole on the next feed; only the
        # append-in-place ``bytearray`` needs its dead prefix dropped.
        if self._pos >= COMPACT_THRESHOLD_BYTES and isinstance(self._buf, bytearray):
            self._buf = bytearray(memoryview(self._buf)[self._pos :])
            self._pos = 0
        return NEED_DATA

    def _fail(
        self, status: Status, message: str, request_id: int = 0, opcode: int = NO_OPCODE
    ) -> None:
        self._error = RemoteProtocolError(status, message, request_id, opcode=opcode)
        raise self._error

    def _check_prefix(self) -> None:
        # Magic and version are the first two bytes: judge them as soon as
        # they arrive, so that a peer speaking HTTP or RESP (a short line,
        # then silence) is told at once instead of when it times out.
        buf, pos = self._buf, self._pos
        if buf[pos] != self._magic:
            self._fail(Status.BAD_MAGIC, f"bad magic byte {buf[pos]:#04x}")
        if len(buf) - pos > 1 and buf[pos + 1] != PROTOCOL_VERSION:
            self._fail(Status.BAD_VERSION, f"unsupported protocol version {buf[pos + 1]}")

    def _check(self, magic: int, version: int, opcode: int, request_id: int, length: int) -> None:
        """Raise for the first bad framing field of a whole header."""
        if magic != self._magic:
            self._fail(Status.BAD_MAGIC, f"bad magic byte {magic:#04x}")
        if version != PROTOCOL_VERSION:
            self._fail(Status.BAD_VERSION, f"unsupported protocol version {version}")
        if length > self._max_payload:
            self._fail(
                Status.FRAME_TOO_LARGE,
                f"payload length {length} exceeds limit {self._max_payload}",
                request_id,
                opcode=opcode,
            )


class RequestDecoder(_Decoder[Request]):
    """Server side: bytes in, ``Request`` frames (or filled ``RequestFields``) out."""

    def __init__(self, max_payload_bytes: int = MAX_REQUEST_PAYLOAD_BYTES) -> None:
        super().__init__(REQUEST_MAGIC, max_payload_bytes)

    def next_frame(self) -> Request | NeedData:
        fields = RequestFields()
        return fields.request() if self.next_into(fields) else NEED_DATA

    def next_into(self, fields: RequestFields) -> bool:
        """Fill ``fields`` with the next whole request; False (``fields``
        untouched) when none is buffered yet.  Raises on a framing error."""
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        if len(buf) - pos < _REQUEST_HEADER_BYTES:
            if len(buf) > pos:
                self._check_prefix()
            self._maybe_compact()
            return False
        (magic, version, opcode, flags, request_id, pool_id, index, lo, mid, hi, arg, length) = (
            _unpack_request_header(buf, pos)
        )
        if magic != REQUEST_MAGIC or version != PROTOCOL_VERSION or length > self._max_payload:
            self._check(magic, version, opcode, request_id, length)
        start = pos + _REQUEST_HEADER_BYTES
        end = start + length
        if len(buf) < end:
            self._maybe_compact()
            return False
        # Slicing a page out of ``bytes`` is one copy, out of a
        # ``bytearray`` two (see feed()).
        if not length:
            fields.payload = b""
        elif isinstance(buf, bytes):
            fields.payload = buf[start:end]
        else:
            fields.payload = bytes(memoryview(buf)[start:end])
        self._pos = end
        fields.opcode = opcode
        fields.flags = flags
        fields.request_id = request_id
        fields.pool_id = pool_id
        fields.index = index
        fields.object_id = lo | (mid << 64) | (hi << 128)
        fields.arg = arg
        return True


class ResponseDecoder(_Decoder[Response]):
    """Client side: bytes in, ``Response`` frames out."""

    def __init__(self, max_payload_bytes: int = MAX_RESPONSE_PAYLOAD_BYTES) -> None:
        super().__init__(RESPONSE_MAGIC, max_payload_bytes)

    def next_frame(self) -> Response | NeedData:
        # RequestDecoder.next_into with the response's header layout.
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        if len(buf) - pos < _RESPONSE_HEADER_BYTES:
            if len(buf) > pos:
                self._check_prefix()
            return self._maybe_compact()
        (magic, version, opcode, status, request_id, value, length) = _unpack_response_header(
            buf, pos
        )
        if magic != RESPONSE_MAGIC or version != PROTOCOL_VERSION or length > self._max_payload:
            self._check(magic, version, opcode, request_id, length)
        start = pos + _RESPONSE_HEADER_BYTES
        end = start + length
        if len(buf) < end:
            return self._maybe_compact()
        if not length:
            payload = b""
        elif isinstance(buf, bytes):
            payload = buf[start:end]
        else:
            payload = bytes(memoryview(buf)[start:end])
        self._pos = end
        return Response(opcode, status, request_id, value, payload)
