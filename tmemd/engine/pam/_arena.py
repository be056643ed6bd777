"""The arena: one fixed mapping of 4 KiB frames, the daemon's memory limit.

What: ``Arena(size_bytes)`` maps ``size_bytes`` (rounded down to whole
frames) of anonymous private memory once, at start-up, and hands out frame
numbers.  Every PAM keeps its compressed pages inside frames it got here, so
the arena *is* the memory limit: when it has no free frame, stores fail with
``PamFull`` whatever the PAMs' own bookkeeping says.

Why one mapping: a cap that only counts bytes (memcached's, Redis's) does
not bound the process, because the allocator underneath keeps what it once
had.  A fixed mapping cannot grow, and the kernel backs only the frames we
touch, so the resident size shows what is really in use.

How: frames are in one of three states, one byte each in ``_state``:

* *clean*: never touched since mapping, or given back to the kernel with
  ``madvise(MADV_DONTNEED)``.  Frames at and above ``_hwm`` (the high-water
  mark) were never handed out; clean frames below it wait on ``_clean``.
* *used*: held by a PAM.
* *warm*: freed by a PAM but still resident, on the ``_warm`` stack.

``alloc_frame`` prefers warm frames (no page fault: writing into freshly
faulted memory is up to 10x slower, docs/design.md §6), then clean ones, then the
high-water mark.  ``free_frame`` pushes on ``_warm``; when more than
``keep_warm + release_batch`` frames are warm, the oldest ``release_batch``
are sorted, cut into runs of consecutive frames and each run is given back
with a single ``madvise``: the kernel frees the memory, and the next touch
faults in a zero page.  One ``madvise`` per freed frame would put a system
call on the hot path of every free (see ``bench/pam_density.py``).

The guarantee: resident arena memory <= (``frames_used`` + warm frames) *
4 KiB <= (``frames_used`` + ``keep_warm`` + ``release_batch``) * 4 KiB, i.e.
use plus 2 MiB with the defaults; ``trim()`` drops the warm frames too.

Granularity: one frame, 4 KiB.  Worked example: ``Arena(1 << 30)`` has
262_144 frames; its own metadata is one state byte per frame plus 4 bytes
per warm or released frame, at most 1.25 MiB (0.12 %).  Freeing 4_000
frames one by one releases 256 of them each time the warm count passes 512:
14 rounds, 3_584 frames given back, 416 left warm; each round costs one
``madvise`` per run of consecutive frame numbers in it.

Metadata ledger: what the daemon keeps outside the arena for its pages
(the engine's index and LRU arrays, the PAMs' per-frame and per-handle
arrays) is charged to ``meta_bytes``, and frames are handed out only while
``frames_used * 4096 + meta_bytes`` stays within the arena: the arena is
the whole memory limit, not just the part that holds page bytes.  The
charged frames are never touched, so they cost no RSS; the metadata does.
Worked example: a 64 MiB arena (16_384 frames) with 2 MiB of metadata
charged hands out at most 16_384 - 512 = 15_872 frames.  ``meta_bytes`` may
briefly pass what is free (an array grew during a store): no frame is
handed out until evictions or frees bring it back under the limit.

Resizing: ``reserve_bytes`` maps more address space than the limit (with
MAP_NORESERVE it costs no memory until touched), and ``resize`` moves the
limit within it: ``frames_total`` is a *count* of frames that may be used
or charged, not a bound on frame numbers, so a lower limit needs no frame
to move.  The state bytes cover the highest limit ever set.

Limits: frame numbers are u32 in every PAM's arrays; the in-band free-list
links of xvmalloc and zsmalloc address 4-byte words and 16-byte slots, so
those two PAMs refuse arenas above 16 GiB and 32 GiB respectively.
"""

from __future__ import annotations

import mmap
import sys
from array import array
from typing import Final

__all__ = [
    "FRAME_BYTES",
    "FRAME_SHIFT",
    "KEEP_WARM_FRAMES",
    "RELEASE_BATCH_FRAMES",
    "Arena",
]

