"""zbud: two compressed pages per frame, reclaimed a whole frame at a time.

What: after Linux's mm/zbud.c (Seth Jennings, from Dan Magenheimer's zcache
zbud).  zbud is not a buddy allocator: it "buddies" two compressed pages in
one frame.  The *first* buddy is left-aligned at the frame's start, the
*last* buddy right-aligned at its end, so freeing either one leaves the
largest possible hole: the freed space coalesced with the slack between them.

Why: density is at most 2 (and never below 1: a frame never holds less than
one page), but reclaim is simple and deterministic.  Freeing one frame frees
at most two pages, so evicting for room costs at most two victims, which is
what an ephemeral cache wants.  This is the seed's store for ephemeral pools.

How: frames are cut into 64-byte *chunks* (NCHUNKS = 64).  The kernel spends
one chunk on an in-frame header; we keep the header out of the frame, in
per-frame arrays, so all 64 chunks hold data.  Frames that hold one buddy
sit on ``unbuddied[i]``, where ``i`` is their number of free chunks; a store
of ``c`` chunks takes the head of the first non-empty list ``i >= c`` (found
with one bit scan of a bitmap of non-empty lists, not a loop over 64 lists)
or a new frame.  Frames holding two buddies are on no free list.  Every frame
is on an LRU list, moved to its head on each store into it (as zbud_alloc
does); ``reclaim()`` frees the tail frame and returns its handles.

The handle of a buddy is ``2 * frame + buddy + 1`` (buddy 0 first, 1 last),
never 0.  The exact length is kept as ``length + 1`` in a u16 per buddy (0
means empty), since lzo and lz4 need the exact compressed length to decode.

The guarantee: a store succeeds without a new frame whenever some frame has
a free buddy with enough chunks; frames hold 1 or 2 objects, never 0.

Granularity: 64 bytes.  Worked example: a 1_500-byte page takes
ceil(1_500 / 64) = 24 chunks; stored as a first buddy it occupies bytes
0..1_535 of its frame, which goes on ``unbuddied[40]``.  A 2_400-byte page
(38 chunks <= 40) then lands in the same frame as the last buddy at offset
4_096 - 38 * 64 = 1_664.  Metadata: 20 bytes per frame held (two u16
lengths and four i32 list links), nothing per object.
"""

from __future__ import annotations

from array import array
from typing import Final

from ._arena import FRAME_BYTES, FRAME_SHIFT, Arena
from ._base import ArenaPam, extend_to

__all__ = ["CHUNK_BYTES", "NCHUNKS", "ZbudPam"]

#: Allocation granularity: 64-byte chunks (kernel NCHUNKS_ORDER = 6) bound
#: internal waste to 63 bytes per object with 65 free lists.
CHUNK_BYTES: Final = 64
#: Chunks per frame (the kernel loses one to its header; we do not).
NCHUNKS: Final = FRAME_BYTES // CHUNK_BYTES
_CHUNK_SHIFT: Final = 6
#: Marker for "no frame" in the i32 link arrays.
_NONE: Final = -1


def _chunks(n: int) -> int:
    """Chunks an object of ``n`` bytes occupies (at least one, so 0 bytes still has a place)."""
    return max(1, (n + CHUNK_BYTES - 1) >> _CHUNK_SHIFT)


