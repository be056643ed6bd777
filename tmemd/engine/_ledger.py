"""The ledger: where the engine charges the metadata it keeps beside pages.

Every structure that grows with the pages (the page index, the spaces'
per-handle arrays, the same-filled store, the PAMs' own tables, trained
dictionaries) adds its bytes to one ledger's ``meta_bytes`` as it grows and
takes them back as it shrinks.  Who bounds them depends on the memory:

* with an arena, the ledger *is* the arena (``pam.Arena``): ``frames_used *
  4 KiB + meta_bytes <= size_bytes`` is the daemon's memory limit, so a
  flood of tiny pages is bounded by its metadata like any other;
* with PAMs that charge their own bytes (``pam.BytesPam``, tests, plugged-in
  PAMs), a ``MetaLedger`` counts metadata but bounds nothing.

It is a ``Protocol`` rather than a base class so that the arena, which is a
PAM building block first, need not inherit from the engine's bookkeeping;
both implementations are plain attribute holders (the hot path reads the
three attributes directly, without a call).
"""

from __future__ import annotations

from typing import Final, Protocol

__all__ = ["Ledger", "MetaLedger"]


class Ledger(Protocol):
    """Where metadata bytes are charged, beside the frames in use: the arena
    (``pam.Arena``) or a ``MetaLedger``."""

    meta_bytes: int
    frames_used: int
    size_bytes: int

    def room_for(self, meta_bytes: int) -> bool:
        """Whether ``meta_bytes`` more metadata fit within the limit."""
        ...


#: A limit no engine reaches: a ``MetaLedger`` only counts.
_UNBOUNDED_BYTES: Final = 1 << 62


class MetaLedger:
    """A ledger that counts metadata but bounds nothing (PAMs that charge
    their own bytes, such as ``BytesPam``, do the bounding)."""

    __slots__ = ("frames_used", "meta_bytes", "size_bytes")

    def __init__(self) -> None:
        self.meta_bytes = 0
        self.frames_used = 0
        self.size_bytes = _UNBOUNDED_BYTES

    def room_for(self, meta_bytes: int) -> bool:
        return True
