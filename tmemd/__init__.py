"""tmemd: a networked transcendent-memory daemon.

Clients put, get and flush pages in pools on this daemon over the binary
protocol of ``tmem.proto``; the daemon compresses the pages into a fixed
memory arena.  Layers, from the socket inward: ``server`` (asyncio edge),
``_dispatch`` (one read burst answered, without I/O), ``_handlers`` (wire to
engine), ``engine`` (pure tmem semantics, policy, codecs and PAMs).
``cli`` starts it all; ``ctl`` administers it.
"""

from __future__ import annotations

import os

if os.environ.get("TMEMD_PURE_PYTHON", "") not in ("", "0"):
    # The interpreted build was asked for: importing tmem.proto first puts
    # its source-first finder in place before any compiled module loads
    # (tmem.proto._build; without the variable the engine loads no tmem.*).
    from tmem.proto import _build  # noqa: F401

__version__ = "0.1.0"
__all__ = ["__version__"]
