"""Engine configuration and the limits every request is checked against.

``EngineConfig`` is a frozen value the daemon builds once from its command
line; the engine never reads the environment.  Limits that are part of the
tmem ABI (id ranges, page sizes) are module constants with the reason for
their value; limits an operator tunes are config fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "DEFAULT_PAGE_BYTES",
    "DEFAULT_WEIGHT",
    "DICTIONARY_MIN_PAGES",
    "DICTIONARY_SAMPLE_PAGES",
    "INDEX_LIMIT",
    "MAX_FLUSH_PAGES_PER_CALL",
    "MAX_PAGE_BYTES",
    "MAX_POOLS_PER_CLIENT",
    "MAX_WEIGHT",
    "MIN_PAGE_BYTES",
    "OBJECT_ID_LIMIT",
    "PAM_NAMES",
    "POOL_ID_BITS",
    "POOL_ID_LIMIT",
    "UUID_LIMIT",
    "EngineConfig",
]

#: Object ids are 192-bit unsigned integers (three u64, as Xen's later ABI).
OBJECT_ID_LIMIT: Final = 1 << 192
#: Page indexes are 32-bit unsigned integers (Xen's ABI).
INDEX_LIMIT: Final = 1 << 32
#: Shared pools are named by a 128-bit UUID.
UUID_LIMIT: Final = 1 << 128
#: Smallest and largest page sizes, in bytes; a page size is a power of two in
#: between.  4 KiB is the base page of every common CPU; 64 KiB is the largest
#: base page (arm64, ppc64) and matches the wire's largest page-size shift.
MIN_PAGE_BYTES: Final = 4096
MAX_PAGE_BYTES: Final = 65536
DEFAULT_PAGE_BYTES: Final = 4096
#: Pools one client may hold open.  Xen allowed 16 per domain; a host running
#: one cleancache pool per mounted filesystem plus swap areas and a few
#: application pools needs more, and 64 still bounds the per-client tables
#: to a trivial size.
MAX_POOLS_PER_CLIENT: Final = 64
#: ``max_pools_per_client`` may not pass ``1 << POOL_ID_BITS``: a client's
#: pool table is walked when a one-page object is evicted, and 65536 pools
#: is far beyond any real client.
POOL_ID_BITS: Final = 16
#: Pool ids are u32 on the wire and 0xFFFFFFFF is the wire's NO_POOL, so a
#: name's pools are numbered 0 .. POOL_ID_LIMIT - 1, never reused.
POOL_ID_LIMIT: Final = 0xFFFFFFFF
#: The arena PAMs a pool may ask for (``tmemd.engine.pam``).
PAM_NAMES: Final = ("zbud", "xvmalloc", "zsmalloc")
#: Compressed pages a zstd pool must hold before a dictionary is trained:
#: the dictionary and its contexts cost ~1 MiB, which 16_384 pages (~20 MiB
#: stored) repay at a 2-5 % better ratio.
DICTIONARY_MIN_PAGES: Final = 16_384
#: Pages a dictionary is trained on (decompressed on the spot): 2_048 pages
#: (8 MiB of samples) train in ~0.1 s with fastcover.
DICTIONARY_SAMPLE_PAGES: Final = 2_048
#: Pages one ``flush_ephemeral`` call may evict: tens of milliseconds of
#: event-loop time at the cost of an eviction (docs/bench/micro.md); an
#: administrator's tool repeats the call for more.
MAX_FLUSH_PAGES_PER_CALL: Final = 16384
#: A client's scheduling weight when nobody set one: Xen's tmem default.
DEFAULT_WEIGHT: Final = 100
#: Largest weight (the auth file's bound too): 10000 against the default 100
#: already gives one client 99% of contended ephemeral memory.
MAX_WEIGHT: Final = 10_000


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the engine needs to know about its limits.

    ``memory_bytes`` is THE memory limit: every stored page is charged to it
    through the PAM.  ``persistent_max`` and ``persistent_accept`` are
    fractions of it: persistent bytes never pass ``persistent_max``; below
    ``persistent_accept`` every persistent put is accepted, and above it each
    client is held to its fair share (``_policy.PersistentShare``), so that
    the first client to fill the share cannot starve the next.

    ``ephemeral_pam`` and ``persistent_pam`` name the arena PAMs (of
    ``PAM_NAMES``) that pools use unless they ask for another; naming either
    makes the engine map one ``Arena`` of ``memory_bytes`` that bounds page
    bytes and metadata together (one given: it serves both kinds).  Neither
    named: the engine uses PAMs handed to it, or one ``BytesPam`` (the
    reference store for tests).  ``dictionary_bytes`` > 0 lets ``maintain()``
    train a zstd dictionary of that size for each big enough zstd pool.
    """

    memory_bytes: int = 256 << 20
    #: Key of ``CODECS`` used by pools that do not name a codec.
    default_codec: str = "lzo"
    #: How long, in seconds, a client's pools outlive its last connection.
    lease_s: float = 60.0
    persistent_max: float = 0.75
    persistent_accept: float = 0.70
    max_pools_per_client: int = MAX_POOLS_PER_CLIENT
    ephemeral_pam: str | None = None
    persistent_pam: str | None = None
    dictionary_bytes: int = 0
    #: True: every client may create and join any shared pool (the daemon
    #: without an auth file, where every client is trusted).  False: both
    #: need ``authorize_shared`` by an administrator first, since a UUID is
    #: not a secret (``_registry`` has the rules).
    open_shared_pools: bool = False
    #: Bytes of address space the arena maps, so that ``set_memory`` can grow
    #: the limit up to it without moving a frame (0: ``memory_bytes``).
    memory_reserve_bytes: int = 0
    #: Bounds of the engine's own work, at their module constants' values
    #: (the reasons are there); a field so that tests can reach the bound
    #: with a few pages, in the interpreted and the compiled build alike.
    pool_id_limit: int = POOL_ID_LIMIT
    dictionary_min_pages: int = DICTIONARY_MIN_PAGES
    dictionary_sample_pages: int = DICTIONARY_SAMPLE_PAGES
    max_flush_pages_per_call: int = MAX_FLUSH_PAGES_PER_CALL

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be positive, not {self.memory_bytes}")
        if not 0.0 < self.persistent_accept <= self.persistent_max <= 1.0:
            raise ValueError(
                "need 0 < persistent_accept <= persistent_max <= 1, not "
                f"{self.persistent_accept} and {self.persistent_max}"
            )
        if self.lease_s < 0:
            raise ValueError(f"lease_s must not be negative, not {self.lease_s}")
        for pam in (self.ephemeral_pam, self.persistent_pam):
            if pam is not None and pam not in PAM_NAMES:
                raise ValueError(f"no PAM {pam!r}; have {', '.join(PAM_NAMES)}")
        if self.memory_reserve_bytes < 0:
            raise ValueError(
                f"memory_reserve_bytes must not be negative: {self.memory_reserve_bytes}"
            )
        if self.dictionary_bytes < 0:
            raise ValueError(f"dictionary_bytes must not be negative, not {self.dictionary_bytes}")
        if not 1 <= self.pool_id_limit <= POOL_ID_LIMIT:
            raise ValueError(f"pool_id_limit must be in [1, {POOL_ID_LIMIT}]")
        for name in ("dictionary_min_pages", "dictionary_sample_pages", "max_flush_pages_per_call"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 1 <= self.max_pools_per_client <= 1 << POOL_ID_BITS:
            raise ValueError(
                f"max_pools_per_client must be in [1, {1 << POOL_ID_BITS}], "
                f"not {self.max_pools_per_client}"
            )
