"""Memory policy: which ephemeral page goes when memory is full, and when
persistent puts are refused.

Eviction (``Evictor``)
    Only ephemeral pages held in a PAM are evictable: persistent pages are
    never evicted, and same-filled pages hold no PAM space, so dropping them
    would free nothing.  Evictable pages sit in one LRU (``EvictionLru``),
    keyed by their PAM handle, which doubles as the reverse map from a handle
    to its (pool, object_id, index).  A put that meets ``PamFull`` evicts and
    retries: first, if the ephemeral PAM has a reclaim unit larger than a page
    (zbud frees a whole frame) and holds only ephemeral pages, it is asked to
    ``reclaim()`` and every handle it freed is dropped; otherwise the least
    recently used page is freed.  At most ``MAX_EVICTIONS_PER_PUT`` rounds run
    per put, so one put cannot stall the event loop; past that the put is
    refused (NO_MEMORY).  Fairness across clients by weight (DESIGN.md 5)
    plugs in here later, by choosing the victim per client.

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

from collections import OrderedDict
from collections.abc import Callable

from ._pam import Pam, PamFull
from ._state import Pool

__all__ = [
    "MAX_EVICTIONS_PER_PUT",
    "EvictionLru",
    "Evictor",
    "PageLocation",
    "PersistentShare",
]

#: Eviction rounds one put may run before it is refused.  A 4 KiB raw page
#: over 1-byte objects charged ~130 bytes each needs ~32 rounds; 256 bounds a
#: put's extra work to roughly 256 x 2 us of event-loop time in the worst case.
MAX_EVICTIONS_PER_PUT = 256

#: Where an evictable page lives: its pool, object id and index.
PageLocation = tuple[Pool, int, int]


class EvictionLru:
    """Evictable pages from least to most recently used, keyed by PAM handle."""

    __slots__ = ("_order",)

    def __init__(self) -> None:
        self._order: OrderedDict[int, PageLocation] = OrderedDict()

    def __len__(self) -> int:
        return len(self._order)

    def add(self, handle: int, location: PageLocation) -> None:
        """Insert a new page as the most recently used."""
        self._order[handle] = location

    def touch(self, handle: int) -> None:
        """Mark a page as just used."""
        self._order.move_to_end(handle)

    def discard(self, handle: int) -> None:
        """Forget a page that left by flush, exclusive get or replacement."""
        self._order.pop(handle, None)

    def pop(self, handle: int) -> PageLocation:
        """Forget a page the PAM freed by itself (reclaim); return where it was."""
        return self._order.pop(handle)

    def pop_oldest(self) -> tuple[int, PageLocation] | None:
        """Remove and return the least recently used page, or None if empty."""
        if not self._order:
            return None
        return self._order.popitem(last=False)

    def location(self, handle: int) -> PageLocation:
        """Where the page under ``handle`` lives."""
        return self._order[handle]

    def handles(self) -> list[int]:
        """Every handle, oldest first (for invariant checks and tests)."""
        return list(self._order)


class Evictor:
    """Stores a blob into a PAM, evicting ephemeral pages until it fits.

    ``drop(location)`` must remove the page at ``location`` from its pool's
    index and gauges; the evictor has already freed (or the PAM reclaimed)
    its handle.
    """

    __slots__ = ("_drop", "_lru", "_pam", "_use_reclaim", "evicted_lru", "evicted_reclaim")

    def __init__(
        self,
        ephemeral_pam: Pam,
        lru: EvictionLru,
        drop: Callable[[PageLocation], None],
        *,
        use_reclaim: bool,
    ) -> None:
        self._pam = ephemeral_pam
        self._lru = lru
        self._drop = drop
        #: Only safe when the ephemeral PAM holds no persistent page.
        self._use_reclaim = use_reclaim
        #: Pages evicted one by one, least recently used first.
        self.evicted_lru = 0
        #: Pages dropped because their PAM reclaimed a whole unit (frame).
        self.evicted_reclaim = 0

    def store(self, pam: Pam, blob: bytes) -> int:
        """Store ``blob`` in ``pam``; return its handle, or 0 if no room could be made."""
        for _ in range(MAX_EVICTIONS_PER_PUT):
            try:
                return pam.store(blob)
            except PamFull:
                if not self._evict_once():
                    return 0
        try:
            return pam.store(blob)
        except PamFull:
            return 0

    def _evict_once(self) -> bool:
        """Free some ephemeral memory; False when nothing is evictable."""
        if self._use_reclaim:
            handles = self._pam.reclaim()
            if handles:
                for handle in handles:
                    self._drop(self._lru.pop(handle))
                self.evicted_reclaim += len(handles)
                return True
        victim = self._lru.pop_oldest()
        if victim is None:
            return False
        handle, location = victim
        self._pam.free(handle)
        self._drop(location)
        self.evicted_lru += 1
        return True


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
