"""tmemd-bench's timed loops against an in-memory driver (no sockets).

The fake driver stores pages in a dict, so every count the loop makes can be
checked exactly, and a driver that corrupts or loses pages proves the loop
reports wrong bytes and misses instead of hiding them.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tmem.bench import Case, ThreadResult
from tmem.bench._config import PAGES_PER_OBJECT
from tmem.bench._drivers import Driver, object_keys
from tmem.bench._load import FLUSH_STORE_FACTOR, LoadPlan, _preload, page_for, timed_loop

PAGES = [bytes([i]) * 4096 for i in range(1, 50)]


class DictDriver(Driver):
    """A server in a dict; ``corrupt``/``lose`` make gets lie."""

    corrupt = False
    lose = False

    def connect(self) -> None:
        self.store: dict[int, bytes] = {}
        self.calls: list[tuple[str, int]] = []

    def put(self, key: int, page: bytes) -> bool:
        self.calls.append(("put", 1))
        self.store[key] = page
        return True

    def get(self, key: int) -> bytes | None:
        self.calls.append(("get", 1))
        return self._value(key)

    def _value(self, key: int) -> bytes | None:
        if self.lose:
            return None
        value = self.store.get(key)
        return b"\0" * 4096 if self.corrupt and value is not None else value

    def put_many(self, keys: Sequence[int], pages: Sequence[bytes]) -> int:
        self.calls.append(("put", len(keys)))
        self.store.update(zip(keys, pages, strict=True))
        return len(keys)

    def get_many(self, keys: Sequence[int]) -> list[bytes | None]:
        self.calls.append(("get", len(keys)))
        return [self._value(key) for key in keys]

    def flush_object(self, obj: int) -> None:
        self.calls.append(("flush", 1))
        for key in object_keys(obj):
            self.store.pop(key, None)

    def close(self) -> None:
        pass


def _run(
    workload: str, depth: int, ops: int = 256, stored: int = 100, driver_cls: type = DictDriver
) -> tuple[DictDriver, ThreadResult]:
    case = Case("tmemd", workload, depth, 1, stored, "ephemeral", "lz4")
    plan = LoadPlan(case, "127.0.0.1", 0, stored, 30.0, ops, seed=1)
    driver = driver_cls("127.0.0.1", 0, 3, case)
    driver.connect()
    assert _preload(driver, plan, 3, PAGES) == 0
    driver.calls.clear()
    result = ThreadResult()
    timed_loop(driver, plan, 3, PAGES, result)
    return driver, result


@pytest.mark.parametrize("depth", [1, 16, 64])
def test_put_stores_fresh_keys_at_depth(depth: int) -> None:
    driver, result = _run("put", depth)
    assert result.ops == result.pages == 256
    assert {n for _, n in driver.calls} == {depth}
    assert len(result.latencies) == 256 // depth
    assert sorted(driver.store) == list(range(256))
    assert all(driver.store[k] == page_for(PAGES, 3, k) for k in driver.store)
    assert result.end >= result.start > 0


@pytest.mark.parametrize("depth", [1, 64])
def test_get_hit_checks_every_page(depth: int) -> None:
    driver, result = _run("get_hit", depth)
    assert result.hits == 256 and result.misses == result.wrong == 0
    assert {kind for kind, _ in driver.calls} == {"get"}


def test_wrong_bytes_are_counted() -> None:
    class Corrupting(DictDriver):
        corrupt = True

    _, result = _run("get_hit", 16, driver_cls=Corrupting)
    assert result.wrong == 256 and result.hits == 0


def test_lost_pages_are_misses() -> None:
    class Losing(DictDriver):
        lose = True

    _, result = _run("get_hit", 1, driver_cls=Losing)
    assert result.misses == 256 and result.hits == 0


def test_get_miss_never_hits() -> None:
    _, result = _run("get_miss", 16)
    assert result.misses == 256 and result.hits == result.wrong == 0


def test_a_hit_on_a_miss_key_is_wrong() -> None:
    class Answering(DictDriver):
        def _value(self, key: int) -> bytes | None:
            return b"x" * 4096

    _, result = _run("get_miss", 1, driver_cls=Answering)
    assert result.wrong == 256


def test_mixed_is_about_four_gets_per_put() -> None:
    driver, result = _run("mixed", 1, ops=2_000)
    puts = sum(n for kind, n in driver.calls if kind == "put")
    gets = sum(n for kind, n in driver.calls if kind == "get")
    assert puts + gets == 2_000
    assert 0.15 < puts / 2_000 < 0.25
    assert result.hits == gets and result.wrong == 0
    assert len(driver.store) == 100  # puts overwrite the stored set


def test_batches_use_distinct_keys() -> None:
    driver, _ = _run("mixed", 64, ops=64 * 50)
    assert all(n == 64 for _, n in driver.calls)


def test_flush_object_drops_whole_objects() -> None:
    stored = 40
    driver, result = _run("flush_object", 1, ops=10_000, stored=stored)
    objects = stored * FLUSH_STORE_FACTOR // PAGES_PER_OBJECT
    assert result.ops == objects  # bounded by the objects preloaded
    assert result.pages == objects * PAGES_PER_OBJECT
    assert driver.store == {}


def test_time_limit_bounds_the_loop() -> None:
    case = Case("tmemd", "put", 1, 1, 10)
    plan = LoadPlan(case, "127.0.0.1", 0, 10, 0.0, 10**9, seed=1)
    driver = DictDriver("127.0.0.1", 0, 0, case)
    driver.connect()
    result = ThreadResult()
    timed_loop(driver, plan, 0, PAGES, result)
    assert result.ops == 0
