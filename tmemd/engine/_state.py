"""Live engine state: clients, pools, counters, and the page token format.

These are mutable objects with ``__slots__`` and plain ``int`` counters,
because the hot path increments them on every request (an attribute
increment costs tens of nanoseconds; building a frozen snapshot costs far
more and happens only at scrape time, in ``_stats.py``).

Page tokens
-----------
The index stores one nonzero 32-bit ``int`` per page, the *token*, which
says how the page is stored without any per-page Python object::

    token = value << VALUE_SHIFT | encoding

``encoding`` (3 bits) is ``ENC_COMPRESSED``, ``ENC_RAW`` or ``ENC_SAME`` in
its low two bits, plus ``ENC_BIG`` for a page stored in pieces (its stored
form is longer than one PAM object, see ``_space``); ``value`` is the
handle in the pool's space (a big page's descriptor), or in the same-filled
store.  The stored length is not in the token: the PAM knows it, and
``Pam.free`` returns it.  Handles above ``MAX_HANDLE`` (2**29 - 1) do not
fit; a put that gets one is refused (NO_MEMORY), which takes over 500
million live pages in one space.  Worked example: a page compressed under
PAM handle 7 has token ``7 << 3 | 1`` = 57; a page of zeros under
same-store handle 2 has token ``2 << 3 | 3`` = 19 (never 0, since the
encoding is never 0).
"""

from __future__ import annotations

import enum
from typing import Final

from ._config import DEFAULT_WEIGHT
from ._index import IndexObject, PageIndex
from ._ledger import Ledger
from ._space import MAX_SPACES, Space
from .codecs import Codec, raw_threshold_bytes
from .pam import Pam

__all__ = [
    "DICT_NONE",
    "DICT_PENDING",
    "DICT_TRAINED",
    "ENC_BIG",
    "ENC_COMPRESSED",
    "ENC_MASK",
    "ENC_RAW",
    "ENC_SAME",
    "MAX_HANDLE",
    "VALUE_SHIFT",
    "Client",
    "Counters",
    "Eviction",
    "Pool",
    "ReverseMap",
    "Totals",
    "make_token",
]

#: A pool's dictionary state (``Pool.dictionary``): not trained yet, trained
#: (its codec is the trained copy), or never to be trained.
DICT_PENDING: Final = 0
DICT_TRAINED: Final = 1
DICT_NONE: Final = 2

ENC_COMPRESSED: Final = 1
ENC_RAW: Final = 2
ENC_SAME: Final = 3
#: The low two bits of the encoding: compressed, raw or same-filled.
ENC_MASK: Final = 0b11
#: Set beside ENC_COMPRESSED or ENC_RAW: stored in pieces (``_space``).
ENC_BIG: Final = 0b100
VALUE_SHIFT: Final = 3
#: The largest handle a 32-bit token holds.
MAX_HANDLE: Final = (1 << (32 - VALUE_SHIFT)) - 1


class Eviction(enum.IntEnum):
    """Why an ephemeral page was dropped to make room (a counter per reason)."""

    #: Memory was full: the page was its client's least recently used, and
    #: that client was the one most above its weighted share (``_policy``).
    LRU = 0
    #: Dropped with a whole PAM reclaim unit (a zbud frame).
    RECLAIM = 1
    #: Its own client's put would have passed the client's total cap.
    CLIENT_TOTAL_CAP = 2
    #: An administrator asked for ephemeral memory back (``flush_ephemeral``).
    ADMIN_FLUSH = 3


def make_token(value: int, encoding: int) -> int:
    """Pack a page token (see the module docstring)."""
    return value << VALUE_SHIFT | encoding


class Counters:
    """Monotonic operation counters, kept per pool, per client and globally."""

    __slots__ = (
        "flush_object_calls",
        "flush_page_calls",
        "gets_hit",
        "gets_miss",
        "pages_evicted",
        "pages_flushed",
        "puts_refused",
        "puts_stored",
    )

    def __init__(self) -> None:
        self.puts_stored = 0
        self.puts_refused = 0
        self.gets_hit = 0
        self.gets_miss = 0
        self.flush_page_calls = 0
        self.flush_object_calls = 0
        #: Pages removed by flush_page and flush_object.
        self.pages_flushed = 0
        #: Pages dropped to make room (ephemeral only).
        self.pages_evicted = 0


