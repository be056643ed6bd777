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
client name that ever made a pool.  A name that made ``pool_id_limit``
(2^32 - 1) pools has used up its ids and gets TOO_MANY_POOLS: five days of
doing nothing but making 10,000 pools a second, and it hurts no other name.

Shared pools are ephemeral, named by a 128-bit UUID.  One ``Pool`` object
appears in each member's table, under an id of that member's own choosing.
Who may use a UUID: with ``open_shared_pools`` (no auth file: every client
is trusted) anyone; otherwise only clients an administrator named with
``authorize_shared(uuid, name)``, for creating the pool as for joining it.
Creation needs the grant too, or anyone could squat a UUID before its
rightful users and read what they put.  The grant is checked before the
UUID is looked up, so an unauthorized client gets the same FORBIDDEN, with
the same message, whether or not the pool exists: a refusal does not tell
which UUIDs are in use.

Joining compares the request with the pool: page size and PRECOMPRESSED
must be the pool's, and a codec or PAM the request names (None: the
default) must be the pool's, else ``BadArgument``.  A member that asks
again gets the id it already has (a re-join opens nothing new).
``destroy_pool`` by a member only leaves; the pages go when the last member
leaves.  Pages are charged to the pool's owner: the creator, then the
earliest-joined remaining member (``rehome`` moves the pages' charge and
LRU entries when the owner leaves).  ``revoke_shared`` withdraws a grant
and makes the client leave the pool if it is a member, creator or not (a
revoked client must lose access, not just the right to join again).

Leases: a client is created by its first ``connect``.  When its last
connection closes, its lease starts; ``expire_leases()`` frees every client
whose lease ended by ``now`` (the engine passes its clock's time; the
daemon calls it periodically), and a
reconnect before that cancels the lease, so a host that reconnects finds its
swap pages again.  Only clients whose last connection closed are scanned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ._config import MAX_PAGE_BYTES, MIN_PAGE_BYTES, UUID_LIMIT, EngineConfig
from ._errors import (
    BadArgument,
    Forbidden,
    NoSuchClient,
    NoSuchPool,
    Refusal,
    TooManyPools,
    Unsupported,
)
from ._ledger import Ledger
from ._space import Space
from ._state import Client, Pool
from .codecs import Codec

__all__ = ["PoolFreer", "PoolSpaces", "Registry", "Rehomer"]


class PoolSpaces(Protocol):
    """Where a new pool's pages go (``_memory.Memory``)."""

    @property
    def ledger(self) -> Ledger:
        """Charged for the pools' indexes."""
        ...

    @property
    def same_space(self) -> Space:
        """The same-filled store's space, which every pool shares."""
        ...

    def space_for(self, persistent: bool, pam: str | None) -> Space:
        """A new pool's space; ``Unsupported`` for a PAM the engine lacks."""
        ...


class PoolFreer(Protocol):
    """Frees a pool's pages when its last member left (``_freeing.PageFreer``)."""

    def free_pool(self, pool: Pool) -> None: ...


class Rehomer(Protocol):
    """Moves a shared pool's pages to its new owner (``_policy.Evictor``, which
    owns the LRU lists they are charged in)."""

    def rehome(self, pool: Pool, old: Client) -> None: ...


