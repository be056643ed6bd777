"""Tenancy in the engine: fair eviction by weight, caps, freeze, settings,
administrative flushes and shared-pool ownership (docs/multi-tenancy.md).

Sizes are exact: with codec "none" a random page is stored raw and charges
4096 + BYTES_PAM_OVERHEAD bytes of the BytesPam, and 4096 stored bytes to
its client.
"""

from __future__ import annotations

import random

import pytest

from tmemd.engine import (
    BYTES_PAM_OVERHEAD,
    DEFAULT_WEIGHT,
    MAX_WEIGHT,
    BadArgument,
    BadLength,
    BytesPam,
    ClientLimits,
    Engine,
    EngineConfig,
    Forbidden,
    NoSuchClient,
    NoSuchPool,
    Refusal,
    Unsupported,
)

PAGE = 4096
CHARGE = PAGE + BYTES_PAM_OVERHEAD
UUID = 0xFEED_0000_0000_0000_0000_0000_0000_BEEF


def raw_page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE)


def make_engine(pages: int, *names: str, **config: object) -> Engine:
    """An engine with room for ``pages`` raw pages and the named clients connected."""
    engine = Engine(
        EngineConfig(memory_bytes=pages * CHARGE, default_codec="none", **config),  # type: ignore[arg-type]
        lambda: 0.0,
    )
    for name in names:
        engine.connect(name)
    return engine


def held(engine: Engine, client: str, pool: int, indexes: range) -> list[int]:
    return [i for i in indexes if engine.get(client, pool, 0, i, exclusive=False) is not None]


def client_stats(engine: Engine, name: str):  # type: ignore[no-untyped-def]
    (stats,) = [c for c in engine.statistics().client_stats if c.name == name]
    return stats


# --- fair eviction -------------------------------------------------------------------------


def test_a_flood_cannot_push_a_quiet_client_below_its_share() -> None:
    engine = make_engine(40, "quiet", "flood")
    quiet, flood = engine.new_pool("quiet"), engine.new_pool("flood")
    for i in range(10):
        assert engine.put("quiet", quiet, 0, i, raw_page(i)) is None
    for i in range(400):
        assert engine.put("flood", flood, 0, i, raw_page(1000 + i)) is None
    stats = engine.statistics()
    # A global LRU would have dropped the quiet pages first: they were the
    # oldest, and the flood evicted far more than ten pages.
    assert stats.evictions_by_reason["lru"] == 400 - 30 > 10
    assert held(engine, "quiet", quiet, range(10)) == list(range(10))
    assert client_stats(engine, "quiet").counters.pages_evicted == 0
    assert client_stats(engine, "flood").pages_evicted_by_reason["lru"] == 370
    engine.check_invariants()


def test_a_client_above_its_share_gives_back_down_to_it() -> None:
    engine = make_engine(40, "early", "late")
    early, late = engine.new_pool("early"), engine.new_pool("late")
    for i in range(40):
        engine.put("early", early, 0, i, raw_page(i))
    for i in range(200):
        engine.put("late", late, 0, i, raw_page(1000 + i))
    # Equal weights: each ends with half, and early kept its newest pages.
    assert held(engine, "early", early, range(40)) == list(range(20, 40))
    assert len(held(engine, "late", late, range(200))) == 20
    engine.check_invariants()


@pytest.mark.parametrize(("heavy", "light"), [(300, 100), (100, 100), (1, 3)])
def test_shares_follow_weights(heavy: int, light: int) -> None:
    engine = make_engine(40, "h", "l")
    engine.set_client_limits("h", ClientLimits(weight=heavy))
    engine.set_client_limits("l", ClientLimits(weight=light))
    h, l_pool = engine.new_pool("h"), engine.new_pool("l")
    for i in range(400):  # both flood, interleaved
        engine.put("h", h, 0, i, raw_page(i))
        engine.put("l", l_pool, 0, i, raw_page(5000 + i))
    h_pages = client_stats(engine, "h").pages
    l_pages = client_stats(engine, "l").pages
    assert h_pages + l_pages == 40
    assert abs(h_pages - 40 * heavy / (heavy + light)) <= 1
    engine.check_invariants()


