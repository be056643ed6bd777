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

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ._errors import Refusal
from ._pam import PamStats
from ._state import Client, Counters, Pool

__all__ = [
    "ClientStats",
    "EngineStats",
    "OpCounters",
    "PoolStats",
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


def refusals_by_name(counts: list[int]) -> Mapping[str, int]:
    """Counts indexed by ``Refusal`` value, as a read-only map from lower-case name."""
    return MappingProxyType({reason.name.lower(): counts[reason] for reason in Refusal})


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
            page_size=pool.page_size,
            pages=len(pool.index),
            same_filled_pages=pool.same_filled_pages,
            raw_pages=pool.raw_pages,
            objects=pool.index.object_count,
            original_bytes=pool.original_bytes,
            stored_bytes=pool.stored_bytes,
            counters=snapshot_counters(pool.counters),
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
        )


@dataclass(frozen=True, slots=True)
class EngineStats:
    """The whole engine at one instant."""

    #: Counters of every request since start (freed clients included).
    counters: OpCounters
    #: Counter: refused puts by lower-case ``Refusal`` name (every name present).
    puts_refused_by_reason: Mapping[str, int]
    #: Counter: evicted pages by reason: "lru" (one by one, least recently
    #: used first) and "reclaim" (dropped with a whole PAM unit, e.g. a frame).
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
    #: Gauges: memory charged by the PAMs, against the one limit.
    memory_used_bytes: int
    memory_limit_bytes: int
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
    #: Each distinct PAM's own view (one entry when both kinds share a PAM).
    pam_stats: tuple[PamStats, ...]
