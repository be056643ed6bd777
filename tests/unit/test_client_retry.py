"""Retry policies, server identity and the connection pool, against the tiny
fake server of test_client_transport (a thread on 127.0.0.1) and a fake
clock (the clients' sleep is replaced by one that only records)."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator

import pytest

from tmem.client import (
    DEFAULT_RETRY,
    AsyncClient,
    BadPool,
    Client,
    ConstantBackoff,
    ExponentialBackoff,
    NoBackoff,
    PoolGone,
    Retry,
    ServerBusy,
    TmemConnectionError,
    TmemTimeout,
)
from tmem.proto import Opcode, Request, Response, Status, encode

from .test_client_transport import CLOSE, FakeTmemServer, once, page_for

INSTANCE_A = "a" * 32
INSTANCE_B = "b" * 32


@pytest.fixture
def server() -> Iterator[FakeTmemServer]:
    fake = FakeTmemServer()
    fake.server_id = INSTANCE_A
    yield fake
    fake.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The fake clock: every pause a client takes, none of them real."""
    taken: list[float] = []

    async def async_sleep(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr("tmem.client._sync.time.sleep", taken.append)
    monkeypatch.setattr("tmem.client._async.asyncio.sleep", async_sleep)
    return taken


def busy(request: Request) -> bytes:
    return encode(Response(request.opcode, Status.BUSY, request.request_id))


# --- the policy objects ---------------------------------------------------------------


def test_retry_decides_by_attempts_and_error_class() -> None:
    retry = Retry(attempts=3, backoff=ConstantBackoff(0.5))
    assert retry.delay_s(1, TmemConnectionError("x")) == 0.5
    assert retry.delay_s(2, TmemTimeout("x")) == 0.5
    assert retry.delay_s(3, TmemConnectionError("x")) is None  # attempts used up
    assert retry.delay_s(1, ServerBusy(Status.BUSY)) == 0.5
    assert retry.delay_s(1, BadPool(Status.BAD_POOL)) is None  # an answer, not a failure
    assert retry.delay_s(1, PoolGone(Status.BAD_POOL)) is None
    assert retry.delay_s(1, ValueError("x")) is None
    assert Retry(attempts=1).delay_s(1, TmemConnectionError("x")) is None
    assert DEFAULT_RETRY.attempts == 2
    with pytest.raises(ValueError):
        Retry(attempts=0)


def test_exponential_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    plain = ExponentialBackoff(base_s=0.01, cap_s=0.05, jitter=False)
    assert [plain.delay_s(n) for n in range(1, 6)] == [0.01, 0.02, 0.04, 0.05, 0.05]
    assert plain.delay_s(10_000) == 0.05
    jittered = ExponentialBackoff(base_s=0.01, cap_s=0.05, rng=random.Random(7))
    delays = [jittered.delay_s(3) for _ in range(200)]
    assert all(0 <= d <= 0.04 for d in delays) and len(set(delays)) > 100
    assert NoBackoff().delay_s(5) == 0.0
    with pytest.raises(ValueError):
        ExponentialBackoff(base_s=-1)


# --- the blocking client --------------------------------------------------------------


def test_a_dropped_connection_is_retried_on_a_fresh_one(
    server: FakeTmemServer, sleeps: list[float]
) -> None:
    retry = Retry(attempts=3, backoff=ExponentialBackoff(0.01, 1.0, jitter=False))
    with Client(server.address, client_name="r", retry=retry) as client:
        pool = client.new_pool(persistent=True)
        server.hook = once(CLOSE, Opcode.PUT_PAGE)
        assert pool.put(1, 0, page_for(1))
        assert sleeps == [0.01] and server.connections == 2
        server.hook = once(busy, Opcode.GET_PAGE)
        assert pool.get(1, 0) == page_for(1)  # BUSY: retried too
        assert sleeps == [0.01, 0.01]


def test_no_retry_when_told_or_for_calls_that_are_not_idempotent(
    server: FakeTmemServer, sleeps: list[float]
) -> None:
    with Client(server.address, client_name="r", retry=None) as client:
        pool = client.new_pool(persistent=True)
        server.hook = once(CLOSE, Opcode.PUT_PAGE)
        with pytest.raises(TmemConnectionError):
            pool.put(1, 0, page_for(1))
    retry = Retry(attempts=5, backoff=NoBackoff())
    with Client(server.address, client_name="r", retry=retry) as client:
        server.hook = once(CLOSE, Opcode.NEW_POOL)
        with pytest.raises(TmemConnectionError):  # a retry could make a second pool
            client.new_pool()
        pool = client.new_pool(persistent=True)
        pool.put(1, 0, page_for(1))
        server.hook = once(CLOSE, Opcode.GET_PAGE)
        with pytest.raises(TmemConnectionError):  # the only copy may have gone with the reply
            pool.get(1, 0, exclusive=True)
        assert pool.get(1, 0, exclusive=False) == page_for(1)
    assert sleeps == []


def test_a_retry_gives_up_after_its_attempts(server: FakeTmemServer, sleeps: list[float]) -> None:
    server.hook = lambda request: CLOSE if request.opcode == Opcode.PING else None
    client = Client(server.address, client_name="r", retry=Retry(4, ConstantBackoff(0.2)))
    with client, pytest.raises(TmemConnectionError):
        client.ping()
    assert sleeps == [0.2] * 3


def test_a_pool_of_another_instance_raises_pool_gone_before_sending(
    server: FakeTmemServer,
) -> None:
    with Client(server.address, client_name="r") as client:
        pool = client.new_pool(persistent=True)
        assert pool.info.server_id == client.server_id == INSTANCE_A
        assert pool.put(1, 0, page_for(1))
        server.server_id = INSTANCE_B  # a restart, as the next HELLO will tell
        client.close()
        sent = len(server.opcodes)
        with pytest.raises(PoolGone, match="restart"):
            pool.get(1, 0)
        assert server.opcodes[sent:] == [Opcode.HELLO]  # nothing for the pool
        with pytest.raises(PoolGone):  # and from now on not even a connection
            pool.get_many([(1, 0)])
        assert client.server_id == INSTANCE_B and pool.gone
        assert server.opcodes[sent:] == [Opcode.HELLO]


def test_bad_pool_and_destroy_make_a_pool_gone(server: FakeTmemServer) -> None:
    with Client(server.address, client_name="r") as client:
        pool, other = client.new_pool(), client.new_pool()
        twin = client.pool(pool.pool_id)
        pool.destroy()
        for handle in (pool, twin):
            with pytest.raises(PoolGone):
                handle.put(1, 0, page_for(0))
            assert handle.gone
        server.pool_sizes.clear()
        with pytest.raises(BadPool) as caught:
            other.flush_object(3)
        assert isinstance(caught.value, PoolGone) and caught.value.status == Status.BAD_POOL


def test_threads_share_at_most_max_connections(server: FakeTmemServer) -> None:
    gate = threading.Barrier(6, timeout=5)
    errors: list[BaseException] = []

    def work(pool_id: int, thread: int) -> None:
        try:
            pool = client.pool(pool_id)
            gate.wait()
            for i in range(50):
                pool.put(thread, i, page_for(i))
                assert pool.get(thread, i) == page_for(i)
            assert pool.get_many([(thread, i) for i in range(50)]) == [
                page_for(i) for i in range(50)
            ]
        except BaseException as exc:
            errors.append(exc)

    with Client(server.address, client_name="r", max_connections=2) as client:
        pool_id = client.new_pool(persistent=True).pool_id
        threads = [threading.Thread(target=work, args=(pool_id, t)) for t in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert client.max_connections == 2
    assert errors == [] and server.connections <= 2


def test_a_thread_waits_for_a_free_connection_at_most_timeout(server: FakeTmemServer) -> None:
    with Client(
        server.address, client_name="r", timeout=0.3, max_connections=1, retry=None
    ) as client:
        client.ping()
        # Another thread's call, as it were, holds the one connection.
        with client._connections.checkout(), pytest.raises(TmemTimeout, match="busy"):
            client.ping()
        client.ping()
    assert server.connections == 1


def test_max_connections_is_checked() -> None:
    with pytest.raises(ValueError):
        Client("127.0.0.1:1", max_connections=0)
    with pytest.raises(TypeError):
        Client("127.0.0.1:1", retry=3)  # type: ignore[arg-type]


# --- the asyncio client ---------------------------------------------------------------


def test_async_retries_server_identity_and_close(
    server: FakeTmemServer, sleeps: list[float]
) -> None:
    async def body() -> None:
        retry = Retry(attempts=2, backoff=ConstantBackoff(0.3))
        async with AsyncClient(server.address, client_name="a", retry=retry) as client:
            pool = await client.new_pool(persistent=True)
            server.hook = once(CLOSE, Opcode.PUT_PAGE)
            assert await pool.put(1, 0, page_for(1))
            assert sleeps == [0.3]
            # close() while calls are in flight: they fail cleanly and, being
            # idempotent, go on over a fresh connection.
            calls = [asyncio.ensure_future(pool.get(1, 0)) for _ in range(20)]
            await asyncio.sleep(0)
            await client.close()
            assert await asyncio.gather(*calls) == [page_for(1)] * 20
            server.server_id = INSTANCE_B
            await client.close()
            with pytest.raises(PoolGone):
                await pool.get(1, 0)
            assert client.server_id == INSTANCE_B

    asyncio.run(body())


def test_an_async_client_used_under_a_second_event_loop(server: FakeTmemServer) -> None:
    client = AsyncClient(server.address, client_name="a", retry=None)

    async def use() -> bytes | None:
        pool = await client.new_pool(persistent=True)
        await pool.put(1, 0, page_for(1))
        return await pool.get(1, 0)

    # No close() in between: the first loop's connection must not be reused.
    assert asyncio.run(use()) == page_for(1)
    assert asyncio.run(use()) == page_for(1)
    assert server.connections == 2
