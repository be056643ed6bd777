"""Both clients against the real daemon: tmem semantics end to end.

The async client runs under the default asyncio loop and under uvloop, and
fails if anything reaches the loop's exception handler.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

from tmem.client import AsyncClient, BadLength, BadPool, Client, RefuseReason

from ..conftest import Daemon

PAGE_SIZE = 4096


def page(n: int) -> bytes:
    """A distinct, compressible page per n."""
    return (n.to_bytes(8, "little") + b"tmem-page-" * 3)[:32] * (PAGE_SIZE // 32)


def test_persistent_pool_roundtrip(address: str | list[str]) -> None:
    with Client(address, client_name="alice") as client:
        pool = client.new_pool(persistent=True)
        big_oid = (1 << 192) - 1
        assert pool.put(big_oid, (1 << 32) - 1, page(1))
        assert pool.get(big_oid, (1 << 32) - 1) == page(1)
        assert pool.get(big_oid, (1 << 32) - 1) == page(1)  # persistent gets keep the page
        assert pool.put(big_oid, (1 << 32) - 1, page(2))  # replace
        assert pool.get(big_oid, (1 << 32) - 1) == page(2)
        assert pool.get(big_oid, 0) is None
        assert pool.get(5, 5, exclusive=True) is None
        pool.put(5, 5, page(5))
        assert pool.get(5, 5, exclusive=True) == page(5)
        assert pool.get(5, 5) is None


def test_ephemeral_private_get_is_exclusive(address: str | list[str]) -> None:
    with Client(address, client_name="bob") as client:
        pool = client.new_pool()
        assert pool.put(1, 1, page(1))
        assert pool.get(1, 1, exclusive=False) == page(1)  # asked to keep it
        assert pool.get(1, 1) == page(1)  # default: removed
        assert pool.get(1, 1) is None


def test_flushes(address: str | list[str]) -> None:
    with Client(address, client_name="carol") as client:
        pool = client.new_pool(persistent=True)
        pool.put_many([(oid, i, page(oid * 100 + i)) for oid in (1, 2) for i in range(10)])
        pool.flush(1, 3)
        assert pool.get(1, 3) is None
        assert pool.get(1, 4) == page(104)
        pool.flush_object(1)
        assert pool.get_many([(1, i) for i in range(10)]) == [None] * 10
        assert pool.get_many([(2, i) for i in range(10)]) == [page(200 + i) for i in range(10)]
        pool.destroy()
        with pytest.raises(BadPool):
            pool.get(2, 0)


def test_same_filled_and_incompressible_pages(address: str | list[str]) -> None:
    with Client(address, client_name="dave") as client:
        for codec in ("lzo", "lz4", "zstd", "none"):
            pool = client.new_pool(persistent=True, codec=codec)
            pages = [bytes(PAGE_SIZE), b"\xff" * PAGE_SIZE, os.urandom(PAGE_SIZE), page(9)]
            assert pool.put_many([(0, i, p) for i, p in enumerate(pages)]) == [True] * 4
            assert pool.get_many([(0, i) for i in range(4)]) == pages


def test_precompressed_pool_stores_bytes_as_given(address: str | list[str]) -> None:
    with Client(address, client_name="erin") as client:
        pool = client.new_pool(persistent=True, precompressed=True)
        for n, blob in enumerate((b"x", b"abc" * 100, os.urandom(PAGE_SIZE))):
            assert pool.put(0, n, blob)
            assert pool.get(0, n) == blob


def test_wrong_length_is_an_error_not_a_refusal(address: str | list[str]) -> None:
    with Client(address, client_name="frank") as client:
        pool = client.new_pool(persistent=True)
        with pytest.raises((ValueError, BadLength)):
            pool.put(0, 0, b"short")
        assert pool.put(0, 0, page(0))  # the connection is still usable


def test_pools_survive_reconnect_within_lease(daemon: Daemon) -> None:
    with Client(daemon.address, client_name="swap-host") as client:
        pool = client.new_pool(persistent=True)
        pool.put_many([(7, i, page(i)) for i in range(32)])
        pool_id = pool.pool_id
    with Client(daemon.address, client_name="swap-host") as client:
        again = client.pool(pool_id)
        assert again.persistent
        assert again.get_many([(7, i) for i in range(32)]) == [page(i) for i in range(32)]


def test_lease_end_frees_pools(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory("--lease", "0.5")
    with Client(daemon.address, client_name="gone") as client:
        pool = client.new_pool(persistent=True)
        pool.put(1, 1, page(1))
        pool_id = pool.pool_id
    deadline = time.monotonic() + 10
    while "lease of client gone ended" not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.1)
    with Client(daemon.address, client_name="gone") as client, pytest.raises(BadPool):
        client.pool(pool_id)


def test_concurrent_connections_same_name(daemon: Daemon) -> None:
    with (
        Client(daemon.address, client_name="multi") as a,
        Client(daemon.address, client_name="multi") as b,
    ):
        pool_a = a.new_pool(persistent=True)
        pool_a.put(1, 1, page(1))
        assert b.pool(pool_a.pool_id).get(1, 1) == page(1)


def test_refusal_when_persistent_share_is_full(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory("--memory", "1MiB", "--codec", "none")
    with Client(daemon.address, client_name="filler") as client:
        pool = client.new_pool(persistent=True)
        results = pool.put_many([(0, i, os.urandom(PAGE_SIZE)) for i in range(400)])
        assert any(results) and not all(results)
        assert pool.last_refusal in (RefuseReason.PERSISTENT_FULL, RefuseReason.NO_MEMORY)
        stored = [i for i, ok in enumerate(results) if ok]
        got = pool.get_many([(0, i) for i in stored])
        assert all(g is not None for g in got)


def _run(loop_kind: str, main: Callable[[], Awaitable[None]]) -> None:
    errors: list[dict[str, Any]] = []

    async def wrapper() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        await main()

    if loop_kind == "uvloop":
        uvloop.run(wrapper())
    else:
        asyncio.run(wrapper())
    assert not errors, errors


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_async_client(address: str | list[str], loop_kind: str) -> None:
    async def main() -> None:
        async with AsyncClient(address, client_name=f"async-{loop_kind}") as client:
            pool = await client.new_pool(persistent=True, codec="lz4")
            items = [(3, i, page(i)) for i in range(500)]
            assert await pool.put_many(items) == [True] * 500
            got = await pool.get_many([(3, i) for i in range(500)])
            assert got == [page(i) for i in range(500)]
            eph = await client.new_pool()
            assert await eph.put(1, 1, page(1))
            assert await eph.get(1, 1) == page(1)
            assert await eph.get(1, 1) is None
            results = await asyncio.gather(*(pool.get(3, i) for i in range(50)))
            assert list(results) == [page(i) for i in range(50)]
            await pool.flush_object(3)
            assert await pool.get(3, 0) is None
            await client.ping()

    _run(loop_kind, main)
