"""xvmalloc: a TLSF-style allocator of variable blocks within frames.

What: after compcache's xvmalloc (Nitin Gupta), itself a simplification of
TLSF (Two-Level Segregated Fit, Masmano et al.).  Blocks of any size up to a
frame live inside single frames, each behind a 4-byte header; free blocks
sit on segregated free lists found through a two-level bitmap in O(1).  The
seed's persistent store: no eviction unit, just good packing at low cost.

Why: objects never cross a frame, so reads and writes are one slice each,
and a frame whose blocks are all free goes straight back to the arena.  The
price, which zsmalloc was written to avoid, is that a block of more than
half a frame leaves a hole that only a small object can use.

How: the *block header* is one u32 word at a 4-byte aligned offset:

* bits 0-11: the exact object length (allocated) or the body size (free);
* bits 12-13: *slack*, extra 4-byte words an allocated body has beyond
  ``max(8, align4(length))``: a split leaves no free block smaller than a
  header plus an 8-byte body, so up to 8 spare bytes stay with the object;
* bit 15: FREE;
* bits 16-27: offset in the frame of the previous block's header (the
  boundary tag that lets ``free`` merge with the block before it).

A free block's body holds two u32 links, next and prev, to other free
blocks' header words (arena offset / 4; ``NIL`` ends a list).  There is one
list per body size in 4-byte steps: 1_024 lists, list ``size // 4``.  Like
xvmalloc (and unlike TLSF's logarithmic first level) both levels are linear,
because the range is one frame: the first level has 32 bits, one per group
of 32 lists; the second level a 32-bit word per group.  A store of body
``need`` looks for a set bit at or above ``need // 4`` in its group's word,
else for the next set group bit: the smallest free block that fits (good
fit), split if the rest can hold a free block.  ``free`` merges with free
neighbours in the frame; a frame left as one free block of 4_092 bytes is
given back to the arena.  Objects too big for a header (4_093..4_096 bytes)
take a frame of their own.

Handles: an object in a block has handle = arena offset of its body (a
multiple of 4, never 0); a whole-frame object has the odd handle
``(frame << 13 | length) << 1 | 1``.

The guarantee: a store fails only when no free block in held frames is big
enough and no frame can be had; store and free touch at most three blocks.

Granularity: 4 bytes plus the 4-byte header, 12 bytes minimum.  Worked
example: storing 1_499 bytes needs a body of align4(1_499) = 1_500 bytes,
list 375.  From a fresh frame (one free block of 4_092 bytes, list 1_023)
it splits off a free block of 4_092 - 1_500 - 4 = 2_588 bytes at offset
1_504 of the frame, on list 647; the object's handle is frame * 4_096 + 4.
Metadata: 4 bytes per object in the frame, 2 bytes per frame outside it.
"""

from __future__ import annotations

from array import array
from typing import Final

from ._arena import FRAME_BYTES, FRAME_SHIFT, Arena
from ._base import NIL, ArenaPam, extend_to

__all__ = ["MAX_BLOCK_OBJECT_BYTES", "XvmallocPam"]

_HDR: Final = 4
_WORDS_PER_FRAME: Final = FRAME_BYTES // 4
_FRAME_WORD_MASK: Final = _WORDS_PER_FRAME - 1
#: Smallest body: room for the two free-list links.
_MIN_BODY: Final = 8
#: Bodies up to this size (a frame minus one header) live in blocks.
MAX_BLOCK_OBJECT_BYTES: Final = FRAME_BYTES - _HDR
_NLISTS: Final = FRAME_BYTES // 4
_FREE: Final = 0x8000
_SIZE_MASK: Final = 0x0FFF
_WHOLE: Final = 0xFFFF  # frame kind marker: a frame cut into blocks
#: In-band links address 4-byte words with u32: 16 GiB of arena at most.
MAX_ARENA_BYTES: Final = 1 << 34


