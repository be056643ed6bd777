"""zsmalloc: the class table, spans across frames, handles and compaction."""

from __future__ import annotations

import itertools
import random

import pytest

from tmemd.engine.pam import FRAME_BYTES, Arena, PamFull, ZsmallocPam, build_classes
from tmemd.engine.pam._zsclasses import HEADER_BYTES, MAX_SPAN_FRAMES_LIMIT


def _data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


# --- the class table ------------------------------------------------------


@pytest.mark.parametrize("max_span", [1, 4, 8, MAX_SPAN_FRAMES_LIMIT])
def test_class_table_is_consistent(max_span: int) -> None:
    table = build_classes(max_span)
    classes = table.classes
    assert [c.index for c in classes] == list(range(len(classes)))
    assert [c.size for c in classes] == sorted({c.size for c in classes})
    for c in classes:
        assert c.size % 16 == 0 and 1 <= c.span_frames <= max_span
        assert c.objs == c.span_frames * FRAME_BYTES // c.size
    for a, b in itertools.pairwise(classes):
        assert (a.span_frames, a.objs) != (b.span_frames, b.objs), "unmerged neighbours"
    assert [c.huge for c in classes] == [False] * (len(classes) - 1) + [True]
    prev = 0
    for n in range(FRAME_BYTES + 1):
        cls = classes[table.by_length[n]]
        assert cls.index >= prev
        prev = cls.index
        assert n + (0 if cls.huge else HEADER_BYTES) <= cls.size


def test_worked_examples_of_the_docstrings() -> None:
    four, eight = build_classes(4), build_classes(8)
    for table in (four, eight):
        c3008 = table.classes[table.by_length[3008 - HEADER_BYTES]]
        assert (c3008.size, c3008.span_frames, c3008.objs) == (3072, 3, 4)
    assert {eight.by_length[s - HEADER_BYTES] for s in range(2992, 3073, 16)} == {c3008.index}
    assert eight.by_length[2976 - HEADER_BYTES] != c3008.index
    merged = {four.by_length[s - HEADER_BYTES] for s in range(2352, 2449, 16)}
    assert len(merged) == 1
    c = four.classes[merged.pop()]
    assert (c.size, c.span_frames, c.objs) == (2448, 3, 5)
    c1499 = eight.classes[eight.by_length[1499]]
    assert (c1499.size, c1499.span_frames, c1499.objs) == (1504, 7, 19)


def test_bad_span_limit() -> None:
    with pytest.raises(ValueError):
        build_classes(0)
    with pytest.raises(ValueError):
        ZsmallocPam(Arena(FRAME_BYTES), max_span_frames=MAX_SPAN_FRAMES_LIMIT + 1)


# --- storage --------------------------------------------------------------


def test_objects_cross_frame_boundaries() -> None:
    arena = Arena(64 * FRAME_BYTES)
    pam = ZsmallocPam(arena)
    cls = pam.table.classes[pam.table.by_length[1499]]
    stored = {pam.store(_data(1499, i)): _data(1499, i) for i in range(cls.objs)}
    assert pam.frames_held == cls.span_frames  # one span, filled
    crossing = 0
    for handle, data in stored.items():
        off = pam._loc[handle] >> 13
        crossing += (off % FRAME_BYTES) + len(data) > FRAME_BYTES
        assert pam.load(handle) == data
    assert crossing > 0
    pam.check_invariants()


