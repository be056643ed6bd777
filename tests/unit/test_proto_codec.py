"""The codec's rules beyond the vectors: pool flags, local errors, limits, poisoning."""

from __future__ import annotations

import itertools
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.proto import (
    INDEX_LIMIT,
    MAX_PAGE_SHIFT,
    MAX_REQUEST_PAYLOAD_BYTES,
    MAX_RESPONSE_PAYLOAD_BYTES,
    NEED_DATA,
    NO_OPCODE,
    NO_POOL,
    OBJECT_ID_LIMIT,
    POOL_FLAGS_DEFINED,
    CodecId,
    LocalProtocolError,
    NeedData,
    Opcode,
    PoolFlagsError,
    PoolSpec,
    ProtocolError,
    RemoteProtocolError,
    Request,
    RequestDecoder,
    Response,
    ResponseDecoder,
    Status,
    decode_pool_flags,
    encode,
    encode_pool_flags,
    join_object_id,
    page_size_from_flags,
    request_header,
    response_header,
    split_object_id,
)
from tmem.proto._codec import COMPACT_THRESHOLD_BYTES

PAGE_SIZES = [4096 << shift for shift in range(MAX_PAGE_SHIFT + 1)]
VALID_SPECS = [
    PoolSpec(persistent=p, shared=s, precompressed=c, page_size=size, codec=codec)
    for p, s, c, size, codec in itertools.product(
        (False, True), (False, True), (False, True), PAGE_SIZES, CodecId
    )
    if not (p and s)
]

# --- pool flags -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", VALID_SPECS)
def test_pool_flags_round_trip(spec: PoolSpec) -> None:
    word = encode_pool_flags(spec)
    assert 0 <= word < 1 << 32
    assert word & ~POOL_FLAGS_DEFINED == 0
    assert word >> 24 == 1
    assert page_size_from_flags(word) == spec.page_size
    assert decode_pool_flags(word) == spec


@pytest.mark.parametrize(
    ("word", "status"),
    [
        (0x01000001 | 1 << 3, Status.BAD_FLAGS),  # bit 3 reserved
        (0x01000001 | 1 << 16, Status.BAD_FLAGS),  # bits 12-15 are the PAM field
        (0x01000001 | 1 << 23, Status.BAD_FLAGS),
        (0x01000003, Status.BAD_FLAGS),  # persistent + shared
        (0x01000500, Status.BAD_FLAGS),  # codec 5
        (0x01000F00, Status.BAD_FLAGS),  # codec 15
        (0x00000000, Status.BAD_SPEC_VERSION),
        (0x02000000, Status.BAD_SPEC_VERSION),
        (0xFF000000, Status.BAD_SPEC_VERSION),
        (0x01000050, Status.BAD_PAGE_SIZE),  # shift 5
        (0x010000F0, Status.BAD_PAGE_SIZE),
        # Order: reserved bits beat the version, the version beats the page size,
        # the page size beats the codec, the codec beats persistent+shared.
        (0x02010000, Status.BAD_FLAGS),
        (0x02000050, Status.BAD_SPEC_VERSION),
        (0x01000950, Status.BAD_PAGE_SIZE),
        (0x01000903, Status.BAD_FLAGS),
    ],
)
def test_pool_flags_rejections(word: int, status: Status) -> None:
    with pytest.raises(PoolFlagsError) as info:
        decode_pool_flags(word)
    assert info.value.status == status


@settings(max_examples=500, deadline=None)
@given(st.integers(0, (1 << 32) - 1) | st.sampled_from([encode_pool_flags(s) for s in VALID_SPECS]))
def test_any_pool_flags_word_decodes_or_names_a_status(word: int) -> None:
    try:
        spec = decode_pool_flags(word)
    except PoolFlagsError as exc:
        assert exc.status in {Status.BAD_FLAGS, Status.BAD_SPEC_VERSION, Status.BAD_PAGE_SIZE}
    else:
        assert encode_pool_flags(spec) == word


@pytest.mark.parametrize("size", [0, -4096, 1, 2048, 4095, 4097, 6144, 12288, 131072, 1 << 20])
def test_encode_pool_flags_rejects_page_sizes(size: int) -> None:
    with pytest.raises(LocalProtocolError):
        encode_pool_flags(PoolSpec(page_size=size))


