"""Captured traffic for humans: the engine of ``python -m tmem.proto dump``.

Theory of operation
-------------------
A capture is a byte string that may hold frames of both directions, for
example both halves of a TCP stream pasted one after the other.  Each frame
says which way it goes in its first byte (request magic 0xA7, response
magic 0xA8), so ``iter_frames`` walks the capture one frame at a time, picks
the decoder of that direction and feeds it exactly one frame.  The dump uses
the same decoders as the server and the client, never a second parser: what
it accepts or rejects is what they accept or reject.

A frame that breaks the framing (bad magic, bad version, a length over the
limit, or bytes that end mid-frame) stops the walk with ``DumpError``, which
carries the byte offset of the frame that broke.

Bodies: HELLO and CONTROL payloads and the payloads of error responses are
msgpack maps.  ``tmem.proto`` depends on the standard library only, so
msgpack is imported lazily, and the body is shown as hex when it is absent
or the bytes do not decode.  A HELLO token is never printed.

Hex text (``--hex`` and the golden vectors in ``vectors/``): ``#`` starts a
comment that runs to the end of the line; the rest of each line is hex
digits, optionally whitespace-separated by byte.  A vector file's full-line
comments of the form ``# key = value`` are its metadata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from ._codec import NeedData, RequestDecoder, ResponseDecoder
from ._constants import (
    REQUEST_HEADER,
    REQUEST_MAGIC,
    RESPONSE_HEADER,
    RESPONSE_MAGIC,
    Opcode,
    Status,
)
from ._errors import RemoteProtocolError
from ._frames import Request, Response
from ._pool_flags import PoolFlagsError, decode_pool_flags

__all__ = [
    "DumpError",
    "Vector",
    "describe_frame",
    "dump_lines",
    "iter_frames",
    "parse_hex",
    "read_vector",
    "vector_files",
]

#: Statuses from here up are errors whose payload is a msgpack {"error": ...}
#: (0-15 are outcomes: OK, MISS, REFUSED carry pages or nothing).
FIRST_ERROR_STATUS = Status.BAD_OPCODE
#: Opcodes whose payload (both directions) is a msgpack map.
MSGPACK_OPCODES = frozenset({Opcode.HELLO, Opcode.CONTROL})
#: Longest body shown as hex when it cannot be decoded; a dump line should
#: stay one screen line or two, not a 4 KiB wall.
MAX_HEX_BODY_BYTES = 64

_META_LINE = re.compile(r"#\s*([a-z_]+)\s*=\s*(.*?)\s*$")


class DumpError(ValueError):
    """A capture or hex text that cannot be decoded, with where it broke.

    ``offset`` is the byte offset of the broken frame in the capture (or the
    line number in hex text, with ``offset`` then -1); ``status`` is the wire
    status the server would have answered with, or None (truncation, hex).
    """

    def __init__(self, message: str, offset: int = -1, status: Status | None = None) -> None:
        super().__init__(message)
        self.offset = offset
        self.status = status


def parse_hex(text: str) -> bytes:
    """The bytes of hex text: ``#`` comments dropped, whitespace ignored."""
    out = bytearray()
    for number, line in enumerate(text.splitlines(), start=1):
        digits = line.split("#", 1)[0]
        try:
            out += bytes.fromhex(digits)
        except ValueError:
            raise DumpError(f"line {number}: not hex bytes: {digits.strip()!r}") from None
    return bytes(out)


def iter_frames(data: bytes) -> Iterator[tuple[int, Request | Response]]:
    """Yield ``(offset, frame)`` for each frame; raise ``DumpError`` at a bad one."""
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        frame = _frame_at(view, offset)
        yield offset, frame
        offset += _header_size(frame) + len(frame.payload)


def _header_size(frame: Request | Response) -> int:
    return REQUEST_HEADER.size if isinstance(frame, Request) else RESPONSE_HEADER.size


