"""The per-pool page index: (object_id, index) -> page token, in sorted arrays.

What: a dict from object id to an ``IndexObject``; each object keeps its
pages in one sorted ``array('Q')`` of entries ``index << 32 | token``.  A
token is the engine's nonzero 32-bit integer naming how and where a page is
stored (``_state``); 0 means "no page".  Entries sort by page index, since
the index is the high half.

Why an array, not a dict per object: a dict of int to int costs ~97 bytes
per page (a 24-byte entry with its slack, plus a 28-byte key and a 32-byte
value ``int`` object, since page indexes and tokens come fresh from the
wire).  An array entry is 8 machine bytes.  Why two levels: tmem's
flush_object drops every page of one object (a truncated file, a swap area
switched off) and must not scan unrelated pages: it pops one dict entry.

How: a lookup first tries position ``index & 1023``, which is right for an
object whose pages are dense from a multiple of 1024 (a file read from the
start; a swap area), then falls back to ``bisect`` (O(log n), in C).  An
insert is ``array.insert``: O(n) bytes moved, so an object splits into
*chunks* of 1024 consecutive indexes (``CHUNK_BITS``) once it holds
``SPLIT_PAGES`` pages; each chunk is an ``IndexLeaf`` in ``chunks``, keyed
by ``index >> 10``, and an insert then moves at most 8 KiB.  An object
never merges back (a big object stays big).  Worked example: page 5 of an
object under token 0x1234 is the entry ``5 << 32 | 0x1234``; if the object
holds pages 0..9 it sits at position 5 and is found without a search.

Cost, charged to ``ledger.meta_bytes`` as pages and objects come and go:
``PAGE_BYTES`` per page, ``OBJECT_BYTES`` per object and ``CHUNK_BYTES``
per chunk of a split object (measured: ``tests/unit/test_engine_pam_index.py``
prints them).  Worked example: 10^6 pages in objects of 64 pages cost
10^6 * 9 + 15_625 * 256 bytes = 13.0 MB, 13 bytes per page; one swap
area of 10^6 pages in one object costs 10^6 * 9 + 977 * 176 = 9.2 MB.

Guarantee: an object with no pages has no entry, so ``object_count`` is
exact and an empty pool holds nothing but the outer dict.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator
from typing import Protocol

__all__ = [
    "CHUNK_BITS",
    "CHUNK_BYTES",
    "OBJECT_BYTES",
    "PAGE_BYTES",
    "SPLIT_PAGES",
    "TOKEN_MASK",
    "IndexLeaf",
    "IndexObject",
    "Ledger",
    "MetaLedger",
    "PageIndex",
]

#: Indexes per chunk of a split object, as a shift: 1024 pages (4 MiB of
#: 4 KiB pages) keep an insert's memmove under 12 KiB.
CHUNK_BITS = 10
_CHUNK_MASK = (1 << CHUNK_BITS) - 1
#: Pages an object holds before it is split into chunks.
SPLIT_PAGES = 1 << CHUNK_BITS
#: Tokens are 32 bits: the low half of an entry.
TOKEN_MASK = 0xFFFF_FFFF
#: Bytes charged per indexed page: an 8-byte entry plus the array's
#: over-allocation (CPython grows an array by ~1/16).
PAGE_BYTES = 9
#: Bytes charged per object: the ``IndexObject`` (64 with its GC header),
#: its array (64, and its first items' buffer, 32), the outer dict's entry
#: with its slack (~45) and the object id ``int`` kept as the key (28 bytes
#: below 2**30, up to 52 for a 192-bit id).  Measured 224 with 28-byte ids
#: (tests/unit/test_engine_pam_index.py); charged for 192-bit ids.
OBJECT_BYTES = 256
#: Bytes charged per chunk of a split object: an ``IndexLeaf`` (48), its
#: array (64), its entry in the object's chunk dict and its key (~60).
CHUNK_BYTES = 176


class Ledger(Protocol):
    """Where metadata bytes are charged, beside the frames in use: the arena
    (``pam.Arena``) or a ``MetaLedger``."""

    meta_bytes: int
    frames_used: int
    size_bytes: int

    def room_for(self, meta_bytes: int) -> bool:
        """Whether ``meta_bytes`` more metadata fit within the limit."""
        ...


#: A limit no engine reaches: a ``MetaLedger`` only counts.
_UNBOUNDED_BYTES = 1 << 62


class MetaLedger:
    """A ledger that counts metadata but bounds nothing (PAMs that charge
    their own bytes, such as ``BytesPam``, do the bounding)."""

    __slots__ = ("frames_used", "meta_bytes", "size_bytes")

    def __init__(self) -> None:
        self.meta_bytes = 0
        self.frames_used = 0
        self.size_bytes = _UNBOUNDED_BYTES

    def room_for(self, meta_bytes: int) -> bool:
        return True


class IndexLeaf:
    """Pages as one sorted array of ``index << 32 | token`` entries."""

    __slots__ = ("ents",)

    def __init__(self) -> None:
        self.ents = array("Q")


class IndexObject(IndexLeaf):
    """One object's pages: in its own arrays, or in ``chunks`` once split."""

    __slots__ = ("chunks", "index", "oid")

    def __init__(self, index: PageIndex, oid: int) -> None:
        super().__init__()
        self.index = index
        self.oid = oid
        #: ``index >> CHUNK_BITS`` -> leaf, once the object is split; else None.
        self.chunks: dict[int, IndexLeaf] | None = None


