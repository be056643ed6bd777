"""In-memory stand-ins for ``Client``/``AsyncClient``, for users' own tests.

After pymemcache's ``MockMemcacheClient``: ``FakeClient`` takes the same
arguments and has the same methods as ``Client``, hands out the very same
``Pool`` class, and follows the same tmem semantics, with no daemon and no
socket.  It shares no code with the daemon (it must not import ``tmemd``):
it is a second, small implementation of PROTOCOL.md §1 and §8, written
from the protocol contract, which also makes it a check on the real one.

Semantics kept:

* pool ids are per client *name*, counted from 0 and never reused within
  one ``server_id`` (a destroyed pool's id answers BAD_POOL for good), at
  most ``max_pools_per_client`` at a time; several ``FakeClient``s given the
  same ``FakeServer`` and name see the same pools (re-attach with
  ``pool(id)``);
* a pool object remembers the ``server_id`` it was made on; after
  ``FakeServer.restart()`` (a new instance, no pools) and after its pool was
  destroyed, every call on it raises ``PoolGone``, as with the real client;
* a put replaces the page at its handle; a refused put flushes the old copy;
* a get from a private ephemeral pool removes the page (exclusive get);
  persistent and shared pools keep it; ``exclusive=True/False`` overrides;
* shared pools are ephemeral, named by a UUID; every client that opens the
  same UUID gets its own pool id for the same pages; the pages go when the
  last member destroys its pool; a member that opens it again gets its id
  back, and one that names another page size, PRECOMPRESSED or codec gets
  ``BadArgument``.  With ``require_shared_authorization`` (a daemon with an
  auth file) creating and joining both need ``authorize_shared`` first;
* with ``capacity_pages`` the server holds at most that many pages: an
  ephemeral page may be evicted (least recently used first) to make room,
  persistent pages never are, and a put that finds no room is refused with
  ``RefuseReason.NO_MEMORY``.

``mapping(name)`` works as on a daemon (named pools, ``list_objects``).

Not simulated: compression, leases, connection failures (so ``retry`` and
``max_connections`` are accepted and do nothing), authentication.
"""

from __future__ import annotations

import dataclasses
import ssl as _ssl
import uuid
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from tmem.proto import RefuseReason, Status

from ._errors import Unsupported
from ._fake import MAX_POOLS_PER_CLIENT, FakePool, FakeServer
from ._mapping import (
    MAPPING_PAGE_SIZE,
    AsyncMapping,
    Mapping,
    open_async_mapping,
    open_mapping,
)
from ._pool import AsyncPool, Handle, Pool, PutItem, check_same_server
from ._retry import DEFAULT_RETRY, Retry
from ._spec import (
    Page,
    PoolInfo,
    check_client_name,
    default_client_name,
    find_pool,
    new_pool_arguments,
    parse_address,
)

__all__ = ["MAX_POOLS_PER_CLIENT", "AsyncFakeClient", "FakeClient", "FakeServer"]


