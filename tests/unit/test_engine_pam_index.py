"""The compact page index and what metadata costs per page, measured.

Run with ``-s`` to see the measured bytes per page (``bench/density.py
--meta-pages 1000000`` measures the same at 10^6 pages).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tmemd.engine import Engine, EngineConfig
from tmemd.engine._index import (
    CHUNK_BYTES,
    INLINE_OBJECT_BYTES,
    OBJECT_BYTES,
    PAGE_BYTES,
    SPLIT_PAGES,
    IndexObject,
    MetaLedger,
    PageIndex,
)

from .memtrace import traced

#: Pages for the whole-engine measurements: enough that per-object and
#: per-array costs amortize, few enough for a unit test (tracemalloc slows
#: every allocation); ``bench/density.py`` measures at 10^6.
ENGINE_PAGES = 25_000
#: The issue's bound on metadata per stored page (zswap's entry is ~80 bytes).
MAX_METADATA_PER_PAGE = 100
#: One page per object (tiny files) costs more, even inline: per page a dict
#: entry (30-60 bytes by how full the dict is: 52 at ``ENGINE_PAGES``, 42 at
#: 10^6 pages), the object id and the entry ``int`` (28 each), on top of
#: what any page costs.  The bounds by kind (persistent: True) hold at
#: ``ENGINE_PAGES``, where the dict is at its emptiest (135 and 162 measured);
#: ``bench/density.py`` measures 117 and 144 at 10^6 pages.
MAX_ONE_PAGE_METADATA_PER_PAGE = {True: 145, False: 175}


def fresh(n: int) -> int:
    """``n`` as a new int object, as the wire delivers ids and indexes."""
    return int(str(n))


def test_dense_and_sparse_lookups_and_splitting() -> None:
    index = PageIndex()
    order = list(range(0, 3000, 2)) + list(range(1, 3000, 2))  # two passes: inserts in the middle
    for n in order:
        index.insert(7, n, n + 1)
    assert len(index) == 3000 and index.object_count == 1
    assert all(index.get(7, n) == n + 1 for n in range(3000))
    assert index.get(7, 3000) == 0 and index.get(8, 0) == 0 and index.get(7, 1 << 31) == 0
    obj = next(index.objects())
    assert obj.chunks is not None and sorted(obj.chunks) == [0, 1, 2]  # split at 1024 pages
    for n in range(1024, 2048):
        assert index.delete(7, n) == n + 1
    assert sorted(obj.chunks) == [0, 2]  # an emptied chunk goes
    index.check_invariants()
    assert sorted(index.pop_object(7)) == [n + 1 for n in range(3000) if not 1024 <= n < 2048]
    assert index.object_count == 0


def test_small_objects_stay_unsplit_and_sparse_indexes_work() -> None:
    index = PageIndex()
    for n in [5, 1 << 31, 77, 1023, 1024, 0]:
        index.insert(1, n, n % 1000 + 1)
    obj = next(index.objects())
    assert obj.chunks is None and len(obj.ents) == 6
    assert [index.get(1, n) for n in [0, 5, 77, 1023, 1024, 1 << 31]] == [
        1, 6, 78, 24, 25, (1 << 31) % 1000 + 1,
    ]  # fmt: skip
    assert index.set(1, 77, 999) == 78 and index.get(1, 77) == 999
    assert index.delete(1, 78) == 0
    index.check_invariants()


def test_the_ledger_is_charged_exactly() -> None:
    ledger = MetaLedger()
    index = PageIndex(ledger=ledger)
    for n in range(SPLIT_PAGES + 10):
        index.insert(1, n, 1)
    index.insert(2, 0, 1)
    assert ledger.meta_bytes == index.meta_bytes()
    split_object = (SPLIT_PAGES + 10) * PAGE_BYTES + OBJECT_BYTES + 2 * CHUNK_BYTES
    inline = PAGE_BYTES + INLINE_OBJECT_BYTES
    assert ledger.meta_bytes == split_object + inline
    index.insert(2, 9, 1)  # a second page promotes object 2
    assert ledger.meta_bytes == index.meta_bytes() == split_object + 2 * PAGE_BYTES + OBJECT_BYTES
    index.delete(2, 0)
    assert ledger.meta_bytes == index.meta_bytes()  # one page left: it stays an object
    index.delete(2, 9)
    index.insert(3, 4, 1)
    assert ledger.meta_bytes == index.meta_bytes() == split_object + inline
    index.pop_object(1)
    index.pop_object(3)
    assert ledger.meta_bytes == 0 == index.meta_bytes()
    index.insert(4, 0, 1)
    index.insert(4, 1, 1)
    index.insert(5, 0, 1)
    index.pop_all()
    assert ledger.meta_bytes == 0 == index.meta_bytes()


class Relinker:
    """Records promotions and hands back ``key``, as the engine's reverse map does."""

    def __init__(self, key: int) -> None:
        self.key = key
        self.told: list[tuple[int, IndexObject]] = []

    def relink(self, token: int, obj: IndexObject) -> int:
        self.told.append((token, obj))
        return self.key


