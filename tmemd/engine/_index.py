"""The per-pool page index: (object_id, index) -> page token, in sorted arrays.

What: a dict from object id to the object's pages.  An object of one page
is *inline*: its value is the page's entry ``index << 32 | token``, a plain
``int``.  An object of two pages or more is an ``IndexObject``, which keeps
its pages in one sorted ``array('Q')`` of the same entries.  A token is the
engine's nonzero 32-bit integer naming how and where a page is stored
(``_state``); 0 means "no page".  Entries sort by page index, since the
index is the high half.

Why an array, not a dict per object: a dict of int to int costs ~97 bytes
per page (a 24-byte entry with its slack, plus a 28-byte key and a 32-byte
value ``int`` object, since page indexes and tokens come fresh from the
wire).  An array entry is 8 machine bytes.  Why two levels: tmem's
flush_object drops every page of one object (a truncated file, a swap area
switched off) and must not scan unrelated pages: it pops one dict entry.
Why inline objects: a page cache of tiny files puts one page per object,
and an ``IndexObject`` (64 bytes) with its array (80, and 32 for its first
entries) costs ~150 bytes more than the one ``int`` an inline object is.
Why both forms in one dict: a miss (no such object: frequent in a page
cache) stays one lookup; telling the forms apart is ``type(obj) is not
IndexObject``, which costs less than the second dict look-up a second
dict for inline objects would add to every miss (docs/bench/micro.md).

How: a lookup of an inline object compares the entry's index.  In an
``IndexObject`` it tries position ``index & 1023``, which is right for an
object whose pages are dense from a multiple of 1024 (a file read from the
start; a swap area), then falls back to ``bisect`` (O(log n), in C).  A
second page *promotes* an inline object, in place: its value becomes an
``IndexObject`` holding both entries, under the same key.  An object never
goes back inline (one that shrank to one page keeps its ``IndexObject``
until it empties and goes).  An insert is ``array.insert``: O(n) bytes
moved, so an object splits into *chunks* of 1024 consecutive indexes
(``CHUNK_BITS``) once it holds ``SPLIT_PAGES`` pages; each chunk is an
``IndexLeaf`` in ``chunks``, keyed by ``index >> 10``, and an insert then
moves at most 8 KiB.  An object never merges back (a big object stays
big).  Worked example: page 5 of object 9 under token 0x1234 is the entry
``5 << 32 | 0x1234``; alone, it is the value of key 9; once page 6 comes,
key 9 holds an ``IndexObject`` whose array holds both, page 5 at position 0
(found by bisect); if the object holds pages 0..9, page 5 sits at position
5 and is found without a search.

The engine's reverse map (``_space``) keeps, per ephemeral page, what
``insert`` returned: the page's ``IndexObject`` (which knows its index and,
there, its id), or for an inline object its id, the very ``int`` the dict
keeps as its key, so that no object and no ``int`` is made per page.  An id
names no pool: eviction finds an inline page's pool among its client's
pools (``_policy.page_pool``).  On a promotion the index tells its ``relinker``,
and the map's slot of the first page switches from the id to the object,
handing the id ``int`` over to the object as ``oid``.

Cost, charged to ``ledger.meta_bytes`` as pages and objects come and go:
``PAGE_BYTES`` per page, ``INLINE_OBJECT_BYTES`` per inline object,
``OBJECT_BYTES`` per ``IndexObject`` and ``CHUNK_BYTES`` per chunk of a
split object (measured: ``tests/unit/test_engine_pam_index.py`` prints
them).  Worked example: 10^6 pages in objects of 64 pages cost 10^6 * 9 +
15_625 * 256 bytes = 13.0 MB, 13 bytes per page (measured 11.4); 10^6
one-page objects cost 10^6 * (9 + 120) = 129 MB, 129 bytes per page
(measured 102: ids below 2**30); one swap area of 10^6 pages in one object
costs 10^6 * 9 + 977 * 176 = 9.2 MB.

Guarantee: an object with no pages has no entry, so ``object_count`` is
exact and an empty pool holds nothing but the outer dict.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, Protocol, cast, final

from ._ledger import Ledger, MetaLedger
from ._listing import LISTING_BYTES_PER_OBJECT, ObjectListing

__all__ = [
    "CHUNK_BITS",
    "CHUNK_BYTES",
    "INLINE_OBJECT_BYTES",
    "OBJECT_BYTES",
    "PAGE_BYTES",
    "SPLIT_PAGES",
    "TOKEN_MASK",
    "IndexLeaf",
    "IndexObject",
    "PageIndex",
    "Relinker",
]

#: Indexes per chunk of a split object, as a shift: 1024 pages (4 MiB of
#: 4 KiB pages) keep an insert's memmove under 12 KiB.
CHUNK_BITS: Final = 10
_CHUNK_MASK: Final = (1 << CHUNK_BITS) - 1
#: Pages an object holds before it is split into chunks.
SPLIT_PAGES: Final = 1 << CHUNK_BITS
#: Tokens are 32 bits: the low half of an entry.
TOKEN_MASK: Final = 0xFFFF_FFFF
#: Bytes charged per indexed page: an 8-byte entry plus the array's
#: over-allocation (CPython grows an array by ~1/16).
PAGE_BYTES: Final = 9
#: Bytes charged per inline (one-page) object, on top of its page's
#: ``PAGE_BYTES``: its dict entry with its slack (30 to 60 bytes by how full
#: the dict is; 42 at 10^6 objects), the object id ``int`` kept as the key
#: (28 bytes below 2**30, up to 52 for a 192-bit id) and the entry ``int``
#: (28 bytes for page 0 under a token below 2**30, 32 for a page index below
#: 2**28, 36 above).  Measured 80-103 with 28-byte ids (93 at 10^6 objects,
#: ``tests/unit/test_engine_pam_index.py``); charged for 192-bit ids.
INLINE_OBJECT_BYTES: Final = 120
#: Bytes charged per object of two pages or more: the ``IndexObject`` (64
#: with its GC header), its array (80, and its first items' buffer, 32),
#: its dict entry with its slack (30 to 60) and the object id ``int`` kept
#: as the key (28 to 52 bytes, as above).  Measured 215-238 for two-page
#: objects with 28-byte ids; charged for 192-bit ids.
OBJECT_BYTES: Final = 256
#: Bytes charged per chunk of a split object: an ``IndexLeaf`` (48), its
#: array (64), its entry in the object's chunk dict and its key (~60).
CHUNK_BYTES: Final = 176


class Relinker(Protocol):
    """Whoever maps pages back to their objects (an ephemeral pool's
    ``_state.ReverseMap``), told when an inline object is promoted."""

    def relink(self, token: int, obj: IndexObject) -> object:
        """The page under ``token`` (the object's first) now belongs to
        ``obj``: refer to ``obj`` from now on and return the id ``int`` held
        for that page until now (the dict key itself).  Typed ``object`` so
        that compiled code hands the very object over instead of unboxing
        the int and boxing a copy."""
        ...


class IndexLeaf:
    """Pages as one sorted array of ``index << 32 | token`` entries."""

    __slots__ = ("ents",)

    def __init__(self) -> None:
        self.ents = array("Q")


@final  # so that ``type(obj) is not IndexObject`` narrows to ``int`` for mypy
class IndexObject(IndexLeaf):
    """An object of two pages or more: in its own array, or in ``chunks`` once split."""

    __slots__ = ("chunks", "index", "oid")

    def __init__(self, index: PageIndex) -> None:
        super().__init__()
        self.index = index
        #: The object id, the very ``int`` that is the object's dict key, as
        #: ``Relinker.relink`` hands it over; None in an index without one.
        self.oid: int | None = None
        #: ``index >> CHUNK_BITS`` -> leaf, once the object is split; else None.
        self.chunks: dict[int, IndexLeaf] | None = None


class PageIndex:
    """Pages of one pool, grouped by object.

    ``owner`` is whatever the engine wants to reach from an ``IndexObject``
    (its ``Pool``); ``ledger`` is charged for the index's memory;
    ``relinker`` is told of each promotion (None: nobody maps pages back).
    """

    __slots__ = ("_objects", "_pages", "ledger", "listing", "owner", "relinker")

    def __init__(
        self,
        owner: object = None,
        ledger: Ledger | None = None,
        relinker: Relinker | None = None,
    ) -> None:
        #: Object id -> its ``IndexObject``, or the entry of its one page.
        self._objects: dict[int, IndexObject | int] = {}
        self._pages = 0
        self.owner = owner
        self.ledger: Ledger = MetaLedger() if ledger is None else ledger
        #: Told ``relink(token of its first page, new object)`` when an inline
        #: object is promoted, by whoever maps pages back to objects (the
        #: engine's reverse map of an ephemeral pool): it returns the id
        #: ``int`` it held for that page (the dict key itself), which the
        #: object keeps as ``oid``, and refers to the object from then on.
        #: None: nobody maps pages back, and objects need not know their ids.
        self.relinker = relinker
        #: The object ids again, for ``list_objects`` (``_listing``); only
        #: named pools keep one (``keep_listing``), since it costs
        #: ``LISTING_BYTES_PER_OBJECT`` per object.
        self.listing: ObjectListing | None = None

    def keep_listing(self) -> None:
        """Keep a listing of the object ids from now on (an empty index only)."""
        assert not self._objects, "a listing starts with its pool"
        self.listing = ObjectListing()

    def __len__(self) -> int:
        """Pages indexed."""
        return self._pages

    @property
    def object_count(self) -> int:
        """Objects holding at least one page."""
        return len(self._objects)

    def get(self, object_id: int, index: int) -> int:
        """The token at (object_id, index), or 0."""
        obj = self._objects.get(object_id)
        if obj is None:
            return 0
        if type(obj) is not IndexObject:
            return obj & TOKEN_MASK if obj >> 32 == index else 0
        leaf: IndexLeaf | None = obj if obj.chunks is None else obj.chunks.get(index >> CHUNK_BITS)
        if leaf is None:
            return 0
        # Dense objects hit at index & 1023 at once; others bisect (in C).
        ents = leaf.ents
        pos = index & _CHUNK_MASK
        if pos < len(ents) and ents[pos] >> 32 == index:
            return ents[pos] & TOKEN_MASK
        pos = bisect_left(ents, index << 32)
        if pos < len(ents) and ents[pos] >> 32 == index:
            return ents[pos] & TOKEN_MASK
        return 0

    def insert(self, object_id: int, index: int, token: int) -> IndexObject | int:
        """Add a page that is not indexed yet; return its ``IndexObject``, or
        for a one-page object its id as the index keeps it (the same ``int``)."""
        entry = index << 32 | token
        objects = self._objects
        obj = objects.get(object_id)
        if type(obj) is not IndexObject:
            if obj is None:
                # One object for the key and for the caller's reverse map:
                # compiled code holds ``object_id`` unboxed and would box
                # it anew for each (a second ``int`` per page).
                key: Any = object_id
                objects[key] = entry
                self._pages += 1
                self.ledger.meta_bytes += PAGE_BYTES + INLINE_OBJECT_BYTES
                if self.listing is not None:
                    self.listing.add(object_id)
                    self.ledger.meta_bytes += LISTING_BYTES_PER_OBJECT
                return cast("IndexObject | int", key)
            # A second page: promote, in place (the key stays the first
            # page's id ``int``; a delete and an insert would leave a dead
            # entry in the dict until it next resizes).
            first = obj
            obj = objects[object_id] = IndexObject(self)
            obj.ents.append(first)
            self.ledger.meta_bytes += OBJECT_BYTES - INLINE_OBJECT_BYTES
            if self.relinker is not None:
                obj.oid = cast("int | None", self.relinker.relink(first & TOKEN_MASK, obj))
        leaf: IndexLeaf = obj
        if obj.chunks is not None:
            leaf = self._chunk(obj, index)
        elif len(obj.ents) >= SPLIT_PAGES:
            self._split(obj)
            leaf = self._chunk(obj, index)
        ents = leaf.ents
        if ents and ents[-1] > entry:
            ents.insert(bisect_left(ents, entry), entry)
        else:
            ents.append(entry)
        self._pages += 1
        self.ledger.meta_bytes += PAGE_BYTES
        return obj

    def _chunk(self, obj: IndexObject, index: int) -> IndexLeaf:
        """The chunk of a split object holding ``index`` (created if missing)."""
        assert obj.chunks is not None
        leaf = obj.chunks.get(index >> CHUNK_BITS)
        if leaf is None:
            leaf = obj.chunks[index >> CHUNK_BITS] = IndexLeaf()
            self.ledger.meta_bytes += CHUNK_BYTES
        return leaf

    def _split(self, obj: IndexObject) -> None:
        """Move an object's pages into chunks of 1024 consecutive indexes."""
        obj.chunks = {}
        for entry in obj.ents:
            self._chunk(obj, entry >> 32).ents.append(entry)
        obj.ents = array("Q")

    def set(self, object_id: int, index: int, token: int) -> int:
        """Store ``token`` (nonzero) at (object_id, index); return the old token or 0."""
        old = self.delete(object_id, index)
        self.insert(object_id, index, token)
        return old

    def delete(self, object_id: int, index: int) -> int:
        """Remove (object_id, index); return its token or 0 if there was none."""
        obj = self._objects.get(object_id)
        if obj is None:
            return 0
        if type(obj) is not IndexObject:
            if obj >> 32 != index:
                return 0
            del self._objects[object_id]
            self._pages -= 1
            self.ledger.meta_bytes -= PAGE_BYTES + INLINE_OBJECT_BYTES
            self._unlist(object_id)
            return obj & TOKEN_MASK
        chunks = obj.chunks
        leaf: IndexLeaf | None = obj if chunks is None else chunks.get(index >> CHUNK_BITS)
        if leaf is None:
            return 0
        ents = leaf.ents
        pos = index & _CHUNK_MASK
        if not (pos < len(ents) and ents[pos] >> 32 == index):
            pos = bisect_left(ents, index << 32)
            if pos == len(ents) or ents[pos] >> 32 != index:
                return 0
        token: int = ents.pop(pos) & TOKEN_MASK
        self._pages -= 1
        ledger = self.ledger
        ledger.meta_bytes -= PAGE_BYTES
        if not ents:
            if chunks is not None:
                del chunks[index >> CHUNK_BITS]
                ledger.meta_bytes -= CHUNK_BYTES
            if not chunks:
                del self._objects[object_id]
                ledger.meta_bytes -= OBJECT_BYTES
                self._unlist(object_id)
        return token

    def _unlist(self, object_id: int) -> None:
        if self.listing is not None:
            self.listing.remove(object_id)
            self.ledger.meta_bytes -= LISTING_BYTES_PER_OBJECT

    def pop_object(self, object_id: int) -> list[int]:
        """Remove every page of one object; return their tokens."""
        obj = self._objects.pop(object_id, None)
        if obj is None:
            return []
        tokens = self._tokens(obj)
        self._forget(obj, len(tokens))
        self._unlist(object_id)
        return tokens

    def pop_all(self) -> list[int]:
        """Remove every page; return their tokens."""
        tokens: list[int] = []
        for obj in self._objects.values():
            got = self._tokens(obj)
            self._forget(obj, len(got))
            tokens.extend(got)
        if self.listing is not None:
            self.ledger.meta_bytes -= len(self.listing) * LISTING_BYTES_PER_OBJECT
            self.listing.clear()
        self._objects = {}
        return tokens

    @staticmethod
    def _tokens(obj: IndexObject | int) -> list[int]:
        if type(obj) is not IndexObject:
            return [obj & TOKEN_MASK]
        leaves = [obj] if obj.chunks is None else obj.chunks.values()
        return [entry & TOKEN_MASK for leaf in leaves for entry in leaf.ents]

    def _forget(self, obj: IndexObject | int, pages: int) -> None:
        """Uncharge a popped object of ``pages`` pages."""
        self._pages -= pages
        if type(obj) is not IndexObject:
            self.ledger.meta_bytes -= PAGE_BYTES + INLINE_OBJECT_BYTES
            return
        chunks = 0 if obj.chunks is None else len(obj.chunks)
        self.ledger.meta_bytes -= pages * PAGE_BYTES + OBJECT_BYTES + chunks * CHUNK_BYTES

    def inline(self, object_id: int) -> bool:
        """Whether the object holds one page, inline (for invariant checks)."""
        return type(self._objects.get(object_id)) is int

    def objects(self) -> Iterator[IndexObject]:
        """Every object of two pages or more (for tests and maintenance, not
        the hot path; inline objects have no record)."""
        return iter([obj for obj in self._objects.values() if type(obj) is IndexObject])

    def _leaves(self) -> Iterator[tuple[int, int | None, Sequence[int]]]:
        """(object id, chunk or None, entries) of every leaf; inline objects
        as a leaf of one entry.  For checks and maintenance, not the hot path."""
        for object_id, obj in self._objects.items():
            if type(obj) is not IndexObject:
                yield object_id, None, (obj,)
            elif obj.chunks is None:
                yield object_id, None, obj.ents
            else:
                for chunk, leaf in obj.chunks.items():
                    yield object_id, chunk, leaf.ents

    def items(self) -> Iterator[tuple[int, int, int]]:
        """Every (object_id, index, token); for invariant checks, not the hot path."""
        for object_id, _, ents in self._leaves():
            for entry in ents:
                yield object_id, entry >> 32, entry & TOKEN_MASK

    def meta_bytes(self) -> int:
        """What this index charges now (recomputed; for invariant checks)."""
        charged = self._pages * PAGE_BYTES
        for obj in self._objects.values():
            if type(obj) is not IndexObject:
                charged += INLINE_OBJECT_BYTES
            elif obj.chunks is None:
                charged += OBJECT_BYTES
            else:
                charged += OBJECT_BYTES + len(obj.chunks) * CHUNK_BYTES
        if self.listing is not None:
            charged += len(self.listing) * LISTING_BYTES_PER_OBJECT
        return charged

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` if the counts, order or tokens are inconsistent."""
        counted = 0
        for object_id, chunk, ents in self._leaves():
            keys = [entry >> 32 for entry in ents]
            assert keys, f"object {object_id} has an empty leaf"
            assert keys == sorted(set(keys)), f"object {object_id}: keys not sorted"
            assert all(e & TOKEN_MASK for e in ents), f"object {object_id}: zero token"
            if chunk is not None:
                assert {k >> CHUNK_BITS for k in keys} == {chunk}, "page in the wrong chunk"
            counted += len(keys)
        assert counted == self._pages, f"page count {self._pages} != {counted} indexed"
        if self.listing is not None:
            assert self.listing.ids() == set(self._objects), "listing differs from the index"
            assert len(self.listing) == len(self._objects), "an object listed twice"
        # Keys as objects: compiled, an ``int`` key would be unboxed and
        # boxed anew, and the identity below would not hold.
        entries: Iterable[tuple[object, IndexObject | int]] = self._objects.items()
        for key, obj in entries:
            if type(obj) is IndexObject:
                assert obj.index is self, f"object {key}: not in this index"
                # With a ``relinker``, every object got its key ``int`` as ``oid``.
                oid = None if self.relinker is None else key
                assert obj.oid is oid, f"object {key}: its id is not its key"
                split = obj.chunks is not None
                assert not split or (obj.chunks and not obj.ents), f"split object {key}"
