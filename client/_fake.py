"""The state behind ``tmem.client.testing``'s fakes: a tiny tmem in a dict.

``FakeServer`` holds what tmemd holds for its clients: pools per client name
(ids from a per-name counter, never reused within one ``server_id``; a
``restart()`` starts a new instance with a new ``server_id`` and no pools),
shared pools by UUID, pages by (object_id, index),
and, when ``capacity_pages`` is set, an LRU list of ephemeral pages to evict.
Each rule it keeps is listed in ``tmem.client.testing``'s docstring; it is
deliberately a plain second implementation (no code shared with tmemd), so
that tests written against it exercise the protocol contract, not the daemon.
"""

from __future__ import annotations

import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from tmem.proto import (
    CLIENT_NAME_CHARS,
    MAX_CLIENT_NAME_CHARS,
    RefuseReason,
    Status,
    decode_pool_flags,
    is_client_name,
)

from ._errors import BadArgument, BadPool, Forbidden, TooManyPools, Unsupported
from ._spec import Page, PoolInfo, info_from_spec, pool_spec

__all__ = ["MAX_POOLS_PER_CLIENT", "FakePool", "FakeServer"]

#: The daemon's default bound on pools per client (Xen allowed 16).
MAX_POOLS_PER_CLIENT = 64
#: Pool names, as the daemon accepts them (PROTOCOL.md section 11.3.1).


@dataclass(eq=False)
class FakePool:
    """One pool's pages; a shared pool is one object under each member's id."""

    info: PoolInfo  # pool_id here is the creator's id
    owner: str
    uuid: int | None = None
    #: The name given by ``open_pool`` (private pools), or None.
    name: str | None = None
    members: set[str] = field(default_factory=set)
    objects: dict[int, dict[int, bytes]] = field(default_factory=dict)

    def page_count(self) -> int:
        return sum(len(pages) for pages in self.objects.values())