def test_the_putting_client_is_the_victim_on_a_tie() -> None:
    engine = make_engine(2, "a", "b")
    a, b = engine.new_pool("a"), engine.new_pool("b")
    engine.put("b", b, 0, 0, raw_page(1))
    engine.put("a", a, 0, 0, raw_page(0))
    engine.put("a", a, 0, 1, raw_page(2))  # a would hold 2 of 2: its own page goes
    assert engine.get("b", b, 0, 0, exclusive=False) == raw_page(1)
    assert held(engine, "a", a, range(2)) == [1]


def test_recently_used_pages_of_the_victim_stay() -> None:
    engine = make_engine(4, "a")
    pool = engine.new_pool("a")
    for i in range(4):
        engine.put("a", pool, 0, i, raw_page(i))
    assert engine.get("a", pool, 0, 0, exclusive=False) == raw_page(0)
    engine.put("a", pool, 0, 4, raw_page(4))
    assert held(engine, "a", pool, range(5)) == [0, 2, 3, 4]


class ReclaimingPam(BytesPam):
    """A BytesPam whose reclaim unit is its two oldest objects (like a zbud frame)."""

    def reclaim(self) -> list[int] | None:
        handles = sorted(self._objects)[:2]
        for handle in handles:
            self.free(handle)
        return handles


def test_reclaim_only_when_one_client_holds_every_evictable_page() -> None:
    engine = Engine(
        EngineConfig(default_codec="none"),
        lambda: 0.0,
        ephemeral_pam=ReclaimingPam(4 * CHARGE),
        persistent_pam=BytesPam(1 << 20),
    )
    engine.connect("a")
    engine.connect("b")
    a, b = engine.new_pool("a"), engine.new_pool("b")
    engine.put("b", b, 0, 0, raw_page(0))  # the oldest object: a frame reclaim would take it
    for i in range(5):
        assert engine.put("a", a, 0, i, raw_page(i + 1)) is None
    assert engine.get("b", b, 0, 0, exclusive=False) == raw_page(0)
    evictions = engine.statistics().evictions_by_reason
    assert evictions["reclaim"] == 0 and evictions["lru"] == 2
    engine.flush_page("b", b, 0, 0)
    for i in range(5, 8):
        engine.put("a", a, 0, i, raw_page(i + 1))
    assert engine.statistics().evictions_by_reason["reclaim"] > 0
    engine.check_invariants()


# --- caps ------------------------------------------------------------------------------


def test_persistent_cap() -> None:
    engine = make_engine(100, "a", "b", persistent_max=1.0, persistent_accept=1.0)
    engine.set_client_limits("a", ClientLimits(persistent_cap=2 * PAGE))
    a, b = engine.new_pool("a", persistent=True), engine.new_pool("b", persistent=True)
    assert engine.put("a", a, 0, 0, raw_page(0)) is None
    assert engine.put("a", a, 0, 1, raw_page(1)) is None
    assert engine.put("a", a, 0, 2, raw_page(2)) is Refusal.CLIENT_PERSISTENT_CAP
    assert engine.put("a", a, 0, 3, bytes(PAGE)) is None  # same-filled: no stored bytes
    for i in range(5):
        assert engine.put("b", b, 0, i, raw_page(i)) is None  # b has no cap
    eph = engine.new_pool("a")
    assert engine.put("a", eph, 0, 0, raw_page(9)) is None  # ephemeral: not this cap
    stats = client_stats(engine, "a")
    assert stats.puts_refused_by_reason["client_persistent_cap"] == 1
    assert stats.persistent_cap == 2 * PAGE and stats.persistent_stored_bytes == 2 * PAGE
    engine.flush_page("a", a, 0, 0)
    assert engine.put("a", a, 0, 2, raw_page(2)) is None
    engine.check_invariants()


