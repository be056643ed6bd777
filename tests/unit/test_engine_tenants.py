"""Clients, isolation, leases and shared pools (docs/design.md §3, rules 6-8)."""

from __future__ import annotations

import pytest

from tmemd.engine import (
    UUID_LIMIT,
    BadArgument,
    Engine,
    EngineConfig,
    Forbidden,
    NoSuchClient,
    NoSuchPool,
    TooManyPools,
)

PAGE = 4096
UUID = 0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def page(seed: int) -> bytes:
    line = b"tenant page %d; " % seed
    return (line * (PAGE // len(line) + 1))[:PAGE]


def make_engine(lease_s: float = 60.0, **config: object) -> tuple[Engine, FakeClock]:
    clock = FakeClock()
    engine = Engine(EngineConfig(lease_s=lease_s, **config), clock)  # type: ignore[arg-type]
    engine.connect("a")
    engine.connect("b")
    return engine, clock


# --- isolation ---------------------------------------------------------------------


def test_pool_ids_are_per_client() -> None:
    engine, _ = make_engine()
    a_pool = engine.new_pool("a", persistent=True)
    engine.put("a", a_pool, 1, 1, page(1))
    with pytest.raises(NoSuchPool):
        engine.get("b", a_pool, 1, 1)
    with pytest.raises(NoSuchPool):
        engine.flush_object("b", a_pool, 1)
    b_pool = engine.new_pool("b", persistent=True)
    assert b_pool == a_pool  # same small number, different pool
    assert engine.get("b", b_pool, 1, 1) is None
    engine.put("b", b_pool, 1, 1, page(2))
    assert engine.flush_object("b", b_pool, 1) == 1
    assert engine.get("a", a_pool, 1, 1) == page(1)
    with pytest.raises(NoSuchPool):
        engine.destroy_pool("b", 1)
    assert engine.pool_ids("a") == [0] and engine.pool_ids("b") == [0]


def test_pool_cap_is_per_client() -> None:
    engine, _ = make_engine(max_pools_per_client=2)
    engine.new_pool("a")
    engine.new_pool("a")
    with pytest.raises(TooManyPools):
        engine.new_pool("a")
    assert engine.new_pool("b") == 0


# --- connections and leases ----------------------------------------------------------


def test_pools_outlive_a_dropped_connection_within_the_lease() -> None:
    engine, clock = make_engine(lease_s=30.0)
    pool = engine.new_pool("a", persistent=True)
    engine.put("a", pool, 1, 1, page(1))
    engine.disconnect("a")
    clock.now += 29.9
    assert engine.expire_leases() == []
    engine.connect("a")
    clock.now += 1000
    assert engine.expire_leases() == []
    assert engine.get("a", pool, 1, 1) == page(1)


def test_lease_end_frees_the_client() -> None:
    engine, clock = make_engine(lease_s=30.0)
    pool = engine.new_pool("a", persistent=True)
    engine.put("a", pool, 1, 1, page(1))
    engine.disconnect("a")
    clock.now += 30.0
    assert engine.expire_leases() == ["a"]
    assert engine.expire_leases() == []
    with pytest.raises(NoSuchClient):
        engine.get("a", pool, 1, 1)
    stats = engine.statistics()
    assert stats.pages == 0 and stats.clients == 1 and stats.leases_expired == 1
    assert stats.pages_freed_by_destroy == 1 and stats.memory_used_bytes == 0
    engine.connect("a")  # comes back as a new client with nothing
    assert engine.pool_ids("a") == []
    engine.check_invariants()


def test_lease_starts_at_the_last_connection() -> None:
    engine, clock = make_engine(lease_s=10.0)
    engine.new_pool("a")
    engine.connect("a")  # two connections now
    engine.disconnect("a")
    clock.now += 100
    assert engine.expire_leases() == []
    engine.disconnect("a")
    (a_stats,) = [c for c in engine.statistics().client_stats if c.name == "a"]
    assert a_stats.connections == 0 and a_stats.lease_expires_at == clock.now + 10.0
    clock.now += 10.0
    assert engine.expire_leases() == ["a"]


def test_zero_lease_frees_at_the_next_expiry_pass() -> None:
    engine, _ = make_engine(lease_s=0.0)
    engine.new_pool("b", persistent=True)
    engine.disconnect("b")
    assert engine.expire_leases() == ["b"]


def test_disconnect_without_connection() -> None:
    engine, _ = make_engine()
    engine.disconnect("a")
    with pytest.raises(BadArgument):
        engine.disconnect("a")


def test_destroy_client_frees_pools_now() -> None:
    engine, _ = make_engine()
    pool = engine.new_pool("a", persistent=True)
    engine.put("a", pool, 1, 1, page(1))
    engine.destroy_client("a")  # still connected: stays known, with nothing
    assert engine.pool_ids("a") == []
    assert engine.statistics().pages == 0
    engine.disconnect("b")
    engine.destroy_client("b")  # not connected: forgotten
    with pytest.raises(NoSuchClient):
        engine.pool_ids("b")
    assert engine.expire_leases() == []


# --- shared pools --------------------------------------------------------------------


def test_creating_and_joining_a_shared_pool_both_need_a_grant() -> None:
    engine, _ = make_engine()
    with pytest.raises(Forbidden):
        engine.new_pool("a", shared_uuid=UUID)
    engine.authorize_shared(UUID, "a")
    pool = engine.new_pool("a", shared_uuid=UUID)
    engine.put("a", pool, 1, 1, page(1))
    with pytest.raises(Forbidden):
        engine.new_pool("b", shared_uuid=UUID)
    assert engine.pool_ids("b") == []
    engine.authorize_shared(UUID, "b")
    engine.new_pool("b")  # b's id 0 is a private pool
    joined = engine.new_pool("b", shared_uuid=UUID)
    assert joined == 1
    assert engine.get("b", joined, 1, 1) == page(1)  # shared gets keep the page
    assert engine.get("a", pool, 1, 1) == page(1)
    engine.put("b", joined, 2, 2, page(2))
    assert engine.get("a", pool, 2, 2) == page(2)
    assert engine.statistics().pools == 2  # b's private pool and the shared one
    engine.check_invariants()


def test_authorization_before_the_client_exists() -> None:
    engine, _ = make_engine()
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID, "c")
    engine.new_pool("a", shared_uuid=UUID)
    engine.connect("c")
    assert engine.new_pool("c", shared_uuid=UUID) == 0


def test_authorization_is_per_uuid() -> None:
    engine, _ = make_engine()
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID + 1, "b")
    engine.new_pool("a", shared_uuid=UUID)
    with pytest.raises(Forbidden):
        engine.new_pool("b", shared_uuid=UUID)


