"""One client shared by many threads (or tasks) against the real daemon.

Each worker owns its object id, so it can keep an exact model of what its
pages hold: a persistent pool never drops a page, so every get must return
exactly the last page the worker put there (or miss after a flush).  Every
page names its worker, index and version, so a reply meant for another call
(the failure of a client that is not thread-safe) is caught as a wrong page,
never mistaken for a right one.  Workers mix single calls and pipelined
batches; a closer calls ``close()`` while they run, which must disturb
nothing.  Totals are bounded by op counts, not by time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import uvloop

from tmem.client import AsyncClient, AsyncPool, Client, Pool

from ..conftest import Daemon

#: Page ops in all, shared by the workers (each page of a batch counts one).
TOTAL_OPS = 100_000
THREADS = 16
TASKS = 64
#: Distinct pages per worker: small enough that gets mostly hit.
KEYS_PER_WORKER = 32
BATCH_PAGES = 8
#: How often the closer thread closes the shared client, in seconds.
CLOSE_EVERY_S = 0.05


def page_of(worker: int, index: int, version: int) -> bytes:
    return struct.pack("<III", worker, index, version) * 341 + b"\0" * 4


@dataclass
class Worker:
    """One worker's model of its pages and what it found."""

    number: int
    seed: int
    model: dict[int, int | None] = field(default_factory=dict)
    version: int = 0
    wrong: list[str] = field(default_factory=list)
    ops: int = 0

    def plan(self, ops: int) -> list[tuple[str, list[int]]]:
        """The worker's calls: (kind, indexes), ``ops`` page ops in all."""
        rng = random.Random(self.seed)
        calls: list[tuple[str, list[int]]] = []
        done = 0
        while done < ops:
            kind = rng.choices(["get", "put", "flush", "get_many", "put_many"], [4, 3, 1, 1, 1])[0]
            count = BATCH_PAGES if kind.endswith("_many") else 1
            calls.append((kind, rng.sample(range(KEYS_PER_WORKER), count)))
            done += count
        return calls

    def next_pages(self, indexes: list[int]) -> list[tuple[int, int, bytes]]:
        self.version += 1
        return [(self.number, i, page_of(self.number, i, self.version)) for i in indexes]

    def stored(self, indexes: list[int], ok: list[bool]) -> None:
        for index, stored in zip(indexes, ok, strict=True):
            if not stored:
                self.wrong.append(f"persistent put refused at {index}")
            self.model[index] = self.version

    def check(self, indexes: list[int], pages: list[bytes | None]) -> None:
        for index, got in zip(indexes, pages, strict=True):
            version = self.model.get(index)
            want = None if version is None else page_of(self.number, index, version)
            if got != want:
                seen = "a miss" if got is None else repr(struct.unpack("<III", got[:12]))
                self.wrong.append(f"worker {self.number} index {index}: got {seen}")


def run_sync_call(pool: Pool, worker: Worker, kind: str, indexes: list[int]) -> None:
    oid = worker.number
    if kind == "get":
        worker.check(indexes, [pool.get(oid, indexes[0])])
    elif kind == "get_many":
        worker.check(indexes, pool.get_many([(oid, i) for i in indexes]))
    elif kind == "flush":
        pool.flush(oid, indexes[0])
        worker.model[indexes[0]] = None
    else:
        items = worker.next_pages(indexes)
        ok = [pool.put(*items[0])] if kind == "put" else pool.put_many(items)
        worker.stored(indexes, ok)
    worker.ops += len(indexes)


def _thread_body(pool: Pool, worker: Worker, errors: list[BaseException]) -> None:
    try:
        for kind, indexes in worker.plan(TOTAL_OPS // THREADS):
            run_sync_call(pool, worker, kind, indexes)
    except BaseException as exc:  # reported by the test, with the worker's tally
        errors.append(exc)


def _closer(client: Client, stop: threading.Event) -> None:
    while not stop.wait(CLOSE_EVERY_S):
        client.close()


def test_one_client_shared_by_16_threads(daemon: Daemon) -> None:
    with Client(daemon.address, client_name="threads", timeout=30.0) as client:
        pool = client.new_pool(persistent=True, codec="lz4")
        workers = [Worker(n, seed=n) for n in range(THREADS)]
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_thread_body, args=(pool, w, errors)) for w in workers]
        stop = threading.Event()
        closer = threading.Thread(target=_closer, args=(client, stop))
        closer.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        closer.join()
    assert errors == []
    assert [w for worker in workers for w in worker.wrong] == []
    assert sum(worker.ops for worker in workers) >= TOTAL_OPS


async def run_async_call(pool: AsyncPool, worker: Worker, kind: str, indexes: list[int]) -> None:
    oid = worker.number
    if kind == "get":
        worker.check(indexes, [await pool.get(oid, indexes[0])])
    elif kind == "get_many":
        worker.check(indexes, await pool.get_many([(oid, i) for i in indexes]))
    elif kind == "flush":
        await pool.flush(oid, indexes[0])
        worker.model[indexes[0]] = None
    else:
        items = worker.next_pages(indexes)
        ok = [await pool.put(*items[0])] if kind == "put" else await pool.put_many(items)
        worker.stored(indexes, ok)
    worker.ops += len(indexes)


async def _task_body(pool: AsyncPool, worker: Worker) -> None:
    for kind, indexes in worker.plan(TOTAL_OPS // TASKS):
        await run_async_call(pool, worker, kind, indexes)


async def _cancelled_reader(pool: AsyncPool, worker: Worker, rounds: int) -> None:
    """Gets of a worker's own pages cancelled at random points: a cancelled
    call's reply must never reach the next call."""
    rng = random.Random(worker.seed)
    for _ in range(rounds):
        index = rng.randrange(KEYS_PER_WORKER)
        call = asyncio.ensure_future(pool.get(worker.number, index))
        await asyncio.sleep(rng.choice([0, 0, 0.0001, 0.001]))
        call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            worker.check([index], [await call])


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_one_async_client_shared_by_many_tasks(daemon: Daemon, loop_kind: str) -> None:
    workers = [Worker(n, seed=n) for n in range(TASKS)]
    readers = [Worker(TASKS + n, seed=1000 + n) for n in range(8)]

    async def body() -> None:
        async with AsyncClient(daemon.address, client_name="tasks", timeout=30.0) as client:
            pool = await client.new_pool(persistent=True, codec="lz4")
            for reader in readers:  # pages that the cancelled gets may find
                items = reader.next_pages(list(range(KEYS_PER_WORKER)))
                reader.stored(list(range(KEYS_PER_WORKER)), await pool.put_many(items))
            await asyncio.gather(
                *(_task_body(pool, w) for w in workers),
                *(_cancelled_reader(pool, r, 200) for r in readers),
            )

    run: Callable[..., None] = asyncio.run if loop_kind == "asyncio" else uvloop.run
    run(body())
    assert [w for worker in workers + readers for w in worker.wrong] == []
    assert sum(worker.ops for worker in workers) >= TOTAL_OPS