def test_total_cap_evicts_own_ephemeral_pages_first() -> None:
    engine = make_engine(100, "a", "b", persistent_max=1.0, persistent_accept=1.0)
    engine.set_client_limits("a", ClientLimits(total_cap=4 * PAGE))
    eph, per = engine.new_pool("a"), engine.new_pool("a", persistent=True)
    b = engine.new_pool("b")
    engine.put("b", b, 0, 0, raw_page(99))
    for i in range(4):
        assert engine.put("a", eph, 0, i, raw_page(i)) is None
    assert engine.put("a", eph, 0, 4, raw_page(4)) is None  # evicts a's page 0
    assert held(engine, "a", eph, range(5)) == [1, 2, 3, 4]
    assert engine.put("a", per, 0, 0, raw_page(10)) is None  # evicts a's page 1
    assert engine.put("a", per, 0, 1, raw_page(11)) is None
    assert held(engine, "a", eph, range(5)) == [3, 4]
    assert engine.get("b", b, 0, 0, exclusive=False) == raw_page(99)  # never b's
    stats = client_stats(engine, "a")
    assert stats.pages_evicted_by_reason["client_total_cap"] == 3
    assert engine.statistics().evictions_by_reason["client_total_cap"] == 3
    # Persistent pages are never evicted for the cap: four of them fill it.
    assert engine.put("a", per, 0, 2, raw_page(12)) is None
    assert engine.put("a", per, 0, 3, raw_page(13)) is None
    assert engine.put("a", per, 0, 4, raw_page(14)) is Refusal.CLIENT_TOTAL_CAP
    assert engine.put("a", eph, 0, 9, raw_page(15)) is Refusal.CLIENT_TOTAL_CAP
    assert held(engine, "a", eph, range(10)) == []
    engine.check_invariants()


def test_lowering_a_cap_evicts_nothing_at_once() -> None:
    engine = make_engine(100, "a")
    pool = engine.new_pool("a")
    for i in range(4):
        engine.put("a", pool, 0, i, raw_page(i))
    engine.set_client_limits("a", ClientLimits(total_cap=PAGE))
    assert client_stats(engine, "a").pages == 4
    assert engine.put("a", pool, 0, 4, raw_page(4)) is None  # now the old ones go
    assert held(engine, "a", pool, range(5)) == [4]


def test_shared_pages_count_against_the_owner_cap() -> None:
    engine = make_engine(100, "a", "b")
    engine.authorize_shared(UUID, "a")
    engine.set_client_limits("a", ClientLimits(total_cap=2 * PAGE))
    engine.authorize_shared(UUID, "b")
    engine.new_pool("a", shared_uuid=UUID)
    joined = engine.new_pool("b", shared_uuid=UUID)
    for i in range(3):
        assert engine.put("b", joined, 0, i, raw_page(i)) is None
    assert held(engine, "b", joined, range(3)) == [1, 2]  # a's cap, a's own pages
    assert client_stats(engine, "a").pages == 2 and client_stats(engine, "b").pages == 0


# --- freeze --------------------------------------------------------------------------------


def test_frozen_client_puts_are_refused_and_gets_served() -> None:
    engine = make_engine(100, "a", "b")
    per, eph = engine.new_pool("a", persistent=True), engine.new_pool("a")
    b = engine.new_pool("b")
    engine.put("a", per, 0, 0, raw_page(0))
    engine.put("a", per, 0, 1, raw_page(1))
    engine.freeze("a")
    assert engine.put("a", per, 0, 2, raw_page(2)) is Refusal.FROZEN
    assert engine.put("a", eph, 0, 0, raw_page(3)) is Refusal.FROZEN
    assert engine.put("a", per, 0, 1, raw_page(4)) is Refusal.FROZEN
    assert engine.get("a", per, 0, 1) is None  # the replace rule: the old copy went
    with pytest.raises(BadLength):  # an invalid put is an error, and changes nothing
        engine.put("a", per, 0, 0, b"short")
    assert engine.get("a", per, 0, 0) == raw_page(0)
    assert engine.flush_page("a", per, 0, 0)
    assert engine.put("b", b, 0, 0, raw_page(5)) is None  # only a is frozen
    stats = engine.statistics()
    assert stats.puts_refused_by_reason["frozen"] == 3
    assert stats.pages_dropped_by_refused_replace == 1
    assert client_stats(engine, "a").frozen and not client_stats(engine, "b").frozen
    assert client_stats(engine, "a").puts_refused_by_reason["frozen"] == 3
    engine.thaw("a")
    assert engine.put("a", per, 0, 2, raw_page(2)) is None
    assert engine.get("a", per, 0, 2) == raw_page(2)
    engine.check_invariants()