def test_shared_exclusive_get_removes() -> None:
    engine, _ = make_engine()
    engine.authorize_shared(UUID, "a")
    pool = engine.new_pool("a", shared_uuid=UUID)
    engine.put("a", pool, 1, 1, page(1))
    assert engine.get("a", pool, 1, 1, exclusive=True) == page(1)
    assert engine.get("a", pool, 1, 1) is None


def test_joining_twice_returns_the_same_id() -> None:
    engine, _ = make_engine()
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID, "b")
    engine.new_pool("a", shared_uuid=UUID)
    first = engine.new_pool("b", shared_uuid=UUID)
    assert engine.new_pool("b", shared_uuid=UUID) == first
    assert engine.new_pool("a", shared_uuid=UUID) == 0
    assert engine.pool_ids("b") == [first]


@pytest.mark.parametrize(
    "flags",
    [{"page_size": 8192}, {"precompressed": True}, {"codec": "zstd"}],
)
def test_joining_with_other_flags_is_refused(flags: dict[str, object]) -> None:
    engine, _ = make_engine()
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID, "b")
    engine.new_pool("a", shared_uuid=UUID, codec="lzo")
    with pytest.raises(BadArgument):
        engine.new_pool("b", shared_uuid=UUID, **flags)  # type: ignore[arg-type]
    assert engine.new_pool("b", shared_uuid=UUID, codec="lzo") == 0


def test_a_refusal_does_not_tell_whether_the_uuid_is_in_use() -> None:
    """Squatting and probing: b may neither take a's UUID first nor learn it exists."""
    engine, _ = make_engine()
    engine.connect("c")
    engine.authorize_shared(UUID, "a")
    with pytest.raises(Forbidden) as free:
        engine.new_pool("b", shared_uuid=UUID)  # not in use yet: b cannot squat it
    pool = engine.new_pool("a", shared_uuid=UUID)
    engine.put("a", pool, 1, 1, page(1))
    with pytest.raises(Forbidden) as used:
        engine.new_pool("b", shared_uuid=UUID, page_size=8192)  # in use, other flags
    assert str(free.value) == str(used.value)
    assert engine.pool_ids("b") == []


