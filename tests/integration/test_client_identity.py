"""The client's half of server identity, and retries, with the real daemon.

A daemon restarted on the same port is a new instance (a new ``server_id``)
that numbers pools from 0 again: an old ``Pool`` must raise ``PoolGone`` and
never read the new pool that got its id.  A destroyed pool's handles raise
``PoolGone`` too.  Within one instance a dropped connection is invisible:
the pool goes on over the next connection (PROTOCOL.md §11.2).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tmem.client import (
    AsyncClient,
    Client,
    ConstantBackoff,
    PoolGone,
    Retry,
    TmemConnectionError,
)

from ..conftest import Daemon, start_daemon

OLD_PAGE = b"A" * 4096
NEW_PAGE = b"B" * 4096


def restart(daemon: Daemon, tmp_path: Path, started: list[Daemon]) -> Daemon:
    """Stop ``daemon`` and start a new one on the same port."""
    assert daemon.stop() == 0
    again = start_daemon(tmp_path, "--memory", "64MiB", "--listen", daemon.address)
    started.append(again)
    assert again.port == daemon.port
    return again


@pytest.fixture
def started() -> list[Daemon]:
    return []


@pytest.fixture(autouse=True)
def _stop_restarted(started: list[Daemon]) -> object:
    yield None
    for daemon in started:
        assert daemon.stop() == 0, daemon.log()
        assert "Traceback" not in daemon.log()


def test_after_a_restart_an_old_pool_raises_pool_gone(
    daemon: Daemon, tmp_path: Path, started: list[Daemon]
) -> None:
    with Client(daemon.address, client_name="app") as client:
        old = client.new_pool(persistent=True)
        assert old.put(1, 0, OLD_PAGE)
        first_id = client.server_id
        assert first_id is not None and old.info.server_id == first_id
        restart(daemon, tmp_path, started)
        with Client(daemon.address, client_name="app") as other_part:
            new = other_part.new_pool(persistent=True)
            assert new.pool_id == old.pool_id  # the new instance numbers pools afresh
            assert new.put(1, 0, NEW_PAGE)
        for call in (
            lambda: old.get(1, 0),
            lambda: old.get_many([(1, 0)]),
            lambda: old.put(1, 0, OLD_PAGE),
            lambda: old.flush_object(1),
        ):
            with pytest.raises(PoolGone):
                call()
        assert client.server_id not in (None, first_id)
        assert client.pool(new.pool_id).get(1, 0) == NEW_PAGE  # untouched by the old handle


def test_after_a_restart_an_old_async_pool_raises_pool_gone(
    daemon: Daemon, tmp_path: Path, started: list[Daemon]
) -> None:
    async def body() -> None:
        async with AsyncClient(daemon.address, client_name="app") as client:
            pool = await client.new_pool(persistent=True)
            assert await pool.put(1, 0, OLD_PAGE)
            # The loop runs on meanwhile, as an application's does.
            await asyncio.to_thread(restart, daemon, tmp_path, started)
            fresh = await client.new_pool(persistent=True)
            assert fresh.pool_id == pool.pool_id and await fresh.put(1, 0, NEW_PAGE)
            with pytest.raises(PoolGone):
                await pool.get(1, 0)
            assert await fresh.get(1, 0) == NEW_PAGE

    asyncio.run(body())


def test_a_destroyed_pool_raises_pool_gone_through_every_handle(daemon: Daemon) -> None:
    with Client(daemon.address, client_name="app") as client:
        pool = client.new_pool(persistent=True)
        twin = client.pool(pool.pool_id)
        assert pool.put(1, 0, OLD_PAGE)
        pool.destroy()
        nxt = client.new_pool(persistent=True)
        assert nxt.put(1, 0, NEW_PAGE) and nxt.pool_id != pool.pool_id
        with pytest.raises(PoolGone):
            pool.get(1, 0)
        with pytest.raises(PoolGone):  # found gone: the daemon answered BAD_POOL
            twin.get(1, 0)
        with pytest.raises(PoolGone):
            twin.destroy()
        assert nxt.get(1, 0) == NEW_PAGE


def test_within_one_instance_a_dropped_connection_is_invisible(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory("--memory", "64MiB", "--idle-timeout", "0.3")
    # No retries: an idle connection the daemon closed is noticed before use.
    with Client(daemon.address, client_name="app", retry=None) as client:
        pool = client.new_pool(persistent=True)
        assert pool.put(1, 0, OLD_PAGE)
        time.sleep(0.8)  # the daemon closes the idle connection
        assert pool.get(1, 0) == OLD_PAGE
        time.sleep(0.8)
        assert client.new_pool().pool_id == pool.pool_id + 1


def test_a_retry_rides_over_a_restart(
    daemon: Daemon, tmp_path: Path, started: list[Daemon]
) -> None:
    patient = Retry(attempts=100, backoff=ConstantBackoff(0.1))
    with Client(daemon.address, client_name="app", retry=patient, timeout=2.0) as client:
        client.ping()
        assert daemon.stop() == 0
        with pytest.raises(TmemConnectionError):
            Client(daemon.address, retry=None).ping()
        restarter = threading.Timer(
            0.5,
            lambda: started.append(
                start_daemon(tmp_path, "--memory", "64MiB", "--listen", daemon.address)
            ),
        )
        restarter.start()
        before = time.monotonic()
        client.ping()  # retried until the new daemon answers
        restarter.join()
        assert time.monotonic() - before >= 0.4
        pool = client.new_pool(persistent=True)
        assert pool.put(1, 0, NEW_PAGE) and pool.get(1, 0) == NEW_PAGE


def test_after_the_lease_ends_a_pool_raises_pool_gone(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory("--memory", "64MiB", "--lease", "0.3")
    with Client(daemon.address, client_name="leaser") as client:
        pool = client.new_pool(persistent=True)
        assert pool.put(1, 0, OLD_PAGE)
        client.close()  # no connection: the lease runs
        deadline = time.monotonic() + 10
        while "lease of client leaser ended" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.05)
        fresh = client.new_pool(persistent=True)  # the same instance: a new id
        assert fresh.put(1, 0, NEW_PAGE) and fresh.pool_id != pool.pool_id
        with pytest.raises(PoolGone):
            pool.get(1, 0)
        assert pool.gone and fresh.get(1, 0) == NEW_PAGE
