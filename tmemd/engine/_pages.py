"""The page store: put, get and flush on a resolved pool (the hot path).

Theory of operation
-------------------
The engine resolves the client and the pool id in that client's own table
(``NoSuchClient``, ``NoSuchPool``) and hands the objects here; the store
checks the object id, index and length, and only then changes state, so an
error changes nothing.

A **put** turns the page into a blob (precompressed pools: the bytes as
given; same-filled pages: the fill byte, kept in the same-filled store;
otherwise the codec's output, or the raw page when that output is over 7/8
of a page).  The old copy at that handle, if any, is removed *first*: its
memory then helps the new copy fit, and if the new copy is refused the old
one must go anyway (docs/design.md §3.2: no stale page may be returned later).
Then policy decides, in ``_store``: a frozen client's put is refused before
any of this (the old copy is flushed all the same); a persistent page must
fit its client's persistent cap and the persistent share, where each client
is held to its fair share above the accept line (``PersistentShare``); a
page that would pass its client's total cap first evicts that client's own
ephemeral pages (``_tenancy`` has the rules); the ledger must have room for
the page's metadata, and the blob is stored through the ``Evictor``, which
evicts ephemeral pages, least recently used of the client most above its
weighted share, until both fit or refuses with NO_MEMORY.  A refused put
returns a ``Refusal``.  A stored ephemeral page is linked at the newest end
of its client's LRU in its space (``_space``).

A **get** looks the token up, rebuilds the page, and for an exclusive get
(the default for private ephemeral pools) removes it; a kept ephemeral page
becomes the most recently used.  flush_page and flush_object remove pages;
flush_object pops one object's entry, never scanning other objects.  Every
removal goes through the ``PageFreer`` (``_freeing``), as the evictor's do.

Data handed in may be a memoryview over a receive buffer: it is copied to
``bytes`` once on entry (a copy costs less than what ``bytes`` saves in
comparing and compressing over a memoryview: docs/bench/micro.md) and never
kept.

Collaborators: the ``Evictor`` stores blobs (evicting to make room) and
enforces the total cap; the ``PersistentShare`` admits persistent bytes;
the ``PageFreer`` frees and counts; the ledger is read, never charged here
(the index and the spaces charge it).  Counters go to the pool, its
client and the engine's ``Totals``.
"""

from __future__ import annotations

from typing import Final

from ._config import INDEX_LIMIT, OBJECT_ID_LIMIT
from ._errors import BadIndex, BadLength, BadObjectId, Refusal
from ._freeing import PageFreer, free_blob
from ._index import OBJECT_BYTES, PAGE_BYTES
from ._memory import Memory
from ._policy import Evictor, PersistentShare
from ._space import Space
from ._state import (
    ENC_BIG,
    ENC_COMPRESSED,
    ENC_MASK,
    ENC_RAW,
    ENC_SAME,
    MAX_HANDLE,
    VALUE_SHIFT,
    Client,
    Pool,
    Totals,
    make_token,
)

__all__ = ["PUT_ROOM_BYTES", "Data", "PageStore"]

Data = bytes | bytearray | memoryview

#: Metadata room a put needs before it stores: an index entry, and a new
#: object's record in case the page starts one.
PUT_ROOM_BYTES: Final = PAGE_BYTES + OBJECT_BYTES


