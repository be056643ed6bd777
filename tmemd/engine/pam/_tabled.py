"""TabledPam: dense handles over a PAM whose own handles are sparse.

What: a wrapper that gives every stored object a small handle (an index
into a u64 table holding the inner PAM's handle), reusing freed numbers.

Why: the engine keeps per-handle arrays for ephemeral pages (LRU links and
the reverse map, ``tmemd.engine._space``), which cost memory in proportion
to the highest handle in use.  zsmalloc's handles are table indexes and
zbud's are ``2 * frame + buddy + 1``, both dense; xvmalloc's handle is the
object's byte offset in the arena, up to 1_024 possible values per frame, so
its arrays would cost five times the arena.  The table costs 12 bytes per
handle instead (8 in the table, 4 on the free stack once freed), charged to
the arena like the PAMs' own arrays, and one extra call per operation.

Guarantee: the inner PAM's guarantees, under the outer handles; handle 0 is
never used.  Worked example: storing three objects gives handles 1, 2, 3
whatever their offsets; freeing 2 and storing again gives 2 again.
"""

from __future__ import annotations

from array import array
from typing import Final

from ._base import ArenaPam
from ._pam import Pam, PamStats

__all__ = ["TABLE_HANDLE_BYTES", "TabledPam"]

#: Grow-only bytes per handle: the table entry (u64) and a free-stack slot (u32).
TABLE_HANDLE_BYTES: Final = 12


class TabledPam(Pam):
    """An arena PAM behind a table of dense handles."""

    def __init__(self, inner: ArenaPam) -> None:
        self.inner = inner
        self._loc = array("Q", [0])
        self._free = array("I")
        self.table_charged = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def meta_charged(self) -> int:
        """Grow-only metadata charged to the arena: the inner PAM's and the table's."""
        return self.inner.meta_charged + self.table_charged

    def store(self, data: bytes | bytearray | memoryview) -> int:
        inner = self.inner.store(data)
        if self._free:
            handle = self._free.pop()
        else:
            handle = len(self._loc)
            self._loc.append(0)
            if self.inner.charge_metadata:
                self.inner.arena.meta_bytes += TABLE_HANDLE_BYTES
                self.table_charged += TABLE_HANDLE_BYTES
        self._loc[handle] = inner
        return handle

    def _inner(self, handle: int) -> int:
        inner = self._loc[handle] if 0 < handle < len(self._loc) else 0
        if not inner:
            raise KeyError(handle)
        return inner

    def load(self, handle: int) -> bytes:
        return self.inner.load(self._inner(handle))

    def free(self, handle: int) -> int:
        size = self.inner.free(self._inner(handle))
        self._loc[handle] = 0
        self._free.append(handle)
        return size

    def stored_size(self, handle: int) -> int:
        return self.inner.stored_size(self._inner(handle))

    def bytes_used(self) -> int:
        return self.inner.bytes_used()

    def statistics(self) -> PamStats:
        return self.inner.statistics()

    def compact(self, max_moves: int | None = None) -> int:
        return self.inner.compact(max_moves)

    def check_invariants(self) -> None:
        self.inner.check_invariants()
        live = [inner for inner in self._loc if inner]
        assert len(live) == len(set(live)), f"{self.name}: an object has two handles"
        assert len(live) == self.inner.objects, f"{self.name}: table and objects disagree"
        free = set(self._free)
        assert len(free) == len(self._free), f"{self.name}: a handle is free twice"
        for handle in free:
            assert 0 < handle < len(self._loc) and not self._loc[handle], "bad free handle"
        assert len(live) + len(free) == len(self._loc) - 1, f"{self.name}: lost handles"
