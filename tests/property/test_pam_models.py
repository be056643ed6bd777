"""Each arena PAM beside a dict model, under random store/load/free (hypothesis).

One state machine per PAM, all built on ``PamMachine``: stores of sizes
biased to the edges (tiny, class boundaries, header limits, whole pages),
loads and frees of random live handles, plus zbud's ``reclaim`` and
zsmalloc's ``compact``.  The model maps handle -> bytes.  After every step
the PAM's and the arena's full invariant walks run and the PAM's counters
must match the model.  ``PamFull`` is accepted only when the arena truly
cannot supply what the store needed.  Arenas are small (64 frames) so
that full arenas, reuse of freed frames and bulk release all happen.
"""

from __future__ import annotations

import random

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tmemd.engine.pam import FRAME_BYTES, Arena, PamFull, XvmallocPam, ZbudPam, ZsmallocPam
from tmemd.engine.pam._base import ArenaPam

SETTINGS = settings(max_examples=100, stateful_step_count=50, deadline=None)

sizes = st.one_of(
    st.integers(0, 64),
    st.integers(0, FRAME_BYTES),
    st.integers(FRAME_BYTES - 100, FRAME_BYTES),
    st.sampled_from([1, 12, 13, 300, 700, 1499, 2500, 3000, 4076, 4077, 4092, 4093]),
)
picks = st.integers(0, 1 << 16)


def _data(n: int, seed: int) -> bytes:
    return random.Random(seed << 13 | n).randbytes(n)


class PamMachine(RuleBasedStateMachine):
    """Random operations on one PAM, checked against a dict."""

    FRAMES = 64

    def __init__(self) -> None:
        super().__init__()
        self.arena = Arena(self.FRAMES * FRAME_BYTES, keep_warm=2, release_batch=4)
        self.pam = self.make(self.arena)
        self.model: dict[int, bytes] = {}

    def make(self, arena: Arena) -> ArenaPam:
        raise NotImplementedError

    def frames_needed(self, n: int) -> int:
        """Frames a store of ``n`` bytes may need when it cannot reuse a held one."""
        return 1

    def _pick(self, pick: int) -> int | None:
        if not self.model:
            return None
        handles = sorted(self.model)
        return handles[pick % len(handles)]

    def _store(self, n: int, seed: int) -> int | None:
        """Store one object; its handle, or None when the PAM is full."""
        data = _data(n, seed)
        try:
            handle = self.pam.store(data)
        except PamFull:
            assert self.arena.frames_free < self.frames_needed(n), "PamFull with room left"
            event("store refused: arena full")
            return None
        assert handle != 0, "handle 0 is never valid"
        assert handle not in self.model, "a live handle was handed out again"
        self.model[handle] = data
        self.stored(handle)
        return handle

    def stored(self, handle: int) -> None:
        """Hook: ``handle`` was just stored."""

    @rule(n=sizes, seed=st.integers(0, 255))
    def store(self, n: int, seed: int) -> None:
        self._store(n, seed)

    @rule(n=sizes, count=st.integers(2, 60), seed=st.integers(0, 255))
    def store_many(self, n: int, count: int, seed: int) -> None:
        """Same-sized objects: fill frames and classes fast."""
        for i in range(count):
            if self._store(n, seed + i) is None:
                break

    @rule(pick=picks)
    def load(self, pick: int) -> None:
        handle = self._pick(pick)
        if handle is not None:
            assert self.pam.load(handle) == self.model[handle]
            assert self.pam.stored_size(handle) == len(self.model[handle])

    @rule(pick=picks)
    def free(self, pick: int) -> None:
        handle = self._pick(pick)
        if handle is not None:
            self.pam.free(handle)
            del self.model[handle]

    @rule(keep_one_in=st.integers(2, 5), phase=st.integers(0, 4))
    def free_many(self, keep_one_in: int, phase: int) -> None:
        """Free all but every ``keep_one_in``-th live object: sparse frames and spans."""
        for i, handle in enumerate(sorted(self.model)):
            if (i + phase) % keep_one_in:
                self.pam.free(handle)
                del self.model[handle]

    @invariant()
    def consistent(self) -> None:
        self.pam.check_invariants()
        self.arena.check_invariants()
        stats = self.pam.statistics()
        assert stats.objects == len(self.model)
        assert stats.bytes_stored == sum(map(len, self.model.values()))
        assert stats.frames == self.arena.frames_used


class ZbudMachine(PamMachine):
    """zbud, with a model of frame recency: a store into a frame makes it newest."""

    def __init__(self) -> None:
        self.last_store: dict[int, int] = {}  # frame -> time of its latest store
        self.clock = 0
        super().__init__()

    def make(self, arena: Arena) -> ArenaPam:
        return ZbudPam(arena)

    def stored(self, handle: int) -> None:
        self.clock += 1
        self.last_store[(handle - 1) >> 1] = self.clock

    @rule()
    def reclaim(self) -> None:
        live = {(h - 1) >> 1 for h in self.model}
        oldest = min(live, key=self.last_store.__getitem__, default=None)
        expected = {h for h in self.model if (h - 1) >> 1 == oldest}
        handles = self.pam.reclaim()
        assert handles is not None
        assert set(handles) == expected and len(handles) == len(expected)
        assert (not handles) == (not self.model)
        for handle in handles:
            del self.model[handle]
        event(f"reclaim freed {len(handles)} objects")


class XvmallocMachine(PamMachine):
    def make(self, arena: Arena) -> ArenaPam:
        return XvmallocPam(arena)


class ZsmallocMachine(PamMachine):
    def make(self, arena: Arena) -> ArenaPam:
        return ZsmallocPam(arena, max_span_frames=4)

    def frames_needed(self, n: int) -> int:
        assert isinstance(self.pam, ZsmallocPam)
        return self.pam.table.classes[self.pam.table.by_length[n]].span_frames

    @rule(budget=st.one_of(st.none(), st.integers(1, 8)))
    def compact(self, budget: int | None) -> None:
        pam = self.pam
        assert isinstance(pam, ZsmallocPam)
        before = pam.frames_held
        freed = pam.compact(budget)
        event("compaction freed frames" if freed else "compaction freed nothing")
        assert pam.frames_held == before - freed
        if budget is None:  # the guarantee: no class wastes a whole span any more
            assert all(pam._wasted_spans(c) == 0 for c in range(len(pam.table.classes) - 1))
        for handle, data in self.model.items():
            assert pam.load(handle) == data

    @rule(n=sizes, count=st.integers(10, 60), keep_one_in=st.integers(2, 4))
    def fragment(self, n: int, count: int, keep_one_in: int) -> None:
        """Fill spans of one class, then free most of it: compaction's raw material."""
        stored = []
        for i in range(count):
            handle = self._store(n, i)
            if handle is None:
                break
            stored.append(handle)
        for i, handle in enumerate(stored):
            if i % keep_one_in and handle in self.model:
                self.pam.free(handle)
                del self.model[handle]


TestZbud = ZbudMachine.TestCase
TestZbud.settings = SETTINGS
TestXvmalloc = XvmallocMachine.TestCase
TestXvmalloc.settings = SETTINGS
TestZsmalloc = ZsmallocMachine.TestCase
TestZsmalloc.settings = SETTINGS
