"""Every PAM (page-addressable memory): the interface and its stores.

A PAM stores opaque byte strings behind integer handles (``_pam``: ``Pam``,
``PamFull``, ``PamStats``).  The engine's stores all live here:

* ``BytesPam`` (``_bytes``): one ``bytes`` object per page under a byte
  budget; the reference store, and what an engine without an arena uses.
* ``SamePam`` (``_same``): the fill byte of each same-filled page, behind
  reusable handles; no frame.

The daemon's memory limit is one ``Arena`` of 4 KiB frames (``_arena``);
the arena PAMs take frames from it and pack compressed pages into them, so
no stored page is ever a Python object of its own.  Three share the frame
accounting of ``_base.ArenaPam`` and may share one arena:

* ``ZbudPam`` (``_zbud``): two pages per frame, ``reclaim()`` frees the
  least recently stored-into frame.  Density <= 2; simple eviction; the
  store for ephemeral pools.
* ``XvmallocPam`` (``_xvmalloc``): TLSF-style variable blocks inside
  frames.  The seed's persistent store.
* ``ZsmallocPam`` (``_zsmalloc``): 16-byte size classes across spans of
  several frames, handles through an indirection table, ``compact()``.
  Within ~3 % of an ideal packer on real pages: the dense store.

Reading order: ``_pam``, ``_bytes``, ``_same``, ``_arena``, ``_base``,
``_zbud``, ``_xvmalloc``, ``_zsclasses``, ``_zsspans``, ``_zsmalloc``,
``_zscheck``, ``_tabled``.

``make_arena_pam(name, arena)`` builds the PAM the daemon means by a name:
xvmalloc's handles are arena offsets, so it comes behind a ``TabledPam``
that hands out dense handles (the engine's per-handle arrays need them).

Overhead outside the arena: the arena's 1 byte per frame plus 4 bytes per
released frame; per frame held, 20 bytes (zbud), 2 bytes (xvmalloc) or
about 12 bytes (zsmalloc: 8 per frame, 25 per span); per handle, nothing
(zbud) or 12 bytes of handle table and free stack (zsmalloc, and xvmalloc
behind ``TabledPam``).  Per-frame arrays grow by a quarter at a time with
the highest frame held.  A PAM built with ``charge_metadata=True`` (the
engine's) charges every such growth to the arena's ledger, so that the
arena bounds them too (``_arena``, ``_base``).  Measured with tracemalloc
on real pages (``bench/pam_density.py``): about 12, 1 and 15 bytes per
stored object before the table, 1 % of a typical 1.5 KiB compressed page.
Inside the arena, xvmalloc and zsmalloc spend a 4-byte header per object.
"""

from __future__ import annotations

from ._arena import FRAME_BYTES, FRAME_SHIFT, KEEP_WARM_FRAMES, RELEASE_BATCH_FRAMES, Arena
from ._base import ArenaPam
from ._bytes import BYTES_PAM_OVERHEAD, BytesPam, choose_pams
from ._pam import Pam, PamFull, PamStats
from ._same import SAME_HANDLE_BYTES, SamePam
from ._tabled import TabledPam
from ._xvmalloc import XvmallocPam
from ._zbud import ZbudPam
from ._zsclasses import DEFAULT_MAX_SPAN_FRAMES, SizeClass, build_classes
from ._zsmalloc import ZsmallocPam

__all__ = [
    "ARENA_PAM_NAMES",
    "BYTES_PAM_OVERHEAD",
    "DEFAULT_MAX_SPAN_FRAMES",
    "FRAME_BYTES",
    "FRAME_SHIFT",
    "KEEP_WARM_FRAMES",
    "MAX_OBJECT_BYTES",
    "RELEASE_BATCH_FRAMES",
    "SAME_HANDLE_BYTES",
    "Arena",
    "ArenaPam",
    "BytesPam",
    "Pam",
    "PamFull",
    "PamStats",
    "SamePam",
    "SizeClass",
    "TabledPam",
    "XvmallocPam",
    "ZbudPam",
    "ZsmallocPam",
    "build_classes",
    "choose_pams",
    "make_arena_pam",
]

#: The largest object any arena PAM stores: one frame (a page kept raw).
MAX_OBJECT_BYTES = FRAME_BYTES
#: The arena PAMs' names, as pools and the daemon's flags use them.
ARENA_PAM_NAMES = ("zbud", "xvmalloc", "zsmalloc")


def make_arena_pam(name: str, arena: Arena, *, charge_metadata: bool = False) -> Pam:
    """The PAM called ``name`` on ``arena``, with dense handles."""
    if name == "zbud":
        return ZbudPam(arena, charge_metadata=charge_metadata)
    if name == "zsmalloc":
        return ZsmallocPam(arena, charge_metadata=charge_metadata)
    if name == "xvmalloc":
        return TabledPam(XvmallocPam(arena, charge_metadata=charge_metadata))
    raise ValueError(f"no arena PAM {name!r}; have {', '.join(ARENA_PAM_NAMES)}")
