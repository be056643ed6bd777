"""PAMs through the real daemon: a pool's choice of PAM, big pages, and the
memory bound when the arena fills with pages or with metadata alone."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tmem.client import Client, RefuseReason

from ..conftest import Daemon

#: The overhead docs/memory.md states: RSS <= --memory + 48 MiB.
OVERHEAD_BYTES = 48 << 20
BATCH = 512


def text_page(seed: int, size: int) -> bytes:
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghij", k=rng.randint(2, 8))) for _ in range(40)]
    out = bytearray()
    while len(out) < size:
        out += rng.choice(words) + b" "
    return bytes(out[:size])


@pytest.mark.parametrize("pam", ["zbud", "xvmalloc", "zsmalloc"])
def test_each_pam_serves_small_and_big_pages(
    daemon_factory: Callable[..., Daemon], pam: str
) -> None:
    daemon = daemon_factory("--memory", "16MiB", "--codec", "zstd")
    with Client(daemon.address, client_name="pams") as client:
        for persistent in (True, False):
            for size in (4096, 65536):
                pool = client.new_pool(persistent=persistent, pam=pam, page_size=size)
                pages = [text_page(i, size) for i in range(8)]
                pages += [random.Random(i).randbytes(size) for i in range(4)] + [bytes(size)]
                assert all(pool.put_many([(3, i, p) for i, p in enumerate(pages)]))
                assert pool.get_many([(3, i) for i in range(len(pages))], exclusive=False) == pages
                assert pool.flush_object(3) == len(pages)
                pool.destroy()
        (stats,) = client.stats()["clients"]
        assert stats["pages"] == 0


def fill_until_refused(client: Client, page: Callable[[int], bytes], limit: int) -> int:
    """Put swap-numbered pages into a new persistent pool until a put is refused."""
    pool = client.new_pool(persistent=True)
    for start in range(0, limit, BATCH):
        numbers = range(start, start + BATCH)
        results = pool.put_many([(n & 15, n >> 4, page(n)) for n in numbers])
        if not all(results):
            assert pool.last_refusal is RefuseReason.NO_MEMORY
            return start + results.index(False)
    raise AssertionError(f"{limit} pages and no refusal")


def test_a_full_arena_stays_within_the_stated_overhead(
    daemon_factory: Callable[..., Daemon],
) -> None:
    memory = 32 << 20
    daemon = daemon_factory(
        "--memory", "32MiB", "--persistent-max", "1.0", "--persistent-accept", "1.0"
    )
    bases = [text_page(i, 4096) for i in range(64)]
    with Client(daemon.address, client_name="full") as client:
        stored = fill_until_refused(client, lambda n: bases[n % 64][:-8] + n.to_bytes(8), 1 << 16)
        assert stored > memory // 4096  # compressed: more pages than frames
    assert daemon.rss_bytes() <= memory + OVERHEAD_BYTES


def test_same_filled_pages_are_bounded_by_their_metadata(
    daemon_factory: Callable[..., Daemon],
) -> None:
    # Zero pages take no frame; what bounds them is the metadata they are
    # charged (~15 bytes each in a swap layout): a 2 MiB arena refuses them
    # after ~140_000 pages instead of growing without bound.
    memory = 2 << 20
    daemon = daemon_factory(
        "--memory", "2MiB", "--persistent-max", "1.0", "--persistent-accept", "1.0"
    )
    with Client(daemon.address, client_name="zeros") as client:
        stored = fill_until_refused(client, lambda n: bytes(4096), 1 << 20)
        assert 50_000 < stored < 300_000
    assert daemon.rss_bytes() <= memory + OVERHEAD_BYTES