#: log2 of the frame size.  4 KiB is the x86-64 base page, the unit the
#: kernel backs and the size of a tmem page.
FRAME_SHIFT: Final = 12
#: Bytes per frame.
FRAME_BYTES: Final = 1 << FRAME_SHIFT
#: Free frames kept resident for reuse (1 MiB): enough to absorb the churn
#: of a burst of puts and flushes without faulting, small next to any arena.
KEEP_WARM_FRAMES: Final = 256
#: Frames given back per ``madvise`` round (1 MiB): amortises the system
#: call over many frees while keeping RSS within 2 MiB of use.
RELEASE_BATCH_FRAMES: Final = 256
#: The largest frame count: frame numbers live in u32 arrays with one
#: value kept as the "none" marker.
MAX_FRAMES: Final = (1 << 32) - 2

#: MAP_NORESERVE: Python's ``mmap`` names it from 3.13 only; this is its value
#: in Linux's generic ABI (x86-64, arm64).
_LINUX_MAP_NORESERVE: Final = 0x4000
#: The mapping: private and anonymous; NORESERVE because frames beyond the
#: limit (room for ``resize``) are address space only until handed out, and
#: must not count against the kernel's overcommit limit.
_MAP_FLAGS: Final = (
    mmap.MAP_PRIVATE
    | mmap.MAP_ANONYMOUS
    | getattr(mmap, "MAP_NORESERVE", _LINUX_MAP_NORESERVE if sys.platform == "linux" else 0)
)

_CLEAN: Final = 0
_USED: Final = 1
_WARM: Final = 2


