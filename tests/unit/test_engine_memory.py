"""Memory policy: LRU eviction, refusals, the persistent share's hysteresis,
replace-or-flush, and the PAM plug points (eviction bound, reclaim).

Sizes are exact: with codec "none" every non-uniform page is stored raw,
so it charges 4096 + BYTES_PAM_OVERHEAD bytes and counts 4096 persistent bytes.
"""

from __future__ import annotations

import random

import pytest

from tmemd.engine import (
    BYTES_PAM_OVERHEAD,
    MAX_EVICTIONS_PER_PUT,
    BytesPam,
    Engine,
    EngineConfig,
    PamFull,
    Refusal,
)

PAGE = 4096
CHARGE = PAGE + BYTES_PAM_OVERHEAD
NO_EVICTIONS = {"lru": 0, "reclaim": 0, "client_total_cap": 0, "admin_flush": 0}


class FakeClock:
    def __call__(self) -> float:
        return 0.0


def raw_page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE)


def text_page(seed: int) -> bytes:
    line = b"compressible page %d; " % seed
    return (line * (PAGE // len(line) + 1))[:PAGE]


def make_engine(memory_bytes: int, **config: object) -> Engine:
    engine = Engine(
        EngineConfig(memory_bytes=memory_bytes, default_codec="none", **config),  # type: ignore[arg-type]
        FakeClock(),
    )
    engine.connect("a")
    return engine


def present(engine: Engine, pool: int, indexes: range | list[int]) -> list[int]:
    return [i for i in indexes if engine.get("a", pool, 0, i, exclusive=False) is not None]


# --- eviction --------------------------------------------------------------------------


def test_eviction_is_least_recently_used() -> None:
    engine = make_engine(3 * CHARGE)
    pool = engine.new_pool("a")
    for i in range(3):
        assert engine.put("a", pool, 0, i, raw_page(i)) is None
    assert engine.put("a", pool, 0, 3, raw_page(3)) is None  # evicts page 0
    assert engine.get("a", pool, 0, 0, exclusive=False) is None
    assert engine.get("a", pool, 0, 1, exclusive=False) == raw_page(1)  # 1 is now newest
    assert engine.put("a", pool, 0, 4, raw_page(4)) is None  # evicts 2, the oldest
    assert engine.get("a", pool, 0, 2, exclusive=False) is None
    assert engine.get("a", pool, 0, 3, exclusive=False) == raw_page(3)  # order: 1 4 3
    assert engine.put("a", pool, 0, 5, raw_page(5)) is None  # evicts 1
    assert present(engine, pool, range(6)) == [3, 4, 5]
    stats = engine.statistics()
    assert stats.evictions_by_reason["lru"] == 3 and stats.counters.pages_evicted == 3
    assert stats.memory_used_bytes <= stats.memory_limit_bytes
    engine.check_invariants()


def test_eviction_spans_pools_and_clients() -> None:
    engine = make_engine(2 * CHARGE)
    engine.connect("b")
    a_pool = engine.new_pool("a")
    b_pool = engine.new_pool("b")
    engine.put("a", a_pool, 0, 0, raw_page(0))
    engine.put("b", b_pool, 0, 0, raw_page(1))
    engine.put("a", a_pool, 0, 1, raw_page(2))  # evicts a's page 0, the oldest
    assert engine.get("a", a_pool, 0, 0) is None
    assert engine.get("b", b_pool, 0, 0, exclusive=False) == raw_page(1)
    clients = {c.name: c for c in engine.statistics().client_stats}
    assert clients["a"].counters.pages_evicted == 1 and clients["b"].counters.pages_evicted == 0


def test_an_exclusive_get_frees_room() -> None:
    engine = make_engine(2 * CHARGE)
    pool = engine.new_pool("a")
    engine.put("a", pool, 0, 0, raw_page(0))
    engine.put("a", pool, 0, 1, raw_page(1))
    assert engine.get("a", pool, 0, 0) == raw_page(0)
    engine.put("a", pool, 0, 2, raw_page(2))
    assert present(engine, pool, range(3)) == [1, 2]
    assert engine.statistics().evictions_by_reason["lru"] == 0


def test_one_put_evicts_many_small_pages() -> None:
    engine = make_engine(40 * (1 + BYTES_PAM_OVERHEAD))
    pool = engine.new_pool("a", precompressed=True)
    for i in range(40):
        assert engine.put("a", pool, 0, i, bytes([i])) is None
    assert engine.put("a", pool, 0, 100, raw_page(0)) is None
    evicted = -(-CHARGE // (1 + BYTES_PAM_OVERHEAD))  # ceil: 33 pages
    assert engine.statistics().evictions_by_reason["lru"] == evicted
    assert present(engine, pool, range(40)) == list(range(evicted, 40))
    engine.check_invariants()


def test_persistent_pages_are_never_evicted() -> None:
    engine = make_engine(4 * CHARGE, persistent_max=1.0, persistent_accept=1.0)
    persistent = engine.new_pool("a", persistent=True)
    ephemeral = engine.new_pool("a")
    for i in range(4):
        assert engine.put("a", persistent, 0, i, raw_page(i)) is None
    assert engine.put("a", ephemeral, 0, 0, raw_page(9)) is Refusal.NO_MEMORY
    assert engine.put("a", persistent, 0, 9, raw_page(9)) is not None
    assert [engine.get("a", persistent, 0, i) for i in range(4)] == [raw_page(i) for i in range(4)]
    # Same-filled pages need no memory and are still accepted.
    assert engine.put("a", ephemeral, 0, 1, bytes(PAGE)) is None
    stats = engine.statistics()
    assert stats.puts_refused_by_reason["no_memory"] == 1 and stats.counters.pages_evicted == 0
    engine.check_invariants()


def test_a_persistent_put_is_refused_when_memory_is_full() -> None:
    # Tiny precompressed pages charge far more memory (the PAM overhead) than
    # they count in the persistent share, so memory fills before the share.
    memory = 10 * (1 + BYTES_PAM_OVERHEAD)
    engine = make_engine(memory, persistent_max=1.0, persistent_accept=1.0)
    pool = engine.new_pool("a", persistent=True, precompressed=True)
    for i in range(10):
        assert engine.put("a", pool, 0, i, b"x") is None
    assert engine.put("a", pool, 0, 10, b"x") is Refusal.NO_MEMORY
    assert not engine.statistics().persistent_full
    assert present(engine, pool, range(11)) == list(range(10))


def test_a_persistent_put_evicts_ephemeral_pages() -> None:
    engine = make_engine(4 * CHARGE, persistent_max=1.0, persistent_accept=1.0)
    persistent = engine.new_pool("a", persistent=True)
    ephemeral = engine.new_pool("a")
    for i in range(3):
        engine.put("a", ephemeral, 0, i, raw_page(i))
    engine.put("a", persistent, 0, 0, raw_page(10))
    assert engine.put("a", persistent, 0, 1, raw_page(11)) is None
    assert present(engine, ephemeral, range(3)) == [1, 2]
    assert engine.get("a", persistent, 0, 1) == raw_page(11)


# --- the persistent share ----------------------------------------------------------------


def test_a_lone_client_fills_the_share_up_to_the_accept_line() -> None:
    # 100,000 bytes: max 75,000, accept 68,000 (16 raw pages = 65,536).
    engine = make_engine(100_000, persistent_max=0.75, persistent_accept=0.68)
    pool = engine.new_pool("a", persistent=True)
    for i in range(16):
        assert engine.put("a", pool, 0, i, raw_page(i)) is None
    # Nobody else holds persistent pages: the band above the accept line is
    # kept for the next client, and the refusal says the share is full.
    assert engine.put("a", pool, 0, 16, raw_page(16)) is Refusal.PERSISTENT_FULL
    assert engine.statistics().persistent_full
    assert engine.put("a", pool, 0, 17, bytes(PAGE)) is None  # stores no bytes
    assert engine.flush_page("a", pool, 0, 0)  # 61,440 < 68,000: the mark clears
    assert engine.put("a", pool, 0, 16, raw_page(16)) is None
    assert not engine.statistics().persistent_full
    assert engine.put("a", pool, 0, 18, raw_page(18)) is Refusal.PERSISTENT_FULL
    stats = engine.statistics()
    assert stats.puts_refused_by_reason["persistent_full"] == 2
    assert stats.persistent_bytes == 16 * PAGE
    assert (stats.persistent_max_bytes, stats.persistent_accept_bytes) == (75_000, 68_000)
    engine.check_invariants()


def test_ephemeral_puts_ignore_the_persistent_share() -> None:
    engine = make_engine(100_000, persistent_max=0.05, persistent_accept=0.05)
    persistent = engine.new_pool("a", persistent=True)
    ephemeral = engine.new_pool("a")
    engine.put("a", persistent, 0, 0, raw_page(0))  # 4,096 of 5,000 bytes
    assert engine.put("a", persistent, 0, 1, raw_page(1)) is Refusal.PERSISTENT_FULL
    for i in range(10):
        assert engine.put("a", ephemeral, 0, i, raw_page(i)) is None


# --- rule 2: a refused replacement flushes the old copy --------------------------------


def test_refused_persistent_replacement_flushes_the_old_copy() -> None:
    engine = make_engine(100_000)
    pool = engine.new_pool("a", persistent=True, codec="lzo")
    for i in range(17):  # 69,632 bytes, under the accept line of 70,000
        assert engine.put("a", pool, 0, i, raw_page(i)) is None
    assert engine.put("a", pool, 1, 0, text_page(0)) is None  # small: still fits
    assert engine.put("a", pool, 1, 0, raw_page(99)) is Refusal.PERSISTENT_FULL
    assert engine.get("a", pool, 1, 0) is None
    stats = engine.statistics()
    assert stats.pages_dropped_by_refused_replace == 1 and stats.pages == 17
    engine.check_invariants()


def test_refused_ephemeral_replacement_flushes_the_old_copy() -> None:
    engine = make_engine(3 * CHARGE + 300, persistent_max=1.0, persistent_accept=1.0)
    persistent = engine.new_pool("a", persistent=True)
    ephemeral = engine.new_pool("a", codec="lzo")
    for i in range(3):
        engine.put("a", persistent, 0, i, raw_page(i))
    assert engine.put("a", ephemeral, 0, 0, text_page(0)) is None
    assert engine.put("a", ephemeral, 0, 0, raw_page(5)) is Refusal.NO_MEMORY
    assert engine.get("a", ephemeral, 0, 0) is None
    assert engine.statistics().pages_dropped_by_refused_replace == 1
    engine.check_invariants()


def test_a_replacement_may_reuse_the_old_copys_room() -> None:
    engine = make_engine(CHARGE, persistent_max=1.0, persistent_accept=1.0)
    pool = engine.new_pool("a", persistent=True)
    assert engine.put("a", pool, 0, 0, raw_page(0)) is None
    assert engine.put("a", pool, 0, 0, raw_page(1)) is None
    assert engine.get("a", pool, 0, 0) == raw_page(1)


# --- PAM plug points ---------------------------------------------------------------------


class SwitchablePam(BytesPam):
    """A BytesPam that can be told to refuse every store."""

    refuse = False

    def store(self, data: bytes | bytearray | memoryview) -> int:
        if self.refuse:
            raise PamFull("told to refuse")
        return super().store(data)


def test_evictions_per_put_are_bounded() -> None:
    pam = SwitchablePam(1 << 30)
    engine = Engine(EngineConfig(default_codec="none"), FakeClock(), ephemeral_pam=pam)
    engine.connect("a")
    pool = engine.new_pool("a")
    extra = 44
    for i in range(MAX_EVICTIONS_PER_PUT + extra):
        engine.put("a", pool, 0, i, raw_page(i))
    pam.refuse = True
    assert engine.put("a", pool, 1, 0, raw_page(0)) is Refusal.NO_MEMORY
    stats = engine.statistics()
    assert stats.evictions_by_reason["lru"] == MAX_EVICTIONS_PER_PUT
    assert stats.pages == extra
    engine.check_invariants()


class ReclaimingPam(BytesPam):
    """A BytesPam whose reclaim unit is its two oldest objects (like a zbud frame)."""

    name = "reclaiming"

    def reclaim(self) -> list[int] | None:
        handles = sorted(self._objects)[:2]
        for handle in handles:
            self.free(handle)
        return handles


def test_reclaim_is_used_for_a_dedicated_ephemeral_pam() -> None:
    ephemeral = ReclaimingPam(4 * CHARGE)
    engine = Engine(
        EngineConfig(default_codec="none"),
        FakeClock(),
        ephemeral_pam=ephemeral,
        persistent_pam=BytesPam(1 << 20),
    )
    engine.connect("a")
    pool = engine.new_pool("a")
    persistent = engine.new_pool("a", persistent=True)
    engine.put("a", persistent, 0, 0, raw_page(50))
    for i in range(5):
        assert engine.put("a", pool, 0, i, raw_page(i)) is None
    assert present(engine, pool, range(5)) == [2, 3, 4]
    stats = engine.statistics()
    assert stats.evictions_by_reason == {**NO_EVICTIONS, "reclaim": 2}
    assert [p.name for p in stats.pam_stats] == ["reclaiming", "bytes"]
    assert engine.get("a", persistent, 0, 0) == raw_page(50)
    engine.check_invariants()


def test_reclaim_is_not_used_when_the_pam_holds_persistent_pages() -> None:
    pam = ReclaimingPam(3 * CHARGE)
    engine = Engine(
        EngineConfig(default_codec="none", persistent_max=1.0), FakeClock(), ephemeral_pam=pam
    )
    engine.connect("a")
    pool = engine.new_pool("a")
    persistent = engine.new_pool("a", persistent=True)
    engine.put("a", persistent, 0, 0, raw_page(50))  # the oldest object in the PAM
    for i in range(3):
        engine.put("a", pool, 0, i, raw_page(i))
    assert engine.get("a", persistent, 0, 0) == raw_page(50)
    assert engine.statistics().evictions_by_reason == {**NO_EVICTIONS, "lru": 1}
    engine.check_invariants()


@pytest.mark.parametrize("persistent", [False, True])
def test_memory_is_returned(persistent: bool) -> None:
    engine = make_engine(10 * CHARGE, persistent_max=1.0, persistent_accept=1.0)
    pool = engine.new_pool("a", persistent=persistent)
    for i in range(10):
        engine.put("a", pool, i % 3, i, raw_page(i))
    assert engine.statistics().memory_used_bytes == 10 * CHARGE
    engine.flush_page("a", pool, 0, 0)
    engine.flush_object("a", pool, 1)
    engine.get("a", pool, 2, 2, exclusive=True)
    assert engine.statistics().memory_used_bytes == 5 * CHARGE
    engine.destroy_pool("a", pool)
    stats = engine.statistics()
    assert stats.memory_used_bytes == 0 and stats.persistent_bytes == 0
    engine.check_invariants()