class XvmallocPam(ArenaPam):
    """Variable-size blocks inside frames, segregated free lists, O(1) good fit."""

    NAME = "xvmalloc"
    FRAME_META_BYTES = 2

    def __init__(
        self, arena: Arena, max_frames: int | None = None, *, charge_metadata: bool = False
    ) -> None:
        if arena.frames_reserved << FRAME_SHIFT > MAX_ARENA_BYTES:
            raise ValueError("xvmalloc links address at most a 16 GiB arena")
        super().__init__(arena, max_frames, charge_metadata=charge_metadata)
        self._view = arena.view
        self._words = arena.words
        self._heads = array("I", [NIL]) * _NLISTS
        self._fl = 0
        self._sl = array("I", [0]) * (_NLISTS // 32)
        #: Per frame: 0 not ours, _WHOLE cut into blocks, else the length of
        #: the single object filling it.
        self._kind = array("H")

    def _grow_to(self, frames: int) -> None:
        extend_to(self._kind, frames, 0)

    # --- free lists -----------------------------------------------------

    def _list_add(self, w: int, size: int) -> None:
        words, idx = self._words, size >> 2
        head = self._heads[idx]
        words[w + 1] = head
        words[w + 2] = NIL
        if head != NIL:
            words[head + 2] = w
        else:
            self._sl[idx >> 5] |= 1 << (idx & 31)
            self._fl |= 1 << (idx >> 5)
        self._heads[idx] = w

    def _list_del(self, w: int, size: int) -> None:
        words, idx = self._words, size >> 2
        nxt, prv = words[w + 1], words[w + 2]
        if prv == NIL:
            self._heads[idx] = nxt
            if nxt == NIL:
                group = idx >> 5
                self._sl[group] &= ~(1 << (idx & 31))
                if not self._sl[group]:
                    self._fl &= ~(1 << group)
        else:
            words[prv + 1] = nxt
        if nxt != NIL:
            words[nxt + 2] = prv

    def _find(self, need: int) -> int:
        """The header word of the smallest free block with body >= ``need``, or NIL."""
        idx = need >> 2
        group = idx >> 5
        bits = self._sl[group] >> (idx & 31) << (idx & 31)
        if not bits:
            groups = self._fl >> (group + 1) << (group + 1)
            if not groups:
                return NIL
            group = (groups & -groups).bit_length() - 1
            bits = self._sl[group]
        return self._heads[(group << 5) | ((bits & -bits).bit_length() - 1)]

    # --- the Pam interface ----------------------------------------------

    def store(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if n > MAX_BLOCK_OBJECT_BYTES:
            return self._store_whole(data, n)
        need = max(_MIN_BODY, (n + 3) & ~3)
        w = self._find(need)
        if w == NIL:
            frame = self._take_frames(1)[0]
            self._kind[frame] = _WHOLE
            w = frame << 10
            self._words[w] = MAX_BLOCK_OBJECT_BYTES | _FREE
            self._list_add(w, MAX_BLOCK_OBJECT_BYTES)
        words = self._words
        hdr = words[w]
        size = hdr & _SIZE_MASK
        self._list_del(w, size)
        rest = size - need - _HDR
        if rest >= _MIN_BODY:
            split = w + 1 + (need >> 2)
            words[split] = rest | _FREE | ((w & _FRAME_WORD_MASK) << 18)
            self._list_add(split, rest)
            self._set_prev_of_next(split, rest)
            slack = 0
        else:
            slack = (size - need) >> 2
        words[w] = n | (slack << 12) | (hdr & 0xFFFF0000)
        body = (w + 1) << 2
        self._view[body : body + n] = data
        self.objects += 1
        self.bytes_stored += n
        return body

    def _set_prev_of_next(self, w: int, size: int) -> None:
        """Point the block after block ``w`` (if any in the frame) back at ``w``."""
        nxt = w + 1 + (size >> 2)
        if nxt & _FRAME_WORD_MASK:
            words = self._words
            words[nxt] = (words[nxt] & 0xFFFF) | ((w & _FRAME_WORD_MASK) << 18)

    def _store_whole(self, data: bytes | bytearray | memoryview, n: int) -> int:
        if n > FRAME_BYTES:
            raise ValueError(f"xvmalloc stores at most {FRAME_BYTES} bytes, got {n}")
        frame = self._take_frames(1)[0]
        self._kind[frame] = n
        base = frame << FRAME_SHIFT
        self._view[base : base + n] = data
        self.objects += 1
        self.bytes_stored += n
        return ((frame << 13 | n) << 1) | 1

    def _locate(self, handle: int) -> tuple[int, int]:
        """(body offset, length) of a live handle, or ``KeyError``."""
        if handle & 1:
            v = handle >> 1
            frame, n = v >> 13, v & 0x1FFF
            if frame >= len(self._kind) or self._kind[frame] != n:
                raise KeyError(handle)
            return frame << FRAME_SHIFT, n
        w = (handle >> 2) - 1
        if (
            handle <= 0
            or handle & 3
            or (w >> 10) >= len(self._kind)
            or (self._kind[w >> 10] != _WHOLE)
        ):
            raise KeyError(handle)
        hdr = self._words[w]
        if hdr & _FREE:
            raise KeyError(handle)
        return handle, hdr & _SIZE_MASK

    def load(self, handle: int) -> bytes:
        off, n = self._locate(handle)
        return self._view[off : off + n].tobytes()

    def stored_size(self, handle: int) -> int:
        return self._locate(handle)[1]

    def free(self, handle: int) -> int:
        _, n = self._locate(handle)
        self.objects -= 1
        self.bytes_stored -= n
        if handle & 1:
            frame = handle >> 14
            self._kind[frame] = 0
            self._give_frame(frame)
            return n
        words = self._words
        w = (handle >> 2) - 1
        hdr = words[w]
        size = max(_MIN_BODY, (n + 3) & ~3) + ((hdr >> 12 & 3) << 2)
        nxt = w + 1 + (size >> 2)
        if nxt & _FRAME_WORD_MASK and words[nxt] & _FREE:
            nsize = words[nxt] & _SIZE_MASK
            self._list_del(nxt, nsize)
            size += _HDR + nsize
        prev_hdr = hdr & 0xFFFF0000
        if w & _FRAME_WORD_MASK:
            pw = (w & ~_FRAME_WORD_MASK) | (hdr >> 18)
            phdr = words[pw]
            if phdr & _FREE:
                psize = phdr & _SIZE_MASK
                self._list_del(pw, psize)
                size += _HDR + psize
                w, prev_hdr = pw, phdr & 0xFFFF0000
        if size == MAX_BLOCK_OBJECT_BYTES:
            frame = w >> 10
            self._kind[frame] = 0
            self._give_frame(frame)
            return n
        words[w] = size | _FREE | prev_hdr
        self._list_add(w, size)
        self._set_prev_of_next(w, size)
        return n

    # --- checking -------------------------------------------------------

    def check_invariants(self) -> None:
        kind = self._kind
        frames = [f for f in range(len(kind)) if kind[f]]
        self._check_frames_owned(frames)
        free_blocks: dict[int, int] = {}
        objects = stored = 0
        for frame in frames:
            if kind[frame] != _WHOLE:
                assert MAX_BLOCK_OBJECT_BYTES < kind[frame] <= FRAME_BYTES, (
                    f"xvmalloc: whole-frame object of {kind[frame]} bytes in frame {frame}"
                )
                objects += 1
                stored += kind[frame]
                continue
            o, s = self._walk_frame(frame, free_blocks)
            objects, stored = objects + o, stored + s
        self._check_lists(free_blocks)
        assert objects == self.objects, f"xvmalloc: {objects} objects, counter {self.objects}"
        assert stored == self.bytes_stored, f"xvmalloc: {stored} bytes vs {self.bytes_stored}"

    def _walk_frame(self, frame: int, free_blocks: dict[int, int]) -> tuple[int, int]:
        """Walk a frame's blocks by their headers; collect free blocks; (objects, bytes)."""
        words = self._words
        base = frame << 10
        w, prev, prev_free = base, -1, False
        objects = stored = 0
        while w < base + _WORDS_PER_FRAME:
            hdr = words[w]
            if w != base:
                assert hdr >> 18 == prev - base, f"xvmalloc: bad back tag at word {w}"
            if hdr & _FREE:
                size = hdr & _SIZE_MASK
                assert not prev_free, f"xvmalloc: two free blocks in a row at word {w}"
                assert size >= _MIN_BODY and size & 3 == 0, f"xvmalloc: free size {size}"
                free_blocks[w] = size
            else:
                n = hdr & _SIZE_MASK
                size = max(_MIN_BODY, (n + 3) & ~3) + ((hdr >> 12 & 3) << 2)
                objects, stored = objects + 1, stored + n
            prev, prev_free = w, bool(hdr & _FREE)
            w += 1 + (size >> 2)
        assert w == base + _WORDS_PER_FRAME, f"xvmalloc: blocks of frame {frame} overrun it"
        assert objects, f"xvmalloc: frame {frame} holds no object"
        return objects, stored

    def _check_lists(self, free_blocks: dict[int, int]) -> None:
        """Every free block is on the list of its size, exactly once; bitmaps agree."""
        seen = 0
        for idx in range(_NLISTS):
            w, prev = self._heads[idx], NIL
            bit = bool(self._sl[idx >> 5] >> (idx & 31) & 1)
            assert bit == (w != NIL), f"xvmalloc: second-level bit wrong for list {idx}"
            while w != NIL:
                assert free_blocks.get(w) == idx << 2, f"xvmalloc: word {w} on list {idx}"
                assert self._words[w + 2] == prev, f"xvmalloc: back link of word {w}"
                seen += 1
                assert seen <= len(free_blocks), "xvmalloc: free list cycle"
                prev, w = w, self._words[w + 1]
        for group in range(_NLISTS // 32):
            bit = bool(self._fl >> group & 1)
            assert bit == bool(self._sl[group]), f"xvmalloc: first-level bit wrong for {group}"
        assert seen == len(free_blocks), "xvmalloc: a free block is on no list"
