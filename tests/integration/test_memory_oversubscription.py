"""Oversubscription against the real daemon: the arena bounds the whole process.

``tmemd --memory 64MiB`` (default PAMs: zbud for ephemeral, zsmalloc for
persistent pools) takes 1 GiB of ephemeral pages, then 1 GiB of persistent
pages, through ``put_many``.  Checked throughout: the daemon's RSS stays
within the limit plus the stated overhead (docs/memory.md), and it never
crashes (the fixture fails the test on a traceback or an unclean exit).
Checked at the end: ephemeral pages were evicted to make room, the
persistent pages that did not fit were refused (False from ``put``) and every
refusal is counted under its reason, and every accepted persistent page reads
back byte-identical.

Pages are compressible but unique: each is a page of one of 512 word-salad
texts (~2.5x with LZO) with its own number written into its last 16 bytes,
so no two pages are equal and each occupies frame space.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from tmem.client import Client, Pool

from ..conftest import Daemon

PAGE = 4096
MEMORY_BYTES = 64 << 20
#: The overhead docs/memory.md states: RSS <= --memory + 48 MiB (an idle
#: daemon is ~31 MiB; 2 MiB of warm frames; connection buffers).
OVERHEAD_BYTES = 48 << 20
#: 1 GiB of pages per phase.
PAGES_PER_PHASE = (1 << 30) // PAGE
BATCH_PAGES = 512
#: Read the daemon's RSS every this many batches (and after each phase).
RSS_EVERY_BATCHES = 16
BASE_PAGES = 512


def base_pages() -> list[bytes]:
    """Word-salad pages: each draws from its own 32 words, as text does."""
    rng = random.Random(7)
    letters = b"abcdefghijklmnopqrstuvwxyz"
    vocabulary = [bytes(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(2000)]
    pages = []
    for _ in range(BASE_PAGES):
        words = rng.sample(vocabulary, 32)
        text = bytearray()
        while len(text) < PAGE:
            text += rng.choice(words) + b" "
        pages.append(bytes(text[:PAGE]))
    return pages


def page(bases: list[bytes], number: int) -> bytes:
    return bases[number % BASE_PAGES][: PAGE - 16] + number.to_bytes(16, "little")


def batches(first: int, count: int) -> Iterator[range]:
    for start in range(first, first + count, BATCH_PAGES):
        yield range(start, min(first + count, start + BATCH_PAGES))


def fill(pool: Pool, bases: list[bytes], first: int, daemon: Daemon, peak: list[int]) -> list[int]:
    """Put PAGES_PER_PHASE pages numbered from ``first``; return the stored numbers."""
    stored: list[int] = []
    for n, numbers in enumerate(batches(first, PAGES_PER_PHASE)):
        items = [(number >> 10, number & 1023, page(bases, number)) for number in numbers]
        stored += [number for number, ok in zip(numbers, pool.put_many(items), strict=True) if ok]
        if n % RSS_EVERY_BATCHES == 0:
            peak[0] = max(peak[0], daemon.rss_bytes())
    peak[0] = max(peak[0], daemon.rss_bytes())
    return stored


def test_one_gib_ephemeral_then_one_gib_persistent_into_64_mib(
    daemon_factory: Callable[..., Daemon],
) -> None:
    daemon = daemon_factory("--memory", "64MiB")
    bases = base_pages()
    peak = [0]
    with Client(daemon.address, client_name="oversub") as client:
        ephemeral = client.new_pool()
        cached = fill(ephemeral, bases, 0, daemon, peak)
        persistent = client.new_pool(persistent=True)
        accepted = fill(persistent, bases, PAGES_PER_PHASE, daemon, peak)
        refused = PAGES_PER_PHASE - len(accepted)
        for numbers in batches(0, len(accepted)):
            keys = [(accepted[i] >> 10, accepted[i] & 1023) for i in numbers]
            got = persistent.get_many(keys, exclusive=False)
            assert got == [page(bases, accepted[i]) for i in numbers]
        (stats,) = client.stats()["clients"]
    assert peak[0] <= MEMORY_BYTES + OVERHEAD_BYTES, f"RSS peaked at {peak[0] / 2**20:.1f} MiB"
    # Most of 1 GiB cannot fit: pages went, and so did persistent puts.
    assert len(cached) == PAGES_PER_PHASE  # ephemeral puts evict, they are not refused
    assert (
        stats["pages_evicted_by_reason"]["lru"] + stats["pages_evicted_by_reason"]["reclaim"]
        >= PAGES_PER_PHASE - len(accepted) // 2
    )
    assert 0 < len(accepted) < PAGES_PER_PHASE // 4
    reasons = stats["puts_refused_by_reason"]
    assert sum(reasons.values()) == refused == stats["counters"]["puts_refused"]
    assert reasons["persistent_full"] > 0
    assert stats["persistent_pages"] == len(accepted)
