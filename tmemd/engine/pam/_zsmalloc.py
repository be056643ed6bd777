"""zsmalloc: size classes packed across multi-frame spans, with compaction.

What: after Linux's mm/zsmalloc.c (Nitin Gupta, Minchan Kim).  Objects are
grouped by size class (``_zsclasses``); each class packs its slots end to
end across *spans* (the kernel's zspages) of 1 to ``max_span_frames``
frames, so an object may cross a frame boundary.  The dense store.

Why: zbud wastes whatever two objects leave of a frame, xvmalloc whatever
no small object fills; here only the class rounding (16 bytes) and the tail
of each span are lost, about 3 % on real pages.  The frames of a span need
not be adjacent in the arena, so a span can always be built from any free
frames: the arena never fragments.

How, per object: a slot starts with a u32 header, ``handle << 1 | 1`` while
allocated; a free slot's header instead links the next free slot of its
span (``slot offset // 16 << 1``, bit 0 clear), so each span's free slots
form a list threaded through the frames, as zsmalloc's ``link_free``.  The
object's bytes follow the header.

Handles are small integers indexing an indirection table, ``array('Q')``,
whose entry packs the object's location and exact length::

    entry = data_offset << 13 | length      (0 marks a free handle)

so ``load`` is one table read and one slice (two when the object crosses
a frame boundary, the second frame found in ``_frame_next``).  Freed handle
numbers are reused from a stack.  Because callers hold handle numbers, not
locations, compaction may move objects: it rewrites the table entry it
finds through the moved slot's header.

Per span (by span id; ids of freed spans are reused): first frame, class,
objects in use, free-list head and fullness group; per frame, its span id
and the span's next frame.  Fullness groups follow the kernel's
``ZS_INUSE_RATIO_*``: group ``inuse * 10 // objs + 1`` (1..10) for partly
used spans, which sit on per-class, per-group lists; full spans are on no
list.  A store takes a span from the fullest non-empty group (a bit scan),
so sparse spans drain; a span whose last object is freed goes back to the
arena at once.  ``compact()`` moves objects from the sparsest span of a
class into its fullest non-full span while the class wastes at least one
span's worth of slots (``zs_can_compact``), and returns the frames freed.

The guarantee: every live handle resolves to its exact bytes across any
sequence of stores, frees and compactions; after ``compact()`` each class
wastes less than one span of slots.

Granularity: 16 bytes per slot plus the span tail.  Worked example: a
1_499-byte page needs 1_503 bytes, so a 1_504-byte slot: with spans of up
to 8 frames that class packs 19 slots into 7 frames (28_576 of 28_672 bytes,
99.7 %).  Its table entry is ``(slot offset + 4) << 13 | 1_499``.  Metadata:
4 bytes per object in its slot, 8 bytes per handle in the table (and 4 on
the free stack once freed), 8 bytes per frame and 25 per span (about 12
bytes per frame held); with ``charge_metadata`` these are charged to the
arena as the arrays grow (``HANDLE_META_BYTES``, ``SPAN_META_BYTES``).
"""

from __future__ import annotations

import itertools
from array import array
from typing import Final

from ._arena import FRAME_BYTES, FRAME_SHIFT, Arena
from ._base import NIL, ArenaPam, extend_to
from ._zscheck import check_zsmalloc
from ._zsclasses import DEFAULT_MAX_SPAN_FRAMES, HEADER_BYTES, build_classes
from ._zsspans import STRIDE, SpanLists

__all__ = ["ZsmallocPam"]

_LEN_BITS: Final = 13
_LEN_MASK: Final = (1 << _LEN_BITS) - 1
_FRAME_MASK: Final = FRAME_BYTES - 1
#: End of a span's free list (slot offset // 16 in u32 arrays).
NIL_SLOT: Final = 0x7FFFFFFF
#: Handles must fit in 31 bits beside the "allocated" bit of the header.
MAX_HANDLE: Final = (1 << 31) - 1
#: Free-list links address 16-byte slots with 31 bits: 32 GiB of arena.
MAX_ARENA_BYTES: Final = 1 << 35
#: Grow-only metadata per handle: its table entry (u64) and its place on
#: the free-handle stack (u32) once freed.
HANDLE_META_BYTES: Final = 12
#: Grow-only metadata per span id: first frame, free head and free-id stack
#: (u32 each), class and in-use count (u16 each), fullness group (u8) and
#: list links (two i32).
SPAN_META_BYTES: Final = 25


