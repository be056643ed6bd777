"""The engine: tmem semantics over pools, an index, codecs and PAMs.

Theory of operation
-------------------
``Engine`` is the one public face; it owns no rule itself.  It resolves a
request's client and pool id in that client's own table (``NoSuchClient``,
``NoSuchPool``) and hands the call to the collaborator whose business it
is.  Each collaborator is an attribute with a narrow interface; none holds
a callback into the engine, and the construction order below has no cycle:

* ``Memory`` (``_memory``): the arena or the given PAMs, one ``Space`` per
  PAM, the ledger that metadata is charged to (``_ledger``), maintenance.
* ``PersistentShare`` (``_policy``): persistent bytes against the share.
* ``PageFreer`` (``_freeing``): frees and uncounts pages that left their
  index; the evictor's ``Dropper`` and the registry's ``PoolFreer``.
* ``Evictor`` (``_policy``): stores blobs into spaces, evicting ephemeral
  pages fairly until they fit (it chooses; the freer removes); the
  registry's ``Rehomer`` when a shared pool changes owner.
* ``Registry`` (``_registry``): clients, pool-id namespaces, shared pools,
  leases (the engine gives it the time: it holds no clock); tells the freer
  and the rehomer what concerns pages, and returns a new client to the
  engine, which applies its settings.
* ``Tenancy`` (``_tenancy``): per-name settings, freeze, administrative
  flushes (through the evictor).
* ``PageStore`` (``_pages``): put, get and flush on a resolved pool, the
  hot path: admission, the evictor for room, the freer for removals.
* ``Totals`` (``_state``): engine-wide counters the store and the freer
  count into, read by ``statistics()``.

The registry, the tenancy rules and the persistent share read one table of
live clients, made here and handed to each.  Saving and restoring
(``_snapshot``, ``_restore``), resizing (``_resize``), statistics
(``_stats``) and the invariant walk (``_invariants``) are functions over
these collaborators.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._config import EngineConfig
from ._errors import NoSuchClient, NoSuchPool, Refusal
from ._freeing import PageFreer
from ._invariants import check_engine
from ._memory import Memory
from ._pages import Data, PageStore
from ._policy import Evictor, PersistentShare
from ._registry import Registry
from ._resize import set_memory
from ._restore import load_state
from ._snapshot import RestoreSummary, SaveSummary, dump_state
from ._state import Client, Pool, Totals
from ._stats import EngineStats, build_statistics
from ._tenancy import ClientLimits, ClientSettings, Tenancy
from .codecs import CODECS, Codec
from .pam import Pam

__all__ = ["Engine"]


class Engine:
    """Synchronous tmem engine; see the module docstring.

    With ``config.ephemeral_pam`` / ``persistent_pam`` named, the engine maps
    an arena and uses those arena PAMs.  Otherwise ``ephemeral_pam`` and
    ``persistent_pam`` (instances) default to one ``BytesPam`` of
    ``config.memory_bytes`` (one given serves both kinds).  A PAM's
    ``reclaim()`` is used only while it holds no persistent page.
    """

    def __init__(
        self,
        config: EngineConfig,
        clock: Callable[[], float],
        codecs: Mapping[str, Codec] | None = None,
        *,
        ephemeral_pam: Pam | None = None,
        persistent_pam: Pam | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._codecs: Mapping[str, Codec] = CODECS if codecs is None else codecs
        if config.default_codec not in self._codecs:
            raise ValueError(f"default codec {config.default_codec!r} is not in the codec table")
        self._memory = memory = Memory(config, ephemeral_pam, persistent_pam)
        self._ledger = memory.ledger
        #: Live clients by name: the registry keeps it, others read it.
        self._clients: dict[str, Client] = {}
        self._share = PersistentShare(
            config.memory_bytes, config.persistent_max, config.persistent_accept, self._clients
        )
        self._totals = Totals(len(Refusal))
        self._freer = PageFreer(memory, self._share, self._totals)
        self._evictor = Evictor(
            memory.spaces, memory.ledger, self._freer, page_charge=memory.page_charge
        )
        self._registry = Registry(
            config, self._codecs, memory, self._clients, self._freer, self._evictor
        )
        self._tenancy = Tenancy(
            self._clients, self._codecs, self._evictor, config.max_flush_pages_per_call
        )
        self._pages = PageStore(memory, self._share, self._evictor, self._freer, self._totals)

    @property
    def config(self) -> EngineConfig:
        """The limits this engine was built with (HELLO tells them to clients)."""
        return self._config

    # --- pages (the rules are in ``_pages``) ------------------------------------
    # put and get resolve the pool inline rather than through ``_lookup``:
    # one Python call less on every request.

    def put(
        self, client: str, pool_id: int, object_id: int, index: int, data: Data
    ) -> Refusal | None:
        """Store a page; None when stored, else why not (the old copy is gone then)."""
        caller = self._clients.get(client)
        if caller is None:
            raise NoSuchClient(client)
        pool = caller.pools.get(pool_id)
        if pool is None:
            raise _no_pool(client, pool_id)
        return self._pages.put(caller, pool, object_id, index, data)

    def get(
        self,
        client: str,
        pool_id: int,
        object_id: int,
        index: int,
        exclusive: bool | None = None,
    ) -> bytes | None:
        """The page's bytes, or None on a miss.

        ``exclusive`` None means the pool's default: remove the page from a
        private ephemeral pool, keep it in a persistent or shared pool.
        """
        caller = self._clients.get(client)
        if caller is None:
            raise NoSuchClient(client)
        pool = caller.pools.get(pool_id)
        if pool is None:
            raise _no_pool(client, pool_id)
        return self._pages.get(caller, pool, object_id, index, exclusive)

    def flush_page(self, client: str, pool_id: int, object_id: int, index: int) -> bool:
        """Remove one page; True if there was one."""
        caller, pool = self._lookup(client, pool_id)
        return self._pages.flush_page(caller, pool, object_id, index)

    def flush_object(self, client: str, pool_id: int, object_id: int) -> int:
        """Remove every page of one object; return how many there were."""
        caller, pool = self._lookup(client, pool_id)
        return self._pages.flush_object(caller, pool, object_id)

    def _lookup(self, client: str, pool_id: int) -> tuple[Client, Pool]:
        caller = self._clients.get(client)
        if caller is None:
            raise NoSuchClient(client)
        pool = caller.pools.get(pool_id)
        if pool is None:
            raise _no_pool(client, pool_id)
        return caller, pool

    # --- clients and pools (bookkeeping lives in the registry) -----------

    def connect(self, client: str) -> None:
        """Create ``client`` if new, count a connection and cancel its lease."""
        created = self._registry.connect(client)
        if created is not None:
            self._tenancy.apply(created)

    def disconnect(self, client: str) -> None:
        """Count a closed connection; at zero connections the lease starts."""
        self._registry.disconnect(client, self._clock())

    def expire_leases(self) -> list[str]:
        """Free every client whose lease ended by now; return their names."""
        return self._registry.expire_leases(self._clock())

    def destroy_client(self, client: str) -> None:
        """Free all of ``client``'s pools now; forget it unless it is connected."""
        self._registry.destroy_client(client)

    def pool_ids(self, client: str) -> list[int]:
        """The pool ids open in ``client``'s id space, ascending."""
        return self._registry.pool_ids(client)

    def new_pool(
        self,
        client: str,
        *,
        persistent: bool = False,
        shared_uuid: int | None = None,
        precompressed: bool = False,
        page_size: int = 4096,
        codec: str | None = None,
        pam: str | None = None,
        name: str | None = None,
    ) -> int:
        """Create a pool (or join the shared pool ``shared_uuid``); return its id.

        ``pam`` names the PAM of its pages ("zbud", "xvmalloc", "zsmalloc");
        None: the daemon's default for the pool's kind.  ``name`` names a
        private pool: the client's pool of that name, if there is one, is
        returned instead of a new one (``BadArgument`` if its flags differ),
        and a named pool keeps a listing of its objects (``list_objects``).
        """
        return self._registry.new_pool(
            client,
            persistent=persistent,
            shared_uuid=shared_uuid,
            precompressed=precompressed,
            page_size=page_size,
            codec=codec,
            pam=pam,
            name=name,
        )

    def list_objects(
        self, client: str, pool_id: int, cursor: int, count: int, max_buckets: int
    ) -> tuple[list[int], int]:
        """A page of a named pool's object ids from ``cursor`` on, and the next
        cursor (0: done); ``_listing`` states the bounds and the guarantee."""
        return self._registry.list_objects(client, pool_id, cursor, count, max_buckets)

    def destroy_pool(self, client: str, pool_id: int) -> None:
        """Free a pool's pages (a shared pool: leave it; the last member frees it)."""
        self._registry.destroy_pool(client, pool_id)

    def authorize_shared(self, uuid: int, client: str) -> None:
        """Let ``client`` (known yet or not) create or join the shared pool ``uuid``."""
        self._registry.authorize_shared(uuid, client)

    def revoke_shared(self, uuid: int, client: str) -> None:
        """Withdraw ``authorize_shared``; a member (the creator too) leaves the pool."""
        self._registry.revoke_shared(uuid, client)

    # --- tenancy and administration (rules in ``_tenancy``) ---------------

    def configure_client(self, client: str, limits: ClientLimits) -> None:
        """Make ``client`` known with ``limits`` before it connects (the auth file)."""
        self._tenancy.configure(client, limits)

    def client_limits(self, client: str) -> ClientLimits:
        """A known client's weight and caps."""
        return self._tenancy.settings(client).limits

    def client_settings(self, client: str) -> ClientSettings:
        """A known client's limits, codec and frozen mark."""
        return self._tenancy.settings(client)

    def set_client_limits(self, client: str, limits: ClientLimits) -> None:
        """Change a known client's weight and caps; nothing is evicted at once."""
        self._tenancy.set_limits(client, limits)

    def set_client_codec(self, client: str, codec: str | None) -> None:
        """The codec of ``client``'s new pools that name none (None: the default)."""
        self._tenancy.set_codec(client, codec)

    def freeze(self, client: str) -> None:
        """Refuse ``client``'s puts (FROZEN) until ``thaw``; gets are still served."""
        self._tenancy.set_frozen(client, True)

    def thaw(self, client: str) -> None:
        """Accept ``client``'s puts again."""
        self._tenancy.set_frozen(client, False)

    def flush_ephemeral(self, nbytes: int) -> int:
        """Evict ephemeral pages fairly until ``nbytes`` stored bytes are freed
        (at most ``config.max_flush_pages_per_call`` pages); return the bytes freed."""
        return self._tenancy.flush_ephemeral(nbytes)

    def freeable(self) -> int:
        """Stored bytes that ``flush_ephemeral`` could free now."""
        return self._tenancy.freeable()

    # --- maintenance and introspection ------------------------------------

    def maintain(self) -> int:
        """Bounded background work: compaction, dictionary training (see
        ``_memory``); return the frames given back.  The daemon calls it
        every half second."""
        return self._memory.maintain(self._registry.pools())

    def statistics(self) -> EngineStats:
        """A frozen snapshot of every counter and gauge (built now, O(clients + pools))."""
        memory = self._memory
        return build_statistics(
            self._registry.pools(),
            self._clients,
            memory.pam_roles(),
            self._share,
            memory_used_bytes=memory.bytes_used(),
            metadata_bytes=memory.metadata_bytes(),
            memory_limit_bytes=self._config.memory_bytes,
            counters=self._totals.ops,
            refused_by_reason=self._totals.refused_by_reason,
            evicted_by_reason=self._totals.evicted_by_reason,
            dropped_by_refused_replace=self._totals.dropped_by_refused_replace,
            freed_by_destroy=self._totals.freed_by_destroy,
            leases_expired=self._registry.leases_expired,
        )

    def set_memory(self, nbytes: int) -> int:
        """Move the memory limit to ``nbytes`` now, evicting ephemeral pages to
        shrink; refuse (``BadArgument``) to go below the persistent pages.
        Return the stored bytes evicted (rules in ``_resize``)."""
        return set_memory(self, nbytes)

    # --- saving and restoring (format and rules in ``_snapshot``) ----------

    def save_state(
        self,
        write: Callable[[bytes], object],
        *,
        ephemeral: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> SaveSummary:
        """Write the persistent pools (and ephemeral ones if asked), pages as
        stored, to ``write``; ``extra`` (JSON values) comes back on restore."""
        return dump_state(self, write, ephemeral=ephemeral, extra=extra)

    def restore_state(self, read: Callable[[int], bytes]) -> RestoreSummary:
        """Rebuild what ``save_state`` wrote, in this engine (no client yet);
        raise ``StateError`` if it is damaged or ``StateTooBig``."""
        return load_state(self, read)

    def check_invariants(self) -> None:
        """Walk every structure; raise ``AssertionError`` on any inconsistency (tests)."""
        pools = self._registry.pools()
        check_engine(pools, self._clients, self._evictor.holders, self._memory, self._share)


def _no_pool(client: str, pool_id: int) -> NoSuchPool:
    return NoSuchPool(f"client {client!r} has no pool {pool_id}")