class FakeClient:
    """A ``Client`` look-alike over a ``FakeServer`` (a private one by default)."""

    def __init__(
        self,
        address: str | tuple[str, int] = "fake:1",
        client_name: str | None = None,
        token: str | None = None,
        timeout: float | None = 5.0,
        ssl: _ssl.SSLContext | None = None,
        *,
        max_connections: int = 1,
        retry: Retry | None = DEFAULT_RETRY,
        server: FakeServer | None = None,
        capacity_pages: int | None = None,
    ) -> None:
        if server is not None and capacity_pages is not None:
            raise ValueError("give capacity_pages to the FakeServer, not to a client of it")
        self._address = parse_address(address)
        self.client_name = check_client_name(
            default_client_name() if client_name is None else client_name
        )
        self.timeout = timeout
        self.server = server if server is not None else FakeServer(capacity_pages)
        self._max_connections = max_connections
        self.retry = retry

    @property
    def max_connections(self) -> int:
        """As given (a fake has no connections)."""
        return self._max_connections

    @property
    def server_info(self) -> dict[str, Any]:
        """What HELLO would answer."""
        return {"server": "tmem.client.testing", "protocol": 1, "server_id": self.server_id}

    @property
    def server_id(self) -> str:
        """The fake daemon instance (``FakeServer.server_id``)."""
        return self.server.server_id

    @property
    def address(self) -> tuple[str, int]:
        """The address given (never connected to)."""
        return self._address

    @property
    def connected(self) -> bool:
        """Always True: there is nothing to connect to."""
        return True

    @property
    def servers(self) -> list[str]:
        """The one (fake) server's address, as ``Client.servers``."""
        return [f"{self._address[0]}:{self._address[1]}"]

    @property
    def server_ids(self) -> dict[str, str | None]:
        """As ``Client.server_ids``: the one fake instance."""
        return {self.servers[0]: self.server_id}

    def locate(self, pool: Pool, object_id: int) -> list[str]:
        """As ``Client.locate``: one server holds everything."""
        return self.servers

    def repair(self, pool: Pool, handles: Iterable[tuple[int, int]]) -> int:
        """As ``Client.repair`` with one server: nothing to copy."""
        return 0

    def __enter__(self) -> FakeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Nothing to do."""

    def close(self) -> None:
        """Nothing to do; the pools live on in the server, as in tmemd."""

    def ping(self) -> None:
        """Nothing to do."""

    def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """``list_pools``, ``stats``, ``open_pool`` and ``list_objects`` as the
        daemon answers them."""
        if cmd == "open_pool":
            return {"pool_id": self.server.open_pool(self.client_name, args["name"], args["flags"])}
        if cmd == "list_objects":
            return self.server.list_objects(self.client_name, args["pool_id"])
        listing = self.server.listing(self.client_name)
        if cmd == "list_pools":
            return listing
        if cmd == "stats":
            pages = sum(pool["pages"] for pool in listing["pools"])
            client = {"name": self.client_name, "pools": len(listing["pools"]), "pages": pages}
            return {"clients": [client], "pools": listing["pools"]}
        raise Unsupported(Status.UNSUPPORTED, f"unknown control command {cmd!r}")

    def stats(self) -> dict[str, Any]:
        """This client's statistics."""
        return self.control("stats")

    def list_pools(self) -> list[dict[str, Any]]:
        """This client name's pools."""
        return list(self.control("list_pools")["pools"])

    def new_pool(
        self,
        persistent: bool = False,
        shared_uuid: uuid.UUID | str | int | None = None,
        codec: str | None = None,
        page_size: int = 4096,
        precompressed: bool = False,
        pam: str | None = None,
        replicas: int = 1,
    ) -> Pool:
        """Create a pool, as ``Client.new_pool`` (one server: ``replicas=1``)."""
        if replicas != 1:
            raise ValueError("replicas > 1 needs a client of several servers")
        args = new_pool_arguments(persistent, shared_uuid, codec, page_size, precompressed, pam)
        return Pool(self, self.server.new_pool(self.client_name, args))

    def pool(self, pool_id: int) -> Pool:
        """Re-attach to a pool of this client name; ``BadPool`` if none."""
        info = find_pool(self.control("list_pools"), pool_id, self.client_name)
        return Pool(self, dataclasses.replace(info, server_id=self.server_id))

    def mapping(
        self, name: str, *, persistent: bool = True, page_size: int = MAPPING_PAGE_SIZE
    ) -> Mapping:
        """The mapping ``name``, as ``Client.mapping``."""
        return open_mapping(self, name, persistent=persistent, page_size=page_size)

    # --- PoolBackend hooks ----------------------------------------------------------

    def _pool(self, info: PoolInfo) -> FakePool:
        check_same_server(info, self.server_id)
        return self.server.pool(self.client_name, info.pool_id)

    def _pool_put(
        self, info: PoolInfo, object_id: int, index: int, page: Page
    ) -> RefuseReason | None:
        return self.server.put(self._pool(info), object_id, index, page)

    def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        return self.server.get(self._pool(info), object_id, index, exclusive)

    def _pool_put_many(self, info: PoolInfo, items: Sequence[PutItem]) -> list[RefuseReason | None]:
        return [self._pool_put(info, *item) for item in items]

    def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]:
        return [self._pool_get(info, oid, idx, exclusive) for oid, idx in items]

    def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool:
        return self.server.flush_page(self._pool(info), object_id, index)

    def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int:
        return self.server.flush_object(self._pool(info), object_id)

    def _pool_destroy(self, info: PoolInfo) -> None:
        check_same_server(info, self.server_id)
        self.server.destroy_pool(self.client_name, info.pool_id)


