"""Requests as the daemon receives them, and a deterministic daemon
context, for the tests of the daemon's edge without sockets."""

from __future__ import annotations

from typing import Any

import msgpack

from tmem.proto import (
    Opcode,
    PoolSpec,
    Request,
    RequestDecoder,
    RequestFields,
    Response,
    ResponseDecoder,
    encode,
    encode_pool_flags,
)
from tmemd._session import HandlerContext
from tmemd.engine import Engine, EngineConfig

PAGE = bytes(range(256)) * 16
SERVER_ID = "ab" * 16
PERSISTENT = encode_pool_flags(PoolSpec(persistent=True))


def body(**fields: Any) -> bytes:
    packed: bytes = msgpack.packb(fields)
    return packed


def hello(name: str, token: str) -> Request:
    return Request(Opcode.HELLO, payload=body(client=name, token=token))


def control(**fields: Any) -> Request:
    return Request(Opcode.CONTROL, payload=body(**fields))


def put(index: int, page: bytes = PAGE, **fields: Any) -> Request:
    """A PUT_PAGE of ``page`` to object 7 of pool 0, but for ``fields``."""
    return Request(
        Opcode.PUT_PAGE, **{"pool_id": 0, "object_id": 7, **fields}, index=index, payload=page
    )


def get(index: int, **fields: Any) -> Request:
    """A GET_PAGE from object 7 of pool 0, but for ``fields``."""
    return Request(Opcode.GET_PAGE, **{"pool_id": 0, "object_id": 7, "index": index, **fields})


def gets(count: int) -> list[Request]:
    return [get(i % 4, request_id=i) for i in range(count)]


def fields_of(request: Request) -> RequestFields:
    """``request`` through the wire and the decoder: the fields a handler reads."""
    decoder = RequestDecoder()
    decoder.feed(encode(request))
    fields = RequestFields()
    assert decoder.next_into(fields)
    return fields


def make_ctx() -> HandlerContext:
    """A deterministic daemon context with an auth file: ``ops`` administers."""
    config = EngineConfig(
        memory_bytes=1 << 20,
        default_codec="none",
        ephemeral_pam="zbud",
        persistent_pam="zsmalloc",
        memory_reserve_bytes=4 << 20,
        max_pools_per_client=4,
    )

    def authenticate(name: str, token: str | None) -> tuple[bool, bool]:
        return token == "good", name == "ops"

    def save_state() -> dict[str, Any]:
        raise RuntimeError("a bug in the state directory")

    return HandlerContext(
        engine=Engine(config, lambda: 0.0),
        lease_s=60.0,
        max_request_payload=1 << 20,
        server_id=SERVER_ID,
        authenticate=authenticate,
        save_state=save_state,
    )


def wire(requests: list[Request]) -> bytes:
    return b"".join(encode(request) for request in requests)


def replies(data: bytes) -> list[Response]:
    decoder = ResponseDecoder()
    decoder.feed(data)
    frames = decoder.frames()
    assert decoder.buffered_bytes == 0
    return frames
