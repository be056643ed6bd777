"""Memory policy: which ephemeral page goes when memory is full, and when
persistent puts are refused.

Eviction (``Evictor``)
    Only ephemeral pages held in a PAM are evictable: persistent pages are
    never evicted, and same-filled pages hold no PAM space, so dropping them
    would free nothing.  Each client keeps its own evictable pages in an LRU
    (``Client.lru``: PAM handle -> packed location, oldest first).  A put
    that meets ``PamFull`` evicts and retries, at most
    ``MAX_EVICTIONS_PER_PUT`` rounds, so one put cannot stall the event loop;
    past that the put is refused (NO_MEMORY).

Fairness (DESIGN.md 5, after Xen's tmem client weights)
    Each round takes the least recently used page of the client *most above
    its weighted share* of ephemeral memory: the holder with the largest
    ``ephemeral_bytes / weight``, counting the page being stored for its own
    client, and preferring that client on a tie.  Worked example: quiet q
    (weight 100) holds 1 MiB, flooder f (weight 100) holds 7 MiB and puts
    another page; f scores 7 MiB/100 against q's 1 MiB/100, so f loses its
    own oldest page, and keeps losing them while it floods: q keeps its
    1 MiB, below its share of 4 MiB.  With weights q=300, f=100 the shares
    are 6 and 2 MiB of 8, and f is the victim until q passes 3 times f's
    bytes.  The choice costs O(clients holding evictable pages) per round.

    A PAM whose reclaim unit is larger than a page (zbud frees whole frames)
    and which holds only ephemeral pages is asked to ``reclaim()`` only when
    one client holds every evictable page: a frame may hold two clients'
    pages, and reclaiming it would ignore the shares.  With several holders
    eviction is page by page; zbud then frees a frame once both its pages
    went, which the round bound covers.

Location packing
    An LRU entry's value is one int, not a tuple: ``(object_id << 32 |
    index) << POOL_ID_BITS | pool_id`` with the pool id in the owner's id
    space.  A tuple would also keep the request's object id and index ints
    alive.  Measured with tracemalloc over 10^5 ephemeral pages (fresh ints
    per request, as from the wire): the LRU's share per page fell from ~197
    to ~137 bytes, of which the OrderedDict entry is ~100.  Worked example:
    pool 3, object 7, index 2 packs to ``(7 << 32 | 2) << 16 | 3`` =
    1970324837105667.

Persistent share (``PersistentShare``)
    Persistent bytes (the stored, compressed size of persistent pages) may
    not pass ``persistent_max * memory_bytes``.  When a put would pass it,
    the share is marked *full* and every persistent put is refused with
    PERSISTENT_FULL until persistent bytes drop below
    ``persistent_accept * memory_bytes``; then the mark clears and puts are
    judged against the maximum again.  Worked example, memory 1 MiB, max
    0.75, accept 0.70: at 786,000 persistent bytes a 1000-byte page would
    reach 787,000 > 786,432, so it is refused and the share is full; pages
    are refused until flushes bring persistent bytes under 734,003 (0.70 MiB).
    This is zswap's ``accept_threshold_percent``: without it the boundary
    flaps page by page.
"""

from __future__ import annotations

from collections.abc import Callable

from ._config import POOL_ID_BITS
from ._pam import Pam, PamFull
from ._state import Client, Eviction, Pool

__all__ = [
    "INDEX_BITS",
    "INDEX_MASK",
    "MAX_EVICTIONS_PER_PUT",
    "POOL_ID_MASK",
    "Evictor",
    "PersistentShare",
    "pack_location",
    "rehome_pages",
    "unpack_location",
]

#: Eviction rounds one put may run before it is refused.  A 4 KiB raw page
#: over 1-byte objects charged ~130 bytes each needs ~32 rounds; 256 bounds a
#: put's extra work to roughly 256 x 2 us of event-loop time in the worst case.
MAX_EVICTIONS_PER_PUT = 256
#: Page indexes are 32-bit (``INDEX_LIMIT``).
INDEX_BITS = 32
INDEX_MASK = (1 << INDEX_BITS) - 1
POOL_ID_MASK = (1 << POOL_ID_BITS) - 1

#: ``drop(client, packed, reason)`` unindexes an evicted page whose PAM handle
#: is already freed, counts it under ``reason`` (an ``Eviction`` value), and
#: returns its stored bytes.
DropFn = Callable[[Client, int, int], int]
#: Plain ints: indexing a list with an IntEnum member costs a conversion.
_LRU = int(Eviction.LRU)
_RECLAIM = int(Eviction.RECLAIM)


def pack_location(pool_id: int, object_id: int, index: int) -> int:
    """One int for (pool id in the owner's space, object id, index)."""
    return (object_id << INDEX_BITS | index) << POOL_ID_BITS | pool_id


def unpack_location(packed: int) -> tuple[int, int, int]:
    """(pool_id, object_id, index) of a packed location."""
    page = packed >> POOL_ID_BITS
    return packed & POOL_ID_MASK, page >> INDEX_BITS, page & INDEX_MASK


