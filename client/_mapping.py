"""``client.mapping(name)``: values of any size under str or bytes keys.

A mapping is a *named pool* of the client (CONTROL ``open_pool``,
PROTOCOL.md section 11.3.1): every connection or process of the same client
name that opens the same name reattaches to the same pool, within the
client's lease.  The pool is PRECOMPRESSED with codec NONE, so pages are
stored as sent and may be short; ``_mapping_format`` has the page layout
(keyed hash of the key to two object ids, a head with length, CRC-32,
generation and write id, data pages) and ``_mapping_ops`` the operations,
written once and run here over a blocking ``Pool`` (``Mapping``, a
``MutableMapping``) or an ``AsyncPool`` (``AsyncMapping``, coroutines,
since a ``MutableMapping`` cannot await).

Listing: ``len()``, iteration and ``keys()`` walk the pool's objects with
CONTROL ``list_objects`` (PROTOCOL.md section 11.3.2, a cursor with bounded
daemon work per call and Redis SCAN's guarantee) and read each head page
for its key.  The daemon keeps that listing, not a directory object in the
pool: a directory would be one more page every writer must rewrite, which
two processes cannot do safely with put/get/flush alone.  So ``len()``
costs a pass over the pool; keep your own count if you need it often.

Guarantees (docs/design.md section 3, item 10): a write is all-or-nothing
(``Refused`` when the daemon refused any page; the previous value stays
readable); a read returns a whole value or raises ``KeyError``.  On an
ephemeral mapping (``persistent=False``) the daemon may drop pages at any
time: a value with a missing page is a miss, and a listed key may miss when
read.  docs/mapping.md has the details.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator, MutableMapping
from collections.abc import Mapping as AbcMapping
from typing import Any, Protocol

from tmem.proto import (
    CLIENT_NAME_CHARS,
    MAX_CLIENT_NAME_CHARS,
    encode_pool_flags,
    is_client_name,
)

from ._errors import Refused
from ._mapping_format import Key, tag_key
from ._mapping_ops import (
    FlushObjects,
    GetPages,
    Io,
    Layout,
    Plan,
    PutPages,
    WriteFailure,
    delete_keys,
    list_keys,
    read_values,
    write_values,
)
from ._pool import AsyncPool, Pool
from ._spec import Page, pool_spec

__all__ = [
    "MAPPING_PAGE_SIZE",
    "AsyncMapping",
    "AsyncMappingClient",
    "Mapping",
    "MappingClient",
    "open_async_mapping",
    "open_mapping",
]

#: Default page size of a mapping's pool: the largest (64 KiB), so a big
#: value is fewest requests; pages are sent and stored unpadded, so a small
#: value costs no more.
MAPPING_PAGE_SIZE = 65536
#: Object ids one ``list_objects`` call asks for (the daemon's maximum).
LIST_COUNT = 1024

Value = Page
#: What ``set_many`` takes: a mapping or (key, value) pairs.
Items = (
    AbcMapping[str, Value]
    | AbcMapping[bytes, Value]
    | AbcMapping[Key, Value]
    | Iterable[tuple[Key, Value]]
)


class MappingClient(Protocol):
    """What ``open_mapping`` needs of a client (``Client`` or ``FakeClient``)."""

    def control(self, cmd: str, **args: Any) -> dict[str, Any]: ...
    def pool(self, pool_id: int) -> Pool: ...


class AsyncMappingClient(Protocol):
    """What ``open_async_mapping`` needs of a client."""

    async def control(self, cmd: str, **args: Any) -> dict[str, Any]: ...
    async def pool(self, pool_id: int) -> AsyncPool: ...


def _open_args(name: str, persistent: bool, page_size: int) -> dict[str, Any]:
    if not isinstance(name, str) or not is_client_name(name):
        raise ValueError(
            f"mapping name {name!r} is not 1-{MAX_CLIENT_NAME_CHARS} of [{CLIENT_NAME_CHARS}]"
        )
    spec, _ = pool_spec(
        persistent=persistent, codec="none", page_size=page_size, precompressed=True
    )
    return {"name": name, "flags": encode_pool_flags(spec)}


def _bytes_view(value: Value) -> memoryview:
    try:
        return memoryview(value).cast("B")
    except TypeError:
        raise TypeError(f"mapping values are bytes-like, not {type(value).__name__}") from None


def _items(items: Items) -> list[Any]:
    pairs = items.items() if isinstance(items, AbcMapping) else items
    # A dict keeps the last value of a key given twice, as dict.update does.
    return list({tag_key(k): _bytes_view(v) for k, v in pairs}.items())


def _raise_failure(failure: WriteFailure | None) -> None:
    if failure is None:
        return
    if failure.collision:
        message = f"not stored: keys {list(failure.keys)!r} (refused, or a hash collision)"
    else:
        message = f"not stored: keys {list(failure.keys)!r} refused ({failure.reason!r})"
    raise Refused(message, failure.reason, failure.keys)


class _MappingBase:
    __slots__ = ("_layout", "name")

    def __init__(self, name: str, page_size: int) -> None:
        self.name = name
        self._layout = Layout(name.encode("ascii"), page_size)


def open_mapping(
    client: MappingClient, name: str, *, persistent: bool = True, page_size: int = MAPPING_PAGE_SIZE
) -> Mapping:
    """The client's mapping ``name`` (its named pool, created if missing)."""
    reply = client.control("open_pool", **_open_args(name, persistent, page_size))
    return Mapping(client.pool(int(reply["pool_id"])), name, client)


