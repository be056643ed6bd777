"""Arena-backed PAMs: compressed pages packed into the frames of one arena.

The daemon's memory limit is one ``Arena`` of 4 KiB frames (``_arena``);
PAMs take frames from it and pack compressed pages into them, so no stored
page is ever a Python object of its own.  Three PAMs share the ``Pam``
interface of ``tmemd.engine._pam`` and may share one arena:

* ``ZbudPam`` (``_zbud``): two pages per frame, ``reclaim()`` frees the
  least recently stored-into frame.  Density <= 2; simple eviction; the
  store for ephemeral pools.
* ``XvmallocPam`` (``_xvmalloc``): TLSF-style variable blocks inside
  frames.  The seed's persistent store.
* ``ZsmallocPam`` (``_zsmalloc``): 16-byte size classes across spans of
  several frames, handles through an indirection table, ``compact()``.
  Within ~3 % of an ideal packer on real pages: the dense store.

Reading order: ``_arena``, ``_base``, ``_zbud``, ``_xvmalloc``,
``_zsclasses``, ``_zsspans``, ``_zsmalloc``, ``_zscheck``.

Overhead outside the arena (what the daemon holds beyond ``--memory`` for
its PAMs): the arena's 1 byte per frame plus 4 bytes per released frame;
per frame held, 20 bytes (zbud), 2 bytes (xvmalloc) or about 12 bytes
(zsmalloc: 8 per frame, 21 per span); per object, nothing (zbud,
xvmalloc) or 8 bytes of handle table (zsmalloc).  Per-frame arrays grow
by a quarter at a time with the highest frame held.  Measured with
tracemalloc on real pages (``bench/pam_density.py``): about 12, 1 and 15
bytes per stored object, 1 % of a typical 1.5 KiB compressed page (but
more for tiny objects: a 30-byte object still costs 8 bytes of table).
Inside the arena, xvmalloc and zsmalloc spend a 4-byte header per object.
"""

from __future__ import annotations

from ._arena import FRAME_BYTES, FRAME_SHIFT, KEEP_WARM_FRAMES, RELEASE_BATCH_FRAMES, Arena
from ._base import ArenaPam
from ._xvmalloc import XvmallocPam
from ._zbud import ZbudPam
from ._zsclasses import DEFAULT_MAX_SPAN_FRAMES, SizeClass, build_classes
from ._zsmalloc import ZsmallocPam

__all__ = [
    "DEFAULT_MAX_SPAN_FRAMES",
    "FRAME_BYTES",
    "FRAME_SHIFT",
    "KEEP_WARM_FRAMES",
    "MAX_OBJECT_BYTES",
    "RELEASE_BATCH_FRAMES",
    "Arena",
    "ArenaPam",
    "SizeClass",
    "XvmallocPam",
    "ZbudPam",
    "ZsmallocPam",
    "build_classes",
]

#: The largest object any arena PAM stores: one frame (a page kept raw).
MAX_OBJECT_BYTES = FRAME_BYTES
