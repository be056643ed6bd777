"""What every arena PAM promises: the ``Pam`` contract, run against each one."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

import pytest

from tmemd.engine.pam import FRAME_BYTES, Arena, Pam, PamFull, XvmallocPam, ZbudPam, ZsmallocPam
from tmemd.engine.pam._base import ArenaPam

Factory = Callable[..., ArenaPam]
FACTORIES: dict[str, Factory] = {
    "zbud": ZbudPam,
    "xvmalloc": XvmallocPam,
    "zsmalloc": ZsmallocPam,
    "zsmalloc-4": lambda arena, max_frames=None: ZsmallocPam(arena, max_frames, max_span_frames=4),
}


@pytest.fixture(params=sorted(FACTORIES))
def make(request: pytest.FixtureRequest) -> Factory:
    return FACTORIES[request.param]


def _data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def test_is_a_pam(make: Factory) -> None:
    assert isinstance(make(Arena(16 * FRAME_BYTES)), Pam)


def test_round_trip_at_every_size(make: Factory) -> None:
    arena = Arena(8192 * FRAME_BYTES)
    pam = make(arena)
    stored = {}
    for n in range(FRAME_BYTES + 1):
        data = _data(n, n)
        handle = pam.store(data)
        assert handle != 0 and handle not in stored
        stored[handle] = data
    pam.check_invariants()
    for handle, data in stored.items():
        assert pam.load(handle) == data
        assert pam.stored_size(handle) == len(data)
    stats = pam.statistics()
    assert stats.objects == FRAME_BYTES + 1
    assert stats.bytes_stored == sum(map(len, stored.values()))
    assert stats.frames == pam.frames_held == arena.frames_used
    assert stats.bytes_used == pam.bytes_used() == stats.frames * FRAME_BYTES
    assert 0.0 < pam.utilization() <= 1.0
    assert pam.fragmentation() == pytest.approx(1.0 - pam.utilization())
    for handle in stored:
        pam.free(handle)
    pam.check_invariants()
    assert pam.frames_held == 0 and arena.frames_used == 0
    assert pam.statistics().objects == 0 and pam.statistics().bytes_stored == 0


def test_accepts_bytes_like(make: Factory) -> None:
    pam = make(Arena(16 * FRAME_BYTES))
    source = bytearray(_data(3000, 1))
    for view in (source, memoryview(source), memoryview(bytes(source))[100:2100]):
        handle = pam.store(view)
        assert pam.load(handle) == bytes(view)
    pam.check_invariants()


def test_too_big_is_a_caller_error(make: Factory) -> None:
    pam = make(Arena(16 * FRAME_BYTES))
    with pytest.raises(ValueError):
        pam.store(bytes(FRAME_BYTES + 1))


def test_freed_and_unknown_handles_raise_keyerror(make: Factory) -> None:
    pam = make(Arena(16 * FRAME_BYTES))
    handle = pam.store(b"x" * 100)
    keep = pam.store(b"y" * 100)
    pam.free(handle)
    for bad in (handle, 0, -4, 1 << 40):
        with pytest.raises(KeyError):
            pam.load(bad)
        with pytest.raises(KeyError):
            pam.free(bad)
    assert pam.load(keep) == b"y" * 100
    pam.check_invariants()


def test_full_arena_raises_pamfull_and_recovers(make: Factory) -> None:
    arena = Arena(32 * FRAME_BYTES)
    pam = make(arena)
    handles = []
    with pytest.raises(PamFull):
        for i in range(10_000):
            handles.append(pam.store(_data(1000 + i % 2000, i)))
    assert arena.frames_free < 8  # PamFull only once the arena is (nearly) exhausted
    pam.check_invariants()
    for handle in handles[::2]:
        pam.free(handle)
    if isinstance(pam, ZsmallocPam):
        # Every span may still hold an object: only compaction frees frames.
        assert pam.compact() > 0
        pam.check_invariants()
    handle = pam.store(_data(1500, 99))
    assert pam.load(handle) == _data(1500, 99)
    pam.check_invariants()


def test_frame_cap_bounds_one_pam(make: Factory) -> None:
    arena = Arena(64 * FRAME_BYTES)
    pam = make(arena, max_frames=8)
    with pytest.raises(PamFull):
        for i in range(1000):
            pam.store(_data(3000, i))
    assert pam.frames_held <= 8
    assert pam.statistics().capacity == 8 * FRAME_BYTES
    pam.check_invariants()


def test_two_pams_share_one_arena(make: Factory) -> None:
    arena = Arena(64 * FRAME_BYTES)
    first, second = make(arena), ZbudPam(arena)
    a = [first.store(_data(2500, i)) for i in range(20)]
    b = [second.store(_data(2500, 100 + i)) for i in range(20)]
    assert arena.frames_used == first.frames_held + second.frames_held
    with pytest.raises(PamFull):
        for i in range(1000):
            first.store(_data(2500, 1000 + i))
    with pytest.raises(PamFull):
        for i in range(1000):
            b.append(second.store(_data(2500, 120 + i)))
    assert arena.frames_free == 0  # the arena, not either PAM's bookkeeping, is the limit
    assert arena.frames_used == first.frames_held + second.frames_held
    for i, handle in enumerate(a):
        assert first.load(handle) == _data(2500, i)
    for i, handle in enumerate(b):
        assert second.load(handle) == _data(2500, 100 + i)
    first.check_invariants()
    second.check_invariants()
    arena.check_invariants()


def test_random_churn_against_a_dict(make: Factory) -> None:
    rng = random.Random(5)
    arena = Arena(256 * FRAME_BYTES, keep_warm=4, release_batch=4)
    pam = make(arena)
    model: dict[int, bytes] = {}
    for step in range(6000):
        if model and rng.random() < 0.45:
            handle = rng.choice(list(model))
            assert pam.load(handle) == model.pop(handle)
            pam.free(handle)
        else:
            n = rng.choice([rng.randrange(1, 128), rng.randrange(1, 4097), 4096])
            data = _data(n, step)
            with contextlib.suppress(PamFull):
                model[pam.store(data)] = data
        if step % 1000 == 999:
            pam.check_invariants()
            arena.check_invariants()
    for handle, data in model.items():
        assert pam.load(handle) == data
    assert arena.madvise_calls > 0


def test_reclaim_contract(make: Factory) -> None:
    pam = make(Arena(16 * FRAME_BYTES))
    handles = {pam.store(_data(100, i)) for i in range(4)}
    got = pam.reclaim()
    if isinstance(pam, ZbudPam):
        assert got and set(got) <= handles
        for handle in got:
            with pytest.raises(KeyError):
                pam.load(handle)
    else:
        assert got is None  # no unit larger than an object: the engine frees page by page
    pam.check_invariants()
