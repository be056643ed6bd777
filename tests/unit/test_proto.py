"""The golden vectors of proto/vectors/, replayed both ways through the codec.

Each vector file is one frame (or one malformed byte string) plus an index in
its ``# key = value`` comments (format: PROTOCOL.md section 15).  Frames are
decoded whole, byte by byte, back to back and with trailing bytes, and their
expected fields are encoded back to the identical bytes.  Malformed strings
must raise the named status exactly when the named byte arrives.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import msgpack
import pytest

from tmem.proto import (
    NEED_DATA,
    REQUEST_HEADER_BYTES,
    RESPONSE_HEADER_BYTES,
    CodecId,
    GetFlags,
    Opcode,
    PamId,
    PoolFlagsError,
    PoolSpec,
    RefuseReason,
    RemoteProtocolError,
    Request,
    RequestDecoder,
    Response,
    ResponseDecoder,
    Status,
    decode_pool_flags,
    encode,
    encode_pool_flags,
    request_header,
    response_header,
)
from tmem.proto._dump import Vector, read_vector

VECTOR_DIR = Path(__file__).resolve().parents[2] / "proto" / "vectors"
VECTORS = [
    read_vector(path.stem, path.read_text("utf-8")) for path in sorted(VECTOR_DIR.glob("*.hex"))
]
FRAMES = [v for v in VECTORS if v.meta.get("expect") == "frame"]
ERRORS = [v for v in VECTORS if v.meta.get("expect") == "error"]

REQUEST_KEYS = {"opcode", "request_id", "pool_id", "object_id", "index", "flags", "arg"}
RESPONSE_KEYS = {"opcode", "status", "request_id", "value"}
ERROR_KEYS = {"error", "error_after", "error_request_id", "error_opcode"}
OPTIONAL_KEYS = {"body", "pool_spec", "pool_flags_error", "uuid", "refuse_reason"}
#: Which enum the "(NAME)" label after an integer must match, per key.
LABEL_ENUMS: dict[str, type[Opcode] | type[Status] | type[RefuseReason]] = {
    "opcode": Opcode,
    "status": Status,
    "error": Status,
    "pool_flags_error": Status,
    "refuse_reason": RefuseReason,
}
_INT_VALUE = re.compile(r"(0x[0-9a-fA-F]+|\d+)(?:\s+\(([A-Z_]+)\))?")


def ids(vectors: list[Vector]) -> list[str]:
    return [v.name for v in vectors]


def number(vector: Vector, key: str) -> int:
    match = _INT_VALUE.fullmatch(vector.meta[key])
    assert match, f"{vector.name}: {key} = {vector.meta[key]!r} is not an integer"
    return int(match[1], 0)


def expected_payload(vector: Vector) -> bytes:
    kind, _, rest = vector.meta["payload"].partition(" ")
    if kind == "empty":
        return b""
    if kind == "hex":
        return bytes.fromhex(rest)
    assert kind == "repeat", f"{vector.name}: unknown payload form {kind!r}"
    digits, count = rest.split()
    return bytes.fromhex(digits) * int(count)


def expected_frame(vector: Vector) -> Request | Response:
    payload = expected_payload(vector)
    if vector.meta["kind"] == "request":
        fields = {key: number(vector, key) for key in REQUEST_KEYS}
        return Request(payload=payload, **fields)
    fields = {key: number(vector, key) for key in RESPONSE_KEYS}
    return Response(payload=payload, **fields)


def decoder_for(vector: Vector) -> RequestDecoder | ResponseDecoder:
    return RequestDecoder() if vector.meta["kind"] == "request" else ResponseDecoder()


def test_vectors_are_present() -> None:
    assert len(FRAMES) >= 40
    assert len(ERRORS) >= 6


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_index_is_complete(vector: Vector) -> None:
    keys = set(vector.meta)
    assert vector.title, "the first line must be a title comment"
    assert vector.meta["kind"] in {"request", "response"}
    assert vector.meta["expect"] in {"frame", "error"}
    if vector.meta["expect"] == "error":
        required = ERROR_KEYS
    elif vector.meta["kind"] == "request":
        required = REQUEST_KEYS | {"payload"}
    else:
        required = RESPONSE_KEYS | {"payload"}
    assert required <= keys, f"missing {required - keys}"
    assert keys - required - {"kind", "expect"} <= OPTIONAL_KEYS
    assert vector.name.startswith(
        {"request": ("req_", "bad_req_"), "response": ("resp_", "bad_resp_")}[vector.meta["kind"]]
    )


@pytest.mark.parametrize("vector", VECTORS, ids=ids(VECTORS))
def test_labels_name_the_values(vector: Vector) -> None:
    for key, enum_type in LABEL_ENUMS.items():
        if key not in vector.meta:
            continue
        match = _INT_VALUE.fullmatch(vector.meta[key])
        assert match
        if match[2] is not None and int(match[1], 0) in enum_type._value2member_map_:
            assert enum_type(int(match[1], 0)).name == match[2]


# --- frames, decoding -----------------------------------------------------------------------


@pytest.mark.parametrize("vector", FRAMES, ids=ids(FRAMES))
def test_decode_whole(vector: Vector) -> None:
    decoder = decoder_for(vector)
    decoder.feed(vector.data)
    assert decoder.next_frame() == expected_frame(vector)
    assert decoder.next_frame() is NEED_DATA
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize("vector", FRAMES, ids=ids(FRAMES))
def test_decode_byte_by_byte(vector: Vector) -> None:
    decoder = decoder_for(vector)
    for i in range(len(vector.data) - 1):
        decoder.feed(vector.data[i : i + 1])
        assert decoder.next_frame() is NEED_DATA
        assert decoder.buffered_bytes == i + 1
    decoder.feed(vector.data[-1:])
    assert decoder.next_frame() == expected_frame(vector)
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize("vector", FRAMES, ids=ids(FRAMES))
def test_decode_with_trailing_bytes(vector: Vector) -> None:
    # The trailing bytes are the start of the same frame: they must stay
    # buffered, then complete into a second copy.
    data = vector.data
    header = REQUEST_HEADER_BYTES if vector.meta["kind"] == "request" else RESPONSE_HEADER_BYTES
    for cut in (1, header - 1, header, len(data) - 1):
        if not 0 < cut < len(data):
            continue
        decoder = decoder_for(vector)
        decoder.feed(data + data[:cut])
        assert decoder.next_frame() == expected_frame(vector)
        assert decoder.next_frame() is NEED_DATA
        assert decoder.buffered_bytes == cut
        decoder.feed(data[cut:])
        assert decoder.frames() == [expected_frame(vector)]


@pytest.mark.parametrize("vector", FRAMES, ids=ids(FRAMES))
def test_decode_back_to_back(vector: Vector) -> None:
    decoder = decoder_for(vector)
    decoder.feed(memoryview(vector.data * 3))
    assert decoder.frames() == [expected_frame(vector)] * 3


# --- frames, encoding -----------------------------------------------------------------------


@pytest.mark.parametrize("vector", FRAMES, ids=ids(FRAMES))
def test_encode_gives_the_vector(vector: Vector) -> None:
    frame = expected_frame(vector)
    assert encode(frame) == vector.data
    if isinstance(frame, Request):
        header = request_header(
            frame.opcode, frame.request_id, frame.pool_id, frame.object_id, frame.index,
            frame.flags, frame.arg, len(frame.payload),
        )  # fmt: skip
    else:
        header = response_header(
            frame.opcode, frame.status, frame.request_id, frame.value, len(frame.payload)
        )
    assert header + bytes(frame.payload) == vector.data


# --- meaning of the payloads and fields -----------------------------------------------------

BODY_VECTORS = [v for v in FRAMES if "body" in v.meta]
SPEC_VECTORS = [v for v in FRAMES if "pool_spec" in v.meta]
FLAG_ERROR_VECTORS = [v for v in FRAMES if "pool_flags_error" in v.meta]


@pytest.mark.parametrize("vector", BODY_VECTORS, ids=ids(BODY_VECTORS))
def test_msgpack_body(vector: Vector) -> None:
    body = msgpack.unpackb(expected_payload(vector), raw=False)
    assert body == json.loads(vector.meta["body"])
    assert msgpack.packb(body) == expected_payload(vector)


@pytest.mark.parametrize("vector", SPEC_VECTORS, ids=ids(SPEC_VECTORS))
def test_pool_spec(vector: Vector) -> None:
    raw = json.loads(vector.meta["pool_spec"])
    pam = PamId[raw.get("pam", "DEFAULT")]
    spec = PoolSpec(**{**raw, "codec": CodecId[raw["codec"]], "pam": pam})
    assert decode_pool_flags(number(vector, "arg")) == spec
    assert encode_pool_flags(spec) == number(vector, "arg")


@pytest.mark.parametrize("vector", FLAG_ERROR_VECTORS, ids=ids(FLAG_ERROR_VECTORS))
def test_pool_flags_error(vector: Vector) -> None:
    with pytest.raises(PoolFlagsError) as info:
        decode_pool_flags(number(vector, "arg"))
    assert info.value.status == number(vector, "pool_flags_error")


def test_shared_pool_uuid_travels_in_object_id() -> None:
    (vector,) = [v for v in FRAMES if "uuid" in v.meta]
    object_id = number(vector, "object_id")
    assert uuid.UUID(int=object_id) == uuid.UUID(vector.meta["uuid"])
    assert object_id >> 128 == 0


def test_refused_value_is_the_reason() -> None:
    (vector,) = [v for v in FRAMES if "refuse_reason" in v.meta]
    assert number(vector, "status") == Status.REFUSED
    assert number(vector, "value") == number(vector, "refuse_reason")


# --- malformed byte strings -----------------------------------------------------------------


def check_error(vector: Vector, error: RemoteProtocolError) -> None:
    assert error.status == number(vector, "error")
    assert error.request_id == number(vector, "error_request_id")
    assert error.opcode == number(vector, "error_opcode")


@pytest.mark.parametrize("vector", ERRORS, ids=ids(ERRORS))
def test_error_whole(vector: Vector) -> None:
    decoder = decoder_for(vector)
    decoder.feed(vector.data)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_frame()
    check_error(vector, info.value)


@pytest.mark.parametrize("vector", ERRORS, ids=ids(ERRORS))
def test_error_raised_as_soon_as_its_byte_arrives(vector: Vector) -> None:
    after = number(vector, "error_after")
    assert after <= len(vector.data)
    decoder = decoder_for(vector)
    for i in range(after - 1):
        decoder.feed(vector.data[i : i + 1])
        assert decoder.next_frame() is NEED_DATA
    decoder.feed(vector.data[after - 1 : after])
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_frame()
    check_error(vector, info.value)


@pytest.mark.parametrize("vector", ERRORS, ids=ids(ERRORS))
def test_error_after_a_good_frame_and_poisoned(vector: Vector) -> None:
    good = next(v for v in FRAMES if v.meta["kind"] == vector.meta["kind"])
    decoder = decoder_for(vector)
    decoder.feed(good.data + vector.data + good.data)
    assert decoder.next_frame() == expected_frame(good)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_frame()
    check_error(vector, info.value)
    # Nothing after a bad header can be trusted: every later call fails the same way.
    for call in (decoder.next_frame, decoder.frames, lambda: decoder.feed(good.data)):
        with pytest.raises(RemoteProtocolError) as again:
            call()
        assert again.value is info.value


# --- coverage of the vector set -------------------------------------------------------------


def _requests() -> list[Request]:
    return [f for f in map(expected_frame, FRAMES) if isinstance(f, Request)]


def _responses() -> list[Response]:
    return [f for f in map(expected_frame, FRAMES) if isinstance(f, Response)]


def test_every_opcode_has_a_request_and_an_ok_response() -> None:
    assert {f.opcode for f in _requests()} >= set(Opcode)
    assert {f.opcode for f in _responses() if f.status == Status.OK} >= set(Opcode)


def test_every_status_has_a_response() -> None:
    assert {f.status for f in _responses()} >= set(Status)


def test_every_get_flag_and_pool_flag_rejection_has_a_request() -> None:
    gets = {f.flags for f in _requests() if f.opcode == Opcode.GET_PAGE}
    assert gets >= {int(flag) for flag in GetFlags}
    rejected = {number(v, "pool_flags_error") for v in FLAG_ERROR_VECTORS}
    assert rejected == {Status.BAD_FLAGS, Status.BAD_SPEC_VERSION, Status.BAD_PAGE_SIZE}


def test_every_framing_error_has_a_bad_string_both_ways() -> None:
    seen = {(v.meta["kind"], number(v, "error")) for v in ERRORS}
    decoder_errors = {Status.BAD_MAGIC, Status.BAD_VERSION, Status.FRAME_TOO_LARGE}
    assert seen >= {(kind, s) for kind in ("request", "response") for s in decoder_errors}