class PageStore:
    """Pages of resolved pools: the put/get/flush paths (module docstring)."""

    __slots__ = (
        "_counters",
        "_evictor",
        "_fills",
        "_freer",
        "_holders",
        "_ledger",
        "_same",
        "_share",
        "_totals",
    )

    def __init__(
        self,
        memory: Memory,
        share: PersistentShare,
        evictor: Evictor,
        freer: PageFreer,
        totals: Totals,
    ) -> None:
        self._ledger = memory.ledger
        self._same = memory.spaces[0]
        self._fills = memory.same_pam.fills
        self._share = share
        self._evictor = evictor
        self._holders = evictor.holders
        self._freer = freer
        self._totals = totals
        self._counters = totals.ops

    # --- put ----------------------------------------------------------------

    def put(
        self, caller: Client, pool: Pool, object_id: int, index: int, data: Data
    ) -> Refusal | None:
        """Store a page; None when stored, else why not (the old copy is gone then)."""
        if not (0 <= object_id < OBJECT_ID_LIMIT and 0 <= index < INDEX_LIMIT):
            _check_handle(object_id, index)  # raises; a call saved on every put
        if caller.frozen:
            return self._refuse_frozen(caller, pool, object_id, index, len(data))
        page = data if type(data) is bytes else bytes(data)
        blob, encoding = self._encode(pool, page)
        old = pool.index.delete(object_id, index)
        if old:
            self._freer.release(pool, old)
        refusal = self._store(pool, object_id, index, blob, encoding)
        if refusal is not None:
            return self._refuse(caller, pool, refusal, replaced=bool(old))
        pool.counters.puts_stored += 1
        caller.counters.puts_stored += 1
        self._counters.puts_stored += 1
        return None

    def restore_page(
        self, pool: Pool, object_id: int, index: int, blob: bytes, encoding: int
    ) -> Refusal | None:
        """Store a page's saved blob as it was stored (``_snapshot``): no codec runs."""
        return self._store(pool, object_id, index, blob, encoding)

    def _refuse_frozen(
        self, caller: Client, pool: Pool, object_id: int, index: int, size: int
    ) -> Refusal:
        """A frozen client's put: valid or an error like any put, then refused
        without compressing; the old copy goes (the replace rule)."""
        _check_length(pool, size)
        old = pool.index.delete(object_id, index)
        if old:
            self._freer.release(pool, old)
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
        # Same-filled: three bytes first (most pages differ there), then a
        # compare with a filled page, which stops at the first difference
        # (a count would scan the whole page: padded pages pass the first test).
        fill = page[0]
        if page[-1] == fill and page[size >> 1] == fill and page == page[:1] * size:
            return page[:1], ENC_SAME
        compressed = pool.codec.compress(page)
        if len(compressed) > pool.raw_limit:
            return page, ENC_RAW
        return compressed, ENC_COMPRESSED

    def _refuse(self, caller: Client, pool: Pool, reason: Refusal, *, replaced: bool) -> Refusal:
        totals = self._totals
        pool.counters.puts_refused += 1
        caller.counters.puts_refused += 1
        caller.refused_by_reason[reason] += 1
        totals.ops.puts_refused += 1
        totals.refused_by_reason[reason] += 1
        if replaced:
            totals.dropped_by_refused_replace += 1
        return reason

    # --- storing a blob: admission, space, accounting -------------------------

    def _store(
        self, pool: Pool, object_id: int, index: int, blob: bytes, encoding: int
    ) -> Refusal | None:
        """Admit, store, count and index a blob; return the refusal, if any.

        It never returns a token: a union of ``int`` and ``Refusal`` (an
        ``IntEnum``) is plain ``int`` to mypy, and compiled code (mypyc)
        then unboxes the refusal into an int that no ``isinstance`` tells
        from a token.
        """
        tenant = pool.tenant
        same = encoding == ENC_SAME
        size = 0 if same else len(blob)
        if pool.persistent:
            refusal = self._admit_persistent(tenant, size) if size else self._share.admit(tenant, 0)
            if refusal is not None:
                return refusal
            incoming = 0
        else:
            cap = tenant.total_cap
            if cap is not None and size and not self._evictor.fit_cap(tenant, size, cap):
                return Refusal.CLIENT_TOTAL_CAP
            incoming = size
        ledger = self._ledger
        if (
            ledger.frames_used << 12
        ) + ledger.meta_bytes + PUT_ROOM_BYTES > ledger.size_bytes and not self._evictor.make_room(
            PUT_ROOM_BYTES, tenant, incoming
        ):
            return Refusal.NO_MEMORY
        if same:
            # A persistent same-filled page holds no bytes: only a full share refused it.
            token = make_token(self._same.pam.store(blob), ENC_SAME)
            pool.account(token, 0, 1)
            self._index(pool, object_id, index, token, 0)
            return None
        space = pool.space
        if size <= space.max_object:
            handle = self._evictor.store(space, blob, tenant, incoming)
            stored = size
        else:
            handle, stored = self._store_big(space, blob, tenant, incoming)
            encoding |= ENC_BIG
        if not handle or handle > MAX_HANDLE:
            if handle:
                free_blob(space, handle, encoding)
            return Refusal.NO_MEMORY
        token = make_token(handle, encoding)
        self._freer.count(pool, token, stored, 1)
        self._index(pool, object_id, index, token, stored)
        return None

    def _index(self, pool: Pool, object_id: int, index: int, token: int, stored: int) -> None:
        """Index a stored page; an ephemeral one becomes its client's newest
        of ``stored`` bytes in its space's LRU."""
        obj = pool.index.insert(object_id, index, token)
        if pool.persistent:
            return
        tenant = pool.tenant
        if not tenant.lru_pages:
            self._holders[tenant.name] = tenant
        if token & ENC_MASK == ENC_SAME:
            self._same.link(tenant, token >> VALUE_SHIFT, obj, index, 0)
        else:
            pool.space.link(tenant, token >> VALUE_SHIFT, obj, index, stored)

    def _store_big(
        self, space: Space, blob: bytes, tenant: Client, incoming: int
    ) -> tuple[int, int]:
        """Store a blob longer than one PAM object as pieces plus a descriptor
        (``_space``); return (descriptor handle, stored bytes), or (0, 0)."""
        step = space.max_object
        pieces: list[int] = []
        for offset in range(0, len(blob), step):
            piece = blob[offset : offset + step]
            handle = self._evictor.store(space, piece, tenant, incoming, reclaim=False)
            if not handle:
                break
            pieces.append(handle)
        else:
            descriptor = space.descriptor(pieces)
            handle = self._evictor.store(space, descriptor, tenant, incoming, reclaim=False)
            if handle:
                return handle, len(blob) + len(descriptor)
        for handle in pieces:
            space.pam.free(handle)
        return 0, 0

    def _admit_persistent(self, tenant: Client, size: int) -> Refusal | None:
        """The client's persistent cap, the global share, then the total cap
        (last: making room for it evicts the client's own ephemeral pages)."""
        cap = tenant.persistent_cap
        if cap is not None and tenant.persistent_bytes + size > cap:
            return Refusal.CLIENT_PERSISTENT_CAP
        refusal = self._share.admit(tenant, size)
        if refusal is not None:
            return refusal
        cap = tenant.total_cap
        if cap is not None and not self._evictor.fit_cap(tenant, size, cap):
            return Refusal.CLIENT_TOTAL_CAP
        return None

    # --- get and flush ----------------------------------------------------------

    def get(
        self, caller: Client, pool: Pool, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        """The page's bytes, or None on a miss (``Engine.get`` says what
        ``exclusive`` None means)."""
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
            exclusive = not (pool.persistent or pool.shared_uuid is not None)
        if exclusive:
            pool.index.delete(object_id, index)
            self._freer.release(pool, token)
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

    def flush_page(self, caller: Client, pool: Pool, object_id: int, index: int) -> bool:
        """Remove one page; True if there was one."""
        _check_handle(object_id, index)
        pool.counters.flush_page_calls += 1
        caller.counters.flush_page_calls += 1
        self._counters.flush_page_calls += 1
        token = pool.index.delete(object_id, index)
        if not token:
            return False
        self._freer.release(pool, token)
        self._count_flushed(caller, pool, 1)
        return True

    def flush_object(self, caller: Client, pool: Pool, object_id: int) -> int:
        """Remove every page of one object; return how many there were."""
        if not 0 <= object_id < OBJECT_ID_LIMIT:
            raise BadObjectId(f"object id {object_id} is not in [0, 2**192)")
        pool.counters.flush_object_calls += 1
        caller.counters.flush_object_calls += 1
        self._counters.flush_object_calls += 1
        tokens = pool.index.pop_object(object_id)
        for token in tokens:
            self._freer.release(pool, token)
        self._count_flushed(caller, pool, len(tokens))
        return len(tokens)

    def _count_flushed(self, caller: Client, pool: Pool, pages: int) -> None:
        pool.counters.pages_flushed += pages
        caller.counters.pages_flushed += pages
        self._counters.pages_flushed += pages


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
