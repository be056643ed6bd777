"""The engine over an arena: PAM choice per pool, same-filled pages, the
metadata charge, eviction by reclaim and LRU, big pages, and maintenance."""

from __future__ import annotations

import random

import pytest

from tmemd.engine import (
    BadArgument,
    BytesPam,
    Engine,
    EngineConfig,
    Refusal,
    Unsupported,
)
from tmemd.engine._policy import page_pool
from tmemd.engine._state import MAX_HANDLE
from tmemd.engine.pam import FRAME_BYTES

PAGE = 4096


def raw_page(seed: int, size: int = PAGE) -> bytes:
    return random.Random(seed).randbytes(size)


def text_page(seed: int, size: int = PAGE) -> bytes:
    line = b"engine over an arena %d; " % seed
    return (line * (size // len(line) + 1))[:size]


def arena_engine(memory: int = 1 << 20, codec: str = "lzo", **config: object) -> Engine:
    engine = Engine(
        EngineConfig(
            memory_bytes=memory,
            default_codec=codec,
            ephemeral_pam="zbud",
            persistent_pam="zsmalloc",
            **config,  # type: ignore[arg-type]
        ),
        lambda: 0.0,
    )
    engine.connect("a")
    return engine


def pool_pam(engine: Engine, pool_id: int) -> str:
    (stats,) = [p for p in engine.statistics().pool_stats if p.pool_id == pool_id]
    return stats.pam


# --- choosing PAMs -----------------------------------------------------------------------


def test_pools_get_their_kinds_default_or_the_pam_they_name() -> None:
    engine = arena_engine()
    assert pool_pam(engine, engine.new_pool("a")) == "zbud"
    assert pool_pam(engine, engine.new_pool("a", persistent=True)) == "zsmalloc"
    xv = engine.new_pool("a", persistent=True, pam="xvmalloc")
    assert pool_pam(engine, xv) == "xvmalloc"
    assert pool_pam(engine, engine.new_pool("a", pam="xvmalloc")) == "xvmalloc"
    # One PAM instance per kind in use, shared by every pool using it.
    assert [p.name for p in engine.statistics().pam_stats] == ["zbud", "zsmalloc", "xvmalloc"]
    for i in range(20):
        assert engine.put("a", xv, 0, i, text_page(i)) is None
    assert [engine.get("a", xv, 0, i) for i in range(20)] == [text_page(i) for i in range(20)]
    engine.check_invariants()


def test_unknown_pams_and_mismatched_shared_pools_are_errors() -> None:
    engine = arena_engine()
    with pytest.raises(Unsupported):
        engine.new_pool("a", pam="slab")
    engine.authorize_shared(7, "a")
    engine.new_pool("a", shared_uuid=7, pam="zsmalloc")
    engine.connect("b")
    engine.authorize_shared(7, "b")
    with pytest.raises(BadArgument):
        engine.new_pool("b", shared_uuid=7, pam="zbud")
    assert engine.new_pool("b", shared_uuid=7) == 0  # no PAM named: joins as it is
    with pytest.raises(ValueError):
        EngineConfig(ephemeral_pam="slab")
    with pytest.raises(ValueError):
        Engine(EngineConfig(ephemeral_pam="zbud"), lambda: 0.0, ephemeral_pam=BytesPam(1 << 20))


def test_an_engine_without_an_arena_serves_only_its_own_pams() -> None:
    engine = Engine(EngineConfig(), lambda: 0.0)
    engine.connect("a")
    assert pool_pam(engine, engine.new_pool("a", pam="bytes")) == "bytes"
    with pytest.raises(Unsupported):
        engine.new_pool("a", pam="zsmalloc")


# --- same-filled pages and the metadata charge ------------------------------------------------


def test_same_filled_pages_take_no_frame_but_their_metadata_is_charged() -> None:
    engine = arena_engine()
    pool = engine.new_pool("a", persistent=True)
    before = engine.statistics()
    for i in range(1000):
        assert engine.put("a", pool, i, 0, bytes([i % 256]) * PAGE) is None
    stats = engine.statistics()
    assert sum(p.frames for p in stats.pam_stats) == 0
    assert stats.same_filled_pages == 1000 and stats.stored_bytes == 0
    assert stats.metadata_bytes > before.metadata_bytes + 1000 * 100  # 1000 inline objects
    assert engine.get("a", pool, 300, 0) == bytes([300 % 256]) * PAGE
    engine.check_invariants()


def test_a_flood_of_same_filled_pages_cannot_pass_the_limit() -> None:
    memory = 64 * FRAME_BYTES
    engine = arena_engine(memory, persistent_max=1.0, persistent_accept=1.0)
    persistent = engine.new_pool("a", persistent=True)
    refused = [engine.put("a", persistent, i, 0, bytes(PAGE)) for i in range(5000)]
    assert Refusal.NO_MEMORY in refused
    stored = refused.index(Refusal.NO_MEMORY)
    assert all(r is None for r in refused[:stored]) and 200 < stored < 2500
    stats = engine.statistics()
    assert stats.memory_used_bytes <= memory and stats.metadata_bytes > memory * 3 // 4
    # Ephemeral same-filled pages are evicted to make room: none is refused.
    engine.destroy_pool("a", persistent)
    ephemeral = engine.new_pool("a")
    assert all(engine.put("a", ephemeral, i, 0, bytes(PAGE)) is None for i in range(5000))
    stats = engine.statistics()
    assert stats.evictions_by_reason["lru"] > 0 and stats.memory_used_bytes <= memory
    engine.check_invariants()


def test_persistent_puts_evict_ephemeral_pages_and_stop_at_the_share() -> None:
    engine = arena_engine(256 * FRAME_BYTES, persistent_max=0.5, persistent_accept=0.4)
    ephemeral = engine.new_pool("a")
    persistent = engine.new_pool("a", persistent=True)
    for i in range(400):
        assert engine.put("a", ephemeral, 0, i, text_page(i)[:2000] + raw_page(i, 2096)) is None
    results = [
        engine.put("a", persistent, 1, i, text_page(i)[:2000] + raw_page(i, 2096))
        for i in range(400)
    ]
    stored = [i for i, r in enumerate(results) if r is None]
    assert Refusal.PERSISTENT_FULL in results and stored
    stats = engine.statistics()
    assert stats.evictions_by_reason["reclaim"] > 0  # zbud frames, one holder
    assert stats.persistent_bytes <= stats.persistent_max_bytes
    for i in stored:
        assert engine.get("a", persistent, 1, i) == text_page(i)[:2000] + raw_page(i, 2096)
    engine.check_invariants()


def test_two_holders_are_evicted_page_by_page_fairly() -> None:
    engine = arena_engine(64 * FRAME_BYTES)
    engine.connect("b")
    a, b = engine.new_pool("a"), engine.new_pool("b")
    for i in range(300):
        engine.put("a", a, 0, i, raw_page(i, PAGE // 2) + bytes(PAGE // 2))
        engine.put("b", b, 0, i, raw_page(i + 500, PAGE // 2) + bytes(PAGE // 2))
    stats = engine.statistics()
    assert stats.evictions_by_reason["reclaim"] == 0 and stats.evictions_by_reason["lru"] > 0
    by_name = {c.name: c for c in stats.client_stats}
    assert abs(by_name["a"].pages - by_name["b"].pages) <= 2
    engine.check_invariants()


def test_one_page_objects_are_evicted_by_id_and_their_slots_make_no_int() -> None:
    # Object ids as the wire delivers them (a new int per call), big enough
    # to be no cached small int: one page per object (inline in the index),
    # every third object of pool ``a`` promoted by a second and third page.
    # Pools ``a`` and ``a2`` of one client share a space and their (object,
    # index) pairs, ``a2``'s older, and every fifth page is same-filled:
    # eviction must find each one-page object's pool by its page's handle.
    engine = arena_engine(64 * FRAME_BYTES)
    engine.connect("b")
    a, a2 = engine.new_pool("a"), engine.new_pool("a")  # searched in this order
    pools = {"a2": a2, "a": a, "b": engine.new_pool("b")}
    oid = 1 << 150

    def page(name: str, i: int, j: int) -> bytes:
        if i % 5 == 4:
            return bytes([len(name) + i % 7]) * PAGE
        seed = ("a", "a2", "b").index(name) << 12 | 4 * i + j
        return raw_page(seed, PAGE // 2) + bytes(PAGE // 2)

    def layout(name: str) -> list[tuple[int, int]]:
        return [(i, j) for i in range(300) for j in range(3 if name == "a" and i % 3 == 0 else 1)]

    order = []  # client a's pages that hold bytes, oldest first
    for i in range(300):
        for name, pool in pools.items():
            for j in range(3 if name == "a" and i % 3 == 0 else 1):
                engine.put(name[0], pool, int(str(oid + i)), j, page(name, i, j))
                if name != "b" and i % 5 != 4:
                    order.append((name, i, j))
    assert engine.statistics().evictions_by_reason["lru"] > 0
    engine.check_invariants()
    held = []
    for name, pool in pools.items():
        for i, j in layout(name):
            got = engine.get(name[0], pool, oid + i, j, exclusive=False)
            assert got in (None, page(name, i, j))
            if got is not None and (name, i, j) in order:
                held.append((name, i, j))
    assert 0 < len(held) < len(order)
    assert sorted(held, key=order.index) == order[len(order) - len(held) :]  # the oldest went
    # A one-page object's reverse-map slot holds the index's own key int;
    # no other slot holds an int (a promoted object's first page's is relinked).
    keys = {}
    for name, pool in pools.items():
        objects = engine._clients[name[0]].pools[pool].index._objects
        keys.update({id(key): key for key, obj in objects.items() if type(obj) is int})
    slots = {id(obj) for space in engine._memory.spaces for obj in space.objs if type(obj) is int}
    assert keys and set(keys) == slots
    for i in range(300):
        engine.flush_object("a", pools["a"], oid + i)
    engine.check_invariants()


def test_a_one_page_objects_pool_is_found_by_its_handle_in_its_space() -> None:
    # Object 7's page 0 in two pools of one client: same-filled in ``a``
    # (a handle of the same-filled store), stored in ``a2`` (a zbud handle).
    engine = arena_engine()
    a, a2 = engine.new_pool("a"), engine.new_pool("a")
    engine.put("a", a, 7, 0, bytes(PAGE))
    engine.put("a", a2, 7, 0, text_page(1))
    client = engine._clients["a"]
    found = {}
    for space in engine._memory.spaces:
        for handle, obj in enumerate(space.objs):
            if obj is not None:
                found[space.id, handle] = page_pool(client, space, handle).pool_id
    assert found == {(0, 1): a, (1, 1): a2}  # the same handle number in two spaces


# --- big pages -----------------------------------------------------------------------------


@pytest.mark.parametrize("pam", ["zbud", "xvmalloc", "zsmalloc"])
@pytest.mark.parametrize("persistent", [False, True])
def test_pages_above_a_frame_are_stored_in_pieces(pam: str, persistent: bool) -> None:
    engine = arena_engine(4 << 20, codec="none", persistent_max=1.0, persistent_accept=1.0)
    pool = engine.new_pool("a", persistent=persistent, pam=pam, page_size=65536)
    pages = [raw_page(i, 65536) for i in range(6)] + [text_page(9, 65536), bytes(65536)]
    for i, data in enumerate(pages):
        assert engine.put("a", pool, 0, i, data) is None
    stats = engine.statistics()
    assert stats.raw_pages == 7 and stats.same_filled_pages == 1  # codec "none"
    assert stats.stored_bytes == 7 * (65536 + 16 * 8)  # 16 pieces and their descriptor
    engine.check_invariants()
    assert [engine.get("a", pool, 0, i, exclusive=False) for i in range(8)] == pages
    assert engine.flush_object("a", pool, 0) == 8
    assert engine.statistics().memory_used_bytes == engine.statistics().metadata_bytes
    engine.check_invariants()


def test_big_ephemeral_pages_are_evicted_whole() -> None:
    engine = arena_engine(48 * FRAME_BYTES, codec="none")
    pool = engine.new_pool("a", page_size=16384)
    for i in range(30):
        assert engine.put("a", pool, 0, i, raw_page(i, 16384)) is None
        engine.check_invariants()
    held = [i for i in range(30) if engine.get("a", pool, 0, i, exclusive=False) is not None]
    assert held == list(range(30 - len(held), 30)) and 3 <= len(held) < 12
    assert engine.statistics().evictions_by_reason["reclaim"] == 0  # a pinned zbud


# --- limits, maintenance --------------------------------------------------------------------


class HugeHandles(BytesPam):
    """A PAM whose handles pass what a 32-bit page token holds."""

    def store(self, data: bytes | bytearray | memoryview) -> int:
        handle = super().store(data)
        self._objects[handle + MAX_HANDLE] = self._objects.pop(handle)
        return handle + MAX_HANDLE


def test_a_handle_too_large_for_a_token_is_refused_and_freed() -> None:
    pam = HugeHandles(1 << 20)
    engine = Engine(EngineConfig(default_codec="none"), lambda: 0.0, ephemeral_pam=pam)
    engine.connect("a")
    pool = engine.new_pool("a", persistent=True)
    assert engine.put("a", pool, 0, 0, raw_page(1)) is Refusal.NO_MEMORY
    assert pam.statistics().objects == 0
    engine.check_invariants()


def test_maintain_compacts_zsmalloc_after_churn() -> None:
    engine = arena_engine(8 << 20, persistent_max=1.0, persistent_accept=1.0)
    pool = engine.new_pool("a", persistent=True)
    rng = random.Random(5)
    sizes = [rng.randrange(200, 3000) for _ in range(3000)]
    for i, size in enumerate(sizes):
        engine.put("a", pool, 0, i, raw_page(i, size) + bytes(PAGE - size))
    for i in range(0, 3000, 3):
        engine.flush_page("a", pool, 0, i)
        engine.flush_page("a", pool, 0, i + 1)
    frames = engine.statistics().pam_stats[1].frames
    assert engine.maintain() > 0
    assert engine.statistics().pam_stats[1].frames < frames * 0.8
    for i in range(2, 3000, 3):
        assert engine.get("a", pool, 0, i) == raw_page(i, sizes[i]) + bytes(PAGE - sizes[i])
    engine.check_invariants()


def test_maintain_trains_a_zstd_dictionary_and_old_pages_still_decode() -> None:
    engine = arena_engine(
        16 << 20,
        codec="zstd",
        dictionary_bytes=16 << 10,
        dictionary_min_pages=300,
        dictionary_sample_pages=300,
        persistent_max=1.0,
        persistent_accept=1.0,
    )
    pool = engine.new_pool("a", persistent=True)
    lzo_pool = engine.new_pool("a", persistent=True, codec="lzo")
    pages = [b"".join(text_page(i * 7 + j, 512) for j in range(8)) for i in range(600)]
    for i in range(300):
        engine.put("a", pool, 0, i, pages[i])
        engine.put("a", lzo_pool, 0, i, pages[i])
    metadata = engine.statistics().metadata_bytes
    engine.maintain()
    by_id = {p.pool_id: p for p in engine.statistics().pool_stats}
    assert by_id[pool].dictionary and not by_id[lzo_pool].dictionary
    assert engine.statistics().metadata_bytes >= metadata + (16 << 10)
    for i in range(300, 600):
        engine.put("a", pool, 0, i, pages[i])
    assert [engine.get("a", pool, 0, i) for i in range(600)] == pages
    engine.check_invariants()
    engine.destroy_pool("a", pool)
    engine.destroy_pool("a", lzo_pool)
    engine.check_invariants()  # the dictionary's charge went with its pool