class FakeServer:
    """The shared state behind ``FakeClient``s: pools, pages and capacity."""

    def __init__(
        self,
        capacity_pages: int | None = None,
        max_pools_per_client: int = MAX_POOLS_PER_CLIENT,
        require_shared_authorization: bool = False,
    ) -> None:
        self.capacity_pages = capacity_pages
        self.max_pools_per_client = max_pools_per_client
        self.require_shared_authorization = require_shared_authorization
        #: The daemon instance, as HELLO's ``server_id``: 32 hex digits.
        self.server_id = secrets.token_hex(16)
        self._next_pool_id: dict[str, int] = {}
        self._pools: dict[str, dict[int, FakePool]] = {}
        self._shared: dict[int, FakePool] = {}
        self._authorized: set[tuple[int, str]] = set()
        #: Client -> pool name -> pool id, for named pools.
        self._names: dict[str, dict[str, int]] = {}
        #: Ephemeral pages in least-recently-used order: (pool, object_id, index).
        self._lru: OrderedDict[tuple[FakePool, int, int], None] = OrderedDict()
        self.pages = 0
        self.evictions = 0

    def restart(self) -> None:
        """Stop and start the daemon without saved state: a new ``server_id``,
        no pools, no pages (pool ids start from 0 again).  Authorizations stay,
        as an auth file does."""
        self.server_id = secrets.token_hex(16)
        self._next_pool_id.clear()
        self._pools.clear()
        self._shared.clear()
        self._lru.clear()
        self.pages = 0

    def authorize_shared(self, shared_uuid: uuid.UUID | str | int, client_name: str) -> None:
        """Let ``client_name`` create or join the shared pool ``shared_uuid``."""
        _, value = pool_spec(shared_uuid=shared_uuid)
        self._authorized.add((value or 0, client_name))

    # --- pools ------------------------------------------------------------------

    def new_pool(self, client: str, spec_args: dict[str, Any]) -> PoolInfo:
        spec, shared_uuid = pool_spec(**spec_args)
        pools = self._pools.setdefault(client, {})
        if shared_uuid is not None:
            if self.require_shared_authorization and (shared_uuid, client) not in self._authorized:
                raise Forbidden(Status.FORBIDDEN, f"{client} may not use shared pool {shared_uuid}")
            pool = self._shared.get(shared_uuid)
            if pool is not None:
                return self._join(client, pool, info_from_spec(0, spec))
        if len(pools) >= self.max_pools_per_client:
            raise TooManyPools(Status.TOO_MANY_POOLS, f"{client} has {len(pools)} pools")
        pool_id = self._new_id(client)
        info = info_from_spec(pool_id, spec, self.server_id)
        pools[pool_id] = FakePool(info, client, shared_uuid)
        if shared_uuid is not None:
            self._shared[shared_uuid] = pools[pool_id]
            pools[pool_id].members.add(client)
        return info

    def _new_id(self, client: str) -> int:
        """The next never-used id of ``client`` (ids are not reused, as the daemon's)."""
        pool_id = self._next_pool_id.get(client, 0)
        self._next_pool_id[client] = pool_id + 1
        return pool_id

    def _join(self, client: str, pool: FakePool, asked: PoolInfo) -> PoolInfo:
        """Open an existing shared pool: same page size and PRECOMPRESSED, the
        same codec and PAM unless none is named; a member gets its id back."""
        info = pool.info
        if (
            (asked.page_size, asked.precompressed) != (info.page_size, info.precompressed)
            or asked.codec not in (None, info.codec)
            or asked.pam not in (None, info.pam)
        ):
            raise BadArgument(Status.BAD_ARGUMENT, "shared pool exists with other flags")
        pools = self._pools[client]
        pool_id = next((i for i, p in pools.items() if p is pool), None)
        if pool_id is None:
            if len(pools) >= self.max_pools_per_client:
                raise TooManyPools(Status.TOO_MANY_POOLS, f"{client} has {len(pools)} pools")
            pool_id = self._new_id(client)
            pools[pool_id] = pool
            pool.members.add(client)
        return PoolInfo(
            pool_id,
            info.page_size,
            False,
            True,
            info.precompressed,
            info.codec,
            server_id=self.server_id,
        )

    def open_pool(self, client: str, name: str, flags: int) -> int:
        """CONTROL ``open_pool``: the client's pool ``name``, created if missing."""
        spec = decode_pool_flags(flags)
        if spec.shared or not is_client_name(name):
            raise BadArgument(
                Status.BAD_ARGUMENT,
                f"a private pool and a name of 1-{MAX_CLIENT_NAME_CHARS} of [{CLIENT_NAME_CHARS}]",
            )
        names = self._names.setdefault(client, {})
        if name in names:
            info = self.pool(client, names[name]).info
            if info != info_from_spec(info.pool_id, spec, self.server_id):
                raise BadArgument(Status.BAD_ARGUMENT, f"pool {name!r} exists with other flags")
            return info.pool_id
        info = self.new_pool(
            client,
            {
                "persistent": spec.persistent,
                "codec": spec.codec,
                "page_size": spec.page_size,
                "precompressed": spec.precompressed,
                "pam": spec.pam,
            },
        )
        self._pools[client][info.pool_id].name = name
        names[name] = info.pool_id
        return info.pool_id

    def list_objects(self, client: str, pool_id: int) -> dict[str, Any]:
        """CONTROL ``list_objects``, all in one reply (the guarantee allows it)."""
        pool = self.pool(client, pool_id)
        if pool.name is None:
            raise Unsupported(Status.UNSUPPORTED, f"pool {pool_id} keeps no listing")
        return {"objects": [f"{oid:048x}" for oid in pool.objects], "cursor": 0}

    def pool(self, client: str, pool_id: int) -> FakePool:
        try:
            return self._pools[client][pool_id]
        except KeyError:
            raise BadPool(Status.BAD_POOL, f"client {client} has no pool {pool_id}") from None

    def destroy_pool(self, client: str, pool_id: int) -> None:
        pool = self.pool(client, pool_id)
        del self._pools[client][pool_id]
        if pool.name is not None:
            del self._names[client][pool.name]
        pool.members.discard(client)
        if pool.uuid is not None:
            if pool.members:
                return
            del self._shared[pool.uuid]
        for object_id in list(pool.objects):
            self.flush_object(pool, object_id)

    def listing(self, client: str) -> dict[str, Any]:
        pools = []
        for pool_id, pool in sorted(self._pools.get(client, {}).items()):
            info = pool.info
            pools.append(
                {
                    "pool_id": pool_id,
                    "name": pool.name,
                    "persistent": info.persistent,
                    "shared": info.shared,
                    "precompressed": info.precompressed,
                    "page_size": info.page_size,
                    "codec": info.codec,
                    "pages": pool.page_count(),
                }
            )
        return {"pools": pools}

    # --- pages --------------------------------------------------------------------

    def put(self, pool: FakePool, object_id: int, index: int, page: Page) -> RefuseReason | None:
        self.flush_page(pool, object_id, index)  # replace, or flush the old copy if refused
        if not self._make_room(pool):
            return RefuseReason.NO_MEMORY
        pool.objects.setdefault(object_id, {})[index] = bytes(page)
        self.pages += 1
        if not pool.info.persistent:
            self._lru[(pool, object_id, index)] = None
        return None

    def _make_room(self, pool: FakePool) -> bool:
        if self.capacity_pages is None:
            return True
        while self.pages >= self.capacity_pages:
            if not self._lru:
                return False
            victim, object_id, index = next(iter(self._lru))
            self.flush_page(victim, object_id, index)
            self.evictions += 1
        return True

    def get(
        self, pool: FakePool, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        page = pool.objects.get(object_id, {}).get(index)
        if page is None:
            return None
        if exclusive is None:
            exclusive = not pool.info.persistent and pool.uuid is None
        if exclusive:
            self.flush_page(pool, object_id, index)
        elif not pool.info.persistent:
            self._lru.move_to_end((pool, object_id, index))
        return page

    def flush_page(self, pool: FakePool, object_id: int, index: int) -> bool:
        pages = pool.objects.get(object_id)
        if pages is None or pages.pop(index, None) is None:
            return False
        if not pages:
            del pool.objects[object_id]
        self.pages -= 1
        self._lru.pop((pool, object_id, index), None)
        return True

    def flush_object(self, pool: FakePool, object_id: int) -> int:
        indexes = list(pool.objects.get(object_id, {}))
        for index in indexes:
            self.flush_page(pool, object_id, index)
        return len(indexes)
