"""The per-pool page index, and what per-page metadata costs.

Run with ``-s`` to see the measured bytes per page.
"""

from __future__ import annotations

import pytest

from tmemd.engine import Engine, EngineConfig
from tmemd.engine._index import PageIndex

from .memtrace import traced

PAGES_MEASURED = 100_000
#: Fewer pages for the whole engine: tracemalloc slows every allocation.
ENGINE_PAGES_MEASURED = 20_000


def test_get_set_delete() -> None:
    index = PageIndex()
    assert index.get(1, 2) == 0 and len(index) == 0 and index.object_count == 0
    assert index.set(1, 2, 99) == 0
    assert index.set(1, 2, 100) == 99  # replace returns the old token
    assert index.set(1, 3, 101) == 0
    assert index.set(2, 2, 102) == 0
    assert (len(index), index.object_count) == (3, 2)
    assert index.get(1, 2) == 100 and index.get(2, 3) == 0 and index.get(3, 2) == 0
    assert index.delete(1, 2) == 100
    assert index.delete(1, 2) == 0 and index.delete(7, 7) == 0
    assert index.delete(2, 2) == 102
    assert (len(index), index.object_count) == (1, 1)  # an emptied object goes
    index.check_invariants()


def test_pop_object_and_pop_all() -> None:
    index = PageIndex()
    for object_id in range(3):
        for page in range(4):
            index.set(object_id, page, 10 * object_id + page + 1)
    assert sorted(index.pop_object(1)) == [11, 12, 13, 14]
    assert index.pop_object(1) == []
    assert (len(index), index.object_count) == (8, 2)
    assert sorted(index.pop_all()) == [1, 2, 3, 4, 21, 22, 23, 24]
    assert (len(index), index.object_count) == (0, 0)
    assert index.get(0, 0) == 0
    index.check_invariants()


class Untouchable(dict[int, int]):
    """An object's page dict that fails the test if anything reads it."""

    def _fail(self, *args: object) -> None:
        raise AssertionError("flush_object touched an unrelated object")

    values = items = keys = __iter__ = __len__ = get = pop = _fail  # type: ignore[assignment]


def test_pop_object_touches_only_that_object() -> None:
    index = PageIndex()
    index.set(1, 0, 5)
    index.set(2, 0, 6)
    index.set(2, 1, 7)
    index._objects[2] = Untouchable({0: 6})  # type: ignore[assignment]
    assert index.pop_object(1) == [5]
    assert index.pop_object(3) == []


def test_check_invariants_catches_a_bad_count() -> None:
    index = PageIndex()
    index.set(1, 1, 1)
    index._pages = 2
    with pytest.raises(AssertionError):
        index.check_invariants()


def test_index_bytes_per_page() -> None:
    # A realistic layout: 64 pages per object (a file), tokens above 2**30.
    def build() -> PageIndex:
        index = PageIndex()
        for n in range(PAGES_MEASURED):
            index.set(n // 64, n % 64, (n + 1) << 19 | 1500 << 2 | 1)
        return index

    per_page = traced(build) / PAGES_MEASURED
    print(f"\nindex: {per_page:.1f} bytes/page at {PAGES_MEASURED} pages")
    assert per_page < 100


def test_engine_metadata_bytes_per_page() -> None:
    # Everything but the stored bytes: index, LRU entry, PAM dict slot and
    # handle, ``bytes`` headers.  Same-filled pages show the index alone.
    page = (b"metadata " * 512)[:4096]

    def build(kind: str) -> object:
        def run() -> Engine:
            engine = Engine(EngineConfig(memory_bytes=1 << 30), lambda: 0.0)
            engine.connect("a")
            pool = engine.new_pool("a", persistent=(kind == "persistent"))
            data = bytes(4096) if kind == "same" else page
            for n in range(ENGINE_PAGES_MEASURED):
                engine.put("a", pool, n // 64, n % 64, data)
            return engine

        return run

    for kind in ("ephemeral", "persistent", "same"):
        stored = 0 if kind == "same" else ENGINE_PAGES_MEASURED * len(_compressed(page))
        per_page = (traced(build(kind)) - stored) / ENGINE_PAGES_MEASURED
        print(f"engine, {kind} pages: {per_page:.1f} bytes/page of metadata")
        assert per_page < 400


def _compressed(page: bytes) -> bytes:
    from tmemd.engine import CODECS

    return CODECS["lzo"].compress(page)
