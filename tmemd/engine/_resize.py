"""Hot resize: moving the memory limit of a running engine.

What: ``set_memory(engine, nbytes)`` makes ``nbytes`` the engine's memory
limit at once: the arena's frame count, the persistent share and the limit
the statistics report.  Growing is immediate, up to the address space the
arena mapped at start (``EngineConfig.memory_reserve_bytes``; the arena
counts frames rather than placing them, so the limit can move without a
frame moving, ``pam._arena``).

Shrinking keeps every promise: a persistent page is never lost.  The
order is:

1. refuse (``BadArgument``, nothing changed) if the persistent pages'
   stored bytes pass the new persistent share (``persistent_max`` of the
   new size): the share would be over its limit the moment it applied;
2. lower the limit, then evict ephemeral pages fairly (most-above-share
   client first, as ``flush_ephemeral`` does) until the frames in use and
   the metadata fit, and compact the PAMs if evicting was not enough;
3. if they still do not fit (persistent pages packed in frames that cannot
   be emptied, or their metadata), put the old limit back and refuse.  The
   ephemeral pages evicted on the way stay evicted: the contract lets the
   daemon drop them at any time.

The work is bounded by the pages evicted (each ``flush_ephemeral`` round
frees at least one page or ends) plus one full compaction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Final

from ._errors import BadArgument, Unsupported

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["MIN_MEMORY_BYTES", "set_memory"]

#: The smallest limit: one 4 KiB frame could not even hold the metadata of
#: a pool, and 64 KiB is the daemon's own smallest ``--memory``.
MIN_MEMORY_BYTES: Final = 64 << 10


def _excess(engine: Engine) -> int:
    """Bytes in use (frames and metadata) beyond the limit; <= 0 when they fit."""
    arena = engine._memory.arena
    assert arena is not None
    return (arena.frames_used << 12) + arena.meta_bytes - arena.size_bytes


def set_memory(engine: Engine, nbytes: int) -> int:
    """Make ``nbytes`` the memory limit (module docstring); return the stored
    bytes of ephemeral pages evicted to get there."""
    arena = engine._memory.arena
    if arena is None:
        raise Unsupported("the memory limit can only be changed with an arena (named PAMs)")
    reserved = arena.frames_reserved << 12
    if not MIN_MEMORY_BYTES <= nbytes <= reserved:
        raise BadArgument(
            f"memory {nbytes} is not in [{MIN_MEMORY_BYTES}, {reserved}]: the daemon mapped "
            f"{reserved} bytes at start (--max-memory)"
        )
    config = engine._config
    share = engine._share
    allowed = int(nbytes * config.persistent_max)
    if share.bytes > allowed:
        floor = math.ceil(share.bytes / config.persistent_max)
        raise BadArgument(
            f"persistent pages hold {share.bytes} bytes, over the persistent share of "
            f"{nbytes} bytes ({allowed}); the limit can go no lower than {floor} bytes"
        )
    old = arena.size_bytes
    arena.resize(nbytes)
    evicted = 0
    while _excess(engine) > 0 and engine.freeable():
        freed = engine.flush_ephemeral(_excess(engine))
        if not freed:
            break
        evicted += freed
    if _excess(engine) > 0:
        for space in engine._memory.spaces[1:]:
            space.pam.compact(None)
    if _excess(engine) > 0:
        in_use = _excess(engine) + arena.size_bytes
        arena.resize(old)
        raise BadArgument(
            f"cannot shrink to {nbytes} bytes: {in_use} bytes stay in use after evicting "
            "every ephemeral page"
        )
    share.max_bytes = allowed
    share.accept_bytes = int(nbytes * config.persistent_accept)
    engine._config = dataclasses.replace(config, memory_bytes=nbytes)
    return evicted
