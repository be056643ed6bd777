"""Bad input against the real daemon: each case gets its own status, the
daemon keeps serving, and no other client's pages are disturbed or leaked."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import msgpack
import pytest

from tmem.client import Client, ServerBusy
from tmem.proto import (
    MAX_REQUEST_PAYLOAD_BYTES,
    NO_POOL,
    POOL_FLAGS_DEFINED,
    PROTOCOL_VERSION,
    REQUEST_HEADER,
    REQUEST_MAGIC,
    SPEC_VERSION,
    VERSION_OFFSET,
    GetFlags,
    Opcode,
    PoolFlags,
    PoolSpec,
    Status,
    encode_pool_flags,
)

from ..conftest import Daemon
from .rawwire import RawConn, error_of

PAGE = bytes(range(256)) * 16


@pytest.fixture
def conn(daemon: Daemon) -> Iterator[RawConn]:
    # Closed before the daemon is stopped: SIGTERM waits (--drain-timeout)
    # for connected clients to leave.
    with RawConn((daemon.host, daemon.port)) as c:
        assert c.hello("alice").status == Status.OK
        yield c


def test_ping_before_hello_and_ops_need_hello(daemon: Daemon) -> None:
    with RawConn((daemon.host, daemon.port)) as c:
        assert c.call(Opcode.PING).status == Status.OK
        resp = c.call(Opcode.NEW_POOL, arg=encode_pool_flags(PoolSpec()))
        assert resp.status == Status.NOT_AUTHENTICATED
        resp = c.call(Opcode.GET_PAGE, pool_id=0)
        assert resp.status == Status.NOT_AUTHENTICATED
        assert c.hello("bob").status == Status.OK
        assert c.hello("bob").status == Status.BAD_ARGUMENT  # second HELLO


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"client": ""}),
        msgpack.packb({"client": "a b"}),
        msgpack.packb({"client": 7}),
        msgpack.packb({"client": "x" * 65}),
    ],
)
def test_bad_hello_bodies(daemon: Daemon, body: bytes) -> None:
    with RawConn((daemon.host, daemon.port)) as c:
        resp = c.call(Opcode.HELLO, payload=body)
        assert resp.status == Status.BAD_ARGUMENT, error_of(resp)
        assert c.call(Opcode.PING).status == Status.OK


def test_unknown_opcode_keeps_stream_in_sync(conn: RawConn) -> None:
    resp = conn.call(99, payload=b"junk" * 100)
    assert resp.status == Status.BAD_OPCODE
    assert b"opcode" in msgpack.unpackb(resp.payload)["error"].encode()
    assert conn.call(Opcode.PING).status == Status.OK


def test_bad_pool_ids(conn: RawConn) -> None:
    for pool_id in (0, 1, 63, 64, 1000, NO_POOL):
        for op in (Opcode.GET_PAGE, Opcode.FLUSH_PAGE, Opcode.FLUSH_OBJECT, Opcode.DESTROY_POOL):
            assert conn.call(op, pool_id=pool_id).status == Status.BAD_POOL
        resp = conn.call(Opcode.PUT_PAGE, pool_id=pool_id, payload=PAGE)
        assert resp.status == Status.BAD_POOL


@pytest.mark.parametrize("length", [0, 1, 4095, 4097, 8192])
def test_wrong_page_length(conn: RawConn, length: int) -> None:
    pool = conn.new_pool(persistent=True)
    resp = conn.call(Opcode.PUT_PAGE, pool_id=pool, object_id=1, index=0, payload=b"x" * length)
    assert resp.status == Status.BAD_LENGTH, error_of(resp)
    assert conn.call(Opcode.GET_PAGE, pool_id=pool, object_id=1).status == Status.MISS


def test_reserved_bits(conn: RawConn) -> None:
    version = SPEC_VERSION << VERSION_OFFSET
    reserved = ~POOL_FLAGS_DEFINED & 0xFFFFFFFF
    bit = reserved & -reserved
    assert conn.call(Opcode.NEW_POOL, arg=version | bit).status == Status.BAD_FLAGS
    assert conn.call(Opcode.NEW_POOL, arg=PoolFlags.PERSIST).status == Status.BAD_SPEC_VERSION
    assert conn.call(Opcode.NEW_POOL, arg=version | (5 << 4)).status == Status.BAD_PAGE_SIZE
    both = version | PoolFlags.PERSIST | PoolFlags.SHARED
    assert conn.call(Opcode.NEW_POOL, arg=both, object_id=5).status == Status.BAD_FLAGS
    pool = conn.new_pool()
    assert (
        conn.call(Opcode.PUT_PAGE, pool_id=pool, flags=1, payload=PAGE).status == Status.BAD_FLAGS
    )
    assert conn.call(Opcode.PUT_PAGE, pool_id=pool, arg=1, payload=PAGE).status == (
        Status.BAD_ARGUMENT
    )
    assert conn.call(Opcode.GET_PAGE, pool_id=pool, flags=4).status == Status.BAD_FLAGS
    both_get = GetFlags.EXCLUSIVE | GetFlags.KEEP
    assert conn.call(Opcode.GET_PAGE, pool_id=pool, flags=both_get).status == Status.BAD_FLAGS


#: (opcode, field, value) for every field an opcode does not use (PROTOCOL.md
#: section 2): each is BAD_ARGUMENT, checked before the pool (section 13).
UNUSED_FIELDS = [
    (Opcode.HELLO, "pool_id", 0),
    (Opcode.HELLO, "object_id", 1),
    (Opcode.HELLO, "index", 1),
    (Opcode.PING, "pool_id", 0),
    (Opcode.PING, "object_id", 1 << 191),
    (Opcode.PING, "index", 1),
    (Opcode.PING, "payload", b"x"),
    (Opcode.CONTROL, "pool_id", 0),
    (Opcode.CONTROL, "object_id", 1),
    (Opcode.CONTROL, "index", 1),
    (Opcode.GET_PAGE, "payload", PAGE),
    (Opcode.FLUSH_PAGE, "payload", b"x"),
    (Opcode.FLUSH_OBJECT, "index", 3),
    (Opcode.FLUSH_OBJECT, "payload", b"x"),
    (Opcode.DESTROY_POOL, "object_id", 1),
    (Opcode.DESTROY_POOL, "index", 1),
    (Opcode.DESTROY_POOL, "payload", b"x"),
]
#: A valid request of each opcode, but for the pool id (added per test).
VALID_FIELDS: dict[Opcode, dict[str, object]] = {
    Opcode.HELLO: {"payload": msgpack.packb({"client": "alice"})},
    Opcode.PING: {},
    Opcode.CONTROL: {"payload": msgpack.packb({"cmd": "list_pools"})},
    Opcode.GET_PAGE: {"object_id": 1, "index": 3},
    Opcode.FLUSH_PAGE: {"object_id": 1, "index": 3},
    Opcode.FLUSH_OBJECT: {"object_id": 1},
    Opcode.DESTROY_POOL: {},
}
_POOL_OPS = (Opcode.GET_PAGE, Opcode.FLUSH_PAGE, Opcode.FLUSH_OBJECT, Opcode.DESTROY_POOL)


@pytest.mark.parametrize(
    ("opcode", "field", "value"), UNUSED_FIELDS, ids=lambda v: getattr(v, "name", str(v)[:8])
)
def test_unused_fields_are_bad_argument(
    daemon: Daemon, opcode: Opcode, field: str, value: object
) -> None:
    with RawConn((daemon.host, daemon.port)) as c:
        if opcode == Opcode.HELLO:
            resp = c.call(opcode, **{**VALID_FIELDS[opcode], field: value})
            assert resp.status == Status.BAD_ARGUMENT, error_of(resp)
            assert c.hello("alice").status == Status.OK  # the connection stays usable
            return
        assert c.hello("alice").status == Status.OK
        pool = c.new_pool(persistent=True)
        assert c.call(Opcode.PUT_PAGE, pool_id=pool, object_id=1, index=3, payload=PAGE).status == 0
        pool_id = pool if opcode in _POOL_OPS else NO_POOL
        resp = c.call(opcode, **{"pool_id": pool_id, **VALID_FIELDS[opcode], field: value})
        assert resp.status == Status.BAD_ARGUMENT, error_of(resp)
        assert field in msgpack.unpackb(resp.payload)["error"]
        # Nothing happened: the pool and its page are still there.
        got = c.call(Opcode.GET_PAGE, pool_id=pool, object_id=1, index=3)
        assert got.status == Status.OK and got.payload == PAGE


def test_unused_fields_are_checked_before_the_pool(conn: RawConn) -> None:
    resp = conn.call(Opcode.DESTROY_POOL, pool_id=9, object_id=1)
    assert resp.status == Status.BAD_ARGUMENT, error_of(resp)
    resp = conn.call(Opcode.GET_PAGE, pool_id=9, payload=b"x")
    assert resp.status == Status.BAD_ARGUMENT, error_of(resp)


def test_shared_pool_needs_uuid(conn: RawConn) -> None:
    arg = encode_pool_flags(PoolSpec(shared=True))
    assert conn.call(Opcode.NEW_POOL, arg=arg, object_id=0).status == Status.BAD_ARGUMENT
    assert conn.call(Opcode.NEW_POOL, arg=arg, object_id=1 << 130).status == Status.BAD_ARGUMENT
    private = encode_pool_flags(PoolSpec())
    assert conn.call(Opcode.NEW_POOL, arg=private, object_id=9).status == Status.BAD_ARGUMENT


def _header(magic: int = REQUEST_MAGIC, version: int = PROTOCOL_VERSION, length: int = 0) -> bytes:
    return REQUEST_HEADER.pack(magic, version, Opcode.PING, 0, 77, NO_POOL, 0, 0, 0, 0, 0, length)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (_header(magic=0x47), Status.BAD_MAGIC),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 30, Status.BAD_MAGIC),
        (_header(version=9), Status.BAD_VERSION),
        (_header(length=MAX_REQUEST_PAYLOAD_BYTES + 1), Status.FRAME_TOO_LARGE),
        (_header(length=0xFFFFFFFF), Status.FRAME_TOO_LARGE),
    ],
)
def test_framing_errors_answer_then_close(conn: RawConn, raw: bytes, status: Status) -> None:
    conn.send_raw(raw)
    resp = conn.recv()
    assert resp.status == status, error_of(resp)
    assert conn.is_closed_by_peer()


def test_oversized_length_rejected_before_payload(conn: RawConn) -> None:
    """The header alone must trigger the error: no payload is ever sent."""
    conn.send_raw(_header(length=MAX_REQUEST_PAYLOAD_BYTES + 1))
    resp = conn.recv()
    assert resp.status == Status.FRAME_TOO_LARGE
    assert resp.request_id == 77


def test_other_clients_pages_unreachable(daemon: Daemon) -> None:
    with RawConn((daemon.host, daemon.port)) as a, RawConn((daemon.host, daemon.port)) as b:
        assert a.hello("alice").status == Status.OK
        assert b.hello("mallory").status == Status.OK
        pool = a.new_pool(persistent=True)
        assert (
            a.call(Opcode.PUT_PAGE, pool_id=pool, object_id=1, index=2, payload=PAGE).status
            == Status.OK
        )
        for op, fields in (
            (Opcode.GET_PAGE, {"object_id": 1, "index": 2}),
            (Opcode.FLUSH_PAGE, {"object_id": 1, "index": 2}),
            (Opcode.FLUSH_OBJECT, {"object_id": 1}),
            (Opcode.DESTROY_POOL, {}),
        ):
            resp = b.call(op, pool_id=pool, **fields)
            assert resp.status == Status.BAD_POOL, (op, error_of(resp))
        # mallory's own pool 0 is a different pool, empty.
        assert b.new_pool(persistent=True) == pool
        assert b.call(Opcode.GET_PAGE, pool_id=pool, object_id=1, index=2).status == Status.MISS
        got = a.call(Opcode.GET_PAGE, pool_id=pool, object_id=1, index=2)
        assert got.status == Status.OK and got.payload == PAGE


def test_garbage_does_not_disturb_other_clients(daemon: Daemon) -> None:
    with RawConn((daemon.host, daemon.port)) as good:
        assert good.hello("good").status == Status.OK
        pool = good.new_pool(persistent=True)
        for i in range(50):
            page = struct.pack("<I", i) * 1024
            assert good.call(Opcode.PUT_PAGE, pool_id=pool, index=i, payload=page).status == 0
        for junk in (b"\xff" * 100, _header(length=1 << 30), _header(version=0)):
            with RawConn((daemon.host, daemon.port)) as bad:
                bad.send_raw(junk)
                assert bad.recv().status >= 64
        for i in range(50):
            got = good.call(Opcode.GET_PAGE, pool_id=pool, index=i)
            assert got.payload == struct.pack("<I", i) * 1024


def test_connection_over_the_limit_gets_server_busy(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory("--max-connections", "1")
    with Client(daemon.address, client_name="first") as first:
        first.ping()
        with Client(daemon.address, client_name="second") as second, pytest.raises(ServerBusy):
            second.ping()
        first.ping()
