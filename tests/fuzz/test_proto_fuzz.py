"""Fuzzing the decoders (h11's rule): any bytes, in any chunking, either decode
into frames or raise RemoteProtocolError, nothing else; and they decode into
exactly what a small independent model of PROTOCOL.md says.  Valid frames
round trip through encode and decode.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.proto import (
    MAX_REQUEST_PAYLOAD_BYTES,
    MAX_RESPONSE_PAYLOAD_BYTES,
    NEED_DATA,
    OBJECT_ID_LIMIT,
    RemoteProtocolError,
    Request,
    RequestDecoder,
    Response,
    ResponseDecoder,
    Status,
    encode,
)

FUZZ = settings(max_examples=300, deadline=None)
U32 = st.integers(0, (1 << 32) - 1)
U8 = st.integers(0, 255)
#: A small configured limit makes FRAME_TOO_LARGE reachable with short payloads.
SMALL_LIMIT_BYTES = 64

REQUESTS = st.builds(
    Request,
    opcode=U8, request_id=U32, pool_id=U32, object_id=st.integers(0, OBJECT_ID_LIMIT - 1),
    index=U32, flags=U8, arg=U32, payload=st.binary(max_size=120),
)  # fmt: skip
RESPONSES = st.builds(
    Response, opcode=U8, status=U8, request_id=U32, value=U32, payload=st.binary(max_size=120)
)


@dataclass(frozen=True)
class Direction:
    """What the model needs to know of one direction's framing."""

    is_request: bool
    limit: int

    @property
    def header(self) -> int:
        return 48 if self.is_request else 16

    @property
    def magic(self) -> int:
        return 0xA7 if self.is_request else 0xA8

    def decoder(self) -> RequestDecoder | ResponseDecoder:
        kind = RequestDecoder if self.is_request else ResponseDecoder
        return kind(max_payload_bytes=self.limit)


DIRECTIONS = st.sampled_from(
    [
        Direction(True, MAX_REQUEST_PAYLOAD_BYTES),
        Direction(False, MAX_RESPONSE_PAYLOAD_BYTES),
        Direction(True, SMALL_LIMIT_BYTES),
        Direction(False, SMALL_LIMIT_BYTES),
    ]
)


def model(data: bytes, way: Direction) -> tuple[list[bytes], Status | None]:
    """The frames (as raw bytes) and the framing error PROTOCOL.md section 12.4 predicts."""
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        left = len(data) - pos
        if data[pos] != way.magic:
            return frames, Status.BAD_MAGIC
        if left >= 2 and data[pos + 1] != 1:
            return frames, Status.BAD_VERSION
        if left < way.header:
            return frames, None
        length = int.from_bytes(data[pos + way.header - 4 : pos + way.header], "little")
        if length > way.limit:
            return frames, Status.FRAME_TOO_LARGE
        if left < way.header + length:
            return frames, None
        frames.append(data[pos : pos + way.header + length])
        pos += way.header + length
    return frames, None


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def run_decoder(
    way: Direction, chunks: list[bytes]
) -> tuple[list[Request | Response], Status | None]:
    decoder = way.decoder()
    frames: list[Request | Response] = []
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            while (frame := decoder.next_frame()) is not NEED_DATA:
                assert isinstance(frame, Request | Response)
                frames.append(frame)
    except RemoteProtocolError as exc:
        # Poisoned: every later call raises the same error.
        for again in (decoder.next_frame, lambda: decoder.feed(b"x")):
            try:
                again()
            except RemoteProtocolError as repeat:
                assert repeat is exc
            else:
                raise AssertionError("decoder not poisoned after an error") from None
        return frames, exc.status
    return frames, None


@st.composite
def streams(draw: st.DrawFn, way: Direction) -> bytes:
    """Mostly well-framed streams, then damaged: the interesting inputs."""
    kind: st.SearchStrategy[Request | Response] = REQUESTS if way.is_request else RESPONSES
    frames = draw(st.lists(kind, max_size=4))
    data = bytearray(b"".join(encode(f) for f in frames))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        at = draw(st.integers(0, len(data)))
        if action == "flip" and at < len(data):
            data[at] = draw(U8)
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.binary(max_size=60))
    return bytes(data)


@FUZZ
@given(st.data())
def test_decoder_agrees_with_the_model(data: st.DataObject) -> None:
    way = data.draw(DIRECTIONS)
    stream = data.draw(st.binary(max_size=200) | streams(way))
    cuts = data.draw(st.lists(st.integers(0, 1 << 16), max_size=12))
    frames, error = run_decoder(way, chunked(stream, cuts))
    expected_frames, expected_error = model(stream, way)
    assert [encode(f) for f in frames] == expected_frames
    assert error == expected_error


@FUZZ
@given(DIRECTIONS, st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=20))
def test_any_bytes_any_chunking(way: Direction, stream: bytes, sizes: list[int]) -> None:
    # Fixed-size chunking, then byte by byte: the same outcome both ways.
    chunks, pos = [], 0
    for size in sizes:
        chunks.append(stream[pos : pos + size])
        pos += size
    chunks.append(stream[pos:])
    assert run_decoder(way, chunks) == run_decoder(way, [bytes([b]) for b in stream])


@FUZZ
@given(st.lists(REQUESTS, max_size=6), st.lists(st.integers(0, 1 << 16), max_size=10))
def test_requests_round_trip(frames: list[Request], cuts: list[int]) -> None:
    stream = b"".join(encode(f) for f in frames)
    way = Direction(True, MAX_REQUEST_PAYLOAD_BYTES)
    assert run_decoder(way, chunked(stream, cuts)) == (frames, None)


@FUZZ
@given(st.lists(RESPONSES, max_size=6), st.lists(st.integers(0, 1 << 16), max_size=10))
def test_responses_round_trip(frames: list[Response], cuts: list[int]) -> None:
    stream = b"".join(encode(f) for f in frames)
    way = Direction(False, MAX_RESPONSE_PAYLOAD_BYTES)
    assert run_decoder(way, chunked(stream, cuts)) == (frames, None)