def test_open_shared_pools_let_every_client_create_and_join() -> None:
    engine, _ = make_engine(open_shared_pools=True)
    pool = engine.new_pool("a", shared_uuid=UUID)
    engine.put("a", pool, 1, 1, page(1))
    joined = engine.new_pool("b", shared_uuid=UUID)
    assert engine.get("b", joined, 1, 1) == page(1)


@pytest.mark.parametrize(
    "flags",
    [{"page_size": 8192}, {"precompressed": True}, {"codec": "zstd"}],
)
def test_a_rejoin_with_other_flags_is_refused_too(flags: dict[str, object]) -> None:
    engine, _ = make_engine(open_shared_pools=True)
    pool = engine.new_pool("a", shared_uuid=UUID, codec="lzo")
    with pytest.raises(BadArgument):
        engine.new_pool("a", shared_uuid=UUID, **flags)  # type: ignore[arg-type]
    assert engine.new_pool("a", shared_uuid=UUID) == pool
    assert engine.pool_ids("a") == [pool]


@pytest.mark.parametrize("uuid", [-1, UUID_LIMIT])
def test_uuid_range(uuid: int) -> None:
    engine, _ = make_engine()
    with pytest.raises(BadArgument):
        engine.new_pool("a", shared_uuid=uuid)
    with pytest.raises(BadArgument):
        engine.authorize_shared(uuid, "a")


def test_shared_pages_count_against_the_creator() -> None:
    engine, _ = make_engine()
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID, "b")
    pool = engine.new_pool("a", shared_uuid=UUID)
    joined = engine.new_pool("b", shared_uuid=UUID)
    engine.put("b", joined, 1, 1, page(1))
    engine.put("b", joined, 1, 2, page(2))
    clients = {c.name: c for c in engine.statistics().client_stats}
    assert clients["a"].pages == 2 and clients["b"].pages == 0
    assert clients["b"].counters.puts_stored == 2 and clients["a"].counters.puts_stored == 0
    (pool_stats,) = engine.statistics().pool_stats
    assert pool_stats.client == "a" and pool_stats.pool_id == pool
    assert pool_stats.members == (("a", pool), ("b", joined))


def test_shared_pool_lives_while_any_member_has_it() -> None:
    engine, _ = make_engine()
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID, "b")
    engine.new_pool("b")
    pool = engine.new_pool("a", shared_uuid=UUID)
    joined = engine.new_pool("b", shared_uuid=UUID)
    engine.put("a", pool, 1, 1, page(1))
    engine.destroy_pool("a", pool)  # the creator leaves; b still has it
    with pytest.raises(NoSuchPool):
        engine.get("a", pool, 1, 1)
    assert engine.get("b", joined, 1, 1) == page(1)
    (pool_stats,) = [p for p in engine.statistics().pool_stats if p.shared]
    assert (pool_stats.client, pool_stats.pool_id) == ("b", joined)
    # The creator is still authorized: it may come back, under a new id.
    back = engine.new_pool("a", shared_uuid=UUID)
    assert back != pool
    assert engine.get("a", back, 1, 1) == page(1)
    engine.destroy_pool("a", back)
    engine.destroy_pool("b", joined)  # the last member leaves: the pages go
    stats = engine.statistics()
    assert stats.pages == 0 and stats.memory_used_bytes == 0
    fresh = engine.new_pool("a", shared_uuid=UUID)
    assert engine.get("a", fresh, 1, 1) is None
    engine.check_invariants()


def test_lease_end_of_a_member_leaves_the_shared_pool() -> None:
    engine, clock = make_engine(lease_s=5.0)
    engine.authorize_shared(UUID, "a")
    engine.authorize_shared(UUID, "b")
    pool = engine.new_pool("a", shared_uuid=UUID)
    joined = engine.new_pool("b", shared_uuid=UUID)
    engine.put("a", pool, 1, 1, page(1))
    engine.disconnect("a")
    clock.now += 5.0
    assert engine.expire_leases() == ["a"]
    assert engine.get("b", joined, 1, 1) == page(1)
    engine.check_invariants()