class PageIndex:
    """Pages of one pool, grouped by object.

    ``owner`` is whatever the engine wants to reach from an ``IndexObject``
    (its ``Pool``); ``ledger`` is charged for the index's memory.
    """

    __slots__ = ("_objects", "_pages", "ledger", "owner")

    def __init__(self, owner: object = None, ledger: Ledger | None = None) -> None:
        self._objects: dict[int, IndexObject] = {}
        self._pages = 0
        self.owner = owner
        self.ledger: Ledger = MetaLedger() if ledger is None else ledger

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

    def insert(self, object_id: int, index: int, token: int) -> IndexObject:
        """Add a page that is not indexed yet; return its object."""
        obj = self._objects.get(object_id)
        if obj is None:
            obj = self._objects[object_id] = IndexObject(self, object_id)
            self.ledger.meta_bytes += OBJECT_BYTES
        leaf: IndexLeaf = obj
        if obj.chunks is not None:
            leaf = self._chunk(obj, index)
        elif len(obj.ents) >= SPLIT_PAGES:
            self._split(obj)
            leaf = self._chunk(obj, index)
        ents = leaf.ents
        entry = index << 32 | token
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
        return self.delete_in(obj, index)

    def delete_in(self, obj: IndexObject, index: int) -> int:
        """Remove page ``index`` of an indexed object; return its token or 0."""
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
                del self._objects[obj.oid]
                ledger.meta_bytes -= OBJECT_BYTES
        return token

    def pop_object(self, object_id: int) -> list[int]:
        """Remove every page of one object; return their tokens."""
        obj = self._objects.pop(object_id, None)
        if obj is None:
            return []
        tokens = self._tokens(obj)
        self._forget(obj, len(tokens))
        return tokens

    def pop_all(self) -> list[int]:
        """Remove every page; return their tokens."""
        tokens: list[int] = []
        for obj in self._objects.values():
            got = self._tokens(obj)
            self._forget(obj, len(got))
            tokens.extend(got)
        self._objects = {}
        return tokens

    @staticmethod
    def _tokens(obj: IndexObject) -> list[int]:
        leaves = [obj] if obj.chunks is None else obj.chunks.values()
        return [entry & TOKEN_MASK for leaf in leaves for entry in leaf.ents]

    def _forget(self, obj: IndexObject, pages: int) -> None:
        """Uncharge a popped object of ``pages`` pages."""
        chunks = 0 if obj.chunks is None else len(obj.chunks)
        self._pages -= pages
        self.ledger.meta_bytes -= pages * PAGE_BYTES + OBJECT_BYTES + chunks * CHUNK_BYTES

    def objects(self) -> Iterator[IndexObject]:
        """Every indexed object (for tests and maintenance, not the hot path)."""
        return iter(list(self._objects.values()))

    def items(self) -> Iterator[tuple[int, int, int]]:
        """Every (object_id, index, token); for invariant checks, not the hot path."""
        for object_id, obj in self._objects.items():
            leaves = [obj] if obj.chunks is None else list(obj.chunks.values())
            for leaf in leaves:
                for entry in leaf.ents:
                    yield object_id, entry >> 32, entry & TOKEN_MASK

    def meta_bytes(self) -> int:
        """What this index charges now (recomputed; for invariant checks)."""
        chunks = sum(len(o.chunks) for o in self._objects.values() if o.chunks is not None)
        return self._pages * PAGE_BYTES + len(self._objects) * OBJECT_BYTES + chunks * CHUNK_BYTES

    def check_invariants(self) -> None:
        """Raise ``AssertionError`` if the counts, order or tokens are inconsistent."""
        counted = 0
        for object_id, obj in self._objects.items():
            assert obj.oid == object_id and obj.index is self, f"object {object_id}: bad record"
            leaves: list[tuple[int | None, IndexLeaf]] = [(None, obj)]
            if obj.chunks is not None:
                assert not obj.ents and obj.chunks, f"split object {object_id} is malformed"
                leaves = list(obj.chunks.items())
            for chunk, leaf in leaves:
                keys = [entry >> 32 for entry in leaf.ents]
                assert keys, f"object {object_id} has an empty leaf"
                assert keys == sorted(set(keys)), f"object {object_id}: keys not sorted"
                assert all(e & TOKEN_MASK for e in leaf.ents), f"object {object_id}: zero token"
                if chunk is not None:
                    assert {k >> CHUNK_BITS for k in keys} == {chunk}, "page in the wrong chunk"
                counted += len(keys)
        assert counted == self._pages, f"page count {self._pages} != {counted} indexed"
