"""zsmalloc's ``check_invariants``: a full walk, kept apart from the hot path.

It walks every span from the per-frame arrays, every slot of every span,
every free list, every fullness list and the whole handle table, and checks
that they tell one story:

* each frame we hold belongs to exactly one span, whose chain has its
  class's length and whose frames all name the span's first frame;
* in each span, allocated slots (header bit 0 set) name a handle whose
  table entry points back at that slot with a length of this class; the
  free list visits exactly the other slots, once; ``inuse`` counts the
  allocated ones and decides the fullness group the span is listed in;
* the table's live entries are exactly the allocated slots plus the huge
  frames, the free-handle stack holds exactly the free entries, and the
  object, byte, span and per-class counters match.

It costs O(frames + slots + handles); tests call it after every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ._arena import FRAME_SHIFT
from ._base import NIL
from ._zsclasses import HEADER_BYTES

if TYPE_CHECKING:
    from ._zsmalloc import ZsmallocPam

__all__ = ["check_zsmalloc"]

_LEN_BITS: Final = 13


def check_zsmalloc(pam: ZsmallocPam) -> None:
    """Raise ``AssertionError`` naming the first inconsistency found."""
    spans = _check_spans(pam)
    slots = _check_slots(pam, spans)
    _check_handles(pam, slots, spans)
    for cls in range(len(pam.table.classes)):
        listed = pam.lists.members(cls)
        for span, group in listed.items():
            assert spans.get(span) == cls, f"zsmalloc: listed span {span} is not of class {cls}"
            objs = pam.table.classes[cls].objs
            inuse = pam._sp_inuse[span]
            assert group == inuse * 10 // objs + 1, f"zsmalloc: span {span} in group {group}"


def _check_spans(pam: ZsmallocPam) -> dict[int, int]:
    """Live span ids -> class; frames held match the spans' chains."""
    frame_span = pam._frame_span
    spans: dict[int, int] = {}
    frames: list[int] = []
    free_ids = set(pam._span_ids)
    assert len(free_ids) == len(pam._span_ids), "zsmalloc: a span id freed twice"
    for span in range(len(pam._sp_first)):
        if span in free_ids:
            assert pam._sp_first[span] == NIL, f"zsmalloc: free span id {span} has frames"
            assert pam.lists.group[span] == 0, f"zsmalloc: free span id {span} is listed"
            continue
        cls = pam._sp_class[span]
        assert cls < len(pam.table.classes), f"zsmalloc: span {span} has class {cls}"
        chain = pam.span_frames(span)
        want = pam.table.classes[cls].span_frames
        assert len(chain) == want, f"zsmalloc: span {span} has {len(chain)} frames, not {want}"
        for member in chain:
            assert frame_span[member] == span, f"zsmalloc: frame {member} names another span"
        spans[span] = cls
        frames.extend(chain)
    owned = [f for f in range(len(frame_span)) if frame_span[f] != NIL]
    assert sorted(owned) == sorted(frames), "zsmalloc: a frame is held outside any span chain"
    pam._check_frames_owned(frames)
    per_class = [0] * len(pam.table.classes)
    for cls in spans.values():
        per_class[cls] += 1
    assert per_class == pam.class_spans, "zsmalloc: per-class span counters are wrong"
    return spans


def _check_slots(pam: ZsmallocPam, spans: dict[int, int]) -> dict[int, int]:
    """Walk every slot of every non-huge span; return handle -> slot offset."""
    words, huge = pam.arena.words, len(pam.table.classes) - 1
    found: dict[int, int] = {}
    for span, cls in spans.items():
        if cls == huge:
            assert pam._sp_inuse[span] == 1, f"zsmalloc: huge span {span} not in use"
            continue
        c = pam.table.classes[cls]
        offs = pam.slot_offsets(pam.span_frames(span), c.size, c.objs)
        free = set()
        slot, steps = pam._sp_free[span], 0
        while slot != 0x7FFFFFFF:
            assert slot << 4 in offs, f"zsmalloc: free link {slot << 4} is no slot of {span}"
            assert slot not in free, f"zsmalloc: free list of span {span} has a cycle"
            free.add(slot)
            header = words[(slot << 4) >> 2]
            assert header & 1 == 0, f"zsmalloc: allocated slot {slot << 4} on a free list"
            slot, steps = header >> 1, steps + 1
        inuse = 0
        for off in offs:
            header = words[off >> 2]
            if header & 1:
                handle = header >> 1
                assert handle not in found, f"zsmalloc: handle {handle} in two slots"
                found[handle] = off
                inuse += 1
            else:
                assert off >> 4 in free, f"zsmalloc: free slot {off} is on no free list"
        assert inuse == pam._sp_inuse[span], f"zsmalloc: span {span} counts {inuse} objects"
        assert inuse + len(free) == c.objs, f"zsmalloc: span {span} loses slots"
        assert inuse > 0, f"zsmalloc: empty span {span} was not freed"
    return found


def _check_handles(pam: ZsmallocPam, slots: dict[int, int], spans: dict[int, int]) -> None:
    """The table and the slots agree; counters match."""
    loc, by_length = pam._loc, pam.table.by_length
    huge = len(pam.table.classes) - 1
    free_handles = set(pam._free_handles)
    assert len(free_handles) == len(pam._free_handles), "zsmalloc: a handle freed twice"
    assert loc[0] == 0 and 0 not in free_handles, "zsmalloc: handle 0 is in use"
    objects = stored = 0
    used = [0] * len(pam.table.classes)
    huge_frames: set[int] = set()
    for handle in range(1, len(loc)):
        entry = loc[handle]
        if not entry:
            assert handle in free_handles, f"zsmalloc: handle {handle} leaked"
            continue
        assert handle not in free_handles, f"zsmalloc: live handle {handle} on the free stack"
        off, n = entry >> _LEN_BITS, entry & ((1 << _LEN_BITS) - 1)
        cls = by_length[n]
        if cls == huge:
            frame = off >> FRAME_SHIFT
            assert spans.get(pam._frame_span[frame]) == huge and off == frame << FRAME_SHIFT, (
                f"zsmalloc: huge handle {handle} does not own frame {frame}"
            )
            assert frame not in huge_frames, f"zsmalloc: huge frame {frame} has two handles"
            huge_frames.add(frame)
        else:
            assert slots.get(handle) == off - HEADER_BYTES, (
                f"zsmalloc: handle {handle} points at {off}, its slot header says otherwise"
            )
            span = pam._frame_span[(off - HEADER_BYTES) >> FRAME_SHIFT]
            assert spans.get(span) == cls, f"zsmalloc: handle {handle} ({n} B) in a wrong class"
        used[cls] += 1
        objects += 1
        stored += n
    assert len(slots) + len(huge_frames) == objects, "zsmalloc: slots without a handle"
    assert sum(1 for c in spans.values() if c == huge) == len(huge_frames), (
        "zsmalloc: a huge frame holds no handle"
    )
    assert used == pam.class_used, "zsmalloc: per-class object counters are wrong"
    assert objects == pam.objects, f"zsmalloc: {objects} objects, counter {pam.objects}"
    assert stored == pam.bytes_stored, f"zsmalloc: {stored} bytes, counter {pam.bytes_stored}"
