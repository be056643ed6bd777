"""tmem.client.testing: the in-memory FakeClient keeps tmem's semantics."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tmem.client import (
    BadArgument,
    BadPool,
    Client,
    Forbidden,
    Pool,
    PoolGone,
    RefuseReason,
    TooManyPools,
    Unsupported,
)
from tmem.client.testing import AsyncFakeClient, FakeClient, FakeServer

SHARED = uuid.UUID("12345678-1234-5678-1234-567812345678")


def page(fill: int, size: int = 4096) -> bytes:
    return bytes([fill]) * size


@pytest.fixture
def client() -> FakeClient:
    return FakeClient("127.0.0.1:7400", client_name="host-a")


def test_same_api_as_the_real_client() -> None:
    public = {name for name in dir(Client) if not name.startswith("_")}
    assert public <= set(dir(FakeClient))
    with FakeClient(client_name="x") as fake:
        assert isinstance(fake.new_pool(), Pool)
        fake.ping()
        fake.connect()


def test_private_ephemeral_get_is_exclusive_unless_told(client: FakeClient) -> None:
    pool = client.new_pool()
    assert pool.put(1, 0, page(1)) and pool.put(1, 1, page(2))
    assert pool.get(1, 0) == page(1)
    assert pool.get(1, 0) is None  # handed over: the caller caches it now
    assert pool.get(1, 1, exclusive=False) == page(2)
    assert pool.get(1, 1) == page(2)
    assert pool.get(1, 1) is None


def test_persistent_get_keeps_unless_exclusive(client: FakeClient) -> None:
    pool = client.new_pool(persistent=True)
    pool.put(7, 3, page(9))
    assert pool.get(7, 3) == page(9) and pool.get(7, 3) == page(9)
    assert pool.get(7, 3, exclusive=True) == page(9)
    assert pool.get(7, 3) is None


def test_put_replaces_and_flushes_miss_after(client: FakeClient) -> None:
    pool = client.new_pool(persistent=True)
    pool.put(1, 0, page(1))
    pool.put(1, 0, page(2))
    assert pool.get(1, 0) == page(2)
    pool.put_many([(1, i, page(i)) for i in range(1, 5)] + [(2, 0, page(0))])
    assert pool.flush(1, 4) is True and pool.flush(1, 4) is False
    assert pool.flush_object(1) == 4 and pool.flush_object(1) == 0
    assert pool.get_many([(1, 0), (1, 1), (2, 0)]) == [None, None, page(0)]
    pool.destroy()
    with pytest.raises(PoolGone):
        pool.get(2, 0)


def test_pool_ids_are_per_client_name_and_never_reused() -> None:
    server = FakeServer(max_pools_per_client=3)
    a = FakeClient(client_name="a", server=server)
    b = FakeClient(client_name="b", server=server)
    pools = [a.new_pool() for _ in range(3)]
    assert [p.pool_id for p in pools] == [0, 1, 2]
    assert b.new_pool().pool_id == 0
    with pytest.raises(TooManyPools):
        a.new_pool()
    pools[1].destroy()
    assert a.new_pool().pool_id == 3  # a destroyed pool's id is never handed out again
    with pytest.raises(BadPool):
        a.pool(1)
    pools[0].put(1, 1, page(5))
    with pytest.raises(BadPool):  # b's pool 0 is not a's: and b has no pool 2
        b.pool(2)
    assert b.pool(0).get(1, 1) is None


def test_reattach_after_reconnect_finds_the_pages() -> None:
    server = FakeServer()
    first = FakeClient(client_name="swap-host", server=server)
    pool = first.new_pool(persistent=True, page_size=8192, codec="zstd")
    pool.put(1, 1, page(3, 8192))
    first.close()
    again = FakeClient(client_name="swap-host", server=server).pool(pool.pool_id)
    assert (again.page_size, again.persistent, again.info.codec) == (8192, True, "zstd")
    assert again.get(1, 1) == page(3, 8192)


def test_shared_pools_keep_pages_and_outlive_one_member() -> None:
    server = FakeServer()
    a = FakeClient(client_name="a", server=server).new_pool(shared_uuid=SHARED)
    b = FakeClient(client_name="b", server=server).new_pool(shared_uuid=str(SHARED))
    assert a.shared and b.shared
    a.put(1, 1, page(8))
    assert b.get(1, 1) == page(8) and b.get(1, 1) == page(8)  # shared: get keeps
    a.destroy()
    assert b.get(1, 1) == page(8)
    b.destroy()
    c = FakeClient(client_name="c", server=server).new_pool(shared_uuid=SHARED.int)
    assert c.get(1, 1) is None


def test_shared_pools_may_require_authorization() -> None:
    server = FakeServer(require_shared_authorization=True)
    owner = FakeClient(client_name="owner", server=server)
    with pytest.raises(Forbidden):
        owner.new_pool(shared_uuid=SHARED)  # creating needs a grant too
    server.authorize_shared(SHARED, "owner")
    created = owner.new_pool(shared_uuid=SHARED)
    guest = FakeClient(client_name="guest", server=server)
    with pytest.raises(Forbidden):
        guest.new_pool(shared_uuid=SHARED)
    server.authorize_shared(SHARED, "guest")
    assert guest.new_pool(shared_uuid=SHARED).shared
    assert owner.new_pool(shared_uuid=SHARED).pool_id == created.pool_id  # a re-join
    with pytest.raises(BadArgument):
        guest.new_pool(shared_uuid=SHARED, page_size=8192)


def test_capacity_evicts_ephemeral_lru_and_refuses_persistent() -> None:
    client = FakeClient(client_name="a", capacity_pages=3)
    cache = client.new_pool()
    swap = client.new_pool(persistent=True)
    assert cache.put_many([(1, i, page(i)) for i in range(3)]) == [True] * 3
    assert cache.get(1, 0, exclusive=False) == page(0)  # page 0 is now the freshest
    assert swap.put(2, 0, page(9))  # evicts page 1, the least recently used
    assert cache.get_many([(1, 0), (1, 1), (1, 2)], exclusive=False) == [page(0), None, page(2)]
    assert swap.put_many([(2, 1, page(1)), (2, 2, page(2))]) == [True, True]
    assert client.server.evictions == 3
    assert swap.put(2, 3, page(3)) is False
    assert swap.last_refusal is RefuseReason.NO_MEMORY
    assert swap.put(2, 0, page(4)) is True  # a replacement fits in its own place
    assert cache.put(1, 5, page(5)) is False and cache.last_refusal is RefuseReason.NO_MEMORY
    swap.flush(2, 0)
    assert cache.put(1, 5, page(5)) is True and cache.last_refusal is None


def test_a_refused_replacement_flushes_the_old_copy() -> None:
    server = FakeServer(capacity_pages=1)
    pool = FakeClient(client_name="a", server=server).new_pool(persistent=True)
    pool.put(1, 0, page(1))
    server.capacity_pages = 0  # the next put cannot be stored
    assert pool.put(1, 0, page(2)) is False
    assert pool.get(1, 0) is None  # never the stale copy


def test_arguments_are_checked_like_the_real_client(client: FakeClient) -> None:
    pool = client.new_pool()
    with pytest.raises(ValueError):
        pool.put(1 << 192, 0, page(0))
    with pytest.raises(ValueError):
        pool.put(0, 0, page(0, 100))
    with pytest.raises(TypeError):
        pool.put(0, 0, "x" * 4096)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.new_pool(persistent=True, shared_uuid=SHARED)
    with pytest.raises(ValueError):
        client.new_pool(page_size=5000)
    with pytest.raises(ValueError):
        client.new_pool(codec="gzip")
    with pytest.raises(ValueError):
        FakeClient(client_name="not ok")
    short = client.new_pool(precompressed=True)
    assert short.put(0, 0, b"abc") and short.get(0, 0) == b"abc"


def test_control_commands(client: FakeClient) -> None:
    client.new_pool(persistent=True).put(1, 1, page(1))
    assert client.list_pools()[0]["pages"] == 1
    assert client.stats()["clients"][0] == {"name": "host-a", "pools": 1, "pages": 1}
    with pytest.raises(Unsupported):
        client.control("freeze")


def test_async_fake_client() -> None:
    async def body() -> None:
        async with AsyncFakeClient(client_name="a", capacity_pages=10) as client:
            pool = await client.new_pool(persistent=True)
            assert await pool.put_many([(1, i, page(i)) for i in range(3)]) == [True] * 3
            assert await pool.get(1, 1) == page(1)
            assert await pool.get_many([(1, 0), (1, 9)]) == [page(0), None]
            assert await pool.flush(1, 0) and await pool.flush_object(1) == 2
            again = await client.pool(pool.pool_id)
            await again.destroy()
            with pytest.raises(BadPool):
                await pool.get(1, 1)

    asyncio.run(body())


def test_a_pool_is_gone_after_a_restart_or_a_destroy_elsewhere() -> None:
    server = FakeServer()
    client = FakeClient(client_name="host", server=server)
    old = client.new_pool(persistent=True)
    assert old.info.server_id == client.server_id == client.server_info["server_id"]
    old.put(1, 0, page(0xAA))
    before = client.server_id
    server.restart()
    assert client.server_id != before
    new = client.new_pool(persistent=True)
    assert new.pool_id == old.pool_id  # the id is reused by the new instance ...
    new.put(1, 0, page(0xBB))
    for call in (lambda: old.get(1, 0), lambda: old.put(1, 0, page(1)), old.destroy):
        with pytest.raises(PoolGone):  # ... but the old handle never reaches it
            call()
    assert old.gone and new.get(1, 0) == page(0xBB)
    twin = client.pool(new.pool_id)
    new.destroy()
    with pytest.raises(PoolGone):
        new.flush(1, 0)
    with pytest.raises(PoolGone):  # found gone: BAD_POOL, for a second handle too
        twin.get(1, 0)
    assert twin.gone


def test_async_fake_pool_gone_after_a_restart() -> None:
    async def body() -> None:
        client = AsyncFakeClient(client_name="host")
        pool = await client.new_pool()
        client.server.restart()
        with pytest.raises(PoolGone):
            await pool.put(1, 0, page(1))
        assert client.server_id == client.server.server_id

    asyncio.run(body())
