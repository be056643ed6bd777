"""Statistics: every counter and gauge after a scripted sequence, and the
snapshot's shape (frozen, plain values, tuples)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from tmemd.engine import (
    BYTES_PAM_OVERHEAD,
    ClientStats,
    Engine,
    EngineConfig,
    EngineStats,
    OpCounters,
    PoolStats,
    Refusal,
)

PAGE = 4096


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def raw_page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE)


def text_page(seed: int) -> bytes:
    line = b"statistics page %d; " % seed
    return (line * (PAGE // len(line) + 1))[:PAGE]


def scripted() -> tuple[Engine, dict[str, int]]:
    """A run with a known outcome; returns the engine and the pools' ids."""
    engine = Engine(
        EngineConfig(memory_bytes=100_000, persistent_max=0.1, persistent_accept=0.1), FakeClock()
    )
    engine.connect("a")
    engine.connect("b")
    pools = {
        "eph": engine.new_pool("a"),
        "per": engine.new_pool("a", persistent=True, codec="lz4"),
        "b": engine.new_pool("b", precompressed=True),
    }
    engine.put("a", pools["eph"], 1, 0, text_page(0))
    engine.put("a", pools["eph"], 1, 1, bytes(PAGE))
    engine.put("a", pools["per"], 2, 0, raw_page(1))  # raw, 4096 of 10,000
    engine.put("a", pools["per"], 2, 1, raw_page(2))  # 8192
    assert engine.put("a", pools["per"], 2, 2, raw_page(3)) is Refusal.PERSISTENT_FULL
    engine.put("a", pools["per"], 3, 0, b"\7" * PAGE)
    engine.put("b", pools["b"], 5, 5, b"123")
    assert engine.get("a", pools["eph"], 1, 0) == text_page(0)  # exclusive: gone
    assert engine.get("a", pools["eph"], 1, 0) is None
    assert engine.get("a", pools["per"], 2, 0) == raw_page(1)
    assert engine.get("b", pools["b"], 5, 5, exclusive=False) == b"123"
    assert engine.flush_page("a", pools["per"], 9, 9) is False
    assert engine.flush_object("a", pools["per"], 3) == 1
    return engine, pools


def test_global_counters_and_gauges() -> None:
    engine, _ = scripted()
    stats = engine.statistics()
    assert stats.counters == OpCounters(
        puts_stored=6,
        puts_refused=1,
        gets_hit=3,
        gets_miss=1,
        flush_page_calls=1,
        flush_object_calls=1,
        pages_flushed=1,
        pages_evicted=0,
    )
    assert dict(stats.puts_refused_by_reason) == {
        **{r.name.lower(): 0 for r in Refusal},
        "persistent_full": 1,
    }
    assert dict(stats.evictions_by_reason) == {
        "lru": 0,
        "reclaim": 0,
        "client_total_cap": 0,
        "admin_flush": 0,
    }
    # Left: a zero page (eph), two raw pages (per), 3 bytes (b's pool).
    assert (stats.pages, stats.persistent_pages) == (4, 2)
    assert (stats.same_filled_pages, stats.raw_pages) == (1, 2)
    assert stats.original_bytes == 3 * PAGE + 3
    assert stats.stored_bytes == 2 * PAGE + 3
    assert stats.memory_used_bytes == 2 * PAGE + 3 + 3 * BYTES_PAM_OVERHEAD
    assert stats.memory_limit_bytes == 100_000
    # The same-filled put after the refusal found the share under accept: open.
    assert stats.persistent_bytes == 2 * PAGE and not stats.persistent_full
    assert (stats.clients, stats.pools) == (2, 3)
    assert stats.pages_dropped_by_refused_replace == 0 and stats.pages_freed_by_destroy == 0
    (pam,) = stats.pam_stats
    assert pam.objects == 3 and pam.bytes_used == stats.memory_used_bytes


def test_per_client_statistics() -> None:
    engine, _ = scripted()
    clients = {c.name: c for c in engine.statistics().client_stats}
    a, b = clients["a"], clients["b"]
    assert (a.connections, a.pools, a.lease_expires_at) == (1, 2, None)
    assert a.counters.puts_stored == 5 and a.counters.puts_refused == 1
    assert a.counters.gets_hit == 2 and a.counters.gets_miss == 1
    assert a.puts_refused_by_reason["persistent_full"] == 1
    assert (a.pages, a.persistent_pages) == (3, 2)
    assert a.original_bytes == 3 * PAGE and a.stored_bytes == a.persistent_stored_bytes == 2 * PAGE
    assert b.counters.puts_stored == 1 and b.counters.gets_hit == 1
    assert (b.pages, b.original_bytes, b.stored_bytes) == (1, 3, 3)
    assert sum(b.puts_refused_by_reason.values()) == 0


def test_per_pool_statistics() -> None:
    engine, pools = scripted()
    by_id = {(p.client, p.pool_id): p for p in engine.statistics().pool_stats}
    eph = by_id["a", pools["eph"]]
    per = by_id["a", pools["per"]]
    pre = by_id["b", pools["b"]]
    assert (eph.kind, eph.codec, eph.shared, eph.precompressed) == (
        "ephemeral",
        "lzo",
        False,
        False,
    )
    assert (per.kind, per.codec, per.page_size) == ("persistent", "lz4", PAGE)
    assert pre.precompressed and pre.members == (("b", pools["b"]),)
    assert (eph.pages, eph.same_filled_pages, eph.stored_bytes) == (1, 1, 0)
    assert (per.pages, per.raw_pages, per.objects, per.stored_bytes) == (2, 2, 1, 2 * PAGE)
    assert per.counters.puts_refused == 1 and per.counters.flush_object_calls == 1
    assert per.counters.pages_flushed == 1 and eph.counters.gets_miss == 1
    assert (pre.pages, pre.original_bytes, pre.stored_bytes) == (1, 3, 3)


def test_counters_survive_freed_clients() -> None:
    engine, _ = scripted()
    engine.disconnect("a")
    engine.destroy_client("a")
    stats = engine.statistics()
    assert stats.counters.puts_stored == 6 and stats.clients == 1 and stats.pools == 1
    assert stats.pages_freed_by_destroy == 3


def test_snapshot_is_frozen_plain_values() -> None:
    engine, _ = scripted()
    stats = engine.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.pages = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.puts_refused_by_reason["no_memory"] = 5  # type: ignore[index]
    assert isinstance(stats.client_stats, tuple) and isinstance(stats.pool_stats, tuple)
    for cls in (EngineStats, ClientStats, PoolStats, OpCounters):
        params = getattr(cls, "__dataclass_params__")  # noqa: B009 - private dataclass API
        assert params.frozen
    # A snapshot does not change with the engine.
    engine.put("b", 0, 6, 6, b"x")
    assert stats.pages == 4 and engine.statistics().pages == 5


def test_counting_a_refused_replacement_and_an_eviction() -> None:
    engine = Engine(EngineConfig(memory_bytes=2 * (PAGE + BYTES_PAM_OVERHEAD)), FakeClock())
    engine.connect("a")
    pool = engine.new_pool("a", codec="none")
    for i in range(3):
        engine.put("a", pool, 0, i, raw_page(i))
    stats = engine.statistics()
    assert stats.counters.pages_evicted == 1 and stats.evictions_by_reason["lru"] == 1
    (pool_stats,) = stats.pool_stats
    assert pool_stats.counters.pages_evicted == 1
