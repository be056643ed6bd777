"""Memory policy: which ephemeral page goes when memory is full, and when
persistent puts are refused.

Eviction (``Evictor``)
    Only ephemeral pages are evictable: persistent pages never are.  Each
    client keeps its evictable pages in per-space LRU lists (``_space``).
    A put that meets ``PamFull``, or finds no room in the ledger for its
    metadata, evicts and retries, at most ``MAX_EVICTIONS_PER_PUT`` rounds,
    so one put cannot stall the event loop; past that the put is refused
    (NO_MEMORY).  With an arena, a failed store evicts up to
    ``EVICT_BATCH_PAGES`` pages before it tries again: each failure costs an
    exception and a victim search, so making room for a few puts at once is
    cheaper (a PAM that charges bytes per object evicts exactly, one by
    one).  Same-filled pages hold no frame, but with an arena their metadata
    is charged like any page's, so memory pressure evicts them too (last);
    ``flush_ephemeral`` and the caps, which count stored bytes, never take
    them.

Fairness (docs/design.md §5, after Xen's tmem client weights)
    Each round takes the least recently used page of the client *most above
    its weighted share* of ephemeral memory: the holder with the largest
    ``(ephemeral_bytes + pages * page_charge) / weight``, counting the page
    being stored for its own client, and preferring that client on a tie
    (``page_charge`` is the metadata a page costs, so a client of many tiny
    or same-filled pages is not free; 0 for a byte-charging PAM).  Worked
    example: quiet q (weight 100) holds 1 MiB, flooder f (weight 100) holds
    7 MiB and puts another page; f scores 7 MiB/100 against q's 1 MiB/100,
    so f loses its own oldest page, and keeps losing them while it floods:
    q keeps its 1 MiB, below its share of 4 MiB.  With weights q=300, f=100
    the shares are 6 and 2 MiB of 8, and f is the victim until q passes 3
    times f's bytes.  The choice costs O(clients holding evictable pages).

    Of the victim's lists, a round takes from the space being stored into
    when the victim has pages there (freeing room where it is needed), else
    from its first non-empty PAM space, and from the same-filled store last
    (evicting those frees only metadata).  A PAM whose reclaim unit is
    larger than a page (zbud frees whole frames) is asked to ``reclaim()``
    only when its space is not pinned (no persistent or big page in it) and
    one client holds every evictable page: a frame may hold two clients'
    pages, and reclaiming it would ignore the shares.  Otherwise eviction is
    page by page; zbud then frees a frame once both its pages went.

Persistent share (``PersistentShare``)
    Persistent bytes (the stored, compressed size of persistent pages) may
    not pass ``persistent_max * memory_bytes`` (the *maximum*); below
    ``persistent_accept * memory_bytes`` (the *accept line*) every
    persistent put is admitted.  Between the two lies the *band*.

    Persistent pages are never evicted, so whoever fills the share first
    keeps it: without a rule, one client fills it in about a second and
    every other client's persistent puts are refused until it flushes.  So
    a put that takes persistent bytes into the band is admitted only if its
    client stays within its *line*: ``persistent_cap`` if an administrator
    set one, else its fair share of the accept line, ``accept * weight /
    W``, with ``W`` its own weight plus the weights of the other clients
    that hold persistent pages.  Past its line a put is refused
    (PERSISTENT_FAIR_SHARE, or PERSISTENT_FULL when no other client holds
    persistent pages); past the maximum, always (PERSISTENT_FULL).

    What follows: a client alone may fill the share up to the accept line
    (its line is all of it), and the band stays free for the next client,
    whose line is then half (equal weights) and who is below it: its puts
    are accepted at once.  The first client is refused until it is back
    under its line; what it flushes while persistent bytes stay in the band
    goes to the newcomer.  A refusal costs nothing here (no writeback, as
    zswap has), so the line needs no hysteresis of its own; ``full`` marks,
    for the statistics, that the share refused a put, until persistent
    bytes drop below the accept line, as zswap's accept threshold does.

    Worked example, memory 1 MiB, max 0.75 (786,432 bytes), accept 0.70
    (734,003): a (weight 100) alone puts 1000-byte pages; at 734,000 bytes
    the next would pass its line 734,003 and is refused (PERSISTENT_FULL).
    b (weight 100) arrives: W = 200, each line is 367,001.  b holds 0: its
    pages go into the band, up to the maximum (52,432 bytes of room).  a
    holds 734,000, past its line: PERSISTENT_FAIR_SHARE until it flushed
    down to 367,001.  With weights a=300, b=100 the lines are 550,502 and
    183,500.  The lines cost a scan of the clients, O(clients), only for
    puts into the band.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from ._errors import Refusal
from ._index import IndexObject
from ._ledger import Ledger
from ._space import Space
from ._state import ENC_MASK, ENC_SAME, VALUE_SHIFT, Client, Eviction, Pool
from .pam import Pam, PamFull

__all__ = [
    "EVICT_BATCH_PAGES",
    "MAX_EVICTIONS_PER_PUT",
    "Dropper",
    "Evictor",
    "PersistentShare",
    "page_pool",
]

#: Eviction rounds one put may run before it is refused.  A 4 KiB raw page
#: over 1-byte objects charged ~130 bytes each needs ~32 rounds; 256 bounds a
#: put's extra work to 256 evictions of event-loop time in the worst case.
MAX_EVICTIONS_PER_PUT: Final = 256
#: Pages evicted per failed store with an arena: a failed store costs an
#: exception and a victim search, so freeing room for a few puts at once
#: halves the cost of a put into a full arena (an ephemeral page may go at
#: any time; each page is still the fairest victim's oldest).
EVICT_BATCH_PAGES: Final = 8
#: Plain ints: indexing a list with an IntEnum member costs a conversion.
_LRU: Final = int(Eviction.LRU)
_RECLAIM: Final = int(Eviction.RECLAIM)


class Dropper(Protocol):
    """What the evictor needs to remove a page it chose: the engine's page
    freer (``_freeing.PageFreer``), which knows indexes and accounting."""

    def drop(
        self, holder: Client, space: Space, handle: int, reason: int, freed: tuple[int, ...]
    ) -> int:
        """Unindex and free the ephemeral page under ``handle``, one of
        ``holder``'s (skipping PAM handles in ``freed``: a reclaim freed
        them already), count it under ``reason`` (an ``Eviction`` value),
        and return its stored bytes."""
        ...


def page_pool(holder: Client, space: Space, handle: int) -> Pool:
    """The pool of the ephemeral page under ``handle``, one of ``holder``'s.

    An index object names its pool; a one-page object is known by its id
    alone (``_index``), so its pool is found among the holder's: O(its
    pools, at most ``max_pools_per_client``), on the eviction path only.
    """
    obj = space.objs[handle]
    if type(obj) is IndexObject:
        return obj.index.owner  # type: ignore[return-value]
    for pool in holder.pools.values():
        if _holds(pool, space, handle):
            return pool
    raise AssertionError(f"handle {handle} of space {space.id}: not a page of {holder.name}")


def _holds(pool: Pool, space: Space, handle: int) -> bool:
    """Whether the ephemeral page under ``handle`` of ``space`` is ``pool``'s."""
    obj = space.objs[handle]
    if obj is None:
        return False
    if type(obj) is IndexObject:
        return obj.index is pool.index
    token = pool.index.get(obj, space.idx[handle])
    if token >> VALUE_SHIFT != handle:  # handles are never 0: this catches a miss too
        return False
    # Same-filled tokens name handles of the same-filled store (space 0).
    return space.id == 0 if token & ENC_MASK == ENC_SAME else space is pool.space