def test_one_page_objects_are_inline_until_a_second_page_comes() -> None:
    key = fresh(1 << 100)
    relinker = Relinker(key)
    index = PageIndex(relinker=relinker)
    assert index.insert(key, 7, 70) is key  # the id kept is the one handed back
    assert index.object_count == 1 and not list(index.objects())
    assert index.get(1 << 100, 7) == 70 and index.get(1 << 100, 0) == 0
    assert index.delete(1 << 100, 6) == 0 and index.get(1 << 100, 7) == 70
    assert index.get(5, 0) == 0 and index.delete(5, 0) == 0 and index.pop_object(5) == []
    index.check_invariants()
    obj = index.insert(fresh(1 << 100), 3, 30)  # promoted, in place: the key stays
    assert isinstance(obj, IndexObject) and obj.index is index and relinker.told == [(70, obj)]
    assert obj.oid is key and [k for k in index._objects if k is key] == [key]
    assert index.insert(fresh(1 << 100), 9, 90) is obj and list(index.objects()) == [obj]
    assert list(obj.ents) == [3 << 32 | 30, 7 << 32 | 70, 9 << 32 | 90]
    assert (len(index), index.object_count) == (3, 1)
    index.check_invariants()
    assert index.delete(1 << 100, 7) == 70 and index.delete(1 << 100, 3) == 30
    assert index.get(1 << 100, 9) == 90  # one page left, still in its object
    index.check_invariants()
    assert index.pop_object(1 << 100) == [90] and index.object_count == 0
    index.insert(0, 0, 1)  # index 0 with a tiny token: the entry is the token
    assert index.get(0, 0) == 1 and index.set(0, 0, 2) == 1 and index.pop_all() == [2]
    assert (len(index), index.object_count) == (0, 0)
    index.check_invariants()


def test_flush_object_touches_only_that_object() -> None:
    index = PageIndex()
    index.insert(1, 0, 5)
    index.insert(2, 0, 6)
    index.insert(2, 1, 7)
    index.insert(3, 0, 8)

    class Untouchable:
        def __getattr__(self, name: str) -> object:
            raise AssertionError("flush_object touched an unrelated object")

    index._objects[2] = Untouchable()  # type: ignore[assignment]
    assert index.pop_object(1) == [5]
    assert index.pop_object(3) == [8]
    assert index.pop_object(4) == []


def test_the_charged_constants_cover_what_python_allocates() -> None:
    def build(pages_per_object: int) -> Callable[[], object]:
        def run() -> PageIndex:
            index = PageIndex()
            for n in range(20_000):
                index.insert(fresh(n // pages_per_object), fresh(n % pages_per_object), n + 1)
            return index

        return run

    single = traced(build(1)) / 20_000
    pairs = traced(build(2)) / 20_000
    dense = traced(build(20_000)) / 20_000
    print(
        f"\nindex bytes per page: one page per object {single:.1f}, "
        f"two {pairs:.1f}, one object {dense:.1f}"
    )
    assert single <= PAGE_BYTES + INLINE_OBJECT_BYTES
    assert pairs <= PAGE_BYTES + OBJECT_BYTES / 2
    assert dense <= PAGE_BYTES + (CHUNK_BYTES + OBJECT_BYTES) / SPLIT_PAGES


def engine_metadata_per_page(persistent: bool, pages_per_object: int | None) -> float:
    """Everything the engine keeps outside the arena per stored page: index,
    LRU and reverse map, the PAM's tables.  ``None``: one swap area in 16
    objects, as Xen's frontswap numbers pages."""
    blobs = [bytes([n % 251]) * (500 + n % 1500) for n in range(256)]

    def run() -> Engine:
        engine = Engine(
            EngineConfig(
                memory_bytes=1 << 30,
                ephemeral_pam="zbud",
                persistent_pam="zsmalloc",
                persistent_max=1.0,
                persistent_accept=1.0,
            ),
            lambda: 0.0,
        )
        engine.connect("m")
        pool = engine.new_pool("m", persistent=persistent, precompressed=True)
        for n in range(ENGINE_PAGES):
            if pages_per_object is None:
                oid, index = fresh(n & 15), fresh(n >> 4)
            else:
                oid, index = fresh(n // pages_per_object), fresh(n % pages_per_object)
            assert engine.put("m", pool, oid, index, blobs[n % 256]) is None
        return engine

    per_page = traced(run) / ENGINE_PAGES
    kind = "persistent" if persistent else "ephemeral"
    print(f"\n{kind}, {pages_per_object or 'swap'} pages per object: {per_page:.1f} B/page")
    return per_page


@pytest.mark.parametrize("persistent", [True, False])
@pytest.mark.parametrize("pages_per_object", [16, None])
def test_engine_metadata_per_page_is_at_most_100_bytes(
    persistent: bool, pages_per_object: int | None
) -> None:
    assert engine_metadata_per_page(persistent, pages_per_object) <= MAX_METADATA_PER_PAGE


@pytest.mark.parametrize("persistent", [True, False])
def test_engine_metadata_of_one_page_objects_is_bounded(persistent: bool) -> None:
    bound = MAX_ONE_PAGE_METADATA_PER_PAGE[persistent]
    assert engine_metadata_per_page(persistent, 1) <= bound


@pytest.mark.parametrize("object_id", [7, 1000, 10**15, 1 << 100])
def test_a_promoted_object_keeps_its_key_as_its_id(object_id: int) -> None:
    # The reverse map hands the index's key object over on a promotion, in
    # both builds (compiled code holds ints unboxed: a copy would not be it).
    engine = Engine(EngineConfig(default_codec="none"), lambda: 0.0)
    engine.connect("a")
    pool = engine.new_pool("a")
    page = bytes(range(256)) * 16
    for index in (0, 1):
        assert engine.put("a", pool, object_id, index, page) is None
    engine.check_invariants()
    assert engine.get("a", pool, object_id, 1) == page
