"""Overload: 16x memory oversubscription through the real daemon.

One client puts ``factor`` times ``--memory`` of pages, half into an
ephemeral pool, then half into a persistent one, in pipelined batches,
while the daemon's RSS is sampled.  Pages are unique and compress about
2:1 (2 KiB of seeded random bytes, then zeros), so they really fill the
arena.  Reported: the peak RSS against the bound deploy/README.md states
(``--memory`` + ``OVERHEAD_BYTES``), the persistent puts refused, and the
accepted persistent pages read back (every one must come back, byte for
byte).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tmem.client import Client, Pool

from ._harness import DaemonProcess

__all__ = ["OVERHEAD_BYTES", "OverloadTotals", "oversubscribe"]

PAGE = 4096
#: The RSS overhead the daemon states beyond ``--memory`` (deploy/README.md,
#: docs/memory.md): the interpreter, buffers and warm frames.
OVERHEAD_BYTES = 48 << 20
BATCH_PAGES = 512
#: Sample the RSS every this many batches.
RSS_EVERY_BATCHES = 8


def _page(seed: int, number: int) -> bytes:
    return random.Random(seed * 1_000_003 + number).randbytes(PAGE // 2) + bytes(PAGE // 2)


@dataclass
class OverloadTotals:
    memory_bytes: int = 0
    offered_bytes: int = 0
    peak_rss_bytes: int = 0
    persistent_accepted: int = 0
    persistent_refused: int = 0
    persistent_wrong: int = 0


def _fill(
    daemon: DaemonProcess, pool: Pool, first: int, count: int, seed: int, totals: OverloadTotals
) -> list[int]:
    accepted = []
    for n, start in enumerate(range(first, first + count, BATCH_PAGES)):
        numbers = range(start, min(first + count, start + BATCH_PAGES))
        stored = pool.put_many(
            [(number >> 10, number & 1023, _page(seed, number)) for number in numbers]
        )
        accepted += [number for number, ok in zip(numbers, stored, strict=True) if ok]
        if n % RSS_EVERY_BATCHES == 0:
            totals.peak_rss_bytes = max(totals.peak_rss_bytes, daemon.rss_bytes())
    totals.peak_rss_bytes = max(totals.peak_rss_bytes, daemon.rss_bytes())
    return accepted


def oversubscribe(
    daemon: DaemonProcess, memory_bytes: int, factor: int, seed: int
) -> OverloadTotals:
    """Offer ``factor`` x ``memory_bytes`` of pages (module docstring)."""
    totals = OverloadTotals(memory_bytes=memory_bytes, offered_bytes=factor * memory_bytes)
    half = factor * memory_bytes // PAGE // 2
    with Client(daemon.address, client_name="flood", timeout=120.0) as client:
        _fill(daemon, client.new_pool(persistent=False), 0, half, seed, totals)
        persistent = client.new_pool(persistent=True)
        accepted = _fill(daemon, persistent, half, half, seed, totals)
        totals.persistent_accepted = len(accepted)
        totals.persistent_refused = half - len(accepted)
        for start in range(0, len(accepted), BATCH_PAGES):
            numbers = accepted[start : start + BATCH_PAGES]
            got = persistent.get_many([(number >> 10, number & 1023) for number in numbers])
            for number, data in zip(numbers, got, strict=True):
                totals.persistent_wrong += data != _page(seed, number)
    return totals
