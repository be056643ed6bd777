"""The page-addressable memory (PAM) interface.

A PAM stores opaque byte strings (compressed pages) and hands back an opaque
integer handle, never 0, as the kernel's zpool API does (zbud, zsmalloc).
The engine owns meaning (which page a handle holds, which pages may be
evicted); a PAM owns only placement.  That split is what lets the engine swap
a bytes-per-page store for the arena allocators without touching tmem
semantics.

Eviction: every PAM supports freeing any handle, so the engine can always
evict page by page.  A PAM whose unit of reclaim is larger than a page (zbud
frees whole frames) also implements ``reclaim()``: it picks its own victim
unit, frees every object in it and returns their handles, which the engine
then drops from its index.  PAMs without such a unit return ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mypy_extensions import mypyc_attr

__all__ = ["Pam", "PamFull", "PamStats"]


class PamFull(Exception):
    """The PAM has no room for this object (the engine may evict and retry)."""


@dataclass(frozen=True, slots=True)
class PamStats:
    """A PAM's own view of its memory at one instant."""

    name: str
    #: Live objects (stored pages).
    objects: int
    #: Sum of the stored objects' lengths.
    bytes_stored: int
    #: Memory charged to this PAM: frames held, or bytes plus overhead.
    bytes_used: int
    #: Memory this PAM may grow to (its share of the arena or its budget).
    capacity: int
    #: Frames (4 KiB) held; 0 for PAMs that do not use frames.
    frames: int = 0
    #: The pool kinds it serves by default: ``ephemeral``, ``persistent``,
    #: ``any`` (both), or ``named`` (only pools that asked for it by name).
    #: Filled in by the engine (``Memory.pam_roles``); a PAM leaves it empty.
    role: str = ""


# A plug point: PAMs written elsewhere (tests, plugged-in stores) subclass
# it, also when the engine is compiled.
@mypyc_attr(allow_interpreted_subclasses=True)
class Pam:
    """Storage for compressed pages behind opaque integer handles.

    A plain base class, not ``abc.ABC``: mypyc-compiled subclasses of an
    ABC share its ``isinstance`` cache, so a zbud PAM tested as
    ``ZsmallocPam`` would say yes (docs/build.md).  The methods a PAM must
    define raise NotImplementedError here.
    """

    #: The PAM's name, as pools name it: a class constant (a subclass sets
    #: its own, also an interpreted one, as ``name = ...`` or ``NAME = ...``).
    NAME: ClassVar[str] = "pam"

    @property
    def name(self) -> str:
        return self.NAME

    def store(self, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` in; return its handle (never 0) or raise ``PamFull``."""
        raise NotImplementedError

    def load(self, handle: int) -> bytes:
        """The bytes stored under ``handle``."""
        raise NotImplementedError

    def free(self, handle: int) -> int:
        """Release ``handle`` (it may be reused by a later ``store``); return
        the length that was stored under it."""
        raise NotImplementedError

    def stored_size(self, handle: int) -> int:
        """Length of the bytes stored under ``handle``."""
        raise NotImplementedError

    def bytes_used(self) -> int:
        """Memory charged to this PAM now (what counts against the limit)."""
        raise NotImplementedError

    def statistics(self) -> PamStats:
        """A frozen snapshot for metrics and benchmarks."""
        raise NotImplementedError

    def check_invariants(self) -> None:
        """Walk every internal structure; raise ``AssertionError`` on corruption."""
        raise NotImplementedError

    def reclaim(self) -> list[int] | None:
        """Free one whole reclaim unit and return the handles it held.

        ``None`` means the PAM has no unit larger than an object; the engine
        then evicts page by page with ``free``.
        """
        return None

    def compact(self, max_moves: int | None = None) -> int:
        """Move objects to give whole frames back; return the frames freed.

        ``max_moves`` bounds the work of one call.  PAMs that cannot move
        objects return 0.
        """
        return 0
