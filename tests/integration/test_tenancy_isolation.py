"""Isolation against the real daemon (docs/multi-tenancy.md): no request by one
client can read, write, flush, destroy or even learn of another client's
private pool.

Alice owns pools 0-2 full of pages.  Bob, authenticated with his own token,
throws every page op at every interesting pool id (Alice's ids, NO_POOL,
the per-client limit 63/64, 2**31, 2**32 - 2) and must get BAD_POOL each
time, with the same message whether or not Alice has a pool of that id.
Afterwards every one of Alice's pages is still there, byte for byte, and
neither client's listings mention the other.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from tmem.client import BadPool, Client
from tmem.proto import NO_POOL, Opcode, PoolSpec, Status, encode_pool_flags

from ..conftest import Daemon
from . import authfile
from .rawwire import RawConn, error_of

PAGE = 4096
TOKENS = {"alice": "alice-secret", "bob": "bob-secret", "ops": "ops-secret"}
#: Pool ids Bob tries: Alice's (0-2), ones nobody has, the edges of the
#: per-client limit, a sign-bit id and the largest id below NO_POOL.
POOL_IDS = [0, 1, 2, 5, 63, 64, NO_POOL, 1 << 31, (1 << 32) - 2]
PAGE_OPS = [Opcode.PUT_PAGE, Opcode.GET_PAGE, Opcode.FLUSH_PAGE, Opcode.FLUSH_OBJECT]
SPEC = encode_pool_flags(PoolSpec(persistent=True))


def write_auth(tmp_path: Path) -> Path:
    return authfile.write_auth(tmp_path, TOKENS)


def page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE // 2) * 2


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> Daemon:
    return daemon_factory("--memory", "16MiB", "--auth-file", str(write_auth(tmp_path)))


def fill_alice(address: str) -> dict[tuple[int, int, int], bytes]:
    """Alice's pools: 0 persistent, 1 ephemeral, 2 persistent; three pages each."""
    stored = {}
    with Client(address, client_name="alice", token=TOKENS["alice"]) as alice:
        for persistent in (True, False, True):
            pool = alice.new_pool(persistent=persistent)
            for index in range(3):
                data = page(pool.pool_id * 10 + index)
                assert pool.put(7, index, data)
                stored[pool.pool_id, 7, index] = data
    return stored


def normalized(resp_payload: bytes | bytearray | memoryview, pool_id: int) -> str:
    """An error message with the pool id taken out, to compare across ids."""
    return str(msgpack.unpackb(resp_payload)["error"]).replace(str(pool_id), "<id>")


def test_every_op_on_every_foreign_pool_id_is_bad_pool(daemon: Daemon) -> None:
    stored = fill_alice(daemon.address)
    messages: set[str] = set()
    with RawConn((daemon.host, daemon.port)) as bob:
        assert bob.hello("bob", TOKENS["bob"]).status == Status.OK
        for pool_id in POOL_IDS:
            for op in PAGE_OPS:
                payload = page(99) if op == Opcode.PUT_PAGE else b""
                index = 0 if op == Opcode.FLUSH_OBJECT else 1  # FLUSH_OBJECT takes no index
                resp = bob.call(op, pool_id=pool_id, object_id=7, index=index, payload=payload)
                assert resp.status == Status.BAD_POOL, (op, pool_id, error_of(resp))
                assert resp.value == 0 and resp.payload != stored.get((pool_id, 7, 1))
                messages.add(normalized(resp.payload, pool_id))
            resp = bob.call(Opcode.DESTROY_POOL, pool_id=pool_id)
            assert resp.status == Status.BAD_POOL, (pool_id, error_of(resp))
            messages.add(normalized(resp.payload, pool_id))
        # Bob's own pool 0 is his: using it touches nothing of Alice's.
        assert bob.new_pool(persistent=True) == 0
        put = bob.call(Opcode.PUT_PAGE, pool_id=0, object_id=7, index=1, payload=page(5))
        assert put.status == Status.OK
        assert bob.call(Opcode.FLUSH_OBJECT, pool_id=0, object_id=7).value == 1
        assert bob.call(Opcode.DESTROY_POOL, pool_id=0).status == Status.OK
    # One message for all ids: an id Alice holds looks exactly like one nobody holds.
    assert messages == {"client 'bob' has no pool <id>"}
    with Client(daemon.address, client_name="alice", token=TOKENS["alice"]) as alice:
        for (pool_id, object_id, index), data in stored.items():
            assert alice.pool(pool_id).get(object_id, index, exclusive=False) == data


def test_new_pool_cannot_name_an_id(daemon: Daemon) -> None:
    fill_alice(daemon.address)
    with RawConn((daemon.host, daemon.port)) as bob:
        bob.hello("bob", TOKENS["bob"])
        for pool_id in (0, 1, 63):
            resp = bob.call(Opcode.NEW_POOL, pool_id=pool_id, arg=SPEC)
            assert resp.status == Status.BAD_ARGUMENT, error_of(resp)


def test_listings_never_mention_another_client(daemon: Daemon) -> None:
    fill_alice(daemon.address)
    with Client(daemon.address, client_name="bob", token=TOKENS["bob"]) as bob:
        bob.new_pool()
        replies = [bob.list_pools(), bob.stats(), bob.control("list_pools")]
        assert [p["pool_id"] for p in bob.list_pools()] == [0]
        (own,) = bob.stats()["clients"]
        assert own["name"] == "bob" and own["pools"] == 1
        with pytest.raises(BadPool):
            bob.pool(1)  # Alice has a pool 1; Bob cannot even attach to it
    with Client(daemon.address, client_name="alice", token=TOKENS["alice"]) as alice:
        alice_replies = [alice.list_pools(), alice.stats()]
        assert [p["pool_id"] for p in alice.list_pools()] == [0, 1, 2]
    for reply in replies:
        assert "alice" not in json.dumps(reply, default=str)
    for reply in alice_replies:
        assert "bob" not in json.dumps(reply, default=str)


def test_a_pool_id_means_the_callers_own_pool(daemon: Daemon) -> None:
    stored = fill_alice(daemon.address)
    with Client(daemon.address, client_name="bob", token=TOKENS["bob"]) as bob:
        mine = bob.new_pool(persistent=True)
        assert mine.pool_id == 0  # the same small number as Alice's pool 0
        assert mine.get(7, 0) is None
        assert mine.put(7, 0, page(1234))
        assert mine.flush_object(7) == 1
        mine.destroy()
    with Client(daemon.address, client_name="alice", token=TOKENS["alice"]) as alice:
        assert alice.pool(0).get(7, 0, exclusive=False) == stored[0, 7, 0]
