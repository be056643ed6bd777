"""Frozen statistics snapshots, built only when ``Engine.statistics()`` is called.

The live objects keep plain ``int`` counters (cheap to bump on every
request); this module copies them into frozen dataclasses of ints, strings,
tuples and read-only mappings, so a metrics exporter can read a consistent
snapshot at scrape time without touching engine state.

Names say what they count, with their unit: ``*_bytes`` are bytes,
``pages*`` are pages, ``*_calls`` are requests.  Counters (monotonic) and
gauges (current values) are told apart in each field's comment.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from ._errors import Refusal
from ._policy import PersistentShare
from ._state import DICT_TRAINED, Client, Counters, Eviction, Pool
from .pam import Pam, PamStats

__all__ = [
    "ClientStats",
    "EngineStats",
    "OpCounters",
    "PoolStats",
    "build_statistics",
    "by_name",
    "refusals_by_name",
    "snapshot_counters",
]


@dataclass(frozen=True, slots=True)
class OpCounters:
    """Monotonic counters of requests and their outcomes."""

    puts_stored: int
    #: Puts refused (all reasons; the engine-level breakdown is by reason).
    puts_refused: int
    gets_hit: int
    gets_miss: int
    flush_page_calls: int
    flush_object_calls: int
    #: Pages removed by flush_page and flush_object.
    pages_flushed: int
    #: Ephemeral pages dropped to make room for other puts.
    pages_evicted: int


def snapshot_counters(counters: Counters) -> OpCounters:
    return OpCounters(
        puts_stored=counters.puts_stored,
        puts_refused=counters.puts_refused,
        gets_hit=counters.gets_hit,
        gets_miss=counters.gets_miss,
        flush_page_calls=counters.flush_page_calls,
        flush_object_calls=counters.flush_object_calls,
        pages_flushed=counters.pages_flushed,
        pages_evicted=counters.pages_evicted,
    )


def by_name(kinds: type[enum.IntEnum], counts: list[int]) -> Mapping[str, int]:
    """Counts indexed by an enum's values, as a read-only map from lower-case name."""
    return MappingProxyType({kind.name.lower(): counts[kind] for kind in kinds})


def refusals_by_name(counts: list[int]) -> Mapping[str, int]:
    """Counts indexed by ``Refusal`` value, as a read-only map from lower-case name."""
    return by_name(Refusal, counts)


@dataclass(frozen=True, slots=True)
class PoolStats:
    """One open pool (a shared pool appears once, under its owner)."""

    #: The client charged for the pool's pages, and the pool's id in its space.
    client: str
    pool_id: int
    #: "persistent" or "ephemeral".
    kind: str
    shared: bool
    shared_uuid: int | None
    #: (client, pool_id) of every member, owner included, in joining order.
    members: tuple[tuple[str, int], ...]
    precompressed: bool
    codec: str
    #: The PAM holding the pool's pages ("zbud", "xvmalloc", "zsmalloc", ...).
    pam: str
    #: Whether the pool's zstd codec was trained on its own pages.
    dictionary: bool
    page_size: int
    #: Gauges: pages held, of which same-filled and stored raw.
    pages: int
    same_filled_pages: int
    raw_pages: int
    objects: int
    #: Gauges: bytes the clients put, and bytes the PAM holds for them.
    original_bytes: int
    stored_bytes: int
    #: Requests addressed to this pool, by any member.
    counters: OpCounters
    #: The name the owner gave the pool (``new_pool(name=...)``), or None.
    name: str | None

    @classmethod
    def of(cls, pool: Pool) -> PoolStats:
        return cls(
            client=pool.owner,
            pool_id=pool.pool_id,
            kind="persistent" if pool.persistent else "ephemeral",
            shared=pool.shared,
            shared_uuid=pool.shared_uuid,
            members=tuple(pool.members.items()),
            precompressed=pool.precompressed,
            codec=pool.codec_name,
            pam=pool.pam.name,
            dictionary=pool.dictionary == DICT_TRAINED,
            page_size=pool.page_size,
            pages=len(pool.index),
            same_filled_pages=pool.same_filled_pages,
            raw_pages=pool.raw_pages,
            objects=pool.index.object_count,
            original_bytes=pool.original_bytes,
            stored_bytes=pool.stored_bytes,
            counters=snapshot_counters(pool.counters),
            name=pool.name,
        )


@dataclass(frozen=True, slots=True)
class ClientStats:
    """One known client (connected, or idle within its lease)."""

    name: str
    #: Gauge: open connections.
    connections: int
    #: clock() value at which the lease ends; None while connected.
    lease_expires_at: float | None
    #: Gauge: pool ids open (shared pools count for every member).
    pools: int
    #: Requests made by this client, in any pool.
    counters: OpCounters
    #: Counter: refused puts by lower-case ``Refusal`` name (every name present).
    puts_refused_by_reason: Mapping[str, int]
    #: Gauges over the pools this client owns (is charged for).
    pages: int
    persistent_pages: int
    original_bytes: int
    stored_bytes: int
    persistent_stored_bytes: int
    #: Gauge: stored bytes of its evictable (ephemeral, not same-filled) pages.
    ephemeral_stored_bytes: int
    #: Settings: weight, caps on stored bytes (None: none), codec of new
    #: pools naming none (None: the daemon's default), frozen.
    weight: int
    persistent_cap: int | None
    total_cap: int | None
    codec: str | None
    frozen: bool
    #: Counter: its pages evicted, by lower-case ``Eviction`` name (every name present).
    pages_evicted_by_reason: Mapping[str, int]

    @classmethod
    def of(cls, client: Client, owned: list[Pool]) -> ClientStats:
        persistent = [pool for pool in owned if pool.persistent]
        return cls(
            name=client.name,
            connections=client.connections,
            lease_expires_at=client.lease_deadline,
            pools=len(client.pools),
            counters=snapshot_counters(client.counters),
            puts_refused_by_reason=refusals_by_name(client.refused_by_reason),
            pages=sum(len(pool.index) for pool in owned),
            persistent_pages=sum(len(pool.index) for pool in persistent),
            original_bytes=sum(pool.original_bytes for pool in owned),
            stored_bytes=sum(pool.stored_bytes for pool in owned),
            persistent_stored_bytes=sum(pool.stored_bytes for pool in persistent),
            ephemeral_stored_bytes=client.ephemeral_bytes,
            weight=client.weight,
            persistent_cap=client.persistent_cap,
            total_cap=client.total_cap,
            codec=client.codec,
            frozen=client.frozen,
            pages_evicted_by_reason=by_name(Eviction, client.evicted_by_reason),
        )


