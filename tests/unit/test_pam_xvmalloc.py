"""xvmalloc: block split and merge, good fit, whole-frame objects."""

from __future__ import annotations

import random

import pytest

from tmemd.engine.pam import FRAME_BYTES, Arena, XvmallocPam
from tmemd.engine.pam._xvmalloc import MAX_BLOCK_OBJECT_BYTES


def test_worked_example_of_the_docstring() -> None:
    arena = Arena(8 * FRAME_BYTES)
    pam = XvmallocPam(arena)
    handle = pam.store(b"q" * 1499)
    frame = handle // FRAME_BYTES
    assert handle == frame * FRAME_BYTES + 4  # body right after the first header
    # The rest of the frame is one free block of 2_588 bytes, header at 1_504.
    header = arena.words[(frame * FRAME_BYTES + 1504) >> 2]
    assert header & 0x8000 and header & 0xFFF == 2588
    pam.check_invariants()


def test_objects_share_frames_until_full() -> None:
    pam = XvmallocPam(Arena(8 * FRAME_BYTES))
    handles = [pam.store(b"x" * 1000) for _ in range(4)]  # 4 * (1000 + 4) = 4016 <= 4096
    assert len({h // FRAME_BYTES for h in handles}) == 1
    pam.store(b"y" * 100)  # 4016 + 104 > 4096
    assert pam.frames_held == 2
    pam.check_invariants()


def test_good_fit_prefers_the_smallest_hole() -> None:
    pam = XvmallocPam(Arena(8 * FRAME_BYTES))
    a = pam.store(b"a" * 2000)
    pam.store(b"b" * 100)
    c = pam.store(b"c" * 500)
    pam.store(b"d" * 100)
    pam.free(a)  # hole of 2_000 bytes
    pam.free(c)  # hole of 500 bytes
    again = pam.store(b"e" * 480)
    assert again == c  # the 500-byte hole, not the 2_000-byte one
    pam.check_invariants()


def test_free_merges_neighbours_and_returns_empty_frames() -> None:
    arena = Arena(8 * FRAME_BYTES)
    pam = XvmallocPam(arena)
    handles = [pam.store(bytes([i]) * 300) for i in range(12)]
    assert pam.frames_held == 1
    rng = random.Random(3)
    rng.shuffle(handles)
    for handle in handles[:-1]:
        pam.free(handle)
        pam.check_invariants()
    assert pam.frames_held == 1
    pam.free(handles[-1])
    assert pam.frames_held == 0 and arena.frames_used == 0
    pam.check_invariants()


def test_small_leftovers_stay_with_the_object_as_slack() -> None:
    pam = XvmallocPam(Arena(8 * FRAME_BYTES))
    first = pam.store(b"f" * 4084)  # leaves 8 bytes: no room for a header and 8-byte body
    assert pam.frames_held == 1
    assert pam.stored_size(first) == 4084
    assert (pam.arena.words[(first >> 2) - 1] >> 12) & 3 == 2  # two slack words
    second = pam.store(b"s" * 8)
    assert pam.frames_held == 2 and second // FRAME_BYTES != first // FRAME_BYTES
    pam.free(first)
    pam.check_invariants()
    assert pam.frames_held == 1


@pytest.mark.parametrize("n", [MAX_BLOCK_OBJECT_BYTES, MAX_BLOCK_OBJECT_BYTES + 1, FRAME_BYTES])
def test_largest_objects(n: int) -> None:
    arena = Arena(8 * FRAME_BYTES)
    pam = XvmallocPam(arena)
    data = random.Random(n).randbytes(n)
    handle = pam.store(data)
    assert pam.load(handle) == data
    assert pam.frames_held == 1
    assert (handle & 1) == (n > MAX_BLOCK_OBJECT_BYTES)  # odd handles own a frame
    pam.check_invariants()
    pam.free(handle)
    assert arena.frames_used == 0


def test_check_invariants_catches_corruption() -> None:
    arena = Arena(8 * FRAME_BYTES)
    pam = XvmallocPam(arena)
    handle = pam.store(b"x" * 100)
    arena.words[(handle >> 2) - 1] += 4  # the header now claims 4 more bytes
    with pytest.raises(AssertionError, match="xvmalloc"):
        pam.check_invariants()


def test_refuses_an_arena_its_links_cannot_address() -> None:
    # The whole mapping counts: ``resize`` may raise the limit up to it.
    huge = Arena(1 << 16, reserve_bytes=1 << 35)  # address space only, never touched
    with pytest.raises(ValueError):
        XvmallocPam(huge)