async def open_async_mapping(
    client: AsyncMappingClient,
    name: str,
    *,
    persistent: bool = True,
    page_size: int = MAPPING_PAGE_SIZE,
) -> AsyncMapping:
    """The client's mapping ``name``, for an ``AsyncClient``."""
    reply = await client.control("open_pool", **_open_args(name, persistent, page_size))
    return AsyncMapping(await client.pool(int(reply["pool_id"])), name, client)


class Mapping(_MappingBase, MutableMapping[Key, bytes]):
    """A ``MutableMapping`` of str/bytes keys to values of any size; see the module docstring."""

    __slots__ = ("_client", "pool")

    def __init__(self, pool: Pool, name: str, client: MappingClient) -> None:
        super().__init__(name, pool.page_size)
        #: The named pool the values live in.
        self.pool = pool
        self._client = client

    def _run(self, plan: Plan) -> Any:
        result: Any = None
        while True:
            try:
                io = plan.send(result)
            except StopIteration as stop:
                return stop.value
            result = self._io(io)

    def _io(self, io: Io) -> Any:
        pool = self.pool
        if isinstance(io, GetPages):
            return pool.get_many(io.handles, exclusive=False)
        if isinstance(io, PutPages):
            return pool.put_many(io.items), pool.last_refusal
        if isinstance(io, FlushObjects):
            return [pool.flush_object(oid) for oid in io.object_ids]
        reply = self._client.control(
            "list_objects", pool_id=pool.pool_id, cursor=io.cursor, count=LIST_COUNT
        )
        return [int(oid, 16) for oid in reply["objects"]], int(reply["cursor"])

    def __getitem__(self, key: Key) -> bytes:
        tagged = tag_key(key)
        value: bytes | None = self._run(read_values(self._layout, [tagged])).get(tagged)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Key, value: Value) -> None:
        self.set_many([(key, value)])

    def __delitem__(self, key: Key) -> None:
        if not self._run(delete_keys(self._layout, [tag_key(key)])):
            raise KeyError(key)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._run(list_keys(self._layout)))

    def __len__(self) -> int:
        return len(self._run(list_keys(self._layout)))

    def get_many(self, keys: Iterable[Key]) -> dict[Key, bytes]:
        """The values of the keys found (missing keys are left out), pipelined."""
        wanted = {tag_key(key): key for key in keys}
        found = self._run(read_values(self._layout, list(wanted)))
        return {wanted[t]: value for t, value in found.items()}

    def set_many(self, items: Items) -> None:
        """Store many values, pipelined; each is all-or-nothing, and ``Refused``
        (after the others are stored) names the keys that were not."""
        pairs = _items(items)
        if pairs:
            _raise_failure(self._run(write_values(self._layout, pairs)))

    def update(self, other: Any = (), /, **kwds: Value) -> None:
        """As ``dict.update``, in one ``set_many``."""
        pairs = list(other.items() if hasattr(other, "items") else other)
        self.set_many(pairs + list(kwds.items()))

    def clear(self) -> None:
        """Delete every key (one pass over the listing)."""
        keys = list(self)
        if keys:
            self._run(delete_keys(self._layout, [tag_key(key) for key in keys]))

    def __repr__(self) -> str:
        kind = "persistent" if self.pool.persistent else "ephemeral"
        return f"<Mapping {self.name!r} {kind} pool {self.pool.pool_id}>"