class ZbudPam(ArenaPam):
    """Two compressed pages per frame; ``reclaim()`` frees the LRU frame."""

    NAME = "zbud"
    FRAME_META_BYTES = 20

    def __init__(
        self, arena: Arena, max_frames: int | None = None, *, charge_metadata: bool = False
    ) -> None:
        super().__init__(arena, max_frames, charge_metadata=charge_metadata)
        self._view = arena.view
        #: length + 1 of buddy ``2 * frame + b``, 0 when that buddy is free.
        self._lens = array("H")
        self._unext = array("i")
        self._uprev = array("i")
        #: Heads of unbuddied[0..NCHUNKS]; bit i of ``_nonempty`` says list i has frames.
        self._uhead = array("i", [_NONE]) * (NCHUNKS + 1)
        self._nonempty = 0
        self._lnext = array("i")
        self._lprev = array("i")
        self._lru_head = _NONE
        self._lru_tail = _NONE

    def _grow_to(self, frames: int) -> None:
        extend_to(self._lens, 2 * frames, 0)
        for links in (self._unext, self._uprev, self._lnext, self._lprev):
            extend_to(links, frames, _NONE)

    # --- list plumbing --------------------------------------------------

    def _unbuddied_add(self, frame: int, free_chunks: int) -> None:
        head = self._uhead[free_chunks]
        self._unext[frame] = head
        self._uprev[frame] = _NONE
        if head != _NONE:
            self._uprev[head] = frame
        self._uhead[free_chunks] = frame
        self._nonempty |= 1 << free_chunks

    def _unbuddied_del(self, frame: int, free_chunks: int) -> None:
        nxt, prv = self._unext[frame], self._uprev[frame]
        if prv == _NONE:
            self._uhead[free_chunks] = nxt
            if nxt == _NONE:
                self._nonempty &= ~(1 << free_chunks)
        else:
            self._unext[prv] = nxt
        if nxt != _NONE:
            self._uprev[nxt] = prv

    def _lru_del(self, frame: int) -> None:
        nxt, prv = self._lnext[frame], self._lprev[frame]
        if prv == _NONE:
            self._lru_head = nxt
        else:
            self._lnext[prv] = nxt
        if nxt == _NONE:
            self._lru_tail = prv
        else:
            self._lprev[nxt] = prv

    def _lru_push(self, frame: int) -> None:
        head = self._lru_head
        self._lnext[frame] = head
        self._lprev[frame] = _NONE
        if head == _NONE:
            self._lru_tail = frame
        else:
            self._lprev[head] = frame
        self._lru_head = frame

    # --- the Pam interface ----------------------------------------------

    def store(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if n > FRAME_BYTES:
            raise ValueError(f"zbud stores at most {FRAME_BYTES} bytes, got {n}")
        chunks = _chunks(n)
        lens = self._lens
        fits = self._nonempty >> chunks
        if fits:
            free_chunks = chunks + (fits & -fits).bit_length() - 1
            frame = self._uhead[free_chunks]
            self._unbuddied_del(frame, free_chunks)
            self._lru_del(frame)
            buddy = 1 if lens[2 * frame] else 0
            other = lens[2 * frame + 1 - buddy]
        else:
            frame = self._take_frames(1)[0]
            buddy = other = 0
        slot = 2 * frame + buddy
        lens[slot] = n + 1
        base = frame << FRAME_SHIFT
        off = base if buddy == 0 else base + FRAME_BYTES - (chunks << _CHUNK_SHIFT)
        self._view[off : off + n] = data
        if not other:
            self._unbuddied_add(frame, NCHUNKS - chunks)
        self._lru_push(frame)
        self.objects += 1
        self.bytes_stored += n
        return slot + 1

    def _locate(self, handle: int) -> tuple[int, int]:
        """(offset, length) of a live handle, or ``KeyError``."""
        slot = handle - 1
        stored = self._lens[slot] if 0 <= slot < len(self._lens) else 0
        if not stored:
            raise KeyError(handle)
        n = stored - 1
        base = (slot >> 1) << FRAME_SHIFT
        if slot & 1 == 0:
            return base, n
        chunks = _chunks(n)
        return base + FRAME_BYTES - (chunks << _CHUNK_SHIFT), n

    def load(self, handle: int) -> bytes:
        off, n = self._locate(handle)
        return self._view[off : off + n].tobytes()

    def stored_size(self, handle: int) -> int:
        return self._locate(handle)[1]

    def free(self, handle: int) -> int:
        _, n = self._locate(handle)
        slot = handle - 1
        frame = slot >> 1
        other = self._lens[slot ^ 1]
        self._lens[slot] = 0
        self.objects -= 1
        self.bytes_stored -= n
        if other:
            # Buddied until now: the frame rejoins the unbuddied lists.
            other_chunks = _chunks(other - 1)
            self._unbuddied_add(frame, NCHUNKS - other_chunks)
            return n
        chunks = _chunks(n)
        self._unbuddied_del(frame, NCHUNKS - chunks)
        self._lru_del(frame)
        self._give_frame(frame)
        return n

    def reclaim(self) -> list[int]:
        """Free the least recently stored-into frame; return the handles it held."""
        frame = self._lru_tail
        if frame == _NONE:
            return []
        handles = [2 * frame + b + 1 for b in (0, 1) if self._lens[2 * frame + b]]
        for handle in handles:
            self.free(handle)
        return handles

    def check_invariants(self) -> None:
        lens = self._lens
        frames: list[int] = []
        prev = _NONE
        frame = self._lru_head
        while frame != _NONE:
            assert self._lprev[frame] == prev, f"zbud: LRU back link of frame {frame}"
            assert len(frames) <= self.frames_held, "zbud: LRU list has a cycle"
            frames.append(frame)
            prev, frame = frame, self._lnext[frame]
        assert self._lru_tail == prev, "zbud: LRU tail is not the last frame"
        self._check_frames_owned(frames)
        listed = self._check_unbuddied()
        objects = stored = 0
        for frame in frames:
            first, last = lens[2 * frame], lens[2 * frame + 1]
            assert first or last, f"zbud: frame {frame} holds nothing"
            used = sum(_chunks(v - 1) for v in (first, last) if v)
            assert used <= NCHUNKS, f"zbud: buddies of frame {frame} overlap"
            single = not (first and last)
            assert listed.get(frame) == (NCHUNKS - used if single else None), (
                f"zbud: frame {frame} on the wrong unbuddied list"
            )
            objects += (first > 0) + (last > 0)
            stored += max(first - 1, 0) + max(last - 1, 0)
        assert len(listed) == sum(1 for f in frames if not (lens[2 * f] and lens[2 * f + 1]))
        assert objects == self.objects, f"zbud: {objects} objects, counter {self.objects}"
        assert stored == self.bytes_stored, f"zbud: {stored} bytes, counter {self.bytes_stored}"

    def _check_unbuddied(self) -> dict[int, int]:
        """Walk every unbuddied list; return frame -> its list's free chunks."""
        listed: dict[int, int] = {}
        for free_chunks in range(NCHUNKS + 1):
            frame, prev = self._uhead[free_chunks], _NONE
            bit = bool(self._nonempty >> free_chunks & 1)
            assert bit == (frame != _NONE), f"zbud: bitmap wrong for list {free_chunks}"
            while frame != _NONE:
                assert frame not in listed, f"zbud: frame {frame} on two unbuddied lists"
                assert self._uprev[frame] == prev, f"zbud: unbuddied back link of {frame}"
                listed[frame] = free_chunks
                prev, frame = frame, self._unext[frame]
        return listed
