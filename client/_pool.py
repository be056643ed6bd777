"""Pools as objects: ``Pool`` (blocking) and ``AsyncPool`` (coroutines).

A pool object is a ``PoolInfo`` plus the client it talks through.  It checks
every argument itself (ids in range, page length, bytes-like pages) so that
a mistake raises ``ValueError``/``TypeError`` before anything is sent; a
batch is checked whole before its first request leaves, so a bad item in
the middle never leaves half a batch applied.

The client behind a pool is any object with the ``_pool_*`` hooks of
``PoolBackend``/``AsyncPoolBackend``: the real ``Client``/``AsyncClient``,
or ``tmem.client.testing.FakeClient``.  One pool class therefore serves
both, and a user's test sees exactly the pool API of production.

Semantics (PROTOCOL.md §1 and §8): ``put`` returns True when stored and False when
refused (``last_refusal`` says why; a refused put also flushed any old copy
at that handle).  ``get`` returns the page or None.  ``exclusive=None``
keeps the pool's default (private ephemeral pools hand the page over and
forget it; persistent and shared pools keep it); True/False override it.

Handles that cannot reach the wrong pool (PROTOCOL.md §11.2): a pool id
means something only on the daemon instance that gave it out, and is never
reused there.  So a pool object remembers the
instance (``info.server_id``); the client compares it with the ``server_id``
of the connection a call is about to use, before anything is sent
(``check_same_server``), and raises ``PoolGone`` on a mismatch.  Once a pool
object has seen its pool gone (destroyed by it, BAD_POOL from the daemon, or
another instance), it raises ``PoolGone`` for every later call without
sending anything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from tmem.proto import RefuseReason, Status

from ._errors import BadPool, PoolGone
from ._spec import Page, PoolInfo, check_handle, check_object_id, check_page

__all__ = [
    "AsyncPool",
    "AsyncPoolBackend",
    "Handle",
    "Pool",
    "PoolBackend",
    "PutItem",
    "check_same_server",
]

T = TypeVar("T")

#: A checked page handle within a pool: (object_id, index).
Handle = tuple[int, int]
#: A checked put: (object_id, index, page).
PutItem = tuple[int, int, Page]


class PoolBackend(Protocol):
    """What a blocking client provides to its ``Pool`` objects."""

    def _pool_put(
        self, info: PoolInfo, object_id: int, index: int, page: Page
    ) -> RefuseReason | None: ...
    def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None: ...
    def _pool_put_many(
        self, info: PoolInfo, items: Sequence[PutItem]
    ) -> list[RefuseReason | None]: ...
    def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]: ...
    def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool: ...
    def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int: ...
    def _pool_destroy(self, info: PoolInfo) -> None: ...


class AsyncPoolBackend(Protocol):
    """What an asyncio client provides to its ``AsyncPool`` objects."""

    async def _pool_put(
        self, info: PoolInfo, object_id: int, index: int, page: Page
    ) -> RefuseReason | None: ...
    async def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None: ...
    async def _pool_put_many(
        self, info: PoolInfo, items: Sequence[PutItem]
    ) -> list[RefuseReason | None]: ...
    async def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]: ...
    async def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool: ...
    async def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int: ...
    async def _pool_destroy(self, info: PoolInfo) -> None: ...


def _check_puts(info: PoolInfo, items: Iterable[tuple[int, int, Page]]) -> list[PutItem]:
    out: list[PutItem] = []
    for object_id, index, page in items:
        oid, idx = check_handle(object_id, index)
        out.append((oid, idx, check_page(info, page)))
    return out


def _check_handles(items: Iterable[tuple[int, int]]) -> list[Handle]:
    return [check_handle(object_id, index) for object_id, index in items]


def check_same_server(info: PoolInfo, server_id: str | None) -> None:
    """Raise ``PoolGone`` unless ``server_id`` (of the connection about to be
    used) is the daemon instance the pool was made on."""
    if info.server_id != server_id:
        raise PoolGone(
            Status.BAD_POOL,
            f"pool {info.pool_id} was made on daemon instance {info.server_id}, "
            f"but the connection reached instance {server_id} (a restart)",
        )


def _last_refusal(reasons: Sequence[RefuseReason | None]) -> RefuseReason | None:
    for reason in reversed(reasons):
        if reason is not None:
            return reason
    return None


class _PoolBase:
    """The description and the gone state shared by both pool classes."""

    __slots__ = ("_gone", "info", "last_refusal")

    def __init__(self, info: PoolInfo) -> None:
        self.info = info
        #: Why the last refused put of the latest put/put_many was refused
        #: (None when that call stored everything).
        self.last_refusal: RefuseReason | None = None
        self._gone: str | None = None

    @property
    def gone(self) -> bool:
        """True once this object knows its pool is gone (calls raise PoolGone)."""
        return self._gone is not None

    def _check_live(self) -> None:
        if self._gone is not None:
            raise PoolGone(Status.BAD_POOL, f"pool {self.info.pool_id} is gone: {self._gone}")

    def _went(self, error: BadPool) -> PoolGone:
        """Remember that the pool is gone; the ``PoolGone`` to raise."""
        if self._gone is None:
            self._gone = error.message or "the daemon answered BAD_POOL"
        if isinstance(error, PoolGone):
            return error
        return PoolGone(error.status, f"pool {self.info.pool_id} is gone: {self._gone}",
                        error.request_id)  # fmt: skip

    @property
    def pool_id(self) -> int:
        """The pool id, scoped to this client name."""
        return self.info.pool_id

    @property
    def page_size(self) -> int:
        """Bytes per page (a precompressed page may be shorter)."""
        return self.info.page_size

    @property
    def persistent(self) -> bool:
        """True for a persistent pool (frontswap), False for ephemeral (cleancache)."""
        return self.info.persistent

    @property
    def shared(self) -> bool:
        """True for a shared (UUID-named, ephemeral) pool."""
        return self.info.shared

    def __repr__(self) -> str:
        kind = "persistent" if self.info.persistent else "ephemeral"
        shared = " shared" if self.info.shared else ""
        return f"<{type(self).__name__} {self.info.pool_id} {kind}{shared} {self.info.page_size}B>"


class Pool(_PoolBase):
    """A pool used through a blocking ``Client`` (or a ``FakeClient``)."""

    __slots__ = ("_backend",)

    def __init__(self, backend: PoolBackend, info: PoolInfo) -> None:
        super().__init__(info)
        self._backend = backend

    def _call(self, hook: Callable[..., T], *args: Any) -> T:
        self._check_live()
        try:
            return hook(self.info, *args)
        except BadPool as exc:
            raise self._went(exc) from exc

    def put(self, object_id: int, index: int, page: Page) -> bool:
        """Store ``page`` at (object_id, index); True if stored, False if refused."""
        oid, idx = check_handle(object_id, index)
        reason = self._call(self._backend._pool_put, oid, idx, check_page(self.info, page))
        self.last_refusal = reason
        return reason is None

    def get(self, object_id: int, index: int, exclusive: bool | None = None) -> bytes | None:
        """The page at (object_id, index), or None on a miss."""
        oid, idx = check_handle(object_id, index)
        return self._call(self._backend._pool_get, oid, idx, exclusive)

    def flush(self, object_id: int, index: int) -> bool:
        """Drop the page at (object_id, index); True if there was one."""
        oid, idx = check_handle(object_id, index)
        return self._call(self._backend._pool_flush, oid, idx)

    def flush_object(self, object_id: int) -> int:
        """Drop every page of ``object_id``; returns how many there were."""
        return self._call(self._backend._pool_flush_object, check_object_id(object_id))

    def destroy(self) -> None:
        """Free the pool and all its pages (a shared pool: leave it); every
        later call on this object raises ``PoolGone``."""
        self._call(self._backend._pool_destroy)
        self._gone = "destroyed through this object"

    def put_many(self, items: Iterable[tuple[int, int, Page]]) -> list[bool]:
        """Pipelined puts of ``(object_id, index, page)``; True per stored page."""
        reasons = self._call(self._backend._pool_put_many, _check_puts(self.info, items))
        self.last_refusal = _last_refusal(reasons)
        return [reason is None for reason in reasons]

    def get_many(
        self, items: Iterable[tuple[int, int]], exclusive: bool | None = None
    ) -> list[bytes | None]:
        """Pipelined gets of ``(object_id, index)``; a page or None per item."""
        return self._call(self._backend._pool_get_many, _check_handles(items), exclusive)


class AsyncPool(_PoolBase):
    """A pool used through an ``AsyncClient``; the same methods as coroutines."""

    __slots__ = ("_backend",)

    def __init__(self, backend: AsyncPoolBackend, info: PoolInfo) -> None:
        super().__init__(info)
        self._backend = backend

    async def _call(self, hook: Callable[..., Awaitable[T]], *args: Any) -> T:
        self._check_live()
        try:
            return await hook(self.info, *args)
        except BadPool as exc:
            raise self._went(exc) from exc

    async def put(self, object_id: int, index: int, page: Page) -> bool:
        """Store ``page`` at (object_id, index); True if stored, False if refused."""
        oid, idx = check_handle(object_id, index)
        reason = await self._call(self._backend._pool_put, oid, idx, check_page(self.info, page))
        self.last_refusal = reason
        return reason is None

    async def get(self, object_id: int, index: int, exclusive: bool | None = None) -> bytes | None:
        """The page at (object_id, index), or None on a miss."""
        oid, idx = check_handle(object_id, index)
        return await self._call(self._backend._pool_get, oid, idx, exclusive)

    async def flush(self, object_id: int, index: int) -> bool:
        """Drop the page at (object_id, index); True if there was one."""
        oid, idx = check_handle(object_id, index)
        return await self._call(self._backend._pool_flush, oid, idx)

    async def flush_object(self, object_id: int) -> int:
        """Drop every page of ``object_id``; returns how many there were."""
        return await self._call(self._backend._pool_flush_object, check_object_id(object_id))

    async def destroy(self) -> None:
        """Free the pool and all its pages (a shared pool: leave it); every
        later call on this object raises ``PoolGone``."""
        await self._call(self._backend._pool_destroy)
        self._gone = "destroyed through this object"

    async def put_many(self, items: Iterable[tuple[int, int, Page]]) -> list[bool]:
        """Pipelined puts of ``(object_id, index, page)``; True per stored page."""
        reasons = await self._call(self._backend._pool_put_many, _check_puts(self.info, items))
        self.last_refusal = _last_refusal(reasons)
        return [reason is None for reason in reasons]

    async def get_many(
        self, items: Iterable[tuple[int, int]], exclusive: bool | None = None
    ) -> list[bytes | None]:
        """Pipelined gets of ``(object_id, index)``; a page or None per item."""
        return await self._call(self._backend._pool_get_many, _check_handles(items), exclusive)
