"""The asyncio client: ``ClientCore`` under an ``asyncio.Protocol``.

The glue is a handful of few-line callbacks, as asyncpg's: ``data_received``
feeds the core, which completes calls in order; each waiting coroutine sleeps
on a future that its call's ``on_done`` resolves.  Nothing here knows the
protocol, and nothing names a particular event loop, so the same code runs
on asyncio's default loop and on uvloop.

Because every request is built and written without an ``await`` in between,
the core's FIFO always matches the byte order on the wire: many coroutines
may share one ``AsyncClient`` and their requests pipeline naturally.

Connection life cycle as in the blocking client: opened lazily by the first
call (or ``await client.connect()``), HELLO first, closed on any error while
reading (a timeout, a garbled reply, a framing error; pymemcache's rule), and
reopened by the next call.

Cancellation.  A cancelled caller does *not* close the connection, and this
is safe: its request stays in the core's FIFO and its reply, when it
arrives, is matched to that request by id and order and dropped, never
handed to the next call (a reply that does not match the head of the FIFO
is a protocol error, which does close the connection).  Closing instead
would fail every other task's call in flight on the shared connection.  A
cancelled put or flush may or may not have been carried out; a cancelled
exclusive get may have removed its page.  A task cancelled mid-batch leaves
the requests already sent in the FIFO (answered and dropped) and sends no
more.

``close()`` fails the calls in flight at once with ``TmemConnectionError``
(so, under the default retry policy, idempotent ones go on over a fresh
connection) and drops the connection.

Retries and server identity as in the blocking client: ``retry=`` says which
failed calls are tried again, after ``await asyncio.sleep``; a pool's
request is sent only on a connection whose ``server_id`` is the pool's, else
``PoolGone``.  ``timeout`` bounds connecting
and each wait for a reply (per window of a batch).  Batches keep at most
``window_for(page_size)`` requests in flight and respect the transport's
write flow control (``pause_writing``/``resume_writing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl as _ssl
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from tmem.proto import RefuseReason

from ._base import Address, ClientBase
from ._cluster import DEFAULT_DEAD_TIMEOUT_S, DEFAULT_DNS_REFRESH_S, Resolver
from ._cluster_async import AsyncCluster
from ._core import BatchCall, Call, ClientCore, window_for, window_plan
from ._errors import TmemConnectionError, TmemTimeout
from ._mapping import MAPPING_PAGE_SIZE, AsyncMapping, open_async_mapping
from ._pool import AsyncPool, Handle, PutItem, check_same_server
from ._retry import DEFAULT_RETRY, Retry, retries_get
from ._spec import (
    Page,
    PoolInfo,
    check_handle,
    find_pool,
    info_from_spec,
    new_pool_arguments,
    pool_spec,
)

__all__ = ["AsyncClient"]

T = TypeVar("T")
X = TypeVar("X")


class _Connection(asyncio.Protocol):
    """One connection: bytes in to the core, buffers out to the transport."""

    def __init__(self, core: ClientCore, loop: asyncio.AbstractEventLoop) -> None:
        self.core = core
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = loop.create_future()
        #: The event loop this connection lives on.
        self.loop = loop
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    @property
    def server_id(self) -> str | None:
        """The daemon instance this connection said HELLO to."""
        value = self.core.server_info.get("server_id")
        return value if isinstance(value, str) else None

    @property
    def usable(self) -> bool:
        """True while requests may still be sent on this connection."""
        transport = self.transport
        return transport is not None and not transport.is_closing() and self.core.error is None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # both loops already set it; this says we rely on it
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.core.receive_data(data)
        if self.core.error is not None and self.transport is not None:
            self.transport.close()  # the stream is out of step: never reuse it

    def connection_lost(self, exc: Exception | None) -> None:
        self.core.connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_drainers()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers()

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def write(self, chunks: list[bytes | bytearray | memoryview]) -> None:
        if chunks and self.transport is not None:
            self.transport.writelines(chunks)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high mark."""
        if self._paused and not self.lost.done():
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def abort(self, error: BaseException) -> None:
        """Fail every call in flight now and drop the connection."""
        self.core.connection_lost(error)
        if self.transport is not None:
            self.transport.abort()