def _frame_at(view: memoryview, offset: int) -> Request | Response:
    decoder: RequestDecoder | ResponseDecoder
    if view[offset] == RESPONSE_MAGIC:
        decoder, header = ResponseDecoder(), RESPONSE_HEADER
    else:
        # A foreign first byte goes to the request decoder, which names it BAD_MAGIC.
        decoder, header = RequestDecoder(), REQUEST_HEADER
    left = len(view) - offset
    try:
        decoder.feed(view[offset : offset + header.size])
        frame = decoder.next_frame()
        if isinstance(frame, NeedData):
            if left < header.size:
                raise DumpError(
                    f"offset {offset}: truncated header: {left} of {header.size} bytes", offset
                )
            length = header.unpack_from(view, offset)[-1]
            body = view[offset + header.size : offset + header.size + length]
            decoder.feed(body)
            frame = decoder.next_frame()
            if isinstance(frame, NeedData):
                raise DumpError(
                    f"offset {offset}: truncated payload: {len(body)} of {length} bytes", offset
                )
    except RemoteProtocolError as exc:
        hint = ""
        if exc.status is Status.BAD_MAGIC:
            hint = f" (request magic is {REQUEST_MAGIC:#04x}, response {RESPONSE_MAGIC:#04x})"
        raise DumpError(
            f"offset {offset}: {exc.status.name}: {exc}{hint}", offset, exc.status
        ) from None
    return frame


def describe_frame(frame: Request | Response) -> str:
    """``frame.describe()`` plus its msgpack body when it has one."""
    line = frame.describe()
    if isinstance(frame, Request) and frame.opcode == Opcode.NEW_POOL:
        line += " " + _pool_text(frame.arg)
    has_body = frame.opcode in MSGPACK_OPCODES or (
        isinstance(frame, Response) and frame.status >= FIRST_ERROR_STATUS
    )
    if has_body and len(frame.payload):
        line += " body=" + _body_text(bytes(frame.payload))
    return line


def _pool_text(arg: int) -> str:
    try:
        spec = decode_pool_flags(arg)
    except PoolFlagsError as exc:
        return f"pool_flags={exc.status.name}({exc})"
    kind = "persistent" if spec.persistent else "ephemeral"
    extras = "".join(
        f",{name}"
        for name, on in (("shared", spec.shared), ("precompressed", spec.precompressed))
        if on
    )
    return f"spec={kind}{extras},page_size={spec.page_size},codec={spec.codec.name}"


def _body_text(payload: bytes) -> str:
    try:
        import msgpack
    except ImportError:  # tmem.proto itself needs only the standard library
        return _hex_preview(payload)
    try:
        body = msgpack.unpackb(payload, raw=False)
    except Exception:  # any malformed body: show bytes, never fail the dump
        return _hex_preview(payload)
    if isinstance(body, dict) and "token" in body:
        body = {**body, "token": "<redacted>"}
    return json.dumps(body, ensure_ascii=False, default=repr)


def _hex_preview(payload: bytes) -> str:
    text = payload[:MAX_HEX_BODY_BYTES].hex(" ")
    return f"hex:{text}" + (" ..." if len(payload) > MAX_HEX_BODY_BYTES else "")


def dump_lines(data: bytes) -> Iterator[str]:
    """One line per frame, ``offset  description``; raises ``DumpError``."""
    for offset, frame in iter_frames(data):
        yield f"{offset:>8}  {describe_frame(frame)}"


@dataclass(frozen=True, slots=True)
class Vector:
    """One golden vector file: its first comment line, metadata and bytes."""

    name: str
    title: str
    meta: Mapping[str, str]
    data: bytes


def read_vector(name: str, text: str) -> Vector:
    """Parse a vector file's text (see the module docstring for the format)."""
    lines = text.splitlines()
    title = lines[0].lstrip("# ").strip() if lines else ""
    meta: dict[str, str] = {}
    for line in lines:
        match = _META_LINE.fullmatch(line)
        if match:
            if match[1] in meta:
                raise DumpError(f"vector {name}: key {match[1]!r} given twice")
            meta[match[1]] = match[2]
    return Vector(name, title, meta, parse_hex(text))


def vector_files() -> list[Traversable]:
    """The golden vector files shipped in the package, sorted by name."""
    folder = resources.files(__package__ or "tmem.proto") / "vectors"
    return sorted((f for f in folder.iterdir() if f.name.endswith(".hex")), key=lambda f: f.name)
