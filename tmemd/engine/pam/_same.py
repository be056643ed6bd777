"""SamePam: handles for same-filled pages, which take no frame.

What: a page whose bytes are all equal (~10 % of swap pages are zero) is
stored as its fill byte.  ``SamePam`` hands out a handle per such page and
keeps the fill byte in a ``bytearray`` indexed by handle.

Why a handle at all, when the byte would fit in the page token: an
ephemeral same-filled page still costs metadata (its index entry, its LRU
links), so it must be evictable like any other ephemeral page, and the
engine's LRU and reverse map are arrays over handle numbers.  One handle
space for all same-filled pages keeps them in one such set of arrays.

Cost: 6 bytes per handle ever live at once (the fill byte, a live flag and a
place on the free-handle stack), charged to the ledger as they grow; no frame.
Guarantee: ``load(h)`` is the one fill byte stored under ``h`` until
``free(h)``; freed handles are reused, newest first.  Worked example: the
first zero page gets handle 1 with ``fills[1] == 0``; freeing it and storing
a page of 0xFF bytes gives handle 1 again with ``fills[1] == 255``.
"""

from __future__ import annotations

from array import array
from typing import Final

from .._ledger import Ledger
from ._pam import Pam, PamStats

__all__ = ["SAME_HANDLE_BYTES", "SamePam"]

#: Grow-only bytes per handle: the fill byte, the live flag, the free stack's u32.
SAME_HANDLE_BYTES: Final = 6


class SamePam(Pam):
    """Fill bytes of same-filled pages, behind reusable handles."""

    NAME = "same"

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        #: Fill byte per handle; handle 0 is never used.
        self.fills = bytearray(1)
        self._live = bytearray(1)
        self._free = array("I")
        self.objects = 0

    def store(self, data: bytes | bytearray | memoryview) -> int:
        if len(data) != 1:
            raise ValueError(f"a same-filled page is stored as its one fill byte, not {len(data)}")
        if self._free:
            handle = self._free.pop()
        else:
            handle = len(self.fills)
            self.fills.append(0)
            self._live.append(0)
            self._ledger.meta_bytes += SAME_HANDLE_BYTES
        self.fills[handle] = data[0]
        self._live[handle] = 1
        self.objects += 1
        return handle

    def _check(self, handle: int) -> None:
        if not (0 < handle < len(self._live) and self._live[handle]):
            raise KeyError(handle)

    def load(self, handle: int) -> bytes:
        self._check(handle)
        return bytes((self.fills[handle],))

    def free(self, handle: int) -> int:
        self._check(handle)
        self._live[handle] = 0
        self._free.append(handle)
        self.objects -= 1
        return 1

    def stored_size(self, handle: int) -> int:
        self._check(handle)
        return 1

    def bytes_used(self) -> int:
        return 0

    def statistics(self) -> PamStats:
        return PamStats(self.name, self.objects, 0, 0, 0)

    def check_invariants(self) -> None:
        free = set(self._free)
        assert len(free) == len(self._free), "same: a handle is free twice"
        assert 0 not in free, "same: handle 0 is on the free stack"
        for handle in range(1, len(self._live)):
            assert bool(self._live[handle]) != (handle in free), f"same: handle {handle} state"
        assert self.objects == len(self._live) - 1 - len(free), "same: object count"