class Evictor:
    """Stores blobs into spaces, evicting ephemeral pages fairly until they fit.

    ``holders`` maps a client name to its ``Client`` for every client that
    may hold evictable pages: the engine adds a client when its LRU goes from
    empty to not empty, and the evictor drops entries whose LRU emptied when
    it next scans (so the hot path never pays for removal).  ``spaces`` is
    the engine's list of spaces (it grows as PAMs are created).  The evictor
    chooses victims; ``dropper`` removes them (it owns indexes and counts).
    """

    __slots__ = ("_dropper", "_ledger", "_spaces", "holders", "page_charge")

    def __init__(
        self, spaces: list[Space], ledger: Ledger, dropper: Dropper, *, page_charge: int
    ) -> None:
        self._spaces = spaces
        self._ledger = ledger
        self._dropper = dropper
        #: Metadata bytes a page costs, counted in the fairness score.
        self.page_charge = page_charge
        self.holders: dict[str, Client] = {}

    def store(
        self, space: Space, blob: bytes, owner: Client, incoming: int, *, reclaim: bool = True
    ) -> int:
        """Store ``blob`` in ``space``; return its handle, or 0 if no room could be made.

        ``owner`` is the client charged for the page and ``incoming`` the
        ephemeral bytes it adds (0 for a persistent page), for the shares.
        """
        # ``pam.store(blob)`` at the call, not a bound method kept in a
        # local: compiled, the call is a direct native one, while a bound
        # method is an object called through Python (docs/build.md).
        pam = space.pam
        batch = EVICT_BATCH_PAGES if self.page_charge else 1
        rounds = 0
        while rounds < MAX_EVICTIONS_PER_PUT:
            try:
                return pam.store(blob)
            except PamFull:
                for _ in range(min(batch, MAX_EVICTIONS_PER_PUT - rounds)):
                    if not self._evict_once(owner, incoming, space, reclaim):
                        return 0 if not _ else _retry(pam, blob)
                    rounds += 1
        return _retry(pam, blob)

    def make_room(self, nbytes: int, owner: Client, incoming: int) -> bool:
        """Evict until the ledger has room for ``nbytes`` more metadata."""
        room = self._ledger.room_for
        for _ in range(MAX_EVICTIONS_PER_PUT):
            if room(nbytes):
                return True
            if not self._evict_once(owner, incoming, None, True):
                return False
        return room(nbytes)

    def _evict_once(
        self, owner: Client, incoming: int, prefer: Space | None, reclaim: bool
    ) -> bool:
        """Free some ephemeral memory; False when nothing is evictable."""
        same_frees = self.page_charge > 0
        victim = self.victim(owner, incoming, bytes_only=not same_frees)
        if victim is None:
            return False
        space = self._pick(victim, prefer, same_ok=same_frees)
        if space is None:
            return False
        if reclaim and not space.pinned and len(self.holders) == 1:
            handles = space.pam.reclaim()
            if handles:
                freed = tuple(handles)
                for handle in handles:
                    self._dropper.drop(victim, space, handle, _RECLAIM, freed)
                return True
        self._dropper.drop(victim, space, victim.lru_head[space.id], _LRU, ())
        return True

    def _pick(self, victim: Client, prefer: Space | None, *, same_ok: bool) -> Space | None:
        """The space a victim's next page goes from (see the module docstring)."""
        counts = victim.lru_count
        if prefer is not None and counts[prefer.id]:
            return prefer
        spaces = self._spaces
        for space in spaces[1:]:
            if counts[space.id]:
                return space
        return spaces[0] if same_ok and counts[0] else None

    def victim(
        self, owner: Client | None, incoming: int, *, bytes_only: bool = False
    ) -> Client | None:
        """The holder most above its weighted share (see the module docstring).

        ``bytes_only``: consider only pages that hold stored bytes (not the
        same-filled ones, which free metadata but no bytes).
        """
        best: Client | None = None
        best_score = -1.0
        stale = False
        charge = self.page_charge
        for client in self.holders.values():
            pages = client.lru_pages
            if not pages:
                stale = True
                continue
            if bytes_only and pages == client.lru_count[0]:
                continue
            held = client.ephemeral_bytes + pages * charge
            if client is owner:
                score = (held + incoming) / client.weight
                if score >= best_score:
                    best, best_score = client, score
            elif held / client.weight > best_score:
                best, best_score = client, held / client.weight
        if stale:
            for name in [name for name, client in self.holders.items() if not client.lru_pages]:
                del self.holders[name]
        return best

    def evict_oldest(self, client: Client, reason: Eviction) -> int | None:
        """Evict ``client``'s least recently used page holding stored bytes;
        return those bytes (None when the client has no such page)."""
        space = self._pick(client, None, same_ok=False)
        if space is None:
            return None
        return self._dropper.drop(client, space, client.lru_head[space.id], int(reason), ())

    def fit_cap(self, client: Client, size: int, cap: int) -> bool:
        """Evict ``client``'s own pages until ``size`` more stored bytes stay
        within ``cap``; False if they cannot (too few evictable pages, or
        ``MAX_EVICTIONS_PER_PUT`` rounds were not enough)."""
        for _ in range(MAX_EVICTIONS_PER_PUT):
            if client.ephemeral_bytes + client.persistent_bytes + size <= cap:
                return True
            if self.evict_oldest(client, Eviction.CLIENT_TOTAL_CAP) is None:
                break
        return client.ephemeral_bytes + client.persistent_bytes + size <= cap

    def rehome(self, pool: Pool, old: Client) -> None:
        """Move a shared pool's LRU entries and stored bytes from ``old`` to its
        new owner ``pool.tenant`` (the registry's ``Rehomer``).  O(evictable
        pages of ``old``); it runs only when a shared pool's owner leaves."""
        new = pool.tenant
        for space in self._spaces:
            moved = [h for h in space.handles(old) if _holds(pool, space, h)]
            if moved and not new.lru_pages:
                self.holders[new.name] = new
            for handle in moved:
                obj = space.objs[handle]
                assert obj is not None
                index, stored = space.idx[handle], space.lens[handle]
                space.unlink(old, handle)
                space.link(new, handle, obj, index, stored)
        old.ephemeral_bytes -= pool.stored_bytes
        new.ephemeral_bytes += pool.stored_bytes