def test_frozen_member_cannot_put_into_a_shared_pool() -> None:
    engine = make_engine(100, "a", "b")
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID, "b")
    pool = engine.new_pool("a", shared_uuid=UUID)
    joined = engine.new_pool("b", shared_uuid=UUID)
    engine.freeze("b")
    assert engine.put("b", joined, 0, 0, raw_page(0)) is Refusal.FROZEN
    assert engine.put("a", pool, 0, 0, raw_page(0)) is None
    assert engine.get("b", joined, 0, 0) == raw_page(0)


# --- settings ------------------------------------------------------------------------------


def test_settings_belong_to_the_name_and_outlive_the_lease() -> None:
    now = [0.0]
    engine = Engine(EngineConfig(lease_s=1.0), lambda: now[0])
    engine.configure_client("web", ClientLimits(weight=300, total_cap=1 << 20))
    assert engine.client_limits("web") == ClientLimits(300, None, 1 << 20)
    engine.connect("web")
    assert client_stats(engine, "web").weight == 300
    engine.freeze("web")
    engine.set_client_codec("web", "zstd")
    engine.disconnect("web")
    now[0] += 5
    assert engine.expire_leases() == ["web"]
    engine.connect("web")  # a new Client object, the same settings
    stats = client_stats(engine, "web")
    assert (stats.weight, stats.total_cap, stats.frozen, stats.codec) == (
        300,
        1 << 20,
        True,
        "zstd",
    )
    pool = engine.new_pool("web")
    assert [p.codec for p in engine.statistics().pool_stats if p.pool_id == pool] == ["zstd"]
    assert engine.new_pool("web", codec="lz4") != pool  # an explicit codec wins


def test_admin_changes_to_an_unconfigured_client_persist() -> None:
    now = [0.0]
    engine = Engine(EngineConfig(lease_s=1.0), lambda: now[0])
    engine.connect("x")
    engine.set_client_limits("x", ClientLimits(weight=7))
    engine.disconnect("x")
    now[0] += 5
    engine.expire_leases()
    assert engine.client_limits("x").weight == 7  # still known, by its settings
    engine.connect("x")
    assert client_stats(engine, "x").weight == 7


def test_unknown_clients_are_refused() -> None:
    engine = make_engine(10, "a")
    for call in (
        lambda: engine.freeze("ghost"),
        lambda: engine.thaw("ghost"),
        lambda: engine.client_limits("ghost"),
        lambda: engine.set_client_limits("ghost", ClientLimits()),
        lambda: engine.set_client_codec("ghost", "lz4"),
        lambda: engine.destroy_client("ghost"),
    ):
        with pytest.raises(NoSuchClient):
            call()


@pytest.mark.parametrize(
    "limits",
    [
        {"weight": 0},
        {"weight": MAX_WEIGHT + 1},
        {"weight": True},
        {"weight": 1.5},
        {"persistent_cap": -1},
        {"total_cap": "1GiB"},
    ],
)
def test_limits_are_validated(limits: dict[str, object]) -> None:
    with pytest.raises(BadArgument):
        ClientLimits(**limits)  # type: ignore[arg-type]


