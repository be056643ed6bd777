"""``client.mapping()`` set/get throughput next to redis-py and pymemcache.

Starts tmemd, Debian's redis-server and memcached on free loopback ports
(``tmem.bench._peers``, as ``tmemd-bench`` does), then for each value size
stores ``count`` distinct random values one call at a time and reads them
back, timing each phase with a wall clock: MB/s = value bytes / seconds.
For the small sizes a batch row does the same through the batch forms
(``set_many``/``get_many``; redis-py ``mset``/``mget``; pymemcache
``set_many``/``get_many``), ``--batch`` values per call.

Same values, same run, same client machine.  The mapping is persistent,
with its default 64 KiB pages and with 4 KiB pages (a batch keeps 1 MiB of
pages in flight, so small pages let it pipeline more small values).
memcached runs twice: as Debian starts it (item limit ``-I 1m``) and with
``-I 128m``; a size a peer cannot hold is reported as such, not timed.
Values are random, so nothing compresses.

    .venv/bin/python bench/mapping.py            # about a minute
    .venv/bin/python bench/mapping.py --quick    # smaller totals
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from pymemcache.client.base import Client as MemcacheClient  # type: ignore[import-untyped]

from tmem.bench._peers import Server, peer_version, start_server
from tmem.client import Client

#: Value sizes of the table.
SIZES = (4 << 10, 64 << 10, 4 << 20, 64 << 20)
#: Bytes written per size (the count of values is this over the size, at
#: least 2, at most ``MAX_VALUES``): enough for a stable figure in seconds.
TOTAL_BYTES = 256 << 20
QUICK_TOTAL_BYTES = 32 << 20
MAX_VALUES = 4000
#: Every server's memory: holds the largest total with room.
SERVER_MEMORY_BYTES = 1 << 30
#: memcached's item limit in the second run (its maximum is 1 GiB).
MEMCACHED_ITEM_LIMIT = "128m"

Timed = Callable[[list[tuple[str, bytes]]], None]


def mb_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def run_pair(store: Timed, load: Timed, values: list[tuple[str, bytes]]) -> tuple[float, float]:
    nbytes = sum(len(v) for _, v in values)
    start = time.perf_counter()
    store(values)
    mid = time.perf_counter()
    load(values)
    end = time.perf_counter()
    return mb_per_s(nbytes, mid - start), mb_per_s(nbytes, end - mid)


def tmem_ops(
    server: Server, batch: int, page_size: int
) -> tuple[dict[str, Timed], Callable[[], None]]:
    client = Client(server.address, client_name="bench", timeout=120.0)
    m = client.mapping(f"bench-{page_size}", page_size=page_size)

    def store(values: list[tuple[str, bytes]]) -> None:
        for key, value in values:
            m[key] = value

    def load(values: list[tuple[str, bytes]]) -> None:
        for key, value in values:
            assert len(m[key]) == len(value)

    def store_many(values: list[tuple[str, bytes]]) -> None:
        for at in range(0, len(values), batch):
            m.set_many(values[at : at + batch])

    def load_many(values: list[tuple[str, bytes]]) -> None:
        for at in range(0, len(values), batch):
            assert len(m.get_many([k for k, _ in values[at : at + batch]])) == min(
                batch, len(values) - at
            )

    def reset() -> None:
        m.clear()

    return {"set": store, "get": load, "set_many": store_many, "get_many": load_many}, reset


def redis_ops(server: Server, batch: int) -> tuple[dict[str, Timed], Callable[[], None]]:
    r = redis.Redis(host=server.host, port=server.port)

    def store(values: list[tuple[str, bytes]]) -> None:
        for key, value in values:
            r.set(key, value)

    def load(values: list[tuple[str, bytes]]) -> None:
        for key, value in values:
            got = r.get(key)
            assert got is not None and len(got) == len(value)

    def store_many(values: list[tuple[str, bytes]]) -> None:
        for at in range(0, len(values), batch):
            r.mset(dict(values[at : at + batch]))

    def load_many(values: list[tuple[str, bytes]]) -> None:
        for at in range(0, len(values), batch):
            got = r.mget([k for k, _ in values[at : at + batch]])
            assert all(g is not None for g in got)

    def reset() -> None:
        r.flushall()

    return {"set": store, "get": load, "set_many": store_many, "get_many": load_many}, reset


def memcached_ops(server: Server, batch: int) -> tuple[dict[str, Timed], Callable[[], None]]:
    mc = MemcacheClient((server.host, server.port), timeout=120.0)

    def store(values: list[tuple[str, bytes]]) -> None:
        for key, value in values:
            if not mc.set(key, value, noreply=False):
                raise ValueError("not stored")

    def load(values: list[tuple[str, bytes]]) -> None:
        for key, value in values:
            got = mc.get(key)
            if got is None or len(got) != len(value):
                raise ValueError("not held")

    def store_many(values: list[tuple[str, bytes]]) -> None:
        for at in range(0, len(values), batch):
            if mc.set_many(dict(values[at : at + batch]), noreply=False):
                raise ValueError("not stored")

    def load_many(values: list[tuple[str, bytes]]) -> None:
        for at in range(0, len(values), batch):
            if len(mc.get_many([k for k, _ in values[at : at + batch]])) != min(
                batch, len(values) - at
            ):
                raise ValueError("not held")

    return {"set": store, "get": load, "set_many": store_many, "get_many": load_many}, mc.flush_all


def values_of(size: int, total: int) -> list[tuple[str, bytes]]:
    count = min(MAX_VALUES, max(2, total // size))
    return [(f"key-{size}-{i}", os.urandom(size)) for i in range(count)]


def measure(
    ops: dict[str, Timed], reset: Callable[[], None], total: int
) -> dict[tuple[str, int], str]:
    """'set MB/s / get MB/s' per (form, size), or why there is no figure."""
    out: dict[tuple[str, int], str] = {}
    for size in SIZES:
        values = values_of(size, total)
        forms = ["single"] + (["batch"] if size <= 64 << 10 else [])
        for form in forms:
            store, load = (
                (ops["set"], ops["get"]) if form == "single" else (ops["set_many"], ops["get_many"])
            )
            try:
                put, get = run_pair(store, load, values)
                out[form, size] = f"{put:7.1f} / {get:7.1f}"
            except Exception as exc:  # a peer that cannot hold the size says so
                out[form, size] = f"cannot hold ({type(exc).__name__})"
            reset()
        del values
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB per size instead of 256")
    parser.add_argument("--batch", type=int, default=64, help="values per batch call")
    args = parser.parse_args()
    total = QUICK_TOTAL_BYTES if args.quick else TOTAL_BYTES
    work = Path(tempfile.mkdtemp(prefix="bench-mapping-"))
    systems: list[tuple[str, str, tuple[str, ...], Any]] = [
        ("tmemd mapping()", "tmemd", (), lambda s, b: tmem_ops(s, b, 65536)),
        ("tmemd mapping(page_size=4096)", "tmemd", (), lambda s, b: tmem_ops(s, b, 4096)),
        ("redis-py", "redis", (), redis_ops),
        ("pymemcache (-I 1m)", "memcached", (), memcached_ops),
        (f"pymemcache (-I {MEMCACHED_ITEM_LIMIT})", "memcached",
         ("-I", MEMCACHED_ITEM_LIMIT), memcached_ops),
    ]  # fmt: skip
    rows: dict[str, dict[tuple[str, int], str]] = {}
    for label, system, extra, make in systems:
        server = start_server(system, work, SERVER_MEMORY_BYTES, extra_args=extra)
        try:
            ops, reset = make(server, args.batch)
            rows[label] = measure(ops, reset, total)
        finally:
            server.stop()
    print(f"# set / get MB/s, {total >> 20} MiB per size (at most {MAX_VALUES} values),")
    print(f"# batch rows: {args.batch} values per call; {peer_version('redis')};")
    print(f"# {peer_version('memcached')}; one client, loopback, this machine")
    names = {4 << 10: "4 KiB", 64 << 10: "64 KiB", 4 << 20: "4 MiB", 64 << 20: "64 MiB"}
    print("| system | form | " + " | ".join(names[s] for s in SIZES) + " |")
    print("|---|---|" + "---|" * len(SIZES))
    for label, figures in rows.items():
        for form in ("single", "batch"):
            cells = [figures.get((form, size), "—") for size in SIZES]
            print(f"| {label} | {form} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
