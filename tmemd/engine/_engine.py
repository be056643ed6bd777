"""The engine: tmem semantics over pools, an index, codecs and PAMs.

Theory of operation
-------------------
Every call first resolves the client and the pool id in that client's own
table (``NoSuchClient``, ``NoSuchPool``), then checks the object id, index
and length, and only then changes state, so an error changes nothing.

A **put** turns the page into a blob (precompressed pools: the bytes as
given; same-filled pages: the fill byte, kept in the same-filled store;
otherwise the codec's output, or the raw page when that output is over 7/8
of a page).  The old copy at that handle, if any, is removed *first*: its
memory then helps the new copy fit, and if the new copy is refused the old
one must go anyway (docs/design.md §3.2: no stale page may be returned later).
Then policy decides: a frozen client's put is refused before any of this
(the old copy is flushed all the same); a persistent page must fit its
client's persistent cap and the persistent share, where each client is held
to its fair share above the accept line (``PersistentShare``); a page that
would pass its client's total cap first evicts that client's own ephemeral
pages (``_tenancy`` has the rules); the ledger must have room for the page's
metadata, and the blob is stored through the ``Evictor``, which
evicts ephemeral pages, least recently used of the client most above its
weighted share, until both fit or refuses with NO_MEMORY.  A refused put
returns a ``Refusal``.  A stored ephemeral page is linked at the newest end
of its client's LRU in its space (``_space``).

A **get** looks the token up, rebuilds the page, and for an exclusive get
(the default for private ephemeral pools) removes it; a kept ephemeral page
becomes the most recently used.  flush_page and flush_object remove pages;
flush_object pops one object's entry, never scanning other objects.
Eviction is a removal like a flush: the evictor names a page by its handle,
and the space's reverse map leads to its index entry.

Data handed in may be a memoryview over a receive buffer: it is copied to
``bytes`` once on entry (0.14 us for 4 KiB, and ``bytes`` compares and
compresses far faster than a memoryview) and never kept.

``check_invariants()`` (``_invariants``) verifies every structure and gauge
for tests; ``maintain()`` does the bounded background work (``_memory``).
Administration (settings, freeze, flush_ephemeral) is delegated to
``_tenancy``, client and pool bookkeeping to ``_registry``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._admin import ClientCalls
from ._config import INDEX_LIMIT, OBJECT_ID_LIMIT, EngineConfig
from ._errors import BadIndex, BadLength, BadObjectId, NoSuchClient, NoSuchPool, Refusal
from ._index import IndexObject
from ._invariants import check_engine
from ._memory import Memory
from ._pages import PageStorage
from ._policy import Evictor, PersistentShare, rehome_pages
from ._registry import Registry
from ._resize import set_memory
from ._restore import load_state
from ._snapshot import RestoreSummary, SaveSummary, dump_state
from ._state import (
    ENC_BIG,
    ENC_COMPRESSED,
    ENC_MASK,
    ENC_RAW,
    ENC_SAME,
    VALUE_SHIFT,
    Client,
    Counters,
    Eviction,
    Pool,
)
from ._stats import EngineStats, build_statistics
from ._tenancy import Tenancy
from .codecs import CODECS, Codec
from .pam import Pam

__all__ = ["Engine"]

Data = bytes | bytearray | memoryview


class Engine(ClientCalls, PageStorage):
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
        self._codecs = CODECS if codecs is None else codecs
        if config.default_codec not in self._codecs:
            raise ValueError(f"default codec {config.default_codec!r} is not in the codec table")
        self._memory = memory = Memory(config, ephemeral_pam, persistent_pam)
        self._ledger = memory.ledger
        self._same = memory.spaces[0]
        self._fills = memory.same_pam.fills
        self._evictor = Evictor(
            memory.spaces, memory.ledger, self._drop_evicted, page_charge=memory.page_charge
        )
        self._holders = self._evictor.holders
        self._share = PersistentShare(
            config.memory_bytes, config.persistent_max, config.persistent_accept
        )
        self._registry = Registry(
            config,
            clock,
            self._codecs,
            memory.space_for,
            memory.ledger,
            self._free_pool,
            lambda pool, old, _old_id: rehome_pages(pool, old, memory.spaces, self._holders),
            lambda client: self._tenancy.apply(client),
            self._init_pool,
        )
        self._clients = self._registry.clients
        self._share.clients = self._clients
        self._tenancy = Tenancy(self._clients, self._codecs, self._evictor)
        self._counters = Counters()
        self._refused_by_reason = [0] * len(Refusal)
        self._evicted_by_reason = [0] * len(Eviction)
        self._dropped_by_refused_replace = 0
        self._freed_by_destroy = 0

    # --- pages --------------------------------------------------------------

    @property
    def config(self) -> EngineConfig:
        """The limits this engine was built with (HELLO tells them to clients)."""
        return self._config

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
        if not (0 <= object_id < OBJECT_ID_LIMIT and 0 <= index < INDEX_LIMIT):
            _check_handle(object_id, index)  # raises; a call saved on every put
        if caller.frozen:
            return self._refuse_frozen(caller, pool, object_id, index, len(data))
        page = data if type(data) is bytes else bytes(data)
        blob, encoding = self._encode(pool, page)
        old = pool.index.delete(object_id, index)
        if old:
            self._release(pool, old)
        token = self._store(pool, blob, encoding)
        if isinstance(token, Refusal):
            return self._refuse(caller, pool, token, replaced=bool(old))
        obj = pool.index.insert(object_id, index, token)
        if not pool.persistent:
            self._link(pool, obj, index, token, len(blob))
        pool.counters.puts_stored += 1
        caller.counters.puts_stored += 1
        self._counters.puts_stored += 1
        return None

    def _link(self, pool: Pool, obj: IndexObject | int, index: int, token: int, size: int) -> None:
        """Make a just-indexed ephemeral page of a ``size``-byte blob its
        client's newest, in its space's LRU."""
        tenant = pool.tenant
        if not tenant.lru_pages:
            self._holders[tenant.name] = tenant
        if token & ENC_MASK == ENC_SAME:
            self._same.link(tenant, token >> VALUE_SHIFT, obj, index, 0)
        else:
            space = pool.space
            stored = size if size <= space.max_object else space.stored_length(size)
            space.link(tenant, token >> VALUE_SHIFT, obj, index, stored)

    def _restore_page(
        self, pool: Pool, object_id: int, index: int, blob: bytes, encoding: int
    ) -> Refusal | None:
        """Store a page's saved blob as it was stored (``_snapshot``): no codec runs."""
        token = self._store(pool, blob, encoding)
        if isinstance(token, Refusal):
            return token
        obj = pool.index.insert(object_id, index, token)
        if not pool.persistent:
            self._link(pool, obj, index, token, len(blob))
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
        # First and last byte first: most pages differ there, and the full
        # comparison builds a page-sized bytes (0.3 µs a put).
        if page[0] == page[-1] and page == page[:1] * size:
            return page[:1], ENC_SAME
        compressed = pool.codec.compress(page)
        if len(compressed) > pool.raw_limit:
            return page, ENC_RAW
        return compressed, ENC_COMPRESSED

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
        if not (0 <= object_id < OBJECT_ID_LIMIT and 0 <= index < INDEX_LIMIT):
            _check_handle(object_id, index)  # raises
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
        elif not pool.persistent:
            space = self._same if token & ENC_MASK == ENC_SAME else pool.space
            space.touch(pool.tenant, token >> VALUE_SHIFT)
        pool.counters.gets_hit += 1
        caller.counters.gets_hit += 1
        self._counters.gets_hit += 1
        return page

    def _decode(self, pool: Pool, token: int) -> bytes:
        encoding = token & ENC_MASK
        if encoding == ENC_SAME:
            return bytes((self._fills[token >> VALUE_SHIFT],)) * pool.page_size
        if token & ENC_BIG:
            blob = pool.space.load_big(token >> VALUE_SHIFT)
        else:
            blob = pool.space.pam.load(token >> VALUE_SHIFT)
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

    def _free_pool(self, pool: Pool) -> None:
        """Registry callback: free every page of a pool whose last member left."""
        tokens = pool.index.pop_all()
        for token in tokens:
            self._release(pool, token)
        self._freed_by_destroy += len(tokens)
        self._memory.forget(pool)

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
            counters=self._counters,
            refused_by_reason=self._refused_by_reason,
            evicted_by_reason=self._evicted_by_reason,
            dropped_by_refused_replace=self._dropped_by_refused_replace,
            freed_by_destroy=self._freed_by_destroy,
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
        check_engine(pools, self._clients, self._holders, self._memory, self._share)


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