class Totals:
    """The engine-wide counters: operations, and refusals and evictions by
    reason.  One object, shared by the collaborators that count into it
    (the page store, the page freer), read by ``statistics()``."""

    __slots__ = (
        "dropped_by_refused_replace",
        "evicted_by_reason",
        "freed_by_destroy",
        "ops",
        "refused_by_reason",
    )

    def __init__(self, refusal_kinds: int) -> None:
        self.ops = Counters()
        #: Refused puts, indexed by ``Refusal`` value.
        self.refused_by_reason = [0] * refusal_kinds
        #: Evicted pages, indexed by ``Eviction`` value.
        self.evicted_by_reason = [0] * len(Eviction)
        #: Old copies flushed because their replacement was refused.
        self.dropped_by_refused_replace = 0
        #: Pages freed with their pool (destroy_pool, lease expiry).
        self.freed_by_destroy = 0


class ReverseMap:
    """An ephemeral pool's way into the spaces' reverse map, handed to its
    index as its ``Relinker``: when a one-page object gets a second page,
    the slot of its first page (under ``token``), which held the object's
    id, must refer to the new ``IndexObject`` (``_index``, ``_space``)."""

    __slots__ = ("_same", "_space")

    def __init__(self, space: Space, same: Space) -> None:
        self._space = space
        self._same = same

    def relink(self, token: int, obj: IndexObject) -> object:
        """Point the page's slot at ``obj``; return the id it held (the index's
        key itself: ``object_id`` is never narrowed to ``int``, which compiled
        code would unbox and box anew)."""
        space = self._same if token & ENC_MASK == ENC_SAME else self._space
        handle = token >> VALUE_SHIFT
        object_id = space.objs[handle]
        assert _is_id(object_id), f"handle {handle}: no one-page object's id"
        space.objs[handle] = obj
        return object_id


class Pool:
    """One pool: its flags, its index, and gauges over its pages.

    A shared pool is one ``Pool`` object that appears in several clients'
    tables (``members`` maps each member's name to its own pool id).  Its
    pages are charged to ``owner`` (``tenant``): the creator, or, once the
    creator has left, the member that joined earliest.
    """

    __slots__ = (
        "codec",
        "codec_name",
        "counters",
        "creator",
        "dictionary",
        "index",
        "members",
        "name",
        "original_bytes",
        "owner",
        "page_size",
        "persistent",
        "pool_id",
        "precompressed",
        "raw_limit",
        "raw_pages",
        "same_filled_pages",
        "shared_uuid",
        "space",
        "stored_bytes",
        "tenant",
    )

    def __init__(
        self,
        owner: Client,
        pool_id: int,
        *,
        persistent: bool,
        shared_uuid: int | None,
        precompressed: bool,
        page_size: int,
        codec_name: str,
        codec: Codec,
        space: Space,
        same_space: Space,
        ledger: Ledger,
        name: str | None = None,
    ) -> None:
        #: The name its owner gave it (private pools only), or None.
        self.name = name
        #: The client charged for the pages (its name, and the object itself so
        #: that the hot path reaches its gauges and LRU without a lookup).
        self.owner = owner.name
        self.tenant = owner
        self.creator = owner.name
        #: The pool's id in the owner's id space.
        self.pool_id = pool_id
        self.persistent = persistent
        self.shared_uuid = shared_uuid
        self.precompressed = precompressed
        self.page_size = page_size
        #: Longest compressed form kept compressed (longer: stored raw).
        self.raw_limit = raw_threshold_bytes(page_size)
        #: The key of the engine's codec table this pool was created with.
        self.codec_name = codec_name
        #: The codec pages are compressed with: the table's, or a trained copy.
        self.codec = codec
        #: Where the pool's pages are stored (PAM, LRU links, reverse map).
        self.space = space
        #: Dictionary training: ``DICT_PENDING``, ``DICT_TRAINED`` or ``DICT_NONE``.
        self.dictionary = DICT_PENDING
        #: An ephemeral pool's pages are found from their handles (eviction),
        #: so its index tells the reverse map of each promoted object.
        relinker = None if persistent else ReverseMap(space, same_space)
        self.index = PageIndex(self, ledger, relinker)
        if name is not None:
            self.index.keep_listing()
        self.members: dict[str, int] = {owner.name: pool_id}
        self.counters = Counters()
        self.same_filled_pages = 0
        self.raw_pages = 0
        #: Bytes the clients put (page size, or the given length if precompressed).
        self.original_bytes = 0
        #: Bytes held in the PAM for this pool's pages (same-filled pages: 0).
        self.stored_bytes = 0

    @property
    def shared(self) -> bool:
        return self.shared_uuid is not None

    @property
    def pam(self) -> Pam:
        return self.space.pam

    def account(self, token: int, stored: int, sign: int) -> None:
        """Count (``sign`` = 1) or uncount (-1) a page of ``stored`` bytes just
        added to or removed from the index.  Precompressed pages are encoded
        ``ENC_COMPRESSED`` and their original size is their stored size (the
        engine never sees more)."""
        self.stored_bytes += sign * stored
        encoding = token & ENC_MASK
        if encoding == ENC_SAME:
            self.same_filled_pages += sign
        elif encoding == ENC_RAW:
            self.raw_pages += sign
        self.original_bytes += sign * (stored if self.precompressed else self.page_size)