class AsyncFakeClient:
    """An ``AsyncClient`` look-alike: a ``FakeClient`` behind coroutines."""

    def __init__(
        self,
        address: str | tuple[str, int] = "fake:1",
        client_name: str | None = None,
        token: str | None = None,
        timeout: float | None = 5.0,
        ssl: _ssl.SSLContext | None = None,
        *,
        retry: Retry | None = DEFAULT_RETRY,
        server: FakeServer | None = None,
        capacity_pages: int | None = None,
    ) -> None:
        self.sync = FakeClient(
            address,
            client_name,
            token,
            timeout,
            ssl,
            retry=retry,
            server=server,
            capacity_pages=capacity_pages,
        )
        self.client_name = self.sync.client_name
        self.server = self.sync.server
        self.retry = retry

    @property
    def server_info(self) -> dict[str, Any]:
        """What HELLO would answer."""
        return self.sync.server_info

    @property
    def server_id(self) -> str:
        """The fake daemon instance (``FakeServer.server_id``)."""
        return self.sync.server_id

    @property
    def servers(self) -> list[str]:
        """As ``AsyncClient.servers``."""
        return self.sync.servers

    @property
    def server_ids(self) -> dict[str, str | None]:
        """As ``AsyncClient.server_ids``."""
        return self.sync.server_ids

    async def __aenter__(self) -> AsyncFakeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Nothing to do."""

    async def close(self) -> None:
        """Nothing to do; the pools live on in the server."""

    async def ping(self) -> None:
        """Nothing to do."""

    async def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """As ``FakeClient.control``."""
        return self.sync.control(cmd, **args)

    async def stats(self) -> dict[str, Any]:
        """This client's statistics."""
        return self.sync.stats()

    async def list_pools(self) -> list[dict[str, Any]]:
        """This client name's pools."""
        return self.sync.list_pools()

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
        """Create a pool, as ``AsyncClient.new_pool``."""
        pool = self.sync.new_pool(
            persistent, shared_uuid, codec, page_size, precompressed, pam, replicas
        )
        return AsyncPool(self, pool.info)

    async def pool(self, pool_id: int) -> AsyncPool:
        """Re-attach to a pool of this client name; ``BadPool`` if none."""
        return AsyncPool(self, self.sync.pool(pool_id).info)

    def locate(self, pool: AsyncPool, object_id: int) -> list[str]:
        """As ``AsyncClient.locate``: one server holds everything."""
        return self.sync.servers

    async def repair(self, pool: AsyncPool, handles: Iterable[tuple[int, int]]) -> int:
        """As ``AsyncClient.repair`` with one server: nothing to copy."""
        return 0

    async def mapping(
        self, name: str, *, persistent: bool = True, page_size: int = MAPPING_PAGE_SIZE
    ) -> AsyncMapping:
        """The mapping ``name``, as ``AsyncClient.mapping``."""
        return await open_async_mapping(self, name, persistent=persistent, page_size=page_size)

    # --- AsyncPoolBackend hooks -------------------------------------------------------

    async def _pool_put(
        self, info: PoolInfo, object_id: int, index: int, page: Page
    ) -> RefuseReason | None:
        return self.sync._pool_put(info, object_id, index, page)

    async def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        return self.sync._pool_get(info, object_id, index, exclusive)

    async def _pool_put_many(
        self, info: PoolInfo, items: Sequence[PutItem]
    ) -> list[RefuseReason | None]:
        return self.sync._pool_put_many(info, items)

    async def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]:
        return self.sync._pool_get_many(info, items, exclusive)

    async def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool:
        return self.sync._pool_flush(info, object_id, index)

    async def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int:
        return self.sync._pool_flush_object(info, object_id)

    async def _pool_destroy(self, info: PoolInfo) -> None:
        self.sync._pool_destroy(info)