def test_defaults_and_codec_validation() -> None:
    engine = make_engine(10, "a")
    assert engine.client_limits("a") == ClientLimits(DEFAULT_WEIGHT, None, None)
    with pytest.raises(Unsupported):
        engine.set_client_codec("a", "brotli")
    engine.set_client_codec("a", None)


# --- administration ------------------------------------------------------------------------


def test_flush_ephemeral_frees_fairly_and_reports_bytes() -> None:
    engine = make_engine(100, "a", "b")
    a, b = engine.new_pool("a"), engine.new_pool("b")
    per = engine.new_pool("a", persistent=True)
    for i in range(30):
        engine.put("a", a, 0, i, raw_page(i))
    for i in range(10):
        engine.put("b", b, 0, i, raw_page(100 + i))
    engine.put("a", per, 0, 0, raw_page(7))
    engine.put("a", a, 1, 0, bytes(PAGE))  # same-filled: nothing to free
    assert engine.freeable() == 40 * PAGE == engine.statistics().freeable_bytes
    assert engine.flush_ephemeral(0) == 0
    assert engine.flush_ephemeral(10 * PAGE + 1) == 11 * PAGE  # whole pages, all a's
    assert client_stats(engine, "b").pages == 10
    assert held(engine, "a", a, range(30)) == list(range(11, 30))
    assert engine.flush_ephemeral(1 << 40) == 29 * PAGE
    assert engine.freeable() == 0
    assert engine.get("a", per, 0, 0) == raw_page(7)
    assert engine.get("a", a, 1, 0, exclusive=False) == bytes(PAGE)
    assert engine.statistics().evictions_by_reason["admin_flush"] == 40
    assert engine.flush_ephemeral(PAGE) == 0
    with pytest.raises(BadArgument):
        engine.flush_ephemeral(-1)
    engine.check_invariants()


def test_flush_ephemeral_is_bounded_per_call() -> None:
    engine = make_engine(100, "a", max_flush_pages_per_call=5)
    pool = engine.new_pool("a")
    for i in range(12):
        engine.put("a", pool, 0, i, raw_page(i))
    assert engine.flush_ephemeral(1 << 30) == 5 * PAGE
    assert engine.flush_ephemeral(1 << 30) == 5 * PAGE
    assert engine.flush_ephemeral(1 << 30) == 2 * PAGE


def test_revoke_shared_removes_access() -> None:
    engine = make_engine(100, "a", "b")
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID, "b")
    pool = engine.new_pool("a", shared_uuid=UUID)
    joined = engine.new_pool("b", shared_uuid=UUID)
    engine.put("a", pool, 0, 0, raw_page(0))
    engine.revoke_shared(UUID, "b")
    with pytest.raises(NoSuchPool):
        engine.get("b", joined, 0, 0)
    with pytest.raises(Forbidden):
        engine.new_pool("b", shared_uuid=UUID)
    engine.revoke_shared(UUID, "a")  # the creator loses access too: the pool goes
    with pytest.raises(NoSuchPool):
        engine.get("a", pool, 0, 0)
    assert engine.statistics().pages == 0
    engine.revoke_shared(UUID, "nobody")  # nothing to withdraw: no error
    with pytest.raises(BadArgument):
        engine.revoke_shared(-1, "b")
    engine.check_invariants()


def test_owner_change_moves_the_charge_and_the_lru() -> None:
    engine = make_engine(6, "a", "b", "c")
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID, "b")
    engine.new_pool("b")  # so b's id for the shared pool differs from a's
    pool = engine.new_pool("a", shared_uuid=UUID)
    joined = engine.new_pool("b", shared_uuid=UUID)
    for i in range(4):
        engine.put("a", pool, 0, i, raw_page(i))
    engine.destroy_pool("a", pool)
    assert client_stats(engine, "b").ephemeral_stored_bytes == 4 * PAGE
    assert client_stats(engine, "a").ephemeral_stored_bytes == 0
    engine.check_invariants()
    c = engine.new_pool("c")
    for i in range(4):
        engine.put("c", c, 0, i, raw_page(10 + i))  # b, the new owner, gives back pages
    # Six pages of room: b (4 pages) loses its oldest; then b and c hold 3 each.
    assert held(engine, "b", joined, range(4)) == [1, 2, 3]
    assert client_stats(engine, "b").counters.pages_evicted == 1
    assert client_stats(engine, "c").pages == 3
    engine.check_invariants()


