"""A pool's object ids, listable in pages with a cursor (Redis's SCAN, in Python).

Why a second structure: the page index (``_index``) is a dict keyed by
object id, and a Python dict cannot resume an iteration from a position a
client hands back, nor find "the ids after X" without scanning everything.
A client that lists the objects of a pool with millions of them must get
them a page at a time, each page costing the daemon a bounded amount of
work, and the listing must mean something while other connections put and
flush.

How: a table of ``2**bits`` buckets; object id ``o`` lives in bucket
``hash(o) & mask``.  A bucket is None (empty) or a list of ids.  The table
doubles when it holds more than ``MAX_LOAD`` ids per bucket and halves when
it holds fewer than ``MIN_LOAD`` per bucket (never below ``MIN_BUCKETS``), so
a bucket holds a few ids on average.  A resize is incremental, as Redis's
rehash: each later ``add``/``remove`` moves ``MOVE_BUCKETS_PER_CALL``
buckets of the old table into the new one, so no put pays for a whole
table (the engine's calls do work proportional to the request).  ``scan(cursor)`` visits buckets in
*reverse-binary* order of their number (the bits of the cursor reversed,
incremented, reversed back), exactly as Redis's ``dictScan``: a bucket of a
table of ``2**k`` buckets is the union of two buckets of the doubled table,
and those are next to each other in that order, so a resize between two
calls neither skips buckets nor (when growing) revisits them.

Guarantee (Redis SCAN's): a full iteration, from cursor 0 until a call
returns cursor 0, returns every object that was in the pool for the whole
iteration at least once.  An object added or removed during the iteration
may or may not be returned; an object may be returned more than once (after
the table shrank).  A call visits at most ``max_buckets`` buckets, so its
work is bounded by that and the buckets' lengths, and it may return no id
with a non-zero cursor.

Worked example: with 8 buckets (mask 0b111), cursor 0 visits bucket 0, then
the reversed increment gives 0b100 = 4, then 2, 6, 1, 5, 3, 7, then 0 (done).
If the table grows to 16 buckets after bucket 4 was visited (cursor 2), the
old buckets 0 and 4 became 0, 8, 4 and 12, all before 2 in the new order.

Cost: ``LISTING_BYTES_PER_OBJECT`` per object, charged by the index to its
ledger; only named pools keep a listing (``PageIndex.listing``).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "LISTING_BYTES_PER_OBJECT",
    "MAX_LOAD",
    "MIN_BUCKETS",
    "MIN_LOAD",
    "MOVE_BUCKETS_PER_CALL",
    "ObjectListing",
]

#: Buckets of an empty table: 64 slots (512 bytes) cost nothing next to a pool.
MIN_BUCKETS: Final = 64
#: Ids per bucket above which the table doubles: keeps a bucket's list short
#: (a remove is a linear search of its bucket).
MAX_LOAD: Final = 4
#: Ids per bucket below which the table halves: gives memory back after a
#: pool shrank, with hysteresis against doubling.
MIN_LOAD: Final = 1
#: Bytes charged per listed object: a pointer in a bucket's list with its
#: over-allocation (~12), a share of the bucket's list header (56 for 1 to 4
#: ids) and of its slot in the table (8).  Between 2 and 4 ids per bucket
#: that is 28 to 44 bytes; charged at the top.
LISTING_BYTES_PER_OBJECT: Final = 48
#: Buckets of the old table moved into the new one per ``add``/``remove``
#: while a resize is under way: a resize costs no put more than a few
#: microseconds, and it ends long before the next one could start (the
#: table must change size twice over first).
MOVE_BUCKETS_PER_CALL: Final = 8
#: Cursor width: cursors are u64 (msgpack integers), reversed over 64 bits.
_CURSOR_BITS: Final = 64
_CURSOR_MASK: Final = (1 << _CURSOR_BITS) - 1


def _reverse(value: int) -> int:
    """``value``'s 64 bits in reverse order."""
    return int(f"{value:064b}"[::-1], 2)


