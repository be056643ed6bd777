"""The engine: tmem semantics over pools, an index, codecs and a PAM.

Theory of operation
-------------------
Every call first resolves the client and the pool id in that client's own
table (``NoSuchClient``, ``NoSuchPool``), then checks the object id, index
and length, and only then changes state, so an error changes nothing.

A **put** turns the page into a blob (precompressed pools: the bytes as
given; same-filled pages: no blob, the fill byte goes in the token;
otherwise the codec's output, or the raw page when that output is over 7/8
of a page).  The old copy at that handle, if any, is removed *first*: its
memory then helps the new copy fit, and if the new copy is refused the old
one must go anyway (DESIGN.md 3.2: no stale page may be returned later).
Then policy decides: a frozen client's put is refused before any of this
(the old copy is flushed all the same); a persistent page must fit its
client's persistent cap and the persistent share (``PersistentShare``); a
page that would pass its client's total cap first evicts that client's own
ephemeral pages (``_tenancy`` has the rules); any page that needs PAM space
is stored through the ``Evictor``, which evicts ephemeral pages, least
recently used of the client most above its weighted share, until it fits or
refuses with NO_MEMORY.  A refused put returns a ``Refusal``.

A **get** looks the token up, rebuilds the page, and for an exclusive get
(the default for private ephemeral pools) removes it; a kept ephemeral page
becomes the most recently used.  flush_page and flush_object remove pages;
flush_object pops one object's dict, never scanning other objects.

Data handed in may be a memoryview over a receive buffer: it is copied to
``bytes`` once on entry (0.14 us for 4 KiB, and ``bytes`` compares and
compresses far faster than a memoryview) and never kept.

Every ephemeral page in a PAM is in the LRU of the client it is charged
to; persistent pages and same-filled pages never are.  ``check_invariants()``
verifies this and every gauge, for tests.  Administration (settings, freeze,
flush_ephemeral) is delegated to ``_tenancy``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from ._admin import ClientCalls
from ._bytes_pam import choose_pams
from ._config import INDEX_LIMIT, OBJECT_ID_LIMIT, POOL_ID_BITS, EngineConfig
from ._errors import BadIndex, BadLength, BadObjectId, NoSuchClient, NoSuchPool, Refusal
from ._invariants import check_engine
from ._pam import Pam
from ._policy import (
    INDEX_BITS,
    INDEX_MASK,
    POOL_ID_MASK,
    Evictor,
    PersistentShare,
    rehome_pages,
)
from ._registry import Registry
from ._state import (
    ENC_COMPRESSED,
    ENC_MASK,
    ENC_RAW,
    ENC_SAME,
    LENGTH_MASK,
    LENGTH_SHIFT,
    VALUE_SHIFT,
    Client,
    Counters,
    Eviction,
    Pool,
    make_token,
)
from ._stats import EngineStats, build_statistics
from ._tenancy import Tenancy
from .codecs import CODECS, Codec

__all__ = ["Engine"]

Data = bytes | bytearray | memoryview


class Engine(ClientCalls):
    """Synchronous tmem engine; see the module docstring.

    ``ephemeral_pam`` and ``persistent_pam`` default to one ``BytesPam`` of
    ``config.memory_bytes``; pass arena PAMs to use them instead (one given
    serves both kinds).  A PAM's ``reclaim()`` is used only when the
    ephemeral PAM is not also the persistent one.
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
        self._codecs = CODECS if codecs is None else codecs
        if config.default_codec not in self._codecs:
            raise ValueError(f"default codec {config.default_codec!r} is not in the codec table")
        ephemeral, persistent = choose_pams(config.memory_bytes, ephemeral_pam, persistent_pam)
        self._pams = (ephemeral, persistent)
        self._evictor = Evictor(
            ephemeral, self._drop_evicted, use_reclaim=ephemeral is not persistent
        )
        self._holders = self._evictor.holders
        self._share = PersistentShare(
            config.memory_bytes, config.persistent_max, config.persistent_accept
        )
        self._registry = Registry(
            config,
            clock,
            self._codecs,
            self._pams,
            self._free_pool,
            functools.partial(rehome_pages, holders=self._holders),
            lambda client: self._tenancy.apply(client),
        )
        self._clients = self._registry.clients
        self._tenancy = Tenancy(self._clients, self._codecs, self._evictor)
        self._counters = Counters()
        self._refused_by_reason = [0] * len(Refusal)
        self._evicted_by_reason = [0] * len(Eviction)
        self._dropped_by_refused_replace = 0
        self._freed_by_destroy = 0

    # --- pages --------------------------------------------------------------

    def _lookup(self, client: str, pool_id: int) -> tuple[Client, Pool]:
        caller = self._clients.get(client)
        if caller is None:
            raise NoSuchClient(client)
        pool = caller.pools.get(pool_id)
        if pool is None:
            raise NoSuchPool(f"client {client!r} has no pool {pool_id}")
        return caller, pool

    def put(
        self, client: str, pool_id: int, object_id: int, index: int, data: Data
    ) -> Refusal | None:
        """Store a page; None when stored, else why not (the old copy is gone then)."""
        caller, pool = self._lookup(client, pool_id)
        _check_handle(object_id, index)
        if caller.frozen:
            return self._refuse_frozen(caller, pool, object_id, index, len(data))
        page = data if type(data) is bytes else bytes(data)
        blob, encoding = self._encode(pool, page)
        old = pool.index.delete(object_id, index)
        if old:
            self._release(pool, old)
        token = self._store(pool, blob, encoding, object_id, index)
        if isinstance(token, Refusal):
            return self._refuse(caller, pool, token, replaced=bool(old))
        pool.index.set(object_id, index, token)
        pool.account(token, 1)
        pool.counters.puts_stored += 1
        caller.counters.puts_stored += 1
        self._counters.puts_stored += 1
        return None

    def _refuse_frozen(
        self, caller: Client, pool: Pool, object_id: int, index: int, size: int
    ) -> Refusal:
        """A frozen client's put: valid or an error like any put, then refused
        without compressing; the old copy goes (the replace rule)."""
        _check_length(pool, size)
        old = pool.index.delete(object_id, index)
        if old:
            self._release(pool, old)
        return self._refuse(caller, pool, Refusal.FROZEN, replaced=bool(old))

    def _encode(self, pool: Pool, page: bytes) -> tuple[bytes, int]:
        """The blob to store and its encoding (for ENC_SAME the blob is the fill byte)."""
        size = len(page)
        # _check_length's rules, inline: this is every put's path.
        if pool.precompressed:
            if not 0 < size <= pool.page_size:
                raise BadLength(f"precompressed page of {size} bytes; need 1..{pool.page_size}")
            return page, ENC_COMPRESSED
        if size != pool.page_size:
            raise BadLength(f"page of {size} bytes in a pool of {pool.page_size}-byte pages")
        if page == page[:1] * size:
            return page[:1], ENC_SAME
        compressed = pool.codec.compress(page)
        if len(compressed) > pool.raw_limit:
            return page, ENC_RAW
        return compressed, ENC_COMPRESSED

    def _store(
        self, pool: Pool, blob: bytes, encoding: int, object_id: int, index: int
    ) -> int | Refusal:
        """Admit and store a blob; return its token or the refusal."""
        if encoding == ENC_SAME:
            if pool.persistent and not self._share.admits(0):
                return Refusal.PERSISTENT_FULL
            return make_token(blob[0], 0, ENC_SAME)
        size = len(blob)
        tenant = pool.tenant
        if pool.persistent:
            refusal = self._admit_persistent(tenant, size)
            if refusal is not None:
                return refusal
            handle = self._evictor.store(pool.pam, blob, tenant, 0)
            if not handle:
                return Refusal.NO_MEMORY
            self._share.bytes += size
            tenant.persistent_bytes += size
            return make_token(handle, size, encoding)
        cap = tenant.total_cap
        if cap is not None and not self._evictor.fit_cap(tenant, size, cap):
            return Refusal.CLIENT_TOTAL_CAP
        handle = self._evictor.store(pool.pam, blob, tenant, size)
        if not handle:
            return Refusal.NO_MEMORY
        lru = tenant.lru
        if not lru:
            self._holders[tenant.name] = tenant
        lru[handle] = (object_id << INDEX_BITS | index) << POOL_ID_BITS | pool.pool_id
        tenant.ephemeral_bytes += size
        return make_token(handle, size, encoding)

    def _admit_persistent(self, tenant: Client, size: int) -> Refusal | None:
        """The client's persistent cap, the global share, then the total cap
        (last: making room for it evicts the client's own ephemeral pages)."""
        cap = tenant.persistent_cap
        if cap is not None and tenant.persistent_bytes + size > cap:
            return Refusal.CLIENT_PERSISTENT_CAP
        if not self._share.admits(size):
            return Refusal.PERSISTENT_FULL
        cap = tenant.total_cap
        if cap is not None and not self._evictor.fit_cap(tenant, size, cap):
            return Refusal.CLIENT_TOTAL_CAP
        return None

    def _refuse(self, caller: Client, pool: Pool, reason: Refusal, *, replaced: bool) -> Refusal:
        pool.counters.puts_refused += 1
        caller.counters.puts_refused += 1
        caller.refused_by_reason[reason] += 1
        self._counters.puts_refused += 1
        self._refused_by_reason[reason] += 1
        if replaced:
            self._dropped_by_refused_replace += 1
        return reason

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
        caller, pool = self._lookup(client, pool_id)
        _check_handle(object_id, index)
        token = pool.index.get(object_id, index)
        if not token:
            pool.counters.gets_miss += 1
            caller.counters.gets_miss += 1
            self._counters.gets_miss += 1
            return None
        page = self._decode(pool, token)
        if exclusive is None:
            exclusive = not (pool.persistent or pool.shared)
        if exclusive:
            pool.index.delete(object_id, index)
            self._release(pool, token)
        elif not pool.persistent and token & ENC_MASK != ENC_SAME:
            pool.tenant.lru.move_to_end(token >> VALUE_SHIFT)
        pool.counters.gets_hit += 1
        caller.counters.gets_hit += 1
        self._counters.gets_hit += 1
        return page

    def _decode(self, pool: Pool, token: int) -> bytes:
        encoding = token & ENC_MASK
        if encoding == ENC_SAME:
            return bytes((token >> VALUE_SHIFT,)) * pool.page_size
        blob = pool.pam.load(token >> VALUE_SHIFT)
        if encoding == ENC_RAW or pool.precompressed:
            return blob
        return pool.codec.decompress(blob, pool.page_size)

    def flush_page(self, client: str, pool_id: int, object_id: int, index: int) -> bool:
        """Remove one page; True if there was one."""
        caller, pool = self._lookup(client, pool_id)
        _check_handle(object_id, index)
        pool.counters.flush_page_calls += 1
        caller.counters.flush_page_calls += 1
        self._counters.flush_page_calls += 1
        token = pool.index.delete(object_id, index)
        if not token:
            return False
        self._release(pool, token)
        self._count_flushed(caller, pool, 1)
        return True

    def flush_object(self, client: str, pool_id: int, object_id: int) -> int:
        """Remove every page of one object; return how many there were."""
        caller, pool = self._lookup(client, pool_id)
        if not 0 <= object_id < OBJECT_ID_LIMIT:
            raise BadObjectId(f"object id {object_id} is not in [0, 2**192)")
        pool.counters.flush_object_calls += 1
        caller.counters.flush_object_calls += 1
        self._counters.flush_object_calls += 1
        tokens = pool.index.pop_object(object_id)
        for token in tokens:
            self._release(pool, token)
        self._count_flushed(caller, pool, len(tokens))
        return len(tokens)

    def _count_flushed(self, caller: Client, pool: Pool, pages: int) -> None:
        pool.counters.pages_flushed += pages
        caller.counters.pages_flushed += pages
        self._counters.pages_flushed += pages

    # --- freeing --------------------------------------------------------------

    def _release(self, pool: Pool, token: int) -> None:
        """Free the storage of a page already removed from ``pool``'s index."""
        pool.account(token, -1)
        if token & ENC_MASK == ENC_SAME:
            return
        handle = token >> VALUE_SHIFT
        pool.pam.free(handle)
        stored = token >> LENGTH_SHIFT & LENGTH_MASK
        if pool.persistent:
            self._share.bytes -= stored
            pool.tenant.persistent_bytes -= stored
        else:
            tenant = pool.tenant
            del tenant.lru[handle]
            tenant.ephemeral_bytes -= stored

    def _drop_evicted(self, client: Client, packed: int, reason: int) -> int:
        """Evictor callback: unindex a page whose handle was already freed."""
        pool = client.pools[packed & POOL_ID_MASK]
        location = packed >> POOL_ID_BITS
        token = pool.index.delete(location >> INDEX_BITS, location & INDEX_MASK)
        pool.account(token, -1)
        stored: int = token >> LENGTH_SHIFT & LENGTH_MASK
        client.ephemeral_bytes -= stored
        pool.counters.pages_evicted += 1
        client.counters.pages_evicted += 1
        self._counters.pages_evicted += 1
        client.evicted_by_reason[reason] += 1
        self._evicted_by_reason[reason] += 1
        return stored

    def _free_pool(self, pool: Pool) -> None:
        """Registry callback: free every page of a pool whose last member left."""
        tokens = pool.index.pop_all()
        for token in tokens:
            self._release(pool, token)
        self._freed_by_destroy += len(tokens)

    # --- introspection --------------------------------------------------------

    def statistics(self) -> EngineStats:
        """A frozen snapshot of every counter and gauge (built now, O(clients + pools))."""
        return build_statistics(
            self._registry.pools(),
            self._clients,
            self._distinct_pams(),
            self._share,
            memory_limit_bytes=self._config.memory_bytes,
            counters=self._counters,
            refused_by_reason=self._refused_by_reason,
            evicted_by_reason=self._evicted_by_reason,
            dropped_by_refused_replace=self._dropped_by_refused_replace,
            freed_by_destroy=self._freed_by_destroy,
            leases_expired=self._registry.leases_expired,
        )

    def _distinct_pams(self) -> tuple[Pam, ...]:
        ephemeral, persistent = self._pams
        return (ephemeral,) if ephemeral is persistent else self._pams

    def check_invariants(self) -> None:
        """Walk every structure; raise ``AssertionError`` on any inconsistency (tests)."""
        check_engine(
            self._registry.pools(),
            self._clients,
            self._holders,
            self._distinct_pams(),
            self._share,
        )


def _check_length(pool: Pool, size: int) -> None:
    if pool.precompressed:
        if not 0 < size <= pool.page_size:
            raise BadLength(f"precompressed page of {size} bytes; need 1..{pool.page_size}")
    elif size != pool.page_size:
        raise BadLength(f"page of {size} bytes in a pool of {pool.page_size}-byte pages")


def _check_handle(object_id: int, index: int) -> None:
    if not 0 <= object_id < OBJECT_ID_LIMIT:
        raise BadObjectId(f"object id {object_id} is not in [0, 2**192)")
    if not 0 <= index < INDEX_LIMIT:
        raise BadIndex(f"index {index} is not in [0, 2**32)")