@dataclass(frozen=True, slots=True)
class EngineStats:
    """The whole engine at one instant."""

    #: Counters of every request since start (freed clients included).
    counters: OpCounters
    #: Counter: refused puts by lower-case ``Refusal`` name (every name present).
    puts_refused_by_reason: Mapping[str, int]
    #: Counter: evicted pages by reason: "lru" (memory full: the oldest page
    #: of the client most above its weighted share), "reclaim" (dropped with
    #: a whole PAM unit, e.g. a frame), "client_total_cap" (its own client's
    #: put passed the total cap), "admin_flush" (``flush_ephemeral``).
    evictions_by_reason: Mapping[str, int]
    #: Counter: old copies flushed because their replacement was refused.
    pages_dropped_by_refused_replace: int
    #: Counter: pages freed by destroy_pool, destroy_client and lease expiry.
    pages_freed_by_destroy: int
    #: Counter: clients freed because their lease ended.
    leases_expired: int
    #: Gauges over every page held.
    pages: int
    persistent_pages: int
    same_filled_pages: int
    raw_pages: int
    original_bytes: int
    stored_bytes: int
    #: Gauges: memory charged against the one limit (PAM bytes and, with an
    #: arena, metadata), the limit, and the metadata part alone: the index,
    #: LRU and PAM arrays kept outside the arena (0 without an arena).
    memory_used_bytes: int
    memory_limit_bytes: int
    metadata_bytes: int
    #: Gauge: stored bytes of every evictable page (what ``flush_ephemeral`` can free).
    freeable_bytes: int
    #: Gauges: persistent pages' stored bytes, the share's limit and
    #: accept threshold, and whether persistent puts are being refused.
    persistent_bytes: int
    persistent_max_bytes: int
    persistent_accept_bytes: int
    persistent_full: bool
    #: Gauges: known clients and open pools (a shared pool counts once).
    clients: int
    pools: int
    client_stats: tuple[ClientStats, ...]
    pool_stats: tuple[PoolStats, ...]
    #: Each distinct PAM's own view with its role (one entry when both kinds
    #: share a PAM; more when pools named other PAMs).
    pam_stats: tuple[PamStats, ...]


def build_statistics(
    pools: list[Pool],
    clients: Mapping[str, Client],
    pams: tuple[tuple[Pam, str], ...],
    share: PersistentShare,
    *,
    memory_used_bytes: int,
    metadata_bytes: int,
    memory_limit_bytes: int,
    counters: Counters,
    refused_by_reason: list[int],
    evicted_by_reason: list[int],
    dropped_by_refused_replace: int,
    freed_by_destroy: int,
    leases_expired: int,
) -> EngineStats:
    """The engine's snapshot from its live parts; O(clients + pools)."""
    owned: dict[str, list[Pool]] = {name: [] for name in clients}
    for pool in pools:
        owned[pool.owner].append(pool)
    persistent = [pool for pool in pools if pool.persistent]
    return EngineStats(
        counters=snapshot_counters(counters),
        puts_refused_by_reason=by_name(Refusal, refused_by_reason),
        evictions_by_reason=by_name(Eviction, evicted_by_reason),
        pages_dropped_by_refused_replace=dropped_by_refused_replace,
        pages_freed_by_destroy=freed_by_destroy,
        leases_expired=leases_expired,
        pages=sum(len(pool.index) for pool in pools),
        persistent_pages=sum(len(pool.index) for pool in persistent),
        same_filled_pages=sum(pool.same_filled_pages for pool in pools),
        raw_pages=sum(pool.raw_pages for pool in pools),
        original_bytes=sum(pool.original_bytes for pool in pools),
        stored_bytes=sum(pool.stored_bytes for pool in pools),
        memory_used_bytes=memory_used_bytes,
        memory_limit_bytes=memory_limit_bytes,
        metadata_bytes=metadata_bytes,
        freeable_bytes=sum(client.ephemeral_bytes for client in clients.values()),
        persistent_bytes=share.bytes,
        persistent_max_bytes=share.max_bytes,
        persistent_accept_bytes=share.accept_bytes,
        persistent_full=share.full,
        clients=len(clients),
        pools=len(pools),
        client_stats=tuple(ClientStats.of(client, owned[name]) for name, client in clients.items()),
        pool_stats=tuple(PoolStats.of(pool) for pool in pools),
        pam_stats=tuple(replace(pam.statistics(), role=role) for pam, role in pams),
    )
