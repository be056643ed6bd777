"""Clients, their pool-id namespaces, shared pools and leases.

Pool ids are per client: each ``Client`` has its own table from small
integers to ``Pool`` objects, so a client can only ever name its own pools
(one client's id 0 and another's id 0 are different pools; Xen's XSA-15 came
from a pool id that reached outside its domain).  At most
``max_pools_per_client`` are open at once.

Ids are never reused within one daemon instance (one ``server_id``, see
PROTOCOL.md §11.2): each client name counts its pools from 0, and the
counter outlives ``destroy_pool`` and the client's lease.  A handle kept
across a destroy or a lease expiry therefore answers BAD_POOL instead of
reaching whatever pool got the same id next: the id alone names the pool,
no generation has to travel with it.  The counter costs one small int per
client name that ever made a pool.  A name that made ``POOL_ID_LIMIT``
(2^32 - 1) pools has used up its ids and gets TOO_MANY_POOLS: five days of
doing nothing but making 10,000 pools a second, and it hurts no other name.

Shared pools are ephemeral, named by a 128-bit UUID.  One ``Pool`` object
appears in each member's table, under an id of that member's own choosing.
The creator may always join; anyone else needs ``authorize_shared(uuid,
name)`` first, because a UUID is not a secret.  ``destroy_pool`` by a member
only leaves; the pages go when the last member leaves.  Pages are charged to
the pool's owner: the creator, then the earliest-joined remaining member
(``rehome`` moves the pages' charge and LRU entries when the owner leaves).
``revoke_shared`` withdraws an authorization and makes the client leave the
pool if it is a member (a revoked client must lose access, not just the
right to join again); the creator cannot be revoked.

Leases: a client is created by its first ``connect``.  When its last
connection closes, its lease starts; ``expire_leases()`` frees every client
whose lease ended by ``clock()`` (the daemon calls it periodically), and a
reconnect before that cancels the lease, so a host that reconnects finds its
swap pages again.  Only clients whose last connection closed are scanned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ._config import MAX_PAGE_BYTES, MIN_PAGE_BYTES, POOL_ID_LIMIT, UUID_LIMIT, EngineConfig
from ._errors import (
    BadArgument,
    Forbidden,
    NoSuchClient,
    NoSuchPool,
    Refusal,
    TooManyPools,
    Unsupported,
)
from ._index import Ledger
from ._space import Space
from ._state import Client, Pool
from .codecs import Codec

__all__ = ["Registry"]


class Registry:
    """Client and pool bookkeeping; pages are the engine's business.

    ``free_pages(pool)`` is called when a pool's last member leaves; it must
    free every page of the pool.  ``rehome(pool, old_owner, old_pool_id)``
    is called after a shared pool's owner changed.  ``init_client(client)``
    is called for each new ``Client`` (to copy in its settings), and
    ``init_pool(pool)`` for each new ``Pool``.
    ``space_for(persistent, pam)`` gives a new pool's space (and raises
    ``Unsupported`` for a PAM the engine does not have); ``ledger`` is
    charged for the pools' indexes.
    """

    def __init__(
        self,
        config: EngineConfig,
        clock: Callable[[], float],
        codecs: Mapping[str, Codec],
        space_for: Callable[[bool, str | None], Space],
        ledger: Ledger,
        free_pages: Callable[[Pool], None],
        rehome: Callable[[Pool, Client, int], None],
        init_client: Callable[[Client], None],
        init_pool: Callable[[Pool], None],
    ) -> None:
        self._config = config
        self._clock = clock
        self._codecs = codecs
        self._space_for = space_for
        self._ledger = ledger
        self._free_pages = free_pages
        self._rehome = rehome
        self._init_client = init_client
        self._init_pool = init_pool
        self.clients: dict[str, Client] = {}
        #: Clients with no connection: name -> lease deadline.
        self._idle: dict[str, float] = {}
        self._shared: dict[int, Pool] = {}
        self._authorized: dict[int, set[str]] = {}
        #: Client name -> the id its next pool gets; kept when the client goes.
        self.next_pool_ids: dict[str, int] = {}
        self.leases_expired = 0

    # --- clients ----------------------------------------------------------

    def client(self, name: str) -> Client:
        client = self.clients.get(name)
        if client is None:
            raise NoSuchClient(name)
        return client

    def connect(self, name: str) -> None:
        client = self.clients.get(name)
        if client is None:
            client = self.clients[name] = Client(name, len(Refusal))
            self._init_client(client)
        client.connections += 1
        client.lease_deadline = None
        self._idle.pop(name, None)

    def disconnect(self, name: str) -> None:
        client = self.client(name)
        if client.connections == 0:
            raise BadArgument(f"client {name!r} has no connection to close")
        client.connections -= 1
        if client.connections == 0:
            client.lease_deadline = self._clock() + self._config.lease_s
            self._idle[name] = client.lease_deadline

    def expire_leases(self) -> list[str]:
        now = self._clock()
        expired = [name for name, deadline in self._idle.items() if deadline <= now]
        for name in expired:
            self.destroy_client(name)
            self.leases_expired += 1
        return expired

    def destroy_client(self, name: str) -> None:
        """Free every pool of ``name``; forget the client unless it is connected."""
        client = self.client(name)
        for pool_id in sorted(client.pools):
            self.destroy_pool(name, pool_id)
        if client.connections == 0:
            del self.clients[name]
            self._idle.pop(name, None)

    # --- pools ------------------------------------------------------------

    def pool_ids(self, name: str) -> list[int]:
        return sorted(self.client(name).pools)

    def new_pool(
        self,
        name: str,
        *,
        persistent: bool,
        shared_uuid: int | None,
        precompressed: bool,
        page_size: int,
        codec: str | None,
        pam: str | None = None,
    ) -> int:
        client = self.client(name)
        _check_page_size(page_size)
        if codec is not None and codec not in self._codecs:
            raise Unsupported(f"no codec {codec!r}; have {sorted(self._codecs)}")
        if shared_uuid is not None:
            if persistent:
                raise Unsupported("shared pools are ephemeral only")
            if not 0 <= shared_uuid < UUID_LIMIT:
                raise BadArgument(f"shared pool UUID {shared_uuid} is not a 128-bit value")
            existing = self._shared.get(shared_uuid)
            if existing is not None:
                return self._join(client, existing, precompressed, page_size, codec, pam)
        space = self._space_for(persistent, pam)
        pool_id = self._free_id(client)
        if codec is None:
            codec = self._config.default_codec if client.codec is None else client.codec
        pool = Pool(
            client,
            pool_id,
            persistent=persistent,
            shared_uuid=shared_uuid,
            precompressed=precompressed,
            page_size=page_size,
            codec_name=codec,
            codec=self._codecs[codec],
            space=space,
            ledger=self._ledger,
        )
        self._init_pool(pool)
        client.pools[pool_id] = pool
        if shared_uuid is not None:
            self._shared[shared_uuid] = pool
        return pool_id

    def _join(
        self,
        client: Client,
        pool: Pool,
        precompressed: bool,
        page_size: int,
        codec: str | None,
        pam: str | None,
    ) -> int:
        """Open an existing shared pool in ``client``'s id space."""
        assert pool.shared_uuid is not None
        name = client.name
        if name != pool.creator and name not in self._authorized.get(pool.shared_uuid, ()):
            raise Forbidden(f"client {name!r} is not authorized for shared pool {pool.shared_uuid}")
        if name in pool.members:
            return pool.members[name]
        if (
            (precompressed, page_size) != (pool.precompressed, pool.page_size)
            or (codec is not None and codec != pool.codec_name)
            or (pam is not None and pam != pool.pam.name)
        ):
            raise BadArgument("shared pool exists with other flags, page size, codec or PAM")
        pool_id = self._free_id(client)
        client.pools[pool_id] = pool
        pool.members[name] = pool_id
        return pool_id

    def _free_id(self, client: Client) -> int:
        """The next never-used id of ``client``'s name (module docstring)."""
        if len(client.pools) >= self._config.max_pools_per_client:
            raise TooManyPools(f"client {client.name!r} has {len(client.pools)} pools open")
        pool_id = self.next_pool_ids.get(client.name, 0)
        if pool_id >= POOL_ID_LIMIT:
            raise TooManyPools(f"client {client.name!r} has used every pool id of this daemon")
        self.next_pool_ids[client.name] = pool_id + 1
        return pool_id

    def destroy_pool(self, name: str, pool_id: int) -> None:
        client = self.client(name)
        pool = client.pools.pop(pool_id, None)
        if pool is None:
            raise NoSuchPool(f"client {name!r} has no pool {pool_id}")
        del pool.members[name]
        if pool.members:
            if pool.owner == name:
                # Charge the pages to the earliest-joined remaining member.
                pool.owner, pool.pool_id = next(iter(pool.members.items()))
                pool.tenant = self.clients[pool.owner]
                self._rehome(pool, client, pool_id)
            return
        if pool.shared_uuid is not None:
            del self._shared[pool.shared_uuid]
        self._free_pages(pool)

    def authorize_shared(self, uuid: int, name: str) -> None:
        if not 0 <= uuid < UUID_LIMIT:
            raise BadArgument(f"shared pool UUID {uuid} is not a 128-bit value")
        self._authorized.setdefault(uuid, set()).add(name)

    def revoke_shared(self, uuid: int, name: str) -> None:
        if not 0 <= uuid < UUID_LIMIT:
            raise BadArgument(f"shared pool UUID {uuid} is not a 128-bit value")
        authorized = self._authorized.get(uuid)
        if authorized is not None:
            authorized.discard(name)
            if not authorized:
                del self._authorized[uuid]
        pool = self._shared.get(uuid)
        if pool is not None and name in pool.members and name != pool.creator:
            self.destroy_pool(name, pool.members[name])

    # --- restoring a saved state (``_snapshot``) ---------------------------

    def adopt_client(self, name: str) -> Client:
        """A client restored from a saved state: created without a connection,
        its lease counted from now, so that it must reattach within the lease."""
        if name in self.clients:
            raise BadArgument(f"client {name!r} exists already")
        client = self.clients[name] = Client(name, len(Refusal))
        client.lease_deadline = self._idle[name] = self._clock() + self._config.lease_s
        return client

    def adopt_pool(self, pool: Pool) -> None:
        """Put a restored pool in each member's table under its saved id."""
        for name, pool_id in pool.members.items():
            client = self.client(name)
            if pool_id in client.pools:
                raise BadArgument(f"client {name!r} has two pools {pool_id}")
            client.pools[pool_id] = pool
        if pool.shared_uuid is not None:
            self._shared[pool.shared_uuid] = pool
        self._init_pool(pool)

    def pool_id_counters(self) -> dict[str, int]:
        """Client name -> the id its next pool gets (a copy)."""
        return dict(self.next_pool_ids)

    def restore_pool_id_counters(self, counters: dict[str, int]) -> None:
        """Set saved counters, after the pools are adopted: never below an id
        in use, so that a restored daemon does not reuse one either."""
        for name, counter in counters.items():
            if not 0 <= counter <= POOL_ID_LIMIT:
                raise BadArgument(f"pool id counter {counter} of {name!r} is out of range")
            self.next_pool_ids[name] = counter
        for client in self.clients.values():
            if client.pools:
                top = max(client.pools) + 1
                self.next_pool_ids[client.name] = max(self.next_pool_ids.get(client.name, 0), top)

    def authorizations(self) -> dict[int, list[str]]:
        """Shared-pool UUID -> the names authorized to join it, sorted (a copy)."""
        return {uuid: sorted(names) for uuid, names in self._authorized.items()}

    def pools(self) -> list[Pool]:
        """Every open pool once (a shared pool under its owner)."""
        return [
            pool
            for client in self.clients.values()
            for pool in client.pools.values()
            if pool.owner == client.name
        ]


def _check_page_size(page_size: int) -> None:
    if not MIN_PAGE_BYTES <= page_size <= MAX_PAGE_BYTES or page_size & (page_size - 1):
        raise BadArgument(
            f"page size {page_size} is not a power of two in [{MIN_PAGE_BYTES}, {MAX_PAGE_BYTES}]"
        )
