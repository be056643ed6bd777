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
reopened by the next call.  A cancelled caller does *not* close the
connection: its call stays in the FIFO and its reply is matched and dropped
when it arrives, so the stream stays in step.  ``timeout`` bounds connecting
and each wait for a reply (per window of a batch).  Batches keep at most
``window_for(page_size)`` requests in flight and respect the transport's
write flow control (``pause_writing``/``resume_writing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl as _ssl
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from tmem.proto import RefuseReason

from ._base import ClientBase
from ._core import BatchCall, Call, ClientCore, window_for, window_plan
from ._errors import TmemConnectionError, TmemTimeout
from ._mapping import MAPPING_PAGE_SIZE, AsyncMapping, open_async_mapping
from ._pool import AsyncPool, Handle, PutItem
from ._spec import (
    Page,
    PoolInfo,
    find_pool,
    info_from_spec,
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
        self._loop = loop
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

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
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def abort(self, error: BaseException) -> None:
        """Fail every call in flight now and drop the connection."""
        self.core.connection_lost(error)
        if self.transport is not None:
            self.transport.abort()


class AsyncClient(ClientBase):
    """An asyncio tmem client; the same arguments and methods as ``Client``,
    as coroutines.  ``async with AsyncClient(...) as client:`` closes it."""

    def __init__(
        self,
        address: str | tuple[str, int],
        client_name: str | None = None,
        token: str | None = None,
        timeout: float | None = 5.0,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(address, client_name, token, timeout, ssl)
        self._conn: _Connection | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still fail on next use)."""
        return self._conn is not None and self._conn.usable

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
        """Open the connection and say HELLO now (otherwise the first call does)."""
        await self._connection()

    async def close(self) -> None:
        """Close the connection (if any); the client may be used again later."""
        conn, self._conn = self._conn, None
        if conn is None or conn.transport is None:
            return
        conn.transport.close()
        done, _ = await asyncio.wait([conn.lost], timeout=self.timeout)
        if not done:
            conn.transport.abort()

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            conn = self._conn
            if conn is None or not conn.usable:
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

    async def _exchange(self, build: Callable[[ClientCore], Call[T]]) -> T:
        """One request, one reply."""
        conn = await self._connection()
        call = build(conn.core)
        conn.write(conn.core.data_to_send())
        await self._wait(conn, call)
        return call.result()

    async def _batch(
        self,
        items: Sequence[X],
        build: Callable[[ClientCore, Sequence[X]], BatchCall[T]],
        window: int,
    ) -> list[T]:
        """Pipelined requests in chunks of half a window, at most a window in
        flight (``window_plan``); replies in order."""
        if not items:
            return []
        conn = await self._connection()
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
        """A round trip with no effect (connects first if needed)."""
        await self._exchange(lambda core: core.ping())

    async def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Run a CONTROL command; returns the reply map."""
        return await self._exchange(lambda core: core.control(cmd, args))

    async def stats(self) -> dict[str, Any]:
        """This client's statistics (CONTROL ``stats``)."""
        return await self.control("stats")

    async def list_pools(self) -> list[dict[str, Any]]:
        """This client name's pools (CONTROL ``list_pools``)."""
        return list((await self.control("list_pools")).get("pools", []))

    async def new_pool(
        self,
        persistent: bool = False,
        shared_uuid: uuid.UUID | str | int | None = None,
        codec: str | None = None,
        page_size: int = 4096,
        precompressed: bool = False,
        pam: str | None = None,
    ) -> AsyncPool:
        """Create a pool; the arguments are those of ``Client.new_pool``."""
        spec, uuid_value = pool_spec(
            persistent=persistent,
            shared_uuid=shared_uuid,
            codec=codec,
            page_size=page_size,
            precompressed=precompressed,
            pam=pam,
        )
        pool_id = await self._exchange(lambda core: core.new_pool(spec, uuid_value))
        return AsyncPool(self, info_from_spec(pool_id, spec))

    async def pool(self, pool_id: int) -> AsyncPool:
        """Re-attach to a pool this client name created earlier; ``BadPool`` if none."""
        listing = await self.control("list_pools")
        return AsyncPool(self, find_pool(listing, pool_id, self.client_name))

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
        return await self._exchange(lambda core: core.put(info, object_id, index, page))

    async def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        return await self._exchange(lambda core: core.get(info, object_id, index, exclusive))

    async def _pool_put_many(
        self, info: PoolInfo, items: Sequence[PutItem]
    ) -> list[RefuseReason | None]:
        return await self._batch(
            items, lambda core, chunk: core.put_batch(info, chunk), window_for(info.page_size)
        )

    async def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]:
        return await self._batch(
            items,
            lambda core, chunk: core.get_batch(info, chunk, exclusive),
            window_for(info.page_size),
        )

    async def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool:
        return await self._exchange(lambda core: core.flush_page(info, object_id, index))

    async def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int:
        return await self._exchange(lambda core: core.flush_object(info, object_id))

    async def _pool_destroy(self, info: PoolInfo) -> None:
        await self._exchange(lambda core: core.destroy_pool(info.pool_id))
