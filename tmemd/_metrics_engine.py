"""Metric families built from one ``EngineStats`` snapshot.

Split from ``metrics`` only to keep each module readable in one sitting;
the naming rules, label bounds and derived-gauge formulas are in the
``tmemd.metrics`` docstring.  Each builder below yields its families even
when it has no sample to add, so the exported names never depend on
traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from .engine import EngineStats, PamStats, PoolStats

__all__ = ["ENGINE_GROUPS", "FRAME_BYTES"]

#: The arena's unit (docs/design.md §2, PAM): ``tmemd_arena_frames`` counts these.
FRAME_BYTES = 4096

_POOL_LABELS = ["client", "pool", "pool_kind"]
#: (op, result, OpCounters field) for ``tmemd_ops_total``; ops are named as
#: on the wire and in ``tmemd_op_duration_seconds``.
_OP_RESULTS = (
    ("put_page", "stored", "puts_stored"),
    ("put_page", "refused", "puts_refused"),
    ("get_page", "hit", "gets_hit"),
    ("get_page", "miss", "gets_miss"),
    ("flush_page", "ok", "flush_page_calls"),
    ("flush_object", "ok", "flush_object_calls"),
)
#: (metric name, PoolStats field, help) for per-pool gauges.
_POOL_GAUGES = (
    ("tmemd_stored_pages", "pages", "Pages held."),
    ("tmemd_same_filled_pages", "same_filled_pages", "Pages held as one fill byte (no memory)."),
    ("tmemd_raw_pages", "raw_pages", "Pages held uncompressed (they did not compress)."),
    ("tmemd_objects", "objects", "Objects with at least one page held."),
    ("tmemd_stored_original_bytes", "original_bytes", "Bytes the clients put, of pages held."),
    ("tmemd_stored_compressed_bytes", "stored_bytes", "Bytes the PAMs hold for pages held."),
)


def _pool_labels(p: PoolStats) -> list[str]:
    return [p.client, str(p.pool_id), p.kind]


def _pool_families(pools: tuple[PoolStats, ...]) -> Iterator[Metric]:
    ops = CounterMetricFamily(
        "tmemd_ops",
        "Page requests by op and result, per pool.",
        labels=[*_POOL_LABELS, "op", "result"],
    )
    flushed = CounterMetricFamily(
        "tmemd_flushed_pages", "Pages removed by flush_page and flush_object.", labels=_POOL_LABELS
    )
    evicted = CounterMetricFamily(
        "tmemd_evicted_pages", "Ephemeral pages dropped to make room.", labels=_POOL_LABELS
    )
    gauges = [GaugeMetricFamily(name, doc, labels=_POOL_LABELS) for name, _f, doc in _POOL_GAUGES]
    info = GaugeMetricFamily(
        "tmemd_pool_info",
        "Always 1; labels describe the pool.",
        labels=[*_POOL_LABELS, "codec", "shared", "page_size"],
    )
    for p in pools:
        labels = _pool_labels(p)
        for op, result, attr in _OP_RESULTS:
            ops.add_metric([*labels, op, result], getattr(p.counters, attr))
        flushed.add_metric(labels, p.counters.pages_flushed)
        evicted.add_metric(labels, p.counters.pages_evicted)
        for fam, (_name, attr, _doc) in zip(gauges, _POOL_GAUGES, strict=True):
            fam.add_metric(labels, getattr(p, attr))
        info.add_metric([*labels, p.codec, str(p.shared).lower(), str(p.page_size)], 1)
    yield ops
    yield flushed
    yield evicted
    yield from gauges
    yield info


def _client_families(stats: EngineStats) -> Iterator[Metric]:
    refusals = CounterMetricFamily(
        "tmemd_put_refusals", "Refused puts by reason, per client.", labels=["client", "reason"]
    )
    pools = GaugeMetricFamily(
        "tmemd_client_pools", "Pool ids a client has open.", labels=["client"]
    )
    leased = GaugeMetricFamily(
        "tmemd_client_in_lease",
        "1 while a client has no connection and its pools wait out the lease.",
        labels=["client"],
    )
    for c in stats.client_stats:
        for reason, count in sorted(c.puts_refused_by_reason.items()):
            refusals.add_metric([c.name, reason], count)
        pools.add_metric([c.name], c.pools)
        leased.add_metric([c.name], 0 if c.lease_expires_at is None else 1)
    yield refusals
    yield pools
    yield leased


def _frames_of(pam: PamStats) -> int:
    """Frames a PAM holds; one without frames counts its charge in frame units."""
    return pam.frames if pam.frames else -(-pam.bytes_used // FRAME_BYTES)


def _pam_families(pams: tuple[PamStats, ...], arena_bytes: int) -> Iterator[Metric]:
    labels = ["pam", "pool_kind"]
    table = (
        ("tmemd_pam_objects", "Objects (stored pages) a PAM holds.", "objects"),
        ("tmemd_pam_stored_bytes", "Bytes of the objects a PAM holds.", "bytes_stored"),
        ("tmemd_pam_used_bytes", "Memory charged to a PAM.", "bytes_used"),
        ("tmemd_pam_capacity_bytes", "Memory a PAM may grow to.", "capacity"),
        ("tmemd_pam_frames", "4 KiB frames a PAM holds (0: not frame-based).", "frames"),
    )
    families = [GaugeMetricFamily(name, doc, labels=labels) for name, doc, _a in table]
    for pam in pams:
        for fam, (_n, _d, attr) in zip(families, table, strict=True):
            fam.add_metric([pam.name, pam.role], getattr(pam, attr))
    yield from families
    # The arena is the memory limit (docs/design.md §5); PAMs sharing it each
    # report it as their capacity, so capacities must not be added up.
    yield GaugeMetricFamily(
        "tmemd_arena_bytes", "Size of the arena the PAMs share (the memory limit).", arena_bytes
    )
    used = sum(_frames_of(p) for p in pams)
    frames = GaugeMetricFamily("tmemd_arena_frames", "Arena frames by state.", labels=["state"])
    frames.add_metric(["used"], used)
    frames.add_metric(["free"], max(0, arena_bytes // FRAME_BYTES - used))
    yield frames
    stored, charged = sum(p.bytes_stored for p in pams), sum(p.bytes_used for p in pams)
    frag = GaugeMetricFamily(
        "tmemd_fragmentation_ratio", "Share of charged memory not holding page data."
    )
    if charged:
        frag.add_metric([], 1.0 - stored / charged)
    yield frag


def _memory_families(s: EngineStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "tmemd_memory_limit_bytes", "The memory limit (--memory).", value=s.memory_limit_bytes
    )
    yield GaugeMetricFamily(
        "tmemd_memory_used_bytes", "Memory charged by the PAMs.", value=s.memory_used_bytes
    )
    yield GaugeMetricFamily(
        "tmemd_persistent_bytes", "Stored bytes of persistent pages.", value=s.persistent_bytes
    )
    yield GaugeMetricFamily(
        "tmemd_persistent_limit_bytes",
        "Persistent bytes at which persistent puts are refused (--persistent-max).",
        value=s.persistent_max_bytes,
    )
    yield GaugeMetricFamily(
        "tmemd_persistent_accept_bytes",
        "Persistent bytes above which each client is held to its fair share (--persistent-accept).",
        value=s.persistent_accept_bytes,
    )
    yield GaugeMetricFamily(
        "tmemd_persistent_full",
        "1 from a refusal by the persistent share until persistent bytes drop below accept.",
        value=int(s.persistent_full),
    )
    yield GaugeMetricFamily(
        "tmemd_persistent_share_ratio",
        "Persistent bytes as a share of the memory limit.",
        value=s.persistent_bytes / s.memory_limit_bytes,
    )
    ratio = GaugeMetricFamily(
        "tmemd_compression_ratio", "Original bytes of the pages held per byte stored for them."
    )
    if s.stored_bytes:
        ratio.add_metric([], s.original_bytes / s.stored_bytes)
    yield ratio


def _global_families(s: EngineStats) -> Iterator[Metric]:
    evictions = CounterMetricFamily(
        "tmemd_evictions", "Evicted ephemeral pages by reason.", labels=["reason"]
    )
    for reason, count in sorted(s.evictions_by_reason.items()):
        evictions.add_metric([reason], count)
    yield evictions
    yield CounterMetricFamily(
        "tmemd_replaced_pages_dropped",
        "Old copies flushed because their replacement was refused.",
        value=s.pages_dropped_by_refused_replace,
    )
    yield CounterMetricFamily(
        "tmemd_destroyed_pages",
        "Pages freed by destroy_pool, client removal and lease expiry.",
        value=s.pages_freed_by_destroy,
    )
    yield CounterMetricFamily(
        "tmemd_leases_expired", "Clients freed because their lease ended.", value=s.leases_expired
    )
    yield GaugeMetricFamily("tmemd_clients", "Known clients (connected or in lease).", s.clients)
    yield GaugeMetricFamily("tmemd_pools", "Open pools (a shared pool counts once).", s.pools)


def _pool_group(stats: EngineStats) -> Iterator[Metric]:
    return _pool_families(stats.pool_stats)


def _pam_group(stats: EngineStats) -> Iterator[Metric]:
    return _pam_families(stats.pam_stats, stats.memory_limit_bytes)


#: The families of one snapshot in named groups; the collector builds each
#: on its own, so a failing group is left out alone (``tmemd.metrics``).
ENGINE_GROUPS: tuple[tuple[str, Callable[[EngineStats], Iterator[Metric]]], ...] = (
    ("pools", _pool_group),
    ("clients", _client_families),
    ("pams", _pam_group),
    ("memory", _memory_families),
    ("global", _global_families),
)
