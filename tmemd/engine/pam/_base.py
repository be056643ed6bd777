"""What the three arena PAMs share: frame accounting and per-frame arrays.

Each PAM takes frames from one ``Arena`` (shared with other PAMs) and may be
capped at ``max_frames`` of it, so the engine can bound, say, the ephemeral
store's share.  ``_take_frames`` is the single place where a PAM grows, and
so the single place that raises ``PamFull``; ``_give_frame`` the single
place where it shrinks.

Per-frame metadata lives in ``array`` objects indexed by arena frame number,
never in per-object Python objects.  They grow on demand, a quarter at a
time, to cover the highest frame number a PAM has held (``_grow_to``), so
their cost follows the arena's peak use rather than its size: the arena
hands out frame numbers below its high-water mark first.

Metadata: with ``charge_metadata=True`` (the engine's choice) every growth
of a PAM's grow-only arrays (per frame, per span, per handle) is charged to
``arena.meta_bytes`` at its exact item size, so the arena bounds the PAM's
own bookkeeping too; the arrays never shrink, so neither does the charge.
Standalone PAMs (tests, benchmarks) charge nothing and get every frame.

Fragmentation is reported two ways: ``utilization()`` is bytes stored over
bytes held (1.0 means no waste at all), and ``fragmentation()`` is one minus
that.  Worked example: 1_000 objects of 1_500 bytes held in 400 frames give
utilization 1_500_000 / 1_638_400 = 0.916 and fragmentation 0.084.
"""

from __future__ import annotations

from array import array
from typing import Final

from ._arena import FRAME_BYTES, Arena
from ._pam import Pam, PamFull, PamStats

__all__ = ["NIL", "ArenaPam", "extend_to"]

#: The "no frame / no block" marker in u32 link arrays.
NIL: Final = 0xFFFFFFFF


def extend_to(arr: array[int], items: int, fill: int) -> None:
    """Extend ``arr`` with ``fill`` up to ``items`` items."""
    if len(arr) < items:
        arr.extend(array(arr.typecode, [fill]) * (items - len(arr)))


class ArenaPam(Pam):
    """Frame accounting common to the arena PAMs (subclasses do placement)."""

    NAME = "arena"
    #: Bytes of per-frame arrays per frame covered (``_grow_to``).
    FRAME_META_BYTES = 0

    def __init__(
        self, arena: Arena, max_frames: int | None = None, *, charge_metadata: bool = False
    ) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError("max_frames must be at least 1")
        self.arena = arena
        self.charge_metadata = charge_metadata
        #: Bytes of grow-only arrays charged to the arena so far.
        self.meta_charged = 0
        self.max_frames = arena.frames_reserved if max_frames is None else max_frames
        self.frames_held = 0
        self.objects = 0
        self.bytes_stored = 0
        #: Frames the per-frame arrays currently cover.
        self._covered = 0

    def _take_frames(self, count: int) -> list[int]:
        """``count`` frames for this PAM, or ``PamFull`` (all or nothing)."""
        if self.frames_held + count > self.max_frames:
            raise PamFull(f"{self.name}: frame cap {self.max_frames} reached")
        frames = self.arena.alloc_span(count)
        if frames is None:
            raise PamFull(f"{self.name}: arena has fewer than {count} free frames")
        self.frames_held += count
        top = max(frames) + 1
        if top > self._covered:
            # Growing by a quarter keeps growth O(1) amortised with at most
            # 25 % of the per-frame arrays unused; never past the arena.
            grown = self._covered + self._covered // 4
            covered = min(max(top, grown, 64), self.arena.frames_reserved)
            self._charge((covered - self._covered) * self.FRAME_META_BYTES)
            self._covered = covered
            self._grow_to(covered)
        return frames

    def _charge(self, nbytes: int) -> None:
        """Charge ``nbytes`` more of grow-only metadata (if this PAM charges at all)."""
        if self.charge_metadata:
            self.arena.meta_bytes += nbytes
            self.meta_charged += nbytes

    def _give_frame(self, frame: int) -> None:
        self.frames_held -= 1
        self.arena.free_frame(frame)

    def _grow_to(self, frames: int) -> None:
        """Make the per-frame arrays cover frame numbers below ``frames``."""

    # --- the Pam interface parts that are pure accounting ----------------

    def bytes_used(self) -> int:
        return self.frames_held * FRAME_BYTES

    def utilization(self) -> float:
        """Bytes stored / bytes of frames held (1.0 when nothing is held)."""
        held = self.frames_held * FRAME_BYTES
        return self.bytes_stored / held if held else 1.0

    def fragmentation(self) -> float:
        """The share of held frame bytes that stores nothing."""
        return 1.0 - self.utilization()

    def statistics(self) -> PamStats:
        return PamStats(
            name=self.name,
            objects=self.objects,
            bytes_stored=self.bytes_stored,
            bytes_used=self.frames_held * FRAME_BYTES,
            capacity=min(self.max_frames, self.arena.frames_total) * FRAME_BYTES,
            frames=self.frames_held,
        )

    def _check_frames_owned(self, frames: list[int]) -> None:
        """Shared part of ``check_invariants``: the frames we count are ours and in use."""
        assert len(frames) == len(set(frames)), f"{self.name}: a frame is held twice"
        assert len(frames) == self.frames_held, (
            f"{self.name}: {len(frames)} frames reachable, counter says {self.frames_held}"
        )
        assert self.frames_held <= self.max_frames, f"{self.name}: over its frame cap"
        for frame in frames:
            assert self.arena.is_used(frame), f"{self.name}: frame {frame} is free in the arena"