class Arena:
    """A fixed mapping of ``size_bytes // 4096`` frames shared by PAMs."""

    def __init__(
        self,
        size_bytes: int,
        *,
        reserve_bytes: int = 0,
        keep_warm: int = KEEP_WARM_FRAMES,
        release_batch: int = RELEASE_BATCH_FRAMES,
    ) -> None:
        frames = size_bytes >> FRAME_SHIFT
        reserved = max(frames, reserve_bytes >> FRAME_SHIFT)
        if not 1 <= frames <= reserved <= MAX_FRAMES:
            raise ValueError(f"arena of {size_bytes} bytes: need 1..{MAX_FRAMES} frames")
        if keep_warm < 0 or release_batch < 1:
            raise ValueError("keep_warm must be >= 0 and release_batch >= 1")
        self.frames_total = frames
        self.size_bytes = frames << FRAME_SHIFT
        #: Frames mapped: ``resize`` may move the limit anywhere up to here.
        self.frames_reserved = reserved
        self._map = mmap.mmap(-1, reserved << FRAME_SHIFT, flags=_MAP_FLAGS)
        #: The whole mapping as bytes; PAMs copy objects in and out through it.
        self.view = memoryview(self._map)
        #: The mapping as u32 words, for in-band headers and free-list links.
        self.words = self.view.cast("I")
        self._state = bytearray(frames)
        self._warm = array("I")
        self._clean = array("I")
        self._hwm = 0
        self._keep_warm = keep_warm
        self._release_batch = release_batch
        self.frames_used = 0
        #: Bytes of metadata kept outside the arena and charged against it.
        self.meta_bytes = 0
        #: Counters for metrics and benchmarks.
        self.madvise_calls = 0
        self.frames_released = 0

    # --- allocation -----------------------------------------------------

    def alloc_frame(self) -> int | None:
        """A free frame's number, or ``None`` when the arena is full."""
        if self.frames_free < 1:
            return None
        return self._take()

    def _take(self) -> int:
        """A free frame (the caller checked that there is one)."""
        if self._warm:
            frame = self._warm.pop()
        elif self._clean:
            frame = self._clean.pop()
        else:
            frame = self._hwm
            self._hwm += 1
        self._state[frame] = _USED
        self.frames_used += 1
        return frame

    def resize(self, size_bytes: int) -> None:
        """Move the limit to ``size_bytes`` (whole frames, within the mapping).

        Frames are counted, not placed: frames in use above a lowered limit
        stay where they are, and the arena hands out no frame until frees
        bring the count under the limit (the engine evicts first).
        """
        frames = size_bytes >> FRAME_SHIFT
        if not 1 <= frames <= self.frames_reserved:
            raise ValueError(
                f"arena of {size_bytes} bytes: need 1..{self.frames_reserved} frames "
                "(the mapping made at start)"
            )
        if frames > len(self._state):
            self._state.extend(bytes(frames - len(self._state)))
        self.frames_total = frames
        self.size_bytes = frames << FRAME_SHIFT

    def alloc_span(self, count: int) -> list[int] | None:
        """``count`` free frames (not necessarily adjacent), or ``None``: all or nothing."""
        if self.frames_free < count:
            return None
        return [self._take() for _ in range(count)]

    def free_frame(self, frame: int) -> None:
        """Give ``frame`` back; it stays resident until released in bulk."""
        if self._state[frame] != _USED:
            raise ValueError(f"frame {frame} is not in use")
        self._state[frame] = _WARM
        self._warm.append(frame)
        self.frames_used -= 1
        if len(self._warm) > self._keep_warm + self._release_batch:
            self._release(self._release_batch)

    @property
    def frames_free(self) -> int:
        """Frames a PAM could still get: neither used nor charged to metadata."""
        charged = (self.meta_bytes + FRAME_BYTES - 1) >> FRAME_SHIFT if self.meta_bytes > 0 else 0
        return self.frames_total - self.frames_used - charged

    def room_for(self, meta_bytes: int) -> bool:
        """Whether ``meta_bytes`` more metadata would still fit beside the frames used."""
        return (self.frames_used << FRAME_SHIFT) + self.meta_bytes + meta_bytes <= self.size_bytes

    @property
    def frames_warm(self) -> int:
        """Free frames still resident (the RSS above use)."""
        return len(self._warm)

    def trim(self) -> int:
        """Give every warm frame back to the kernel now; return how many."""
        count = len(self._warm)
        if count:
            self._release(count)
        return count

    def _release(self, count: int) -> None:
        """``madvise`` the ``count`` oldest warm frames away, one call per run."""
        victims = sorted(self._warm[:count])
        del self._warm[:count]
        start = prev = victims[0]
        for frame in victims[1:]:
            if frame != prev + 1:
                self._madvise_run(start, prev + 1)
                start = frame
            prev = frame
        self._madvise_run(start, prev + 1)
        state = self._state
        for frame in victims:
            state[frame] = _CLEAN
        self._clean.extend(victims)
        self.frames_released += count

    def _madvise_run(self, first: int, end: int) -> None:
        self._map.madvise(mmap.MADV_DONTNEED, first << FRAME_SHIFT, (end - first) << FRAME_SHIFT)
        self.madvise_calls += 1

    # --- checking and teardown ------------------------------------------

    def is_used(self, frame: int) -> bool:
        """Whether ``frame`` is held by some PAM."""
        return self._state[frame] == _USED

    def check_invariants(self) -> None:
        """Every frame is in exactly one state, and the counters agree."""
        state = self._state
        warm, clean = set(self._warm), set(self._clean)
        assert len(warm) == len(self._warm), "a frame is on the warm stack twice"
        assert len(clean) == len(self._clean), "a frame is on the clean stack twice"
        assert not warm & clean, "a frame is both warm and clean"
        used = 0
        for frame in range(len(state)):
            s = state[frame]
            if frame >= self._hwm:
                assert s == _CLEAN, f"frame {frame} above the high-water mark is not clean"
                continue
            used += s == _USED
            assert (s == _WARM) == (frame in warm), f"frame {frame}: state {s} vs warm stack"
            assert (s == _CLEAN) == (frame in clean), f"frame {frame}: state {s} vs clean stack"
        assert used == self.frames_used, f"{used} frames used, counter says {self.frames_used}"

    def close(self) -> None:
        """Unmap the arena.  PAMs built on it must not be used afterwards."""
        self.words.release()
        self.view.release()
        self._map.close()
