"""zbud: buddy placement, unbuddied fit, and whole-frame LRU reclaim."""

from __future__ import annotations

import pytest

from tmemd.engine.pam import FRAME_BYTES, Arena, PamFull, ZbudPam
from tmemd.engine.pam._zbud import CHUNK_BYTES, NCHUNKS


def _frame_of(handle: int) -> int:
    return (handle - 1) >> 1


def test_geometry() -> None:
    assert CHUNK_BYTES * NCHUNKS == FRAME_BYTES


def test_buddies_are_left_and_right_aligned() -> None:
    arena = Arena(8 * FRAME_BYTES)
    pam = ZbudPam(arena)
    first = pam.store(b"A" * 1500)  # 24 chunks: the frame goes on unbuddied[40]
    last = pam.store(b"B" * 2400)  # 38 chunks <= 40: same frame, right-aligned
    assert _frame_of(first) == _frame_of(last)
    base = _frame_of(first) * FRAME_BYTES
    assert arena.view[base : base + 1500] == b"A" * 1500
    start = base + FRAME_BYTES - 38 * CHUNK_BYTES  # the docstring's worked example: 1_664
    assert start - base == 1664
    assert arena.view[start : start + 2400] == b"B" * 2400
    assert pam.frames_held == 1
    pam.check_invariants()


def test_too_big_for_the_free_buddy_takes_a_new_frame() -> None:
    pam = ZbudPam(Arena(8 * FRAME_BYTES))
    a = pam.store(b"A" * 2100)  # 33 chunks, 31 left
    b = pam.store(b"B" * 2000)  # 32 chunks > 31
    assert _frame_of(a) != _frame_of(b)
    c = pam.store(b"C" * 1984)  # 31 chunks: fits beside a
    assert _frame_of(c) in (_frame_of(a), _frame_of(b))
    assert pam.frames_held == 2
    pam.check_invariants()


def test_density_never_exceeds_two_nor_drops_below_one() -> None:
    pam = ZbudPam(Arena(64 * FRAME_BYTES))
    for _ in range(40):
        pam.store(b"x" * 10)
    assert pam.frames_held == 20
    for _ in range(10):
        pam.store(b"y" * FRAME_BYTES)
    assert pam.frames_held == 30
    pam.check_invariants()


def test_freeing_one_buddy_keeps_the_frame_freeing_both_returns_it() -> None:
    arena = Arena(8 * FRAME_BYTES)
    pam = ZbudPam(arena)
    a, b = pam.store(b"a" * 1000), pam.store(b"b" * 1000)
    pam.free(a)
    assert arena.frames_used == 1 and pam.load(b) == b"b" * 1000
    c = pam.store(b"c" * 3000)  # reuses the hole a left
    assert _frame_of(c) == _frame_of(b)
    pam.free(b)
    pam.free(c)
    assert arena.frames_used == 0
    pam.check_invariants()


def test_reclaim_frees_exactly_the_lru_frame() -> None:
    arena = Arena(16 * FRAME_BYTES)
    pam = ZbudPam(arena)
    old1, old2 = pam.store(b"1" * 2000), pam.store(b"2" * 2000)
    mid = pam.store(b"3" * 3000)
    new = pam.store(b"4" * 3000)
    assert _frame_of(old1) == _frame_of(old2)
    assert len({_frame_of(old1), _frame_of(mid), _frame_of(new)}) == 3
    assert sorted(pam.reclaim()) == sorted([old1, old2])
    assert pam.frames_held == 2 and pam.objects == 2
    for gone in (old1, old2):
        with pytest.raises(KeyError):
            pam.load(gone)
    assert pam.reclaim() == [mid]
    assert pam.reclaim() == [new]
    assert pam.reclaim() == []
    assert arena.frames_used == 0
    pam.check_invariants()


def test_store_into_a_frame_makes_it_most_recent() -> None:
    pam = ZbudPam(Arena(16 * FRAME_BYTES))
    a = pam.store(b"a" * 3000)
    b = pam.store(b"b" * 1000)  # 16 chunks <= the 17 that a leaves
    assert _frame_of(a) == _frame_of(b)
    c = pam.store(b"c" * 3000)
    pam.free(b)
    pam.store(b"d" * 500)  # lands in a's frame again and moves it to the LRU head
    assert pam.reclaim() == [c]
    pam.check_invariants()


def test_reclaim_makes_room_when_full() -> None:
    pam = ZbudPam(Arena(4 * FRAME_BYTES))
    handles = [pam.store(bytes([i]) * 3000) for i in range(4)]
    with pytest.raises(PamFull):
        pam.store(b"z" * 3000)
    assert pam.reclaim() == [handles[0]]
    pam.store(b"z" * 3000)
    pam.check_invariants()


def test_check_invariants_catches_corruption() -> None:
    pam = ZbudPam(Arena(8 * FRAME_BYTES))
    handle = pam.store(b"x" * 100)
    pam._lens[handle - 1] = 0  # the buddy vanishes, the frame stays listed
    with pytest.raises(AssertionError, match="zbud"):
        pam.check_invariants()
