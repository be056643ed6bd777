"""Hot resize of the engine (``tmemd/engine/_resize.py``): the limit moves at
once, growing admits more pages, shrinking evicts ephemeral pages only, and a
shrink below the persistent pages is refused with nothing changed (or, when
the frames cannot be emptied, the old limit is put back)."""

from __future__ import annotations

import random

import pytest

from tmemd.engine import BadArgument, Engine, EngineConfig, Refusal, Unsupported

PAGE = 4096
MIB = 1 << 20


def make(
    memory: int = 8 * MIB,
    reserve: int = 32 * MIB,
    persistent_max: float = 0.75,
    persistent_accept: float = 0.70,
) -> Engine:
    config = EngineConfig(
        memory_bytes=memory,
        default_codec="none",
        persistent_max=persistent_max,
        persistent_accept=min(persistent_accept, persistent_max),
        ephemeral_pam="zbud",
        persistent_pam="zsmalloc",
        memory_reserve_bytes=reserve,
    )
    engine = Engine(config, lambda: 0.0)
    engine.connect("a")
    return engine


def fill(engine: Engine, pool: int, count: int, seed: int) -> dict[int, bytes]:
    rnd = random.Random(seed)
    stored = {}
    for i in range(count):
        page = rnd.randbytes(PAGE)
        if engine.put("a", pool, 0, i, page) is None:
            stored[i] = page
    return stored


def intact(engine: Engine, pool: int, pages: dict[int, bytes]) -> bool:
    return all(engine.get("a", pool, 0, i, exclusive=False) == page for i, page in pages.items())


def test_shrinking_evicts_ephemeral_pages_and_keeps_every_persistent_one() -> None:
    engine = make()
    per = engine.new_pool("a", persistent=True)
    eph = engine.new_pool("a")
    kept = fill(engine, per, 700, 1)  # ~2.7 MiB
    fill(engine, eph, 1000, 2)  # fills the rest
    evicted = engine.set_memory(5 * MIB)
    assert evicted > 0
    stats = engine.statistics()
    assert stats.memory_limit_bytes == 5 * MIB
    assert stats.memory_used_bytes <= 5 * MIB
    assert intact(engine, per, kept)
    engine.check_invariants()


def test_growing_admits_more_pages() -> None:
    # A client alone may fill the persistent share up to the accept line
    # (docs/memory.md): at 1.0 both, only memory itself refuses.
    engine = make(persistent_max=1.0, persistent_accept=1.0)
    per = engine.new_pool("a", persistent=True)
    before = len(fill(engine, per, 4000, 3))
    assert engine.put("a", per, 1, 0, random.Random(4).randbytes(PAGE)) is Refusal.NO_MEMORY
    assert engine.set_memory(24 * MIB) == 0
    after = fill(engine, per, 4000, 3)
    assert len(after) == 4000 > before
    assert engine.statistics().memory_limit_bytes == 24 * MIB
    engine.check_invariants()


def test_below_the_persistent_share_is_refused_with_nothing_changed() -> None:
    engine = make()
    per = engine.new_pool("a", persistent=True)
    eph = engine.new_pool("a")
    kept = fill(engine, per, 1000, 5)  # ~3.9 MiB
    cache = fill(engine, eph, 200, 6)
    with pytest.raises(BadArgument, match="no lower than"):
        engine.set_memory(4 * MIB)
    assert engine.statistics().memory_limit_bytes == 8 * MIB
    assert intact(engine, per, kept) and intact(engine, eph, cache)


def test_frames_that_cannot_be_emptied_put_the_old_limit_back() -> None:
    engine = make(persistent_max=1.0, persistent_accept=1.0)
    per = engine.new_pool("a", persistent=True)
    kept = fill(engine, per, 1900, 7)  # ~7.4 MiB of 8: the share check passes at 7.5
    with pytest.raises(BadArgument, match="stay in use"):
        engine.set_memory(7 * MIB + 512 * 1024)
    assert engine.statistics().memory_limit_bytes == 8 * MIB
    assert intact(engine, per, kept)
    engine.check_invariants()


def test_limits_of_the_mapping_and_of_engines_without_an_arena() -> None:
    engine = make()
    with pytest.raises(BadArgument, match="mapped"):
        engine.set_memory(33 * MIB)
    with pytest.raises(BadArgument):
        engine.set_memory(4096)
    plain = Engine(EngineConfig(memory_bytes=MIB), lambda: 0.0)
    with pytest.raises(Unsupported):
        plain.set_memory(2 * MIB)