class Client:
    """A client identity (not a connection): its pool table, its settings, and
    the gauges and LRU of the pages charged to it.

    Settings (``weight``, the caps, ``codec``, ``frozen``) are copied in from
    the engine's settings table when the client is created and kept in step
    by ``_tenancy``; the hot path reads them here, as plain attributes.
    """

    __slots__ = (
        "codec",
        "connections",
        "counters",
        "ephemeral_bytes",
        "evicted_by_reason",
        "frozen",
        "lease_deadline",
        "lru_count",
        "lru_head",
        "lru_pages",
        "lru_tail",
        "name",
        "persistent_bytes",
        "persistent_cap",
        "pool_names",
        "pools",
        "refused_by_reason",
        "total_cap",
        "weight",
    )

    def __init__(self, name: str, refusal_kinds: int) -> None:
        self.name = name
        self.connections = 0
        #: clock() value at which the lease ends; None while connected.
        self.lease_deadline: float | None = None
        #: Pool id -> pool, in this client's id space.
        self.pools: dict[int, Pool] = {}
        #: Pool name -> pool id, for its named (private) pools.
        self.pool_names: dict[str, int] = {}
        self.counters = Counters()
        #: Refused puts, indexed by ``Refusal`` value.
        self.refused_by_reason = [0] * refusal_kinds
        #: Evicted pages charged to this client, indexed by ``Eviction`` value.
        self.evicted_by_reason = [0] * len(Eviction)
        self.weight = DEFAULT_WEIGHT
        #: Caps on stored bytes (None: no cap), and the codec of new pools
        #: that name none (None: the daemon's default).
        self.persistent_cap: int | None = None
        self.total_cap: int | None = None
        self.codec: str | None = None
        #: Puts are refused (FROZEN) while set; gets and flushes are served.
        self.frozen = False
        #: Stored bytes of the pages charged to this client, by kind.
        self.ephemeral_bytes = 0
        self.persistent_bytes = 0
        #: Its evictable (ephemeral) pages: per space, the handles of the
        #: oldest and newest (``_space``: the links live in the space's
        #: arrays) and how many; ``lru_pages`` is the total.  Plain lists
        #: and ints: the hot path touches them on every ephemeral put.
        self.lru_head = [0] * MAX_SPACES
        self.lru_tail = [0] * MAX_SPACES
        self.lru_count = [0] * MAX_SPACES
        self.lru_pages = 0


def _is_id(value: object) -> bool:
    """Whether a reverse-map slot holds an object id (a check that, unlike
    ``type(value) is int`` inline, narrows nothing: see ``ReverseMap.relink``)."""
    return type(value) is int