class ZsmallocPam(ArenaPam):
    """Size-class slots across multi-frame spans, handles through a table."""

    NAME = "zsmalloc"
    FRAME_META_BYTES = 8

    def __init__(
        self,
        arena: Arena,
        max_frames: int | None = None,
        *,
        max_span_frames: int = DEFAULT_MAX_SPAN_FRAMES,
        charge_metadata: bool = False,
    ) -> None:
        if arena.frames_reserved << FRAME_SHIFT > MAX_ARENA_BYTES:
            raise ValueError("zsmalloc links address at most a 32 GiB arena")
        super().__init__(arena, max_frames, charge_metadata=charge_metadata)
        self.table = build_classes(max_span_frames)
        classes = self.table.classes
        self._by_length = self.table.by_length
        self._huge = len(classes) - 1
        self._size = [c.size for c in classes]
        self._objs = [c.objs for c in classes]
        self._view = arena.view
        self._words = arena.words
        self.lists = SpanLists(len(classes))
        #: Indirection table: handle -> offset << 13 | length; entry 0 unused.
        self._loc = array("Q", [0])
        self._free_handles = array("I")
        #: Per frame: its span's id (NIL: not ours) and the span's next frame.
        self._frame_span = array("I")
        self._frame_next = array("I")
        #: Per span id: first frame, class, objects in use, free-list head.
        self._sp_first = array("I")
        self._sp_class = array("H")
        self._sp_inuse = array("H")
        self._sp_free = array("I")
        self._span_ids = array("I")
        #: Per class: spans held, objects stored (for ``compact``).
        self.class_spans = [0] * len(classes)
        self.class_used = [0] * len(classes)

    def _grow_to(self, frames: int) -> None:
        extend_to(self._frame_span, frames, NIL)
        extend_to(self._frame_next, frames, NIL)

    def _new_span_id(self) -> int:
        if self._span_ids:
            return self._span_ids.pop()
        span = len(self._sp_first)
        self._charge(SPAN_META_BYTES)
        self._sp_first.append(NIL)
        self._sp_class.append(0)
        self._sp_inuse.append(0)
        self._sp_free.append(NIL_SLOT)
        self.lists.grow(span + 1)
        return span

    # --- spans ----------------------------------------------------------

    def _new_span(self, cls: int) -> int:
        """Take frames for a span of ``cls``, thread its free list; return its id."""
        frames = self._take_frames(self.table.classes[cls].span_frames)
        span = self._new_span_id()
        self._sp_first[span] = frames[0]
        for i, frame in enumerate(frames):
            self._frame_span[frame] = span
            self._frame_next[frame] = frames[i + 1] if i + 1 < len(frames) else NIL
        self._sp_class[span] = cls
        self._sp_inuse[span] = 0
        words, size = self._words, self._size[cls]
        offs = self.slot_offsets(frames, size, self._objs[cls])
        for off, nxt in itertools.pairwise(offs):
            words[off >> 2] = (nxt >> 4) << 1
        words[offs[-1] >> 2] = NIL_SLOT << 1
        self._sp_free[span] = offs[0] >> 4
        self.class_spans[cls] += 1
        return span

    @staticmethod
    def slot_offsets(frames: list[int], size: int, objs: int) -> list[int]:
        """Arena offsets of a span's slots, in order."""
        return [
            (frames[s >> FRAME_SHIFT] << FRAME_SHIFT) | (s & _FRAME_MASK)
            for s in range(0, objs * size, size)
        ]

    def span_frames(self, span: int) -> list[int]:
        """The frames of span ``span``, in order."""
        frames = [self._sp_first[span]]
        nxt = self._frame_next[frames[0]]
        while nxt != NIL:
            frames.append(nxt)
            nxt = self._frame_next[nxt]
        return frames

    def _free_span(self, span: int) -> None:
        cls = self._sp_class[span]
        self.class_spans[cls] -= 1
        for frame in self.span_frames(span):
            self._frame_span[frame] = NIL
            self._frame_next[frame] = NIL
            self._give_frame(frame)
        self._sp_first[span] = NIL
        self._span_ids.append(span)

    def _settle(self, span: int) -> None:
        """Put a span back on the list its fill says (freeing it when empty)."""
        inuse, cls = self._sp_inuse[span], self._sp_class[span]
        objs = self._objs[cls]
        if inuse == 0:
            self.lists.unlink(span, cls)
            self._free_span(span)
        else:
            self.lists.move(span, cls, 0 if inuse == objs else inuse * 10 // objs + 1)

    # --- the Pam interface ----------------------------------------------

    def store(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if n > FRAME_BYTES:
            raise ValueError(f"zsmalloc stores at most {FRAME_BYTES} bytes, got {n}")
        cls = self._by_length[n]
        if cls == self._huge:
            return self._store_huge(data, n)
        # SpanLists.fullest and _take_slot, inline: this is every put's path.
        lists = self.lists
        bits = lists.bits[cls]
        span = lists.heads[cls * STRIDE + bits.bit_length() - 1] if bits else self._new_span(cls)
        sp_free, words = self._sp_free, self._words
        slot = sp_free[span] << 4
        sp_free[span] = words[slot >> 2] >> 1
        inuse = self._sp_inuse[span] + 1
        self._sp_inuse[span] = inuse
        objs = self._objs[cls]
        group = 0 if inuse == objs else inuse * 10 // objs + 1
        if group != lists.group[span]:
            lists.move(span, cls, group)
        free_handles = self._free_handles
        handle = free_handles.pop() if free_handles else self._new_handle()
        words[slot >> 2] = handle << 1 | 1
        off = slot + HEADER_BYTES
        if (off & _FRAME_MASK) + n <= FRAME_BYTES:
            self._view[off : off + n] = data
        else:
            self._write_split(off, data, n)
        self._loc[handle] = off << _LEN_BITS | n
        self.class_used[cls] += 1
        self.objects += 1
        self.bytes_stored += n
        return handle

    def _store_huge(self, data: bytes | bytearray | memoryview, n: int) -> int:
        """A header-less object alone in a one-frame span."""
        frame = self._take_frames(1)[0]
        span = self._new_span_id()
        self._sp_first[span] = frame
        self._frame_span[frame] = span
        self._sp_class[span] = self._huge
        self._sp_inuse[span] = 1
        self.class_spans[self._huge] += 1
        off = frame << FRAME_SHIFT
        self._view[off : off + n] = data
        handle = self._free_handles.pop() if self._free_handles else self._new_handle()
        self._loc[handle] = off << _LEN_BITS | n
        self.class_used[self._huge] += 1
        self.objects += 1
        self.bytes_stored += n
        return handle

    def _new_handle(self) -> int:
        """A never used handle number (the free stack is empty)."""
        handle = len(self._loc)
        if handle > MAX_HANDLE:
            raise OverflowError("zsmalloc handle space exhausted")
        self._charge(HANDLE_META_BYTES)
        self._loc.append(0)
        return handle

    def _take_slot(self, span: int) -> int:
        """Pop a free slot of span ``span``; return its arena offset."""
        slot = self._sp_free[span] << 4
        self._sp_free[span] = self._words[slot >> 2] >> 1
        inuse = self._sp_inuse[span] + 1
        self._sp_inuse[span] = inuse
        cls = self._sp_class[span]
        objs = self._objs[cls]
        group = 0 if inuse == objs else inuse * 10 // objs + 1
        if group != self.lists.group[span]:
            self.lists.move(span, cls, group)
        return slot

    def _write(self, off: int, data: bytes | bytearray | memoryview, n: int) -> None:
        if (off & _FRAME_MASK) + n <= FRAME_BYTES:
            self._view[off : off + n] = data
        else:
            self._write_split(off, data, n)

    def _write_split(self, off: int, data: bytes | bytearray | memoryview, n: int) -> None:
        """Write an object that crosses into the span's next frame."""
        first = FRAME_BYTES - (off & _FRAME_MASK)
        src = memoryview(data)
        self._view[off : off + first] = src[:first]
        nxt = self._frame_next[off >> FRAME_SHIFT] << FRAME_SHIFT
        self._view[nxt : nxt + n - first] = src[first:]

    def _read(self, off: int, n: int) -> bytes:
        if (off & _FRAME_MASK) + n <= FRAME_BYTES:
            return self._view[off : off + n].tobytes()
        return self._read_split(off, n)

    def _read_split(self, off: int, n: int) -> bytes:
        """Read an object that crosses into the span's next frame."""
        first = FRAME_BYTES - (off & _FRAME_MASK)
        nxt = self._frame_next[off >> FRAME_SHIFT] << FRAME_SHIFT
        return self._view[off : off + first].tobytes() + self._view[nxt : nxt + n - first]

    def _entry(self, handle: int) -> int:
        entry = self._loc[handle] if 0 < handle < len(self._loc) else 0
        if not entry:
            raise KeyError(handle)
        return entry

    def load(self, handle: int) -> bytes:
        entry = self._loc[handle] if 0 < handle < len(self._loc) else 0
        if not entry:
            raise KeyError(handle)
        off, n = entry >> _LEN_BITS, entry & _LEN_MASK
        if (off & _FRAME_MASK) + n <= FRAME_BYTES:
            return self._view[off : off + n].tobytes()
        return self._read_split(off, n)

    def stored_size(self, handle: int) -> int:
        return self._entry(handle) & _LEN_MASK

    def free(self, handle: int) -> int:
        loc = self._loc
        entry = loc[handle] if 0 < handle < len(loc) else 0
        if not entry:
            raise KeyError(handle)
        loc[handle] = 0
        self._free_handles.append(handle)
        off, n = entry >> _LEN_BITS, entry & _LEN_MASK
        span = self._frame_span[off >> FRAME_SHIFT]
        cls = self._sp_class[span]
        self.class_used[cls] -= 1
        self.objects -= 1
        self.bytes_stored -= n
        if cls == self._huge:
            self._sp_inuse[span] = 0
            self._free_span(span)
            return n
        slot = off - HEADER_BYTES
        sp_free = self._sp_free
        self._words[slot >> 2] = sp_free[span] << 1
        sp_free[span] = slot >> 4
        inuse = self._sp_inuse[span] - 1
        self._sp_inuse[span] = inuse
        if inuse == 0 or inuse * 10 // self._objs[cls] + 1 != self.lists.group[span]:
            self._settle(span)
        return n

    def _release_slot(self, span: int, slot: int) -> None:
        self._words[slot >> 2] = self._sp_free[span] << 1
        self._sp_free[span] = slot >> 4
        self._sp_inuse[span] -= 1

    # --- compaction -----------------------------------------------------

    def compact(self, max_moves: int | None = None) -> int:
        """Move objects out of sparse spans; return the frames given back.

        ``max_moves`` bounds the objects moved in this call, so the engine
        can compact a little at a time between requests.
        """
        freed, budget = 0, -1 if max_moves is None else max_moves
        for cls in range(self._huge):
            while budget != 0 and self._wasted_spans(cls) > 0:
                dst = self.lists.fullest(cls)
                self.lists.unlink(dst, cls)
                src = self.lists.sparsest(cls)
                self.lists.unlink(src, cls)
                budget = self._migrate(src, dst, budget)
                if self._sp_inuse[src] == 0:
                    freed += self.table.classes[cls].span_frames
                self._settle(dst)
                self._settle(src)
        return freed

    def _wasted_spans(self, cls: int) -> int:
        """Whole spans' worth of free slots in ``cls`` (kernel zs_can_compact)."""
        objs = self._objs[cls]
        return (self.class_spans[cls] * objs - self.class_used[cls]) // objs

    def _migrate(self, src: int, dst: int, budget: int) -> int:
        """Move objects from ``src`` to ``dst`` until src empties, dst fills or budget ends."""
        cls = self._sp_class[src]
        size, objs = self._size[cls], self._objs[cls]
        words, loc = self._words, self._loc
        for slot in self.slot_offsets(self.span_frames(src), size, objs):
            if budget == 0 or self._sp_inuse[src] == 0 or self._sp_inuse[dst] == objs:
                break
            header = words[slot >> 2]
            if not header & 1:
                continue
            handle = header >> 1
            n = loc[handle] & _LEN_MASK
            data = self._read(slot + HEADER_BYTES, n)
            new = self._take_slot(dst)
            words[new >> 2] = header
            self._write(new + HEADER_BYTES, data, n)
            loc[handle] = (new + HEADER_BYTES) << _LEN_BITS | n
            self._release_slot(src, slot)
            budget -= 1
        return budget

    # --- checking -------------------------------------------------------

    def check_invariants(self) -> None:
        check_zsmalloc(self)