# --- local errors: fields that do not fit ---------------------------------------------------

BAD_REQUESTS: list[dict[str, Any]] = [
    {"opcode": 256},
    {"opcode": -1},
    {"flags": 256},
    {"request_id": 1 << 32},
    {"request_id": -1},
    {"pool_id": 1 << 32},
    {"index": INDEX_LIMIT},
    {"object_id": OBJECT_ID_LIMIT},
    {"object_id": -1},
    {"arg": 1 << 32},
    {"payload": bytes(MAX_REQUEST_PAYLOAD_BYTES + 1)},
]


@pytest.mark.parametrize("fields", BAD_REQUESTS, ids=[next(iter(f)) for f in BAD_REQUESTS])
def test_request_field_out_of_range(fields: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError) as info:
        encode(Request(**{"opcode": Opcode.PING, **fields}))
    assert isinstance(info.value, ValueError)
    assert not isinstance(info.value, RemoteProtocolError)


@pytest.mark.parametrize(
    "fields",
    [{"opcode": 256}, {"status": 256}, {"status": -1}, {"request_id": 1 << 32}, {"value": 1 << 32}],
)
def test_response_field_out_of_range(fields: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        encode(Response(**{"opcode": Opcode.PING, "status": Status.OK, **fields}))


def test_header_functions_check_the_payload_limit() -> None:
    with pytest.raises(LocalProtocolError):
        request_header(Opcode.PUT_PAGE, 1, 0, 0, 0, 0, 0, MAX_REQUEST_PAYLOAD_BYTES + 1)
    with pytest.raises(LocalProtocolError):
        response_header(Opcode.GET_PAGE, Status.OK, 1, 0, MAX_RESPONSE_PAYLOAD_BYTES + 1)
    assert len(response_header(Opcode.GET_PAGE, 0, 1, 0, MAX_RESPONSE_PAYLOAD_BYTES)) == 16


def test_largest_fields_and_payload_round_trip() -> None:
    frame = Request(
        opcode=255, request_id=(1 << 32) - 1, pool_id=NO_POOL, object_id=OBJECT_ID_LIMIT - 1,
        index=INDEX_LIMIT - 1, flags=255, arg=(1 << 32) - 1,
        payload=bytes(MAX_REQUEST_PAYLOAD_BYTES),
    )  # fmt: skip
    decoder = RequestDecoder()
    decoder.feed(encode(frame))
    assert decoder.next_frame() == frame


def test_encode_counts_bytes_of_a_wide_memoryview() -> None:
    words = array("I", [1, 2, 3])
    data = encode(Request(Opcode.PUT_PAGE, pool_id=0, payload=memoryview(words)))
    decoder = RequestDecoder()
    decoder.feed(data)
    frame = decoder.next_frame()
    assert isinstance(frame, Request)
    assert frame.payload == words.tobytes()
    assert decoder.buffered_bytes == 0


def test_object_id_split_and_join() -> None:
    oid = 0x0F1E2D3C4B5A6978_8796A5B4C3D2E1F0_0123456789ABCDEF
    assert split_object_id(oid) == (0x0123456789ABCDEF, 0x8796A5B4C3D2E1F0, 0x0F1E2D3C4B5A6978)
    for value in (0, 1, 1 << 64, 1 << 128, OBJECT_ID_LIMIT - 1, oid):
        assert join_object_id(*split_object_id(value)) == value


# --- remote errors: raised early, then the decoder stays poisoned ---------------------------


def test_oversized_length_raises_before_any_payload() -> None:
    decoder = RequestDecoder()
    decoder.feed(request_header(Opcode.PUT_PAGE, 9, 0, 0, 0, 0, 0, 0)[:44])
    assert decoder.next_frame() is NEED_DATA
    decoder.feed((MAX_REQUEST_PAYLOAD_BYTES + 1).to_bytes(4, "little"))
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_frame()
    assert (info.value.status, info.value.request_id, info.value.opcode) == (
        Status.FRAME_TOO_LARGE, 9, Opcode.PUT_PAGE,
    )  # fmt: skip


def test_payload_of_exactly_the_limit_is_awaited() -> None:
    decoder = ResponseDecoder()
    decoder.feed(response_header(Opcode.GET_PAGE, Status.OK, 1, 0, MAX_RESPONSE_PAYLOAD_BYTES))
    assert decoder.next_frame() is NEED_DATA


def test_a_smaller_configured_limit_applies() -> None:
    decoder = RequestDecoder(max_payload_bytes=4096)
    decoder.feed(request_header(Opcode.PUT_PAGE, 3, 0, 0, 0, 0, 0, 4097))
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_frame()
    assert info.value.status == Status.FRAME_TOO_LARGE


@pytest.mark.parametrize(
    ("decoder_type", "first", "status"),
    [
        (RequestDecoder, b"G", Status.BAD_MAGIC),
        (RequestDecoder, b"\xa8", Status.BAD_MAGIC),
        (RequestDecoder, b"\xa7\x00", Status.BAD_VERSION),
        (ResponseDecoder, b"\xa7", Status.BAD_MAGIC),
        (ResponseDecoder, b"\xa8\x02", Status.BAD_VERSION),
    ],
)
def test_bad_magic_and_version_raise_on_their_byte(
    decoder_type: type[RequestDecoder] | type[ResponseDecoder], first: bytes, status: Status
) -> None:
    decoder = decoder_type()
    decoder.feed(first)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_frame()
    assert (info.value.status, info.value.request_id, info.value.opcode) == (status, 0, NO_OPCODE)
    assert isinstance(info.value, ProtocolError)
    with pytest.raises(RemoteProtocolError):
        decoder.feed(b"")
    with pytest.raises(RemoteProtocolError):
        decoder.next_frame()


def test_partial_good_header_waits() -> None:
    decoder = RequestDecoder()
    for byte in encode(Request(Opcode.PING, 1))[:-1]:
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is NEED_DATA
        assert decoder.pending_header


def test_remote_error_defaults() -> None:
    error = RemoteProtocolError(Status.TIMEOUT, "slow")
    assert (error.status, error.request_id, error.opcode, str(error)) == (
        Status.TIMEOUT, 0, NO_OPCODE, "slow",
    )  # fmt: skip


# --- buffer handling ------------------------------------------------------------------------


def test_long_pipelined_burst_with_compaction() -> None:
    # Enough frames to pass the compaction threshold several times, fed in
    # odd-sized chunks so that frames straddle every chunk boundary.
    frames = [
        Request(Opcode.PUT_PAGE, i, pool_id=1, index=i, payload=bytes([i % 256]) * 4096)
        for i in range(3 * COMPACT_THRESHOLD_BYTES // 4096)
    ]
    stream = b"".join(encode(f) for f in frames)
    decoder = RequestDecoder()
    out: list[Request] = []
    for start in range(0, len(stream), 10_007):
        decoder.feed(stream[start : start + 10_007])
        out.extend(decoder.frames())
    assert out == frames
    assert decoder.buffered_bytes == 0
    assert not decoder.pending_header


def test_feed_accepts_every_bytes_like_type() -> None:
    data = encode(Response(Opcode.PING, Status.OK, 5))
    for chunk in (data, bytearray(data), memoryview(data)):
        decoder = ResponseDecoder()
        decoder.feed(b"")
        decoder.feed(chunk)
        assert decoder.frames() == [Response(Opcode.PING, Status.OK, 5)]


def test_need_data_is_a_singleton() -> None:
    assert NeedData() is NEED_DATA
    assert repr(NEED_DATA) == "NEED_DATA"


def test_describe_names_known_and_unknown_values() -> None:
    assert "PUT_PAGE" in Request(Opcode.PUT_PAGE, 1, pool_id=2).describe()
    assert "OPCODE_99" in Request(99).describe()
    line = Response(Opcode.GET_PAGE, Status.MISS, 4).describe()
    assert "GET_PAGE" in line and "MISS" in line and "#4" in line
    assert "STATUS_200" in Response(Opcode.PING, 200).describe()
