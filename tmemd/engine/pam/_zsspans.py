"""zsmalloc fullness lists: partly used spans by class and fill, O(1) picks.

What: for each class, ten doubly linked lists of spans, one per fullness
group (kernel ``ZS_INUSE_RATIO_10`` .. ``_99``): group ``g`` in 1..10 holds
spans whose fill ``inuse / objs`` is in ``[(g - 1) / 10, g / 10)``.  Group
0 means "on no list": the span is full, being set up, or being compacted.

Why: stores want the fullest partly used span (so sparse ones drain and can
be freed), compaction wants the sparsest as source and the fullest as
destination.  A bitmap of non-empty groups per class makes each pick one bit
scan instead of a walk.

How: links are two i32 arrays indexed by span (its first frame's number),
heads an i32 array indexed ``class * 11 + group``.  Worked example: a span
of 21 slots with 8 in use is in group 8 * 10 // 21 + 1 = 4; one more
object (9 / 21 = 43 %) moves it to group 5, and at 21 / 21 it leaves the
lists until a free makes room in it again.
"""

from __future__ import annotations

from array import array
from typing import Final

from ._base import NIL, extend_to

__all__ = ["GROUPS", "STRIDE", "SpanLists"]

#: Partial fullness groups per class (1..10); index 0 is "on no list".
GROUPS: Final = 10
#: Heads per class in ``heads`` (index ``class * STRIDE + group``).
STRIDE: Final = GROUPS + 1
_NONE: Final = -1


class SpanLists:
    """Per-class fullness-group lists of spans."""

    def __init__(self, classes: int) -> None:
        self.group = bytearray()
        self._next = array("i")
        self._prev = array("i")
        self.heads = array("i", [_NONE]) * (classes * STRIDE)
        self.bits = [0] * classes

    def grow(self, spans: int) -> None:
        """Cover span ids below ``spans``."""
        if len(self.group) < spans:
            self.group.extend(bytes(spans - len(self.group)))
        extend_to(self._next, spans, _NONE)
        extend_to(self._prev, spans, _NONE)

    def move(self, span: int, cls: int, group: int) -> None:
        """Put ``span`` (of class ``cls``) on list ``group`` (0: on none)."""
        old = self.group[span]
        if old == group:
            return
        if old:
            self._unlink(span, cls, old)
        if group:
            i = cls * STRIDE + group
            head = self.heads[i]
            self._next[span] = head
            self._prev[span] = _NONE
            if head != _NONE:
                self._prev[head] = span
            self.heads[i] = span
            self.bits[cls] |= 1 << group
        self.group[span] = group

    def unlink(self, span: int, cls: int) -> None:
        """Take ``span`` off its list, if any."""
        self.move(span, cls, 0)

    def _unlink(self, span: int, cls: int, group: int) -> None:
        nxt, prv = self._next[span], self._prev[span]
        if prv == _NONE:
            self.heads[cls * STRIDE + group] = nxt
            if nxt == _NONE:
                self.bits[cls] &= ~(1 << group)
        else:
            self._next[prv] = nxt
        if nxt != _NONE:
            self._prev[nxt] = prv

    def fullest(self, cls: int) -> int:
        """A span of the fullest non-empty group of ``cls``, or ``NIL``."""
        bits = self.bits[cls]
        if not bits:
            return NIL
        return self.heads[cls * STRIDE + bits.bit_length() - 1]

    def sparsest(self, cls: int) -> int:
        """A span of the sparsest non-empty group of ``cls``, or ``NIL``."""
        bits = self.bits[cls]
        if not bits:
            return NIL
        return self.heads[cls * STRIDE + (bits & -bits).bit_length() - 1]

    def members(self, cls: int) -> dict[int, int]:
        """Every listed span of ``cls`` -> its group, checking links on the way."""
        out: dict[int, int] = {}
        for group in range(1, STRIDE):
            span, prev = self.heads[cls * STRIDE + group], _NONE
            has = bool(self.bits[cls] >> group & 1)
            assert has == (span != _NONE), f"zsmalloc: group bit {cls}/{group} is wrong"
            while span != _NONE:
                assert span not in out, f"zsmalloc: span {span} listed twice"
                assert self._prev[span] == prev, f"zsmalloc: back link of span {span}"
                assert self.group[span] == group, f"zsmalloc: span {span} group mismatch"
                out[span] = group
                prev, span = span, self._next[span]
        assert self.bits[cls] & 1 == 0, "zsmalloc: group 0 marked non-empty"
        return out
