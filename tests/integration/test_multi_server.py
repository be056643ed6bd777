"""One client over several real daemons on loopback (docs/multi-server.md).

Spread and movement are measured through the daemons themselves: pages per
daemon from each daemon's own ``list_pools``, and which objects moved from
the hits and misses of a client over another server list reading a shared
pool (a shared pool hashes by its UUID, so two clients of the same name
agree on placement).  The kill test kills a daemon with SIGKILL, restarts it
on the same port and checks every byte.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tmem.client import AsyncClient, Client, ServerDead

from ..conftest import Daemon, start_daemon

OBJECTS = 3000
#: The spread test's bound: each of three servers within 10% of a third.
EVEN_TOLERANCE = 0.10
#: Short enough for a test, long enough that a loaded box does not revive a
#: killed server between two calls of one check.
DEAD_TIMEOUT_S = 1.0


def page(n: int) -> bytes:
    """A distinct, compressible page per n."""
    return (n.to_bytes(8, "little") + b"multi-page-" * 3)[:32] * 128


def pages_on(daemon: Daemon, client_name: str) -> int:
    """Pages that ``client_name`` holds on ``daemon``, by the daemon's own count."""
    with Client(daemon.address, client_name=client_name) as client:
        return sum(int(p.get("pages", 0)) for p in client.list_pools())


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Daemons a test may SIGKILL; the others must exit cleanly."""
    started: list[Daemon] = []

    def start(listen: str = "127.0.0.1:0") -> Daemon:
        daemon = start_daemon(tmp_path, "--memory", "64MiB", listen=listen)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            assert daemon.stop() == 0, daemon.log()
        assert "Traceback" not in daemon.log(), daemon.log()


def _three(factory: Callable[..., Daemon]) -> list[Daemon]:
    return [factory("--memory", "64MiB") for _ in range(3)]


def test_spread_is_even_over_three_servers(daemon_factory: Callable[..., Daemon]) -> None:
    daemons = _three(daemon_factory)
    with Client([d.address for d in daemons], client_name="spread") as client:
        pool = client.new_pool(persistent=True)
        assert all(pool.put_many([(oid, 0, page(oid)) for oid in range(OBJECTS)]))
        counts = [pages_on(d, "spread") for d in daemons]
        assert sum(counts) == OBJECTS
        for count in counts:
            assert abs(count - OBJECTS / 3) <= EVEN_TOLERANCE * OBJECTS / 3, counts
        located = [client.locate(pool, oid)[0] for oid in range(OBJECTS)]
        assert [located.count(d.address) for d in daemons] == counts
        assert pool.get_many([(oid, 0) for oid in range(OBJECTS)]) == [
            page(oid) for oid in range(OBJECTS)
        ]


def _read_shared(
    daemons: Sequence[Daemon], name: str, shared: uuid.UUID, fill: bool = False
) -> tuple[list[bytes | None], list[str]]:
    """Through a client over ``daemons``: every object of the shared pool
    (put first when ``fill``), and the server each one ranks first."""
    with Client([d.address for d in daemons], client_name=name) as client:
        pool = client.new_pool(shared_uuid=shared)
        if fill:
            assert all(pool.put_many([(oid, 0, page(oid)) for oid in range(OBJECTS)]))
        got = pool.get_many([(oid, 0) for oid in range(OBJECTS)])
        return got, [client.locate(pool, oid)[0] for oid in range(OBJECTS)]


def test_adding_a_fourth_moves_about_a_quarter(daemon_factory: Callable[..., Daemon]) -> None:
    daemons = _three(daemon_factory)
    shared = uuid.uuid4()
    _, before = _read_shared(daemons, "grow", shared, fill=True)
    fourth = daemon_factory("--memory", "64MiB")
    got, after = _read_shared([*daemons, fourth], "grow", shared)
    moved = [oid for oid in range(OBJECTS) if got[oid] is None]
    assert 0 < len(moved) <= OBJECTS / 3, len(moved)
    # Exactly the objects that now rank the new server first moved, and
    # every other object was found, with its own bytes, where it was.
    assert moved == [oid for oid in range(OBJECTS) if after[oid] == fourth.address]
    assert all(got[oid] == page(oid) for oid in range(OBJECTS) if oid not in set(moved))
    assert all(before[oid] == after[oid] for oid in range(OBJECTS) if got[oid] is not None)


def test_removing_one_moves_only_its_objects(daemon_factory: Callable[..., Daemon]) -> None:
    daemons = _three(daemon_factory)
    shared = uuid.uuid4()
    _, before = _read_shared(daemons, "shrink", shared, fill=True)
    gone = daemons[1].address
    got, _ = _read_shared([d for d in daemons if d.address != gone], "shrink", shared)
    missed = [oid for oid in range(OBJECTS) if got[oid] is None]
    assert missed == [oid for oid in range(OBJECTS) if before[oid] == gone]
    assert all(got[oid] == page(oid) for oid in range(OBJECTS) if before[oid] != gone)


def test_dns_discovery_through_a_hosts_file(
    tmp_path: Path, daemon_factory: Callable[..., Daemon]
) -> None:
    first = daemon_factory("--memory", "64MiB")
    port = first.port
    daemons = [first] + [
        daemon_factory("--memory", "64MiB", listen=f"127.0.0.{n}:{port}") for n in (2, 3)
    ]
    hosts = tmp_path / "hosts"
    hosts.write_text("".join(f"127.0.0.{n} tmemd.test\n" for n in (1, 2, 3)))
    lookups: list[str] = []

    def resolver(name: str, _port: int) -> Sequence[str]:
        lookups.append(name)
        lines = [line.split() for line in hosts.read_text().splitlines()]
        return [fields[0] for fields in lines if fields[1:] == [name]]

    address = f"dns:tmemd.test:{port}"
    with Client(address, client_name="dns", resolver=resolver, dns_refresh=0.2) as client:
        pool = client.new_pool(persistent=True, replicas=2)
        assert client.servers == [f"127.0.0.{n}:{port}" for n in (1, 2, 3)]
        assert all(pool.put_many([(oid, 0, page(oid)) for oid in range(300)]))
        counts = [pages_on(d, "dns") for d in daemons]
        assert sum(counts) == 600 and min(counts) > 0, counts
        # The name loses a server: the next resolution drops it, and every
        # page is still read from its other replica.
        hosts.write_text("".join(f"127.0.0.{n} tmemd.test\n" for n in (1, 2)))
        time.sleep(0.3)
        assert pool.get_many([(oid, 0) for oid in range(300)]) == [page(o) for o in range(300)]
        assert client.servers == [f"127.0.0.{n}:{port}" for n in (1, 2)]
    assert lookups.count("tmemd.test") >= 2


def _check_all(pool_get_many: Callable[[list[tuple[int, int]]], list[bytes | None]]) -> None:
    handles = [(oid, i) for oid in range(200) for i in range(3)]
    assert pool_get_many(handles) == [page(oid * 3 + i) for oid, i in handles]


def test_kill_minus_9_with_two_replicas(killable: Callable[..., Daemon]) -> None:
    daemons = [killable() for _ in range(3)]
    victim = daemons[0]
    addresses = [d.address for d in daemons]
    with Client(addresses, client_name="kill", dead_timeout=DEAD_TIMEOUT_S) as client:
        pool = client.new_pool(persistent=True, replicas=2)
        eph = client.new_pool()
        handles = [(oid, i) for oid in range(200) for i in range(3)]
        assert all(pool.put_many([(oid, i, page(oid * 3 + i)) for oid, i in handles]))
        assert all(eph.put_many([(oid, 0, page(oid)) for oid in range(300)]))
        on_victim = {oid for oid in range(300) if client.locate(eph, oid) == [victim.address]}

        victim.proc.kill()
        victim.proc.wait()
        _check_all(pool.get_many)
        assert [pool.get(oid, i) for oid, i in handles[:60]] == [
            page(oid * 3 + i) for oid, i in handles[:60]
        ]
        got = eph.get_many([(oid, 0) for oid in range(300)], exclusive=False)
        assert [oid for oid in range(300) if got[oid] is None] == sorted(on_victim)
        assert all(got[oid] == page(oid) for oid in range(300) if oid not in on_victim)
        assert eph.get(min(on_victim), 0) is None
        assert not eph.put(min(on_victim), 0, page(0))
        assert eph.flush(min(on_victim), 0) is False
        # Written while the victim is dead: on the two live servers.
        assert pool.put(500, 0, page(500))

        revived = killable(f"127.0.0.1:{victim.port}")
        time.sleep(DEAD_TIMEOUT_S + 0.2)
        _check_all(pool.get_many)
        assert pool.get(500, 0) == page(500)
        # Read repair refilled the revived (empty) server with the pages it
        # is the first replica of (a get found them on the second), and a
        # repair pass restores the rest: then it holds every page it is a
        # replica of.
        every = [*handles, (500, 0)]
        first = sum(1 for oid, _ in every if client.locate(pool, oid)[0] == victim.address)
        second = sum(1 for oid, _ in every if client.locate(pool, oid)[1] == victim.address)
        assert first > 0 and second > 0
        assert pages_on(revived, "kill") == first
        assert client.repair(pool, every) == second
        assert pages_on(revived, "kill") == first + second
        assert client.repair(pool, every) == 0
        got = eph.get_many([(oid, 0) for oid in range(300)], exclusive=False)
        assert all(got[oid] == page(oid) for oid in range(300) if oid not in on_victim)
        assert eph.put(min(on_victim), 0, page(1)) and eph.get(min(on_victim), 0) == page(1)


def test_raise_on_dead_and_persistent_single_replica(killable: Callable[..., Daemon]) -> None:
    daemons = [killable() for _ in range(2)]
    addresses = [d.address for d in daemons]
    with Client(addresses, client_name="strict", dead_timeout=60, raise_on_dead=True) as client:
        eph = client.new_pool()
        oid = next(o for o in range(100) if client.locate(eph, o) == [daemons[0].address])
        daemons[0].proc.kill()
        daemons[0].proc.wait()
        with pytest.raises(ServerDead):
            eph.get(oid, 0)
    with Client(addresses, client_name="lax", dead_timeout=60) as client:
        persistent = client.new_pool(persistent=True)  # made on the live server only
        oid = next(o for o in range(100) if client.locate(persistent, o) == [daemons[0].address])
        with pytest.raises(ServerDead):
            persistent.get(oid, 0)
        with pytest.raises(ServerDead):
            persistent.put(oid, 0, page(0))


def test_async_client_with_replicas(killable: Callable[..., Daemon]) -> None:
    daemons = [killable() for _ in range(3)]

    async def main() -> None:
        addresses = [d.address for d in daemons]
        async with AsyncClient(addresses, client_name="aio", dead_timeout=60) as client:
            pool = await client.new_pool(persistent=True, replicas=2)
            handles = [(oid, i) for oid in range(200) for i in range(3)]
            assert all(await pool.put_many([(o, i, page(o * 3 + i)) for o, i in handles]))
            daemons[1].proc.kill()
            daemons[1].proc.wait()
            got = await pool.get_many(handles)
            assert got == [page(oid * 3 + i) for oid, i in handles]
            singles = await asyncio.gather(*(pool.get(oid, i) for oid, i in handles[:50]))
            assert list(singles) == [page(oid * 3 + i) for oid, i in handles[:50]]
            assert await pool.flush_object(0) == 3
            assert await pool.get_many([(0, i) for i in range(3)]) == [None] * 3

    asyncio.run(main())


#: Threads and checked page ops per thread of the shared-client test.
THREADS = 8
OPS_PER_THREAD = 1500


def test_threads_share_a_client_of_three(daemon_factory: Callable[..., Daemon]) -> None:
    """Threads sharing one client over three servers (rounds fanned out to
    the executor, pools made lazily under their lock) each read back exactly
    what they wrote, through single calls and batches."""
    daemons = _three(daemon_factory)
    errors: list[BaseException] = []
    with Client([d.address for d in daemons], client_name="threads") as client:
        pool = client.new_pool(persistent=True, replicas=2)

        def worker(thread: int) -> None:
            rng = random.Random(thread)
            mine: dict[int, bytes] = {}
            try:
                for n in range(OPS_PER_THREAD // 10):
                    oids = [thread * 10_000 + rng.randrange(200) for _ in range(8)]
                    items = [(oid, 0, page(oid * 7 + n)) for oid in oids]
                    if all(pool.put_many(items)):
                        mine.update((oid, data) for oid, _, data in items)
                    oid = rng.choice(oids)
                    assert pool.get(oid, 0) == mine.get(oid)
                    if n % 5 == 0:
                        pool.flush(oid, 0)
                        mine.pop(oid, None)
                    got = pool.get_many([(o, 0) for o in sorted(mine)])
                    assert got == [mine[o] for o in sorted(mine)]
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
