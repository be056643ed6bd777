"""Spaces: one PAM each, and the engine's arrays over that PAM's handles.

What: a ``Space`` pairs a PAM instance (zbud, xvmalloc, zsmalloc, the
same-filled store, or a plugged-in PAM) with three things the engine keeps
per handle of it: the LRU links of ephemeral pages, and the reverse map
from a handle to its page (index object or object id, and page index).
Every pool uses one space (the daemon's default for its kind, or the PAM it
asked for), and every PAM instance is one space shared by all pools that
use it.

Why arrays over handles: an ephemeral page must be found from its handle
(eviction picks a handle; zbud's ``reclaim()`` returns handles, already
freed, so the page's stored length must be kept here too) and ordered per
client.  An ``OrderedDict`` entry per page costs ~100 bytes plus a
packed-location ``int``; here a page costs two u32 links, its u32 page
index, its u32 stored length and a reference to its (shared) index object,
or, for an object of one page (which has none: ``_index``), to its id, the
very ``int`` the index keeps as its key: 24 bytes, charged to the ledger by
the capacity of the arrays (they cover the highest handle used and never
shrink, so the charge does not either).
PAM handles are dense small integers (zsmalloc, the same store and
xvmalloc's handle table reuse freed numbers; a zbud handle is ``2 * frame +
buddy + 1``), so the arrays stay near the live page count.
Handle 0 is never used, so 0 ends a list (``NIL``).

How the LRU works: each client has, per space, a doubly linked list of its
ephemeral pages' handles, oldest at ``client.lru_head[space.id]``, newest
at ``lru_tail``.  ``link`` appends, ``unlink`` removes, ``touch`` moves to
the newest end: O(1), a few array stores.  Worked example: client c links
handles 5 then 9 in space 1: head 5, tail 9, ``nxt[5] == 9``,
``prv[9] == 5``; touching 5 makes head 9 and tail 5.

Big pages: an object in a PAM is at most ``max_object`` bytes (a frame for
the arena PAMs).  A stored form longer than that (pages of 8 to 64 KiB) is
cut into pieces of ``max_object`` bytes; their handles (u64 each) are
stored as one more object, the *descriptor*, whose handle stands for the
page.  Worked example: a 64 KiB page compressing to 20_000 bytes becomes 5
pieces (4 x 4_096 + 3_616) and a 40-byte descriptor, 20_040 stored bytes.
A space holding such pages, or persistent pages, is ``pinned`` and never
reclaims whole units: a zbud frame may hold a piece whose descriptor is
elsewhere, or a page that must not be evicted.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Final, Protocol

from ._index import IndexObject
from ._ledger import Ledger
from .pam import Pam

__all__ = ["HANDLE_BYTES", "MAX_SPACES", "NIL", "LruOwner", "Space"]

#: The end of a list: no PAM hands out handle 0.
NIL: Final = 0
#: Spaces one engine may have: the same-filled store, three arena PAMs, and
#: room for plugged-in PAMs; sizes each client's per-space list heads.
MAX_SPACES: Final = 8
#: Grow-only bytes per handle covered: two u32 links, the u32 page index,
#: the u32 stored length and the 8-byte reference to the page's index object
#: or object id (an ``int`` the index owns already).
HANDLE_BYTES: Final = 24
#: Bytes per handle in a descriptor of a big page.
_DESCRIPTOR_ITEM: Final = "Q"


class LruOwner(Protocol):
    """What a space needs of a client: its list ends and counts per space."""

    lru_head: list[int]
    lru_tail: list[int]
    lru_count: list[int]
    lru_pages: int


class Space:
    """A PAM and the per-handle LRU links and reverse map over its handles."""

    __slots__ = (
        "id",
        "idx",
        "ledger",
        "lens",
        "max_object",
        "nxt",
        "objs",
        "pam",
        "pinned",
        "prv",
    )

    def __init__(self, space_id: int, pam: Pam, ledger: Ledger, max_object: int) -> None:
        if not 0 <= space_id < MAX_SPACES:
            raise ValueError(f"space id {space_id} is not in [0, {MAX_SPACES})")
        self.id = space_id
        self.pam = pam
        self.ledger = ledger
        #: The largest object ``pam`` stores; longer blobs are cut into pieces.
        self.max_object = max_object
        self.nxt = array("I")
        self.prv = array("I")
        self.idx = array("I")
        self.lens = array("I")
        #: The ephemeral page under each handle: its index object, or the id
        #: of its one-page object (None: no page).
        self.objs: list[IndexObject | int | None] = []
        #: Persistent and big pages held: while nonzero, no whole-unit reclaim.
        self.pinned = 0

    def _cover(self, handle: int) -> None:
        """Grow the arrays (by a quarter at least) to cover ``handle``."""
        have = len(self.idx)
        grow = max(handle + 1, have + have // 4, 64) - have
        zeros = array("I", bytes(4 * grow))
        self.nxt.extend(zeros)
        self.prv.extend(zeros)
        self.idx.extend(zeros)
        self.lens.extend(zeros)
        self.objs.extend([None] * grow)
        self.ledger.meta_bytes += grow * HANDLE_BYTES

    # --- the per-client LRU ---------------------------------------------

    def link(
        self, client: LruOwner, handle: int, obj: IndexObject | int, index: int, stored: int
    ) -> None:
        """Record an ephemeral page of ``stored`` bytes and make it ``client``'s
        newest in this space; ``obj`` is what ``PageIndex.insert`` returned."""
        if handle >= len(self.idx):
            self._cover(handle)
        self.objs[handle] = obj
        self.idx[handle] = index
        self.lens[handle] = stored
        sid = self.id
        tail = client.lru_tail[sid]
        self.prv[handle] = tail
        self.nxt[handle] = NIL
        if tail:
            self.nxt[tail] = handle
        else:
            client.lru_head[sid] = handle
        client.lru_tail[sid] = handle
        client.lru_count[sid] += 1
        client.lru_pages += 1

    def unlink(self, client: LruOwner, handle: int) -> None:
        """Forget a linked page (its handle may then be reused)."""
        self._detach(client, handle)
        self.objs[handle] = None
        client.lru_count[self.id] -= 1
        client.lru_pages -= 1

    def _detach(self, client: LruOwner, handle: int) -> None:
        nxt, prv = self.nxt[handle], self.prv[handle]
        if prv:
            self.nxt[prv] = nxt
        else:
            client.lru_head[self.id] = nxt
        if nxt:
            self.prv[nxt] = prv
        else:
            client.lru_tail[self.id] = prv

    def touch(self, client: LruOwner, handle: int) -> None:
        """Make a linked page ``client``'s newest in this space."""
        sid = self.id
        tail = client.lru_tail[sid]
        if tail == handle:
            return
        self._detach(client, handle)
        self.prv[handle] = tail
        self.nxt[handle] = NIL
        self.nxt[tail] = handle  # tail != NIL: the list held at least this page
        client.lru_tail[sid] = handle

    def handles(self, client: LruOwner) -> Iterator[int]:
        """``client``'s linked handles, oldest first (rehoming and checks only)."""
        handle = client.lru_head[self.id]
        while handle:
            nxt = self.nxt[handle]
            yield handle
            handle = nxt

    # --- big pages ------------------------------------------------------

    def stored_length(self, size: int) -> int:
        """Bytes a blob of ``size`` bytes holds in this space, descriptor included."""
        if size <= self.max_object:
            return size
        pieces = -(-size // self.max_object)
        return size + pieces * array(_DESCRIPTOR_ITEM).itemsize

    @staticmethod
    def descriptor(pieces: list[int]) -> bytes:
        """The descriptor object of a big page's pieces."""
        return array(_DESCRIPTOR_ITEM, pieces).tobytes()

    def pieces(self, descriptor: int) -> list[int]:
        """The piece handles of a big page, in order."""
        handles = array(_DESCRIPTOR_ITEM)
        handles.frombytes(self.pam.load(descriptor))
        return handles.tolist()

    def load_big(self, descriptor: int) -> bytes:
        """A big page's stored form, joined from its pieces."""
        load = self.pam.load
        return b"".join([load(handle) for handle in self.pieces(descriptor)])

    def free_big(self, descriptor: int) -> int:
        """Free a big page's pieces and descriptor; return the bytes they held."""
        free = self.pam.free
        return sum([free(handle) for handle in self.pieces(descriptor)]) + free(descriptor)

    def meta_bytes(self) -> int:
        """What the arrays charge now (for invariant checks)."""
        return len(self.idx) * HANDLE_BYTES