class Registry:
    """Client and pool bookkeeping; pages are the engine's business.

    ``clients`` is the engine's table of live clients (shared with the
    tenancy rules and the persistent share, which read it).  Where a change
    of membership concerns pages, the registry tells a collaborator: the
    ``freer`` when a pool's last member left, the ``rehomer`` when a shared
    pool's owner changed.  A new client is returned by ``connect``, so that
    the engine applies its settings (``_tenancy``).
    """

    def __init__(
        self,
        config: EngineConfig,
        codecs: Mapping[str, Codec],
        spaces: PoolSpaces,
        clients: dict[str, Client],
        freer: PoolFreer,
        rehomer: Rehomer,
    ) -> None:
        self._config = config
        self._codecs = codecs
        self._spaces = spaces
        self._freer = freer
        self._rehomer = rehomer
        self.clients = clients
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

    def connect(self, name: str) -> Client | None:
        """Count a connection of ``name``; return its ``Client`` if it is new."""
        client = self.clients.get(name)
        created = client is None
        if client is None:
            client = self.clients[name] = Client(name, len(Refusal))
        client.connections += 1
        client.lease_deadline = None
        self._idle.pop(name, None)
        return client if created else None

    def disconnect(self, name: str, now: float) -> None:
        client = self.client(name)
        if client.connections == 0:
            raise BadArgument(f"client {name!r} has no connection to close")
        client.connections -= 1
        if client.connections == 0:
            client.lease_deadline = now + self._config.lease_s
            self._idle[name] = client.lease_deadline

    def expire_leases(self, now: float) -> list[str]:
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
        client_name: str,
        *,
        persistent: bool,
        shared_uuid: int | None,
        precompressed: bool,
        page_size: int,
        codec: str | None,
        pam: str | None = None,
        name: str | None = None,
    ) -> int:
        pool_name = name
        client = self.client(client_name)
        _check_page_size(page_size)
        if codec is not None and codec not in self._codecs:
            raise Unsupported(f"no codec {codec!r}; have {sorted(self._codecs)}")
        if shared_uuid is not None:
            if persistent:
                raise Unsupported("shared pools are ephemeral only")
            if not 0 <= shared_uuid < UUID_LIMIT:
                raise BadArgument(f"shared pool UUID {shared_uuid} is not a 128-bit value")
            if pool_name is not None:
                raise BadArgument("a shared pool is named by its UUID, not by a name")
            self._check_grant(client_name, shared_uuid)
            existing = self._shared.get(shared_uuid)
            if existing is not None:
                return self._join(client, existing, precompressed, page_size, codec, pam)
        if pool_name is not None and pool_name in client.pool_names:
            named = client.pools[client.pool_names[pool_name]]
            if not _same_flags(named, persistent, precompressed, page_size, codec, pam):
                raise BadArgument(f"pool {pool_name!r} exists with other flags")
            return named.pool_id
        space = self._spaces.space_for(persistent, pam)
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
            same_space=self._spaces.same_space,
            ledger=self._spaces.ledger,
            name=pool_name,
        )
        client.pools[pool_id] = pool
        if pool_name is not None:
            client.pool_names[pool_name] = pool_id
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
        if not _same_flags(pool, pool.persistent, precompressed, page_size, codec, pam):
            raise BadArgument("shared pool exists with other flags, page size, codec or PAM")
        name = client.name
        if name in pool.members:
            return pool.members[name]
        pool_id = self._free_id(client)
        client.pools[pool_id] = pool
        pool.members[name] = pool_id
        return pool_id

    def _check_grant(self, name: str, uuid: int) -> None:
        """Raise ``Forbidden`` unless ``name`` may use shared pool ``uuid``; the
        message names only what the request named (never whether it exists)."""
        if self._config.open_shared_pools or name in self._authorized.get(uuid, ()):
            return
        raise Forbidden(f"client {name!r} is not authorized for shared pool {uuid:032x}")

    def _free_id(self, client: Client) -> int:
        """The next never-used id of ``client``'s name (module docstring)."""
        if len(client.pools) >= self._config.max_pools_per_client:
            raise TooManyPools(f"client {client.name!r} has {len(client.pools)} pools open")
        pool_id = self.next_pool_ids.get(client.name, 0)
        if pool_id >= self._config.pool_id_limit:
            raise TooManyPools(f"client {client.name!r} has used every pool id of this daemon")
        self.next_pool_ids[client.name] = pool_id + 1
        return pool_id

    def destroy_pool(self, name: str, pool_id: int) -> None:
        client = self.client(name)
        pool = client.pools.pop(pool_id, None)
        if pool is None:
            raise NoSuchPool(f"client {name!r} has no pool {pool_id}")
        del pool.members[name]
        if pool.name is not None:
            del client.pool_names[pool.name]
        if pool.members:
            if pool.owner == name:
                # Charge the pages to the earliest-joined remaining member.
                pool.owner, pool.pool_id = next(iter(pool.members.items()))
                pool.tenant = self.clients[pool.owner]
                self._rehomer.rehome(pool, client)
            return
        if pool.shared_uuid is not None:
            del self._shared[pool.shared_uuid]
        self._freer.free_pool(pool)

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
        if pool is not None and name in pool.members:
            self.destroy_pool(name, pool.members[name])

    def list_objects(
        self, name: str, pool_id: int, cursor: int, count: int, max_buckets: int
    ) -> tuple[list[int], int]:
        pool = self.client(name).pools.get(pool_id)
        if pool is None:
            raise NoSuchPool(f"client {name!r} has no pool {pool_id}")
        listing = pool.index.listing
        if listing is None:
            raise Unsupported(f"pool {pool_id} keeps no listing: only named pools do")
        return listing.scan(cursor, count, max_buckets)

    # --- restoring a saved state (``_snapshot``) ---------------------------

    def adopt_client(self, name: str, now: float) -> Client:
        """A client restored from a saved state: created without a connection,
        its lease counted from now, so that it must reattach within the lease."""
        if name in self.clients:
            raise BadArgument(f"client {name!r} exists already")
        client = self.clients[name] = Client(name, len(Refusal))
        client.lease_deadline = self._idle[name] = now + self._config.lease_s
        return client

    def adopt_pool(self, pool: Pool) -> None:
        """Put a restored pool in each member's table under its saved id."""
        for name, pool_id in pool.members.items():
            client = self.client(name)
            if pool_id in client.pools:
                raise BadArgument(f"client {name!r} has two pools {pool_id}")
            client.pools[pool_id] = pool
        if pool.name is not None:
            owner = self.client(pool.owner)
            if pool.name in owner.pool_names:
                raise BadArgument(f"client {pool.owner!r} has two pools named {pool.name!r}")
            owner.pool_names[pool.name] = pool.pool_id
        if pool.shared_uuid is not None:
            self._shared[pool.shared_uuid] = pool

    def pool_id_counters(self) -> dict[str, int]:
        """Client name -> the id its next pool gets (a copy)."""
        return dict(self.next_pool_ids)

    def restore_pool_id_counters(self, counters: dict[str, int]) -> None:
        """Set saved counters, after the pools are adopted: never below an id
        in use, so that a restored daemon does not reuse one either."""
        for name, counter in counters.items():
            if not 0 <= counter <= self._config.pool_id_limit:
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


def _same_flags(
    pool: Pool,
    persistent: bool,
    precompressed: bool,
    page_size: int,
    codec: str | None,
    pam: str | None,
) -> bool:
    """Whether a request for a pool with these flags may open ``pool``
    (codec and PAM None: any)."""
    return (
        (persistent, precompressed, page_size)
        == (pool.persistent, pool.precompressed, pool.page_size)
        and (codec is None or codec == pool.codec_name)
        and (pam is None or pam == pool.pam.name)
    )


def _check_page_size(page_size: int) -> None:
    if not MIN_PAGE_BYTES <= page_size <= MAX_PAGE_BYTES or page_size & (page_size - 1):
        raise BadArgument(
            f"page size {page_size} is not a power of two in [{MIN_PAGE_BYTES}, {MAX_PAGE_BYTES}]"
        )