class AsyncClient(ClientBase):
    """An asyncio tmem client; the same arguments and methods as ``Client``,
    as coroutines (several servers included).  ``async with
    AsyncClient(...) as client:`` closes it."""

    def __init__(
        self,
        address: Address,
        client_name: str | None = None,
        token: str | None = None,
        timeout: float | None = 5.0,
        ssl: _ssl.SSLContext | None = None,
        *,
        retry: Retry | None = DEFAULT_RETRY,
        dead_timeout: float = DEFAULT_DEAD_TIMEOUT_S,
        raise_on_dead: bool = False,
        resolver: Resolver | None = None,
        dns_refresh: float = DEFAULT_DNS_REFRESH_S,
    ) -> None:
        super().__init__(
            address, client_name, token, timeout, ssl, retry, dead_timeout, resolver, dns_refresh
        )
        #: The several-server half (None for one server).
        self._cluster: AsyncCluster | None = None
        if self._server_set is not None:
            self._cluster = AsyncCluster(
                self._server_set,
                lambda server: AsyncClient(
                    server, self.client_name, token, timeout, ssl, retry=self.retry
                ),
                raise_on_dead,
            )
        self._conn: _Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still fail on next use)."""
        if self._cluster is not None:
            return any(c.connected for c in self._cluster.clients().values())
        return self._conn is not None and self._conn.usable

    @property
    def server_ids(self) -> dict[str, str | None]:
        """Each server's ``server_id`` (None before its first connection)."""
        if self._cluster is None:
            return {self.servers[0]: self.server_id}
        return {s: c.server_id for s, c in self._cluster.clients().items()}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- connection -------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection and say HELLO now (otherwise the first call
        does); several servers: to each live one."""
        if self._cluster is not None:
            await self._cluster.control_each(lambda client: client.connect())
            return
        await self._connection()

    async def close(self) -> None:
        """Close the connection (if any); the client may be used again later."""
        if self._cluster is not None:
            await self._cluster.close()
        conn, self._conn = self._conn, None
        if conn is None or conn.transport is None:
            return
        conn.core.connection_lost(TmemConnectionError("the client was closed"))
        conn.transport.close()
        done, _ = await asyncio.wait([conn.lost], timeout=self.timeout)
        if not done:
            conn.transport.abort()

    async def _connection(self) -> _Connection:
        # A connection (and a lock) belongs to the loop it was made on: a
        # client used under a second loop (a second ``asyncio.run``) opens
        # its own instead of writing to a transport of a finished loop.
        loop = asyncio.get_running_loop()
        conn = self._conn
        if conn is not None and conn.usable and conn.loop is loop:
            return conn
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            conn = self._conn
            if conn is None or not conn.usable or conn.loop is not loop:
                self._conn = None
                conn = self._conn = await self._open()
        return conn

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        core = ClientCore(self.client_name, self._token)
        where = f"{self._host}:{self._port}"
        try:
            async with asyncio.timeout(self.timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(core, loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError as exc:
            raise TmemTimeout(f"connecting to {where} timed out after {self.timeout}s") from exc
        except OSError as exc:
            raise TmemConnectionError(f"cannot connect to {where}: {exc}") from exc
        call = core.hello()
        conn.write(core.data_to_send())
        try:
            await self._wait(conn, call)
            self.server_info = call.result()
        except BaseException:
            conn.abort(TmemConnectionError("HELLO failed"))
            raise
        return conn

    # --- moving bytes -----------------------------------------------------------

    async def _wait(self, conn: _Connection, call: Call[Any]) -> None:
        """Sleep until ``call`` completes; a timeout drops the connection."""
        if call.done:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        call.on_done = lambda: None if future.done() else future.set_result(None)
        try:
            async with asyncio.timeout(self.timeout):
                await future
        except TimeoutError:
            error = TmemTimeout(f"no reply from {self._host}:{self._port} within {self.timeout}s")
            conn.abort(error)
            raise error from None

    async def _run(self, operation: Callable[[_Connection], Awaitable[T]], retry: bool = True) -> T:
        """``operation`` on the open connection; tried again as
        ``self.retry`` says when ``retry``."""
        failures = 0
        while True:
            try:
                return await operation(await self._connection())
            except Exception as exc:
                failures += 1
                delay = self.retry.delay_s(failures, exc) if retry else None
                if delay is None:
                    raise
            await asyncio.sleep(delay)

    async def _exchange(self, build: Callable[[ClientCore], Call[T]], retry: bool = False) -> T:
        """One request, one reply."""
        return await self._run(lambda conn: self._exchange_on(conn, build), retry)

    async def _exchange_on(self, conn: _Connection, build: Callable[[ClientCore], Call[T]]) -> T:
        call = build(conn.core)
        conn.write(conn.core.data_to_send())
        await self._wait(conn, call)
        return call.result()

    async def _pool_exchange(
        self, info: PoolInfo, build: Callable[[ClientCore], Call[T]], retry: bool = True
    ) -> T:
        """One request of pool ``info``, sent only on a connection to its daemon instance."""

        async def operation(conn: _Connection) -> T:
            check_same_server(info, conn.server_id)
            return await self._exchange_on(conn, build)

        return await self._run(operation, retry)

    async def _pool_batch(
        self,
        info: PoolInfo,
        items: Sequence[X],
        build: Callable[[ClientCore, Sequence[X]], BatchCall[T]],
        retry: bool = True,
    ) -> list[T]:
        """A pipelined batch of pool ``info`` (see ``_batch_on``)."""
        if not items:
            return []

        async def operation(conn: _Connection) -> list[T]:
            check_same_server(info, conn.server_id)
            return await self._batch_on(conn, items, build, window_for(info.page_size))

        return await self._run(operation, retry)

    async def _batch_on(
        self,
        conn: _Connection,
        items: Sequence[X],
        build: Callable[[ClientCore, Sequence[X]], BatchCall[T]],
        window: int,
    ) -> list[T]:
        """Pipelined requests in chunks of half a window, at most a window in
        flight (``window_plan``); replies in order."""
        core = conn.core
        calls: list[BatchCall[T]] = []
        for start, stop, wait_chunk in window_plan(len(items), window):
            if wait_chunk >= 0:
                await self._wait(conn, calls[wait_chunk])
            calls.append(build(core, items[start:stop]))
            conn.write(core.data_to_send())
            await self._drain(conn)
        await self._wait(conn, calls[-1])
        return [value for call in calls for value in call.result()]

    async def _drain(self, conn: _Connection) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await conn.drain()
        except TimeoutError:
            error = TmemTimeout(f"{self._host}:{self._port} not reading for {self.timeout}s")
            conn.abort(error)
            raise error from None

    # --- client operations ------------------------------------------------------

    async def ping(self) -> None:
        """A round trip with no effect (connects first if needed); several
        servers: to each live one."""
        if self._cluster is not None:
            await self._cluster.control_each(lambda client: client.ping())
            return
        await self._exchange(lambda core: core.ping(), retry=True)

    async def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Run a CONTROL command; returns the reply map (several servers: as
        ``Client.control``)."""
        if self._cluster is not None:
            return await self._cluster.control(cmd, args)
        return await self._exchange(lambda core: core.control(cmd, args))

    async def stats(self) -> dict[str, Any]:
        """This client's statistics (CONTROL ``stats``)."""
        return await self.control("stats")

    async def list_pools(self) -> list[dict[str, Any]]:
        """This client name's pools (CONTROL ``list_pools``); several servers:
        every server's, each entry with its ``"server"``."""
        if self._cluster is not None:
            replies = (await self.control("list_pools"))["servers"]
            return [{**p, "server": s} for s, r in replies.items() for p in r.get("pools", [])]
        return list((await self.control("list_pools")).get("pools", []))

    async def new_pool(
        self,
        persistent: bool = False,
        shared_uuid: uuid.UUID | str | int | None = None,
        codec: str | None = None,
        page_size: int = 4096,
        precompressed: bool = False,
        pam: str | None = None,
        replicas: int = 1,
    ) -> AsyncPool:
        """Create a pool; the arguments are those of ``Client.new_pool``."""
        args = new_pool_arguments(persistent, shared_uuid, codec, page_size, precompressed, pam)
        if self._cluster is not None:
            return await self._cluster.new_pool(replicas, **args)
        if replicas != 1:
            raise ValueError("replicas > 1 needs a client of several servers")
        spec, uuid_value = pool_spec(**args)
        conn = await self._connection()
        pool_id = await self._exchange_on(conn, lambda core: core.new_pool(spec, uuid_value))
        return AsyncPool(self, info_from_spec(pool_id, spec, conn.server_id))

    async def pool(self, pool_id: int) -> AsyncPool:
        """Re-attach to a pool this client name created earlier; ``BadPool`` if
        none.  As ``Client.pool``: the pool belongs to the instance answering now."""
        if self._cluster is not None:
            return AsyncPool(self._cluster, self._cluster.pools.get(pool_id).info)
        conn = await self._connection()
        listing = await self._exchange_on(conn, lambda core: core.control("list_pools", {}))
        info = find_pool(listing, pool_id, self.client_name)
        return AsyncPool(self, dataclasses.replace(info, server_id=conn.server_id))

    def locate(self, pool: AsyncPool, object_id: int) -> list[str]:
        """The servers that hold ``object_id`` of ``pool`` now (as ``Client.locate``)."""
        if self._cluster is None:
            return self.servers
        return self._cluster.locate(pool.info, object_id)

    async def repair(self, pool: AsyncPool, handles: Iterable[tuple[int, int]]) -> int:
        """As ``Client.repair``."""
        if self._cluster is None:
            return 0
        return await self._cluster.repair(pool.info, [check_handle(o, i) for o, i in handles])

    async def mapping(
        self, name: str, *, persistent: bool = True, page_size: int = MAPPING_PAGE_SIZE
    ) -> AsyncMapping:
        """The mapping ``name`` of this client name: values of any size under
        str/bytes keys, as coroutines (``tmem.client.AsyncMapping``)."""
        return await open_async_mapping(self, name, persistent=persistent, page_size=page_size)

    # --- AsyncPoolBackend hooks (used by AsyncPool) -------------------------------

    async def _pool_put(
        self, info: PoolInfo, object_id: int, index: int, page: Page
    ) -> RefuseReason | None:
        return await self._pool_exchange(info, lambda core: core.put(info, object_id, index, page))

    async def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        return await self._pool_exchange(
            info,
            lambda core: core.get(info, object_id, index, exclusive),
            retries_get(info, exclusive),
        )

    async def _pool_put_many(
        self, info: PoolInfo, items: Sequence[PutItem]
    ) -> list[RefuseReason | None]:
        return await self._pool_batch(info, items, lambda core, chunk: core.put_batch(info, chunk))

    async def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]:
        return await self._pool_batch(
            info,
            items,
            lambda core, chunk: core.get_batch(info, chunk, exclusive),
            retries_get(info, exclusive),
        )

    async def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool:
        return await self._pool_exchange(info, lambda core: core.flush_page(info, object_id, index))

    async def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int:
        return await self._pool_exchange(info, lambda core: core.flush_object(info, object_id))

    async def _pool_destroy(self, info: PoolInfo) -> None:
        await self._pool_exchange(info, lambda core: core.destroy_pool(info.pool_id), retry=False)