def rehome_pages(pool: Pool, old: Client, old_pool_id: int, holders: dict[str, Client]) -> None:
    """Move a shared pool's LRU entries and stored bytes from ``old`` to its new
    owner ``pool.tenant`` (whose id space ``pool.pool_id`` now is).  O(pages
    of ``old``); it runs only when a shared pool's owner leaves."""
    new = pool.tenant
    moved = [(h, p) for h, p in old.lru.items() if p & POOL_ID_MASK == old_pool_id]
    if moved and not new.lru:
        holders[new.name] = new
    for handle, packed in moved:
        del old.lru[handle]
        new.lru[handle] = packed >> POOL_ID_BITS << POOL_ID_BITS | pool.pool_id
    old.ephemeral_bytes -= pool.stored_bytes
    new.ephemeral_bytes += pool.stored_bytes


class Evictor:
    """Stores blobs into PAMs, evicting ephemeral pages fairly until they fit.

    ``holders`` maps a client name to its ``Client`` for every client that
    may hold evictable pages: the engine adds a client when its LRU goes from
    empty to not empty, and the evictor drops entries whose LRU emptied when
    it next scans (so the hot path never pays for removal).
    """

    __slots__ = ("_drop", "_pam", "_use_reclaim", "holders")

    def __init__(self, ephemeral_pam: Pam, drop: DropFn, *, use_reclaim: bool) -> None:
        self._pam = ephemeral_pam
        self._drop = drop
        #: Only safe when the ephemeral PAM holds no persistent page.
        self._use_reclaim = use_reclaim
        self.holders: dict[str, Client] = {}

    def store(self, pam: Pam, blob: bytes, owner: Client, incoming: int) -> int:
        """Store ``blob`` in ``pam``; return its handle, or 0 if no room could be made.

        ``owner`` is the client charged for the page and ``incoming`` the
        ephemeral bytes it adds (0 for a persistent page), for the shares.
        """
        for _ in range(MAX_EVICTIONS_PER_PUT):
            try:
                return pam.store(blob)
            except PamFull:
                if not self._evict_once(owner, incoming):
                    return 0
        try:
            return pam.store(blob)
        except PamFull:
            return 0

    def _evict_once(self, owner: Client, incoming: int) -> bool:
        """Free some ephemeral memory; False when nothing is evictable."""
        victim = self.victim(owner, incoming)
        if victim is None:
            return False
        lru = victim.lru
        if self._use_reclaim and len(self.holders) == 1:
            handles = self._pam.reclaim()
            if handles:
                for handle in handles:
                    self._drop(victim, lru.pop(handle), _RECLAIM)
                return True
        handle, packed = lru.popitem(last=False)
        self._pam.free(handle)
        self._drop(victim, packed, _LRU)
        return True

    def victim(self, owner: Client | None, incoming: int) -> Client | None:
        """The holder most above its weighted share (see the module docstring)."""
        best: Client | None = None
        best_score = -1.0
        stale = False
        for client in self.holders.values():
            if not client.lru:
                stale = True
            elif client is owner:
                score = (client.ephemeral_bytes + incoming) / client.weight
                if score >= best_score:
                    best, best_score = client, score
            else:
                score = client.ephemeral_bytes / client.weight
                if score > best_score:
                    best, best_score = client, score
        if stale:
            for name in [name for name, client in self.holders.items() if not client.lru]:
                del self.holders[name]
        return best

    def evict_oldest(self, client: Client, reason: Eviction) -> int:
        """Evict ``client``'s least recently used page; return its stored bytes
        (0 when the client has no evictable page)."""
        if not client.lru:
            return 0
        handle, packed = client.lru.popitem(last=False)
        self._pam.free(handle)
        return self._drop(client, packed, reason)

    def fit_cap(self, client: Client, size: int, cap: int) -> bool:
        """Evict ``client``'s own pages until ``size`` more stored bytes stay
        within ``cap``; False if they cannot (too few evictable pages, or
        ``MAX_EVICTIONS_PER_PUT`` rounds were not enough)."""
        for _ in range(MAX_EVICTIONS_PER_PUT):
            if client.ephemeral_bytes + client.persistent_bytes + size <= cap:
                return True
            if not self.evict_oldest(client, Eviction.CLIENT_TOTAL_CAP):
                break
        return client.ephemeral_bytes + client.persistent_bytes + size <= cap


class PersistentShare:
    """Persistent bytes against ``persistent_max`` with an accept threshold."""

    __slots__ = ("accept_bytes", "bytes", "full", "max_bytes")

    def __init__(self, memory_bytes: int, max_fraction: float, accept_fraction: float) -> None:
        self.max_bytes = int(memory_bytes * max_fraction)
        self.accept_bytes = int(memory_bytes * accept_fraction)
        #: Stored (compressed) bytes of every persistent page.
        self.bytes = 0
        #: True from a refusal until persistent bytes drop below accept_bytes.
        self.full = False

    def admits(self, size: int) -> bool:
        """Whether a persistent page of ``size`` stored bytes may be stored now."""
        if self.full:
            if self.bytes >= self.accept_bytes:
                return False
            self.full = False
        if self.bytes + size > self.max_bytes:
            self.full = True
            return False
        return True
