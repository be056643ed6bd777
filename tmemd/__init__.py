"""tmemd: a networked transcendent-memory daemon.

Clients put, get and flush pages in pools on this daemon over the binary
protocol of ``tmem.proto``; the daemon compresses the pages into a fixed
memory arena.  Layers, from the socket inward: ``server`` (asyncio edge),
``_handlers`` (wire to engine), ``engine`` (pure tmem semantics, policy,
codecs and PAMs).  ``cli`` starts it all; ``ctl`` administers it.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
