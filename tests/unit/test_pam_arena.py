"""The arena: frame allocation, bulk release with madvise, and the RSS it implies."""

from __future__ import annotations

import pytest

from tmemd.engine.pam import FRAME_BYTES, Arena


def _touch(arena: Arena, frame: int, value: int = 0xA5) -> None:
    arena.view[frame * FRAME_BYTES : (frame + 1) * FRAME_BYTES] = bytes([value]) * FRAME_BYTES


def test_size_rounds_down_to_frames_and_rejects_nothing() -> None:
    assert Arena(3 * FRAME_BYTES + 100).frames_total == 3
    with pytest.raises(ValueError):
        Arena(FRAME_BYTES - 1)


def test_alloc_until_full_then_none() -> None:
    arena = Arena(8 * FRAME_BYTES)
    frames = [arena.alloc_frame() for _ in range(8)]
    assert sorted(f for f in frames if f is not None) == list(range(8))
    assert arena.alloc_frame() is None
    assert arena.frames_used == 8 and arena.frames_free == 0
    arena.check_invariants()


def test_alloc_span_is_all_or_nothing() -> None:
    arena = Arena(4 * FRAME_BYTES)
    assert arena.alloc_span(3) is not None
    assert arena.alloc_span(2) is None
    assert arena.frames_used == 3
    arena.check_invariants()


def test_double_free_is_refused() -> None:
    arena = Arena(4 * FRAME_BYTES)
    frame = arena.alloc_frame()
    assert frame is not None
    arena.free_frame(frame)
    with pytest.raises(ValueError):
        arena.free_frame(frame)


def test_freed_frames_are_reused_warm_first() -> None:
    arena = Arena(16 * FRAME_BYTES)
    a, b = arena.alloc_frame(), arena.alloc_frame()
    assert a is not None and b is not None
    arena.free_frame(a)
    assert arena.alloc_frame() == a  # warm before the untouched high-water mark
    assert arena.madvise_calls == 0


def test_bulk_release_madvises_runs_and_zeroes_frames() -> None:
    arena = Arena(64 * FRAME_BYTES, keep_warm=2, release_batch=8)
    frames = [arena.alloc_frame() for _ in range(20)]
    for frame in frames:
        assert frame is not None
        _touch(arena, frame)
    for frame in frames[:10]:
        assert frame is not None
        arena.free_frame(frame)
    assert arena.madvise_calls == 0  # 10 warm frames are within keep_warm + release_batch
    arena.free_frame(10)
    # 11 warm > 2 + 8: the 8 oldest (frames 0..7, one run) went back in one call.
    assert arena.madvise_calls == 1
    assert arena.frames_released == 8
    assert arena.frames_warm == 3
    for frame in range(8):
        page = arena.view[frame * FRAME_BYTES : (frame + 1) * FRAME_BYTES]
        assert page == bytes(FRAME_BYTES), f"frame {frame} was not given back"
    assert arena.view[8 * FRAME_BYTES] == 0xA5  # still warm, contents untouched
    arena.check_invariants()


def test_release_coalesces_into_one_call_per_run() -> None:
    arena = Arena(64 * FRAME_BYTES, keep_warm=0, release_batch=64)
    frames = [arena.alloc_frame() for _ in range(12)]
    for frame in frames:
        assert frame is not None
        _touch(arena, frame)
    for frame in (0, 1, 2, 5, 6, 9):
        arena.free_frame(frame)
    assert arena.trim() == 6
    assert arena.madvise_calls == 3  # runs 0-2, 5-6, 9
    assert arena.frames_warm == 0
    # Released frames come back before the untouched part of the arena.
    again = {arena.alloc_frame() for _ in range(6)}
    assert again == {0, 1, 2, 5, 6, 9}
    arena.check_invariants()


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * FRAME_BYTES


def test_rss_follows_use() -> None:
    frames = 16_384  # 64 MiB, far above allocator noise
    arena = Arena(frames * FRAME_BYTES)
    before = _rss()
    got = [arena.alloc_frame() for _ in range(frames)]
    for frame in got:
        assert frame is not None
        arena.view[frame * FRAME_BYTES] = 1
    touched = _rss()
    assert touched - before > frames * FRAME_BYTES * 3 // 4
    for frame in got:
        assert frame is not None
        arena.free_frame(frame)
    assert arena.frames_warm <= 512  # the documented bound: keep_warm + release_batch
    after = _rss()
    assert touched - after > frames * FRAME_BYTES * 3 // 4
    arena.close()


def test_lazily_touched() -> None:
    before = _rss()
    arena = Arena(256 << 20)
    assert _rss() - before < 8 << 20
    arena.close()


def test_check_invariants_catches_corruption() -> None:
    arena = Arena(8 * FRAME_BYTES)
    frame = arena.alloc_frame()
    assert frame is not None
    arena.frames_used += 1
    with pytest.raises(AssertionError, match="counter"):
        arena.check_invariants()


def test_worked_example_of_the_docstring() -> None:
    arena = Arena(4000 * FRAME_BYTES)
    frames = [arena.alloc_frame() for _ in range(4000)]
    for frame in frames:
        assert frame is not None
        arena.free_frame(frame)
    assert arena.frames_released == 14 * 256 == 3584
    assert arena.frames_warm == 416
    assert arena.madvise_calls == 14  # frames were freed in order: one run per round
    arena.check_invariants()


def test_resize_moves_the_limit_within_the_mapping() -> None:
    arena = Arena(64 * FRAME_BYTES, reserve_bytes=256 * FRAME_BYTES)
    assert (arena.frames_total, arena.frames_reserved) == (64, 256)
    frames = [arena.alloc_frame() for _ in range(64)]
    assert arena.alloc_frame() is None
    arena.resize(200 * FRAME_BYTES)
    more = [arena.alloc_frame() for _ in range(136)]
    assert None not in more and arena.alloc_frame() is None
    arena.resize(100 * FRAME_BYTES)  # counted, not placed: used frames stay put
    assert arena.frames_used == 200 and arena.frames_free < 0
    for frame in [*frames, *more][:150]:
        assert frame is not None
        arena.free_frame(frame)
    assert arena.frames_free == 50 and arena.alloc_frame() is not None
    arena.check_invariants()
    with pytest.raises(ValueError, match="mapping"):
        arena.resize(257 * FRAME_BYTES)
    arena.close()