class AsyncMapping(_MappingBase):
    """The mapping for an ``AsyncClient``: the same operations as coroutines.

    ``await m.get(key)`` (None when missing), ``await m.set(key, value)``,
    ``await m.delete(key)`` (True if it was there), ``await m.contains(key)``,
    ``await m.keys()``, ``await m.count()``, ``get_many``/``set_many``,
    ``clear``, and ``async for key in m``.
    """

    __slots__ = ("_client", "pool")

    def __init__(self, pool: AsyncPool, name: str, client: AsyncMappingClient) -> None:
        super().__init__(name, pool.page_size)
        #: The named pool the values live in.
        self.pool = pool
        self._client = client

    async def _run(self, plan: Plan) -> Any:
        result: Any = None
        while True:
            try:
                io = plan.send(result)
            except StopIteration as stop:
                return stop.value
            result = await self._io(io)

    async def _io(self, io: Io) -> Any:
        pool = self.pool
        if isinstance(io, GetPages):
            return await pool.get_many(io.handles, exclusive=False)
        if isinstance(io, PutPages):
            return await pool.put_many(io.items), pool.last_refusal
        if isinstance(io, FlushObjects):
            return await asyncio.gather(*(pool.flush_object(oid) for oid in io.object_ids))
        reply = await self._client.control(
            "list_objects", pool_id=pool.pool_id, cursor=io.cursor, count=LIST_COUNT
        )
        return [int(oid, 16) for oid in reply["objects"]], int(reply["cursor"])

    async def get(self, key: Key, default: bytes | None = None) -> bytes | None:
        """The value of ``key``, or ``default``."""
        tagged = tag_key(key)
        found = await self._run(read_values(self._layout, [tagged]))
        value: bytes | None = found.get(tagged)
        return default if value is None else value

    async def set(self, key: Key, value: Value) -> None:
        """Store ``value`` whole, or raise ``Refused`` (the old value stays)."""
        await self.set_many([(key, value)])

    async def delete(self, key: Key) -> bool:
        """Delete ``key``; True if it was there."""
        return bool(await self._run(delete_keys(self._layout, [tag_key(key)])))

    async def contains(self, key: Key) -> bool:
        """Whether ``key`` has a whole value now."""
        return await self.get(key) is not None

    async def keys(self) -> list[Key]:
        """Every key (one pass over the pool's listing)."""
        keys: list[Key] = await self._run(list_keys(self._layout))
        return keys

    async def count(self) -> int:
        """How many keys (what ``len()`` is for ``Mapping``)."""
        return len(await self.keys())

    async def get_many(self, keys: Iterable[Key]) -> dict[Key, bytes]:
        """The values of the keys found, pipelined."""
        wanted = {tag_key(key): key for key in keys}
        found = await self._run(read_values(self._layout, list(wanted)))
        return {wanted[t]: value for t, value in found.items()}

    async def set_many(self, items: Items) -> None:
        """Store many values, pipelined; ``Refused`` names the keys not stored."""
        pairs = _items(items)
        if pairs:
            _raise_failure(await self._run(write_values(self._layout, pairs)))

    async def clear(self) -> None:
        """Delete every key."""
        keys = await self.keys()
        if keys:
            await self._run(delete_keys(self._layout, [tag_key(key) for key in keys]))

    async def __aiter__(self) -> AsyncIterator[Key]:
        for key in await self.keys():
            yield key

    def __repr__(self) -> str:
        kind = "persistent" if self.pool.persistent else "ephemeral"
        return f"<AsyncMapping {self.name!r} {kind} pool {self.pool.pool_id}>"