class PersistentShare:
    """Persistent bytes against the maximum, and each client's line in the
    band above the accept line (see the module docstring)."""

    __slots__ = ("accept_bytes", "bytes", "clients", "full", "max_bytes")

    def __init__(
        self,
        memory_bytes: int,
        max_fraction: float,
        accept_fraction: float,
        clients: Mapping[str, Client] | None = None,
    ) -> None:
        self.max_bytes = int(memory_bytes * max_fraction)
        self.accept_bytes = int(memory_bytes * accept_fraction)
        #: Stored (compressed) bytes of every persistent page.
        self.bytes = 0
        #: True from a refusal until persistent bytes drop below accept_bytes
        #: (statistics only: the lines decide).
        self.full = False
        #: Every live client, for the fair shares.
        self.clients: Mapping[str, Client] = {} if clients is None else clients

    def admit(self, tenant: Client, size: int) -> Refusal | None:
        """Whether ``tenant`` may store a persistent page of ``size`` stored bytes now."""
        total = self.bytes + size
        if self.full and self.bytes < self.accept_bytes:
            self.full = False
        if total > self.accept_bytes:
            line, others = self._line(tenant)
            if tenant.persistent_bytes + size > line:
                self.full = True
                return Refusal.PERSISTENT_FAIR_SHARE if others else Refusal.PERSISTENT_FULL
            if total > self.max_bytes:
                self.full = True
                return Refusal.PERSISTENT_FULL
        return None

    def _line(self, tenant: Client) -> tuple[int, bool]:
        """``tenant``'s line in the band, and whether another client holds
        persistent pages."""
        weights = tenant.weight
        others = False
        for client in self.clients.values():
            if client.persistent_bytes and client is not tenant:
                weights += client.weight
                others = True
        cap = tenant.persistent_cap
        return (self.accept_bytes * tenant.weight // weights if cap is None else cap), others


def _retry(pam: Pam, blob: bytes) -> int:
    """One last store after evicting: the handle, or 0."""
    try:
        return pam.store(blob)
    except PamFull:
        return 0