class ObjectListing:
    """The object ids of one pool, for ``scan``; see the module docstring."""

    __slots__ = ("_buckets", "_count", "_moved", "_old")

    def __init__(self) -> None:
        self._buckets: list[list[int] | None] = [None] * MIN_BUCKETS
        #: While resizing: the previous table, and how many of its buckets
        #: have been moved into ``_buckets`` (from bucket 0 up).
        self._old: list[list[int] | None] | None = None
        self._moved = 0
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _locate(self, object_id: int) -> tuple[list[list[int] | None], int]:
        """The table and bucket that hold (or would hold) ``object_id``."""
        old = self._old
        if old is not None:
            slot = hash(object_id) & (len(old) - 1)
            if slot >= self._moved:
                return old, slot
        return self._buckets, hash(object_id) & (len(self._buckets) - 1)

    def add(self, object_id: int) -> None:
        """Add an id that is not listed yet."""
        table, slot = self._locate(object_id)
        bucket = table[slot]
        if bucket is None:
            table[slot] = [object_id]
        else:
            bucket.append(object_id)
        self._count += 1
        if self._old is not None:
            self._step()
        elif self._count > MAX_LOAD * len(self._buckets):
            self._resize(2 * len(self._buckets))

    def remove(self, object_id: int) -> None:
        """Remove a listed id."""
        table, slot = self._locate(object_id)
        bucket = table[slot]
        assert bucket is not None, f"object {object_id} is not listed"
        bucket.remove(object_id)
        if not bucket:
            table[slot] = None
        self._count -= 1
        size = len(self._buckets)
        if self._old is not None:
            self._step()
        elif size > MIN_BUCKETS and self._count < MIN_LOAD * size // 2:
            self._resize(size // 2)

    def clear(self) -> None:
        """Forget every id."""
        self._buckets = [None] * MIN_BUCKETS
        self._old = None
        self._moved = 0
        self._count = 0

    def _resize(self, size: int) -> None:
        """Start moving into a table of ``size`` buckets, a few per call."""
        self._old, self._buckets, self._moved = self._buckets, [None] * size, 0
        self._step()

    def _step(self) -> None:
        """Move up to ``MOVE_BUCKETS_PER_CALL`` buckets of the old table."""
        old = self._old
        assert old is not None
        new = self._buckets
        mask = len(new) - 1
        stop = min(len(old), self._moved + MOVE_BUCKETS_PER_CALL)
        for at in range(self._moved, stop):
            for object_id in old[at] or ():
                slot = hash(object_id) & mask
                held = new[slot]
                if held is None:
                    new[slot] = [object_id]
                else:
                    held.append(object_id)
            old[at] = None
        self._moved = stop
        if stop == len(old):
            self._old = None

    def scan(self, cursor: int, count: int, max_buckets: int) -> tuple[list[int], int]:
        """Ids from ``cursor`` on: (ids, next cursor; 0 when the iteration is done).

        Stops after the bucket that brings the ids to ``count`` or more, or
        after ``max_buckets`` buckets, so a reply may hold a bucket's worth
        more than ``count``.  While a resize is under way, each step visits
        a bucket of the smaller table and the buckets of the larger one that
        it splits into (Redis's ``dictScan``), so an id is found in either.
        """
        small, large = self._buckets, self._old
        if large is not None and len(large) < len(small):
            small, large = large, small
        small_mask = len(small) - 1
        large_mask = small_mask if large is None else len(large) - 1
        out: list[int] = []
        visited = 0
        while True:
            out.extend(small[cursor & small_mask] or ())
            visited += 1
            if large is None:
                cursor = _next(cursor, small_mask)
            else:
                # The larger table's buckets that expand this one, in turn.
                while True:
                    out.extend(large[cursor & large_mask] or ())
                    visited += 1
                    cursor = _next(cursor, large_mask)
                    if not cursor & (small_mask ^ large_mask):
                        break
            if cursor == 0 or len(out) >= count or visited >= max_buckets:
                return out, cursor

    def ids(self) -> set[int]:
        """Every listed id (for invariant checks)."""
        tables = [self._buckets] if self._old is None else [self._buckets, self._old]
        return {oid for table in tables for bucket in table for oid in bucket or ()}


def _next(cursor: int, mask: int) -> int:
    """The cursor after ``cursor`` in reverse-binary order over ``mask``'s buckets:
    set the bits above the mask, so that the increment carries through them."""
    return _reverse((_reverse(cursor | (~mask & _CURSOR_MASK)) + 1) & _CURSOR_MASK)
