"""Server identity and pool ids that are never reused (PROTOCOL.md §11.2).

Spoken in raw frames, so that what is tested is the daemon's half of the
guarantee: HELLO names the instance, and within one instance an old pool id
answers BAD_POOL after a destroy or a lease expiry instead of reaching the
pool that was made next.  The client's half (``PoolGone``) is tested with
the client.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import msgpack

from tests.conftest import Daemon
from tests.integration.rawwire import RawConn
from tmem.proto import MAX_REQUEST_PAYLOAD_BYTES, Opcode, Status

PAGE = b"A" * 4096
NEW_PAGE = b"B" * 4096


def greeting(daemon: Daemon, name: str = "tester") -> dict[str, object]:
    with RawConn((daemon.host, daemon.port)) as conn:
        resp = conn.hello(name)
        assert resp.status == Status.OK
        body = msgpack.unpackb(resp.payload)
        assert isinstance(body, dict)
        return body


def test_hello_names_the_instance_and_its_limits(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory(
        "--lease", "42", "--idle-timeout", "77", "--header-timeout", "3", "--memory", "64MiB"
    )
    body = greeting(daemon)
    server_id = body["server_id"]
    assert isinstance(server_id, str) and re.fullmatch(r"[0-9a-f]{32}", server_id)
    assert body["limits"] == {
        "max_pools_per_client": 64,
        "min_page_size": 4096,
        "max_page_size": 65536,
        "max_request_payload": MAX_REQUEST_PAYLOAD_BYTES,
        "idle_timeout_s": 77.0,
        "header_timeout_s": 3.0,
        "hello_timeout_s": 5.0,
        "lease_s": 42.0,
    }
    # Every connection of one instance hears the same id; the log names it too.
    assert greeting(daemon, "other")["server_id"] == server_id
    assert server_id in daemon.log()


def test_a_restarted_daemon_is_a_new_instance(daemon_factory: Callable[..., Daemon]) -> None:
    first = daemon_factory("--memory", "64MiB")
    before = greeting(first)["server_id"]
    assert first.stop() == 0
    second = daemon_factory("--memory", "64MiB")
    assert greeting(second)["server_id"] != before


def put(conn: RawConn, pool_id: int, page: bytes) -> Status:
    return Status(conn.call(Opcode.PUT_PAGE, pool_id=pool_id, object_id=1, payload=page).status)


def get(conn: RawConn, pool_id: int) -> tuple[Status, bytes]:
    resp = conn.call(Opcode.GET_PAGE, pool_id=pool_id, object_id=1)
    return Status(resp.status), resp.payload


def test_a_destroyed_pool_id_never_reaches_the_next_pool(daemon: Daemon) -> None:
    with RawConn((daemon.host, daemon.port)) as conn:
        assert conn.hello("reuser").status == Status.OK
        old = conn.new_pool(persistent=True)
        assert put(conn, old, PAGE) == Status.OK
        assert conn.call(Opcode.DESTROY_POOL, pool_id=old).status == Status.OK
        new = conn.new_pool(persistent=True)
        assert new != old
        assert put(conn, new, NEW_PAGE) == Status.OK
        assert get(conn, old)[0] == Status.BAD_POOL
        assert get(conn, new) == (Status.OK, NEW_PAGE)
        # Many rounds: the old ids stay dead, whatever the table looks like.
        ids = {old, new}
        for _ in range(70):
            pool_id = conn.new_pool()
            assert pool_id not in ids
            ids.add(pool_id)
            assert conn.call(Opcode.DESTROY_POOL, pool_id=pool_id).status == Status.OK
        assert get(conn, old)[0] == Status.BAD_POOL


def test_a_pool_id_after_the_lease_never_reaches_the_next_pool(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory("--lease", "0.3", "--memory", "64MiB")
    with RawConn((daemon.host, daemon.port)) as conn:
        assert conn.hello("leaser").status == Status.OK
        old = conn.new_pool(persistent=True)
        assert put(conn, old, PAGE) == Status.OK
    deadline = time.monotonic() + 10
    while "lease of client leaser ended" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)
    with RawConn((daemon.host, daemon.port)) as conn:
        assert conn.hello("leaser").status == Status.OK
        new = conn.new_pool(persistent=True)
        assert put(conn, new, NEW_PAGE) == Status.OK
        assert new != old
        assert get(conn, old)[0] == Status.BAD_POOL
        assert get(conn, new) == (Status.OK, NEW_PAGE)
