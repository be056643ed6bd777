"""``client.mapping()`` and its protocol (``open_pool``, ``list_objects``)
against the real daemon: reattach by name from another process, refusals
that keep the old value, the async mapping on asyncio and uvloop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from tmem.client import AsyncClient, BadArgument, Client, Refused, RefuseReason, Unsupported
from tmem.client import _mapping_ops as ops
from tmem.proto import PoolSpec, encode_pool_flags

from ..conftest import Daemon
from .test_client_e2e import _run

#: How long the helper process may take (a cold interpreter on a loaded box).
CHILD_TIMEOUT_S = 60.0


def test_open_pool_reattaches_by_name_over_the_wire(daemon: Daemon) -> None:
    flags = encode_pool_flags(PoolSpec(persistent=True))
    with (
        Client(daemon.address, client_name="app") as one,
        Client(daemon.address, client_name="app") as two,
    ):
        first = one.control("open_pool", name="jobs", flags=flags)["pool_id"]
        assert two.control("open_pool", name="jobs", flags=flags)["pool_id"] == first
        with pytest.raises(BadArgument):
            two.control("open_pool", name="jobs", flags=encode_pool_flags(PoolSpec()))
        assert [(p["pool_id"], p["name"]) for p in one.list_pools()] == [(first, "jobs")]
        pool = one.pool(first)
        for oid in (1, (1 << 192) - 1):
            assert pool.put(oid, 0, b"x" * 4096)
        listed: list[str] = []
        cursor = 0
        for _ in range(100):
            reply = two.control("list_objects", pool_id=first, cursor=cursor, count=1)
            listed += reply["objects"]
            cursor = reply["cursor"]
            if cursor == 0:
                break
        assert sorted(listed) == [f"{1:048x}", "f" * 48]
        unnamed = one.new_pool(persistent=True)
        with pytest.raises(Unsupported):
            one.control("list_objects", pool_id=unnamed.pool_id)


CHILD = textwrap.dedent(
    """
    import json, sys
    from tmem.client import Client
    address, mode = sys.argv[1], sys.argv[2]
    with Client(address, client_name="app") as client:
        m = client.mapping("shared")
        if mode == "write":
            m["from-child"] = b"c" * 300_000
            m[b"\\x00bin"] = b""
        print(json.dumps({"len": len(m), "keys": sorted(repr(k) for k in m),
                          "parent": m.get("from-parent", b"").hex()[:16]}))
    """
)


def child(address: str, mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, address, mode],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_second_process_reattaches_by_name(daemon: Daemon) -> None:
    assert child(daemon.address, "write") == {
        "len": 2,
        "keys": sorted([repr("from-child"), repr(b"\x00bin")]),
        "parent": "",
    }
    with Client(daemon.address, client_name="app") as client:
        m = client.mapping("shared")
        assert m["from-child"] == b"c" * 300_000 and m[b"\x00bin"] == b""
        m["from-parent"] = b"\x01\x02"
        assert len(m) == 3
        # Another client name has its own mapping of that name.
        with Client(daemon.address, client_name="other") as other:
            assert len(other.mapping("shared")) == 0
    seen = child(daemon.address, "read")
    assert seen["len"] == 3 and seen["parent"] == "0102"


def test_refused_write_keeps_the_old_value(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory("--memory", "8MiB")
    with Client(daemon.address, client_name="app") as client:
        m = client.mapping("m", page_size=4096)
        old = os.urandom(2 << 20)
        m["k"] = old
        pages_before = client.list_pools()[0]["pages"]
        with pytest.raises(Refused) as info:
            m["k"] = os.urandom(5 << 20)  # the persistent share is 6 MiB
        assert info.value.reason in (RefuseReason.PERSISTENT_FULL, RefuseReason.NO_MEMORY)
        assert info.value.keys == ("k",)
        assert m["k"] == old
        assert client.list_pools()[0]["pages"] == pages_before  # nothing half-written left
        assert list(m) == ["k"]
        new = os.urandom(3 << 20)
        m["k"] = new  # fits once the old generation is the only one
        assert m["k"] == new
        assert client.list_pools()[0]["pages"] == pages_before * 3 // 2


def test_forced_hash_collision_is_never_served(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops.Layout, "base", lambda self, tagged: 6 << 64)
    with Client(daemon.address, client_name="app") as client:
        m = client.mapping("m")
        m["a"] = b"a" * 100_000
        with pytest.raises(KeyError):
            m["b"]
        with pytest.raises(Refused) as info:
            m["b"] = b"b"
        assert info.value.reason is None
        assert m["a"] == b"a" * 100_000 and list(m) == ["a"]


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_async_mapping(daemon: Daemon, loop_kind: str) -> None:
    async def main() -> None:
        async with AsyncClient(daemon.address, client_name=f"async-{loop_kind}") as client:
            m = await client.mapping("m", persistent=False)
            await m.set("big", b"b" * 1_000_000)
            await m.set_many({"x": b"1", "y": b""})
            assert await m.get("big") == b"b" * 1_000_000
            assert await m.get_many(["x", "y", "z"]) == {"x": b"1", "y": b""}
            assert sorted([key async for key in m]) == ["big", "x", "y"]
            assert await m.count() == 3
            assert await m.delete("x") and not await m.contains("x")
            await m.clear()
            assert await m.keys() == []

    _run(loop_kind, main)