def test_frames_of_a_span_need_not_be_adjacent() -> None:
    arena = Arena(64 * FRAME_BYTES)
    pam = ZsmallocPam(arena)
    taken = [arena.alloc_frame() for _ in range(16)]
    for frame in taken[::2]:
        assert frame is not None
        arena.free_frame(frame)  # the free frames are now every other one
    rest = [pam.store(_data(1499, i)) for i in range(21)]
    frames = pam.span_frames(pam._frame_span[(pam._loc[rest[0]] >> 13) // FRAME_BYTES])
    assert any(b != a + 1 for a, b in itertools.pairwise(frames))
    for i, handle in enumerate(rest):
        assert pam.load(handle) == _data(1499, i)
    pam.check_invariants()


def test_handles_are_small_and_reused() -> None:
    pam = ZsmallocPam(Arena(16 * FRAME_BYTES))
    first = [pam.store(b"x" * 50) for _ in range(10)]
    assert sorted(first) == list(range(1, 11))
    pam.free(first[3])
    assert pam.store(b"y" * 3000) == first[3]
    pam.check_invariants()


def test_huge_objects_take_one_frame_without_header() -> None:
    arena = Arena(8 * FRAME_BYTES)
    pam = ZsmallocPam(arena)
    page = _data(FRAME_BYTES, 1)
    handle = pam.store(page)
    assert pam.frames_held == 1 and pam.load(handle) == page
    assert pam._loc[handle] >> 13 == (pam._loc[handle] >> 13) // FRAME_BYTES * FRAME_BYTES
    pam.free(handle)
    assert arena.frames_used == 0
    pam.check_invariants()


def test_empty_spans_are_freed_at_once() -> None:
    arena = Arena(64 * FRAME_BYTES)
    pam = ZsmallocPam(arena)
    handles = [pam.store(_data(700, i)) for i in range(30)]
    for handle in handles:
        pam.free(handle)
    assert pam.frames_held == 0 and arena.frames_used == 0
    pam.check_invariants()


# --- compaction -----------------------------------------------------------


def _sparse(pam: ZsmallocPam, count: int, keep_every: int) -> dict[int, bytes]:
    rng = random.Random(11)
    stored = {}
    for i in range(count):
        n = rng.choice([90, 700, 1499, 2500, rng.randrange(1, 3600)])
        stored[pam.store(_data(n, i))] = _data(n, i)
    for j, handle in enumerate(list(stored)):
        if j % keep_every:
            pam.free(handle)
            del stored[handle]
    return stored


def test_compaction_frees_frames_and_keeps_every_handle() -> None:
    arena = Arena(2048 * FRAME_BYTES)
    pam = ZsmallocPam(arena)
    stored = _sparse(pam, 3000, keep_every=5)
    before = pam.frames_held
    pam.check_invariants()
    freed = pam.compact()
    assert freed > before // 2
    assert pam.frames_held == before - freed
    pam.check_invariants()
    for handle, data in stored.items():
        assert pam.load(handle) == data
    for cls in range(len(pam.table.classes) - 1):
        assert pam._wasted_spans(cls) == 0
    assert pam.compact() == 0  # nothing left to gain


def test_compaction_budget_moves_a_bounded_number() -> None:
    pam = ZsmallocPam(Arena(2048 * FRAME_BYTES))
    stored = _sparse(pam, 2000, keep_every=4)
    total = 0
    while True:
        snapshot = {h: pam._loc[h] for h in stored}
        freed = pam.compact(max_moves=10)
        moved = sum(pam._loc[h] != loc for h, loc in snapshot.items())
        assert moved <= 10
        pam.check_invariants()
        total += freed
        if moved == 0:
            break
    assert total > 0
    for handle, data in stored.items():
        assert pam.load(handle) == data


def test_compaction_lets_a_full_arena_store_again() -> None:
    arena = Arena(64 * FRAME_BYTES)
    pam = ZsmallocPam(arena)
    handles = []
    with pytest.raises(PamFull):
        for i in range(10_000):
            handles.append(pam.store(_data(300, i)))
    for handle in handles[1::2]:
        pam.free(handle)
    assert arena.frames_free < 8
    assert pam.compact() >= 20
    big = pam.store(_data(3000, 1))
    assert pam.load(big) == _data(3000, 1)
    pam.check_invariants()


def test_check_invariants_catches_corruption() -> None:
    arena = Arena(16 * FRAME_BYTES)
    pam = ZsmallocPam(arena)
    a, b = pam.store(b"a" * 100), pam.store(b"b" * 100)
    pam._loc[a], pam._loc[b] = pam._loc[b], pam._loc[a]  # table and headers disagree
    with pytest.raises(AssertionError, match="zsmalloc"):
        pam.check_invariants()
