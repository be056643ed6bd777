"""The layers above pages on a client of three daemons: ``client.mapping()``
(named pools opened on every server, listings merged), the ``tmem::``
fsspec cache and the spill store, through the public API only, as on one
daemon."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path

import fsspec

from tmem.client import AsyncClient, Client
from tmem.client.cleancache import TmemFileSystem
from tmem.client.frontswap import SpillStore

from ..conftest import Daemon

#: A loaded 2-core box may take a while to answer (the fsspec layer's own
#: default, 1 s, is for production).
TEST_TIMEOUT_S = 10.0
BS = 4096


def _three(factory: Callable[..., Daemon]) -> list[str]:
    return [factory("--memory", "64MiB").address for _ in range(3)]


def test_mapping_over_three_servers(daemon_factory: Callable[..., Daemon]) -> None:
    addresses = _three(daemon_factory)
    values = {f"key-{n}": random.Random(n).randbytes(n * 997) for n in range(40)}
    values["big"] = random.Random(7).randbytes(3 << 20)
    with Client(addresses, client_name="maps") as client:
        m = client.mapping("things")
        m.update(values)
        assert m["big"] == values["big"] and m["key-3"] == values["key-3"]
        del m["key-0"]
        assert len(m) == len(values) - 1 and "key-0" not in m
        assert sorted(m) == sorted(k for k in values if k != "key-0")
        spread = [p["server"] for p in client.list_pools() if p.get("pages")]
        assert len(set(spread)) == 3, spread
    # Another client object (another process would do the same) reopens it by name.
    with Client(list(reversed(addresses)), client_name="maps") as again:
        m = again.mapping("things")
        assert dict(m.items()) == {k: v for k, v in values.items() if k != "key-0"}

    async def main() -> None:
        async with AsyncClient(addresses, client_name="maps") as client:
            m = await client.mapping("things")
            assert await m.get("big") == values["big"]
            assert await m.count() == len(values) - 1

    asyncio.run(main())


def test_fsspec_cache_over_three_servers(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    addresses = _three(daemon_factory)
    data = random.Random(3).randbytes(40 * BS + 11)
    (tmp_path / "f.bin").write_bytes(data)
    options = {"server": addresses, "client_name": "reader", "block_size": BS,
               "timeout": TEST_TIMEOUT_S, "skip_instance_cache": True}  # fmt: skip
    fs, path = fsspec.core.url_to_fs(f"tmem::file://{tmp_path}/f.bin", tmem=options)
    assert isinstance(fs, TmemFileSystem)
    assert fs.cat_file(path) == data
    assert fs.cat_file(path) == data
    stats = fs.stats()
    assert stats["misses"] == 41 and stats["hits"] == 41 and stats["errors"] == 0


def test_spill_store_over_three_servers(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    addresses = _three(daemon_factory)
    values = {f"chunk-{n}": random.Random(n).randbytes(20_000 + n) for n in range(30)}
    with Client(addresses, client_name="spill") as client:
        store = SpillStore(client, "spill", tmp_path / "fallback")
        store.update(values)
        assert {key: store[key] for key in values} == values
        del store["chunk-0"]
        assert len(store) == len(values) - 1 and "chunk-0" not in store
        stats = store.stats()
        assert stats["far_keys"] == len(values) - 1 and stats["fallback_keys"] == 0