def test_destroy_client_frees_its_pages() -> None:
    engine = make_engine(100, "a", "b")
    pool = engine.new_pool("a")
    engine.put("a", pool, 0, 0, raw_page(0))
    engine.destroy_client("a")
    assert engine.freeable() == 0 and engine.pool_ids("a") == []
    engine.check_invariants()


# --- limits --------------------------------------------------------------------------------


def test_pool_count_is_bounded() -> None:
    with pytest.raises(ValueError):
        EngineConfig(max_pools_per_client=(1 << 16) + 1)


# --- the persistent fair share ------------------------------------------------------------


def fill(engine: Engine, client: str, pool: int, base: int, pages: int) -> list[Refusal | None]:
    return [engine.put(client, pool, 0, base + i, raw_page(base + i)) for i in range(pages)]


def test_a_client_that_filled_the_share_leaves_room_for_the_next() -> None:
    """a fills the persistent share alone; b's persistent puts are still accepted."""
    engine = make_engine(100, "a", "b", persistent_max=0.5, persistent_accept=0.4)
    stats = engine.statistics()
    accept, maximum = stats.persistent_accept_bytes, stats.persistent_max_bytes
    a = engine.new_pool("a", persistent=True)
    results = fill(engine, "a", a, 0, 60)
    alone = accept // PAGE  # a's line is the whole accept line
    assert results == [None] * alone + [Refusal.PERSISTENT_FULL] * (60 - alone)
    b = engine.new_pool("b", persistent=True)
    room = (maximum - alone * PAGE) // PAGE  # the band, kept for the next client
    assert room >= 1
    assert fill(engine, "b", b, 100, room) == [None] * room
    assert engine.put("b", b, 0, 200, raw_page(200)) is Refusal.PERSISTENT_FULL  # the maximum
    assert engine.put("a", a, 0, 99, raw_page(99)) is Refusal.PERSISTENT_FAIR_SHARE
    # What a flushes while the share is in the band goes to b, up to b's line.
    for i in range(3):
        assert engine.flush_page("a", a, 0, i)
    assert engine.put("a", a, 0, 0, raw_page(0)) is Refusal.PERSISTENT_FAIR_SHARE
    assert fill(engine, "b", b, 300, 3) == [None] * 3
    assert client_stats(engine, "a").puts_refused_by_reason["persistent_fair_share"] == 2
    engine.check_invariants()


def test_lines_follow_weights_and_caps() -> None:
    engine = make_engine(100, "a", "b", "c", persistent_max=1.0, persistent_accept=0.5)
    accept = engine.statistics().persistent_accept_bytes
    engine.set_client_limits("a", ClientLimits(weight=300))
    engine.set_client_limits("c", ClientLimits(persistent_cap=2 * PAGE))
    pools = {name: engine.new_pool(name, persistent=True) for name in "abc"}
    fill(engine, "b", pools["b"], 0, 1)
    # Under the accept line nobody is limited: a takes all of it.
    a_pages = sum(r is None for r in fill(engine, "a", pools["a"], 100, 100))
    assert a_pages == accept // PAGE - 1
    # In the band, a is past its line (3/4 of the accept line), b is held to
    # its line (1/4) and c to its cap, whatever its weight.
    assert engine.put("a", pools["a"], 0, 99, raw_page(99)) is Refusal.PERSISTENT_FAIR_SHARE
    b_pages = 1 + sum(r is None for r in fill(engine, "b", pools["b"], 200, 100))
    assert b_pages == accept * 100 // 400 // PAGE
    assert fill(engine, "c", pools["c"], 300, 3) == [None, None, Refusal.CLIENT_PERSISTENT_CAP]
    engine.check_invariants()
