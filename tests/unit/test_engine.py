"""Engine semantics (docs/design.md §3), one rule at a time, and every error.

Memory policy (eviction, hysteresis, refusals) is in test_engine_memory.py,
clients/leases/shared pools in test_engine_tenants.py, statistics in
test_engine_stats.py.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

import tmem.proto as proto
from tmemd.engine import (
    CODECS,
    ERROR_CLASSES,
    INDEX_LIMIT,
    OBJECT_ID_LIMIT,
    BadArgument,
    BadIndex,
    BadLength,
    BadObjectId,
    Engine,
    EngineConfig,
    EngineError,
    ErrorCode,
    NoSuchClient,
    NoSuchPool,
    Refusal,
    TooManyPools,
    Unsupported,
)

PAGE = 4096


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_engine(**config: object) -> Engine:
    engine = Engine(EngineConfig(**config), FakeClock())  # type: ignore[arg-type]
    engine.connect("a")
    return engine


def text_page(seed: int, size: int = PAGE) -> bytes:
    line = b"page %d of a file that compresses well; " % seed
    return (line * (size // len(line) + 1))[:size]


def random_page(seed: int, size: int = PAGE) -> bytes:
    return random.Random(seed).randbytes(size)


# --- rule 1: a get returns exactly the last successfully put bytes ----------


@pytest.mark.parametrize("codec", sorted(CODECS))
@pytest.mark.parametrize("persistent", [False, True])
def test_round_trip_every_codec_and_page_kind(codec: str, persistent: bool) -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=persistent, codec=codec)
    pages = [text_page(1), random_page(2), bytes(PAGE), b"\x5a" * PAGE, text_page(3)[:-1] + b"!"]
    for i, page in enumerate(pages):
        assert engine.put("a", pool, 7, i, page) is None
    for i, page in enumerate(pages):
        assert engine.get("a", pool, 7, i, exclusive=False) == page
    engine.check_invariants()


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: memoryview(bytearray(b))])
def test_put_copies_any_bytes_like(wrap: Callable[[bytes], object]) -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True, codec="none")
    buffer = bytearray(text_page(5))
    data = wrap(bytes(buffer)) if wrap is not memoryview else memoryview(buffer)
    assert engine.put("a", pool, 1, 1, data) is None  # type: ignore[arg-type]
    expected = bytes(buffer)
    buffer[:] = b"\0" * PAGE  # the receive buffer is reused for the next request
    assert engine.get("a", pool, 1, 1) == expected


def test_miss_on_a_handle_never_put() -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True)
    assert engine.get("a", pool, 0, 0) is None
    engine.put("a", pool, 0, 0, text_page(0))
    assert engine.get("a", pool, 0, 1) is None
    assert engine.get("a", pool, 1, 0) is None


# --- rule 2: a put replaces -----------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True])
def test_put_replaces(persistent: bool) -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=persistent)
    for version, page in enumerate([text_page(1), random_page(2), bytes(PAGE), text_page(3)]):
        assert engine.put("a", pool, 1, 2, page) is None
        assert engine.get("a", pool, 1, 2, exclusive=False) == page, version
    assert engine.statistics().pages == 1
    engine.check_invariants()


# --- rules 3 and 4: exclusive gets ------------------------------------------------


def test_private_ephemeral_get_is_exclusive_by_default() -> None:
    engine = make_engine()
    pool = engine.new_pool("a")
    engine.put("a", pool, 1, 1, text_page(1))
    assert engine.get("a", pool, 1, 1) == text_page(1)
    assert engine.get("a", pool, 1, 1) is None


def test_private_ephemeral_get_can_keep() -> None:
    engine = make_engine()
    pool = engine.new_pool("a")
    engine.put("a", pool, 1, 1, text_page(1))
    assert engine.get("a", pool, 1, 1, exclusive=False) == text_page(1)
    assert engine.get("a", pool, 1, 1, exclusive=False) == text_page(1)
    assert engine.get("a", pool, 1, 1, exclusive=True) == text_page(1)
    assert engine.get("a", pool, 1, 1) is None


def test_persistent_get_keeps_unless_exclusive() -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True)
    engine.put("a", pool, 1, 1, random_page(1))
    for _ in range(3):
        assert engine.get("a", pool, 1, 1) == random_page(1)
    assert engine.get("a", pool, 1, 1, exclusive=True) == random_page(1)
    assert engine.get("a", pool, 1, 1) is None
    engine.check_invariants()


def test_exclusive_get_of_same_filled_page() -> None:
    engine = make_engine()
    pool = engine.new_pool("a")
    engine.put("a", pool, 1, 1, bytes(PAGE))
    assert engine.get("a", pool, 1, 1) == bytes(PAGE)
    assert engine.get("a", pool, 1, 1) is None


# --- rule 5: flushes ------------------------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True])
def test_flush_page(persistent: bool) -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=persistent)
    engine.put("a", pool, 1, 1, text_page(1))
    engine.put("a", pool, 1, 2, text_page(2))
    assert engine.flush_page("a", pool, 1, 1) is True
    assert engine.flush_page("a", pool, 1, 1) is False
    assert engine.get("a", pool, 1, 1) is None
    assert engine.get("a", pool, 1, 2, exclusive=False) == text_page(2)
    engine.check_invariants()


@pytest.mark.parametrize("persistent", [False, True])
def test_flush_object(persistent: bool) -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=persistent)
    for index in range(5):
        engine.put("a", pool, 10, index, text_page(index))
        engine.put("a", pool, 11, index, text_page(index + 10))
    engine.put("a", pool, 10, 99, bytes(PAGE))
    assert engine.flush_object("a", pool, 10) == 6
    assert engine.flush_object("a", pool, 10) == 0
    for index in (0, 4, 99):
        assert engine.get("a", pool, 10, index) is None
    for index in range(5):
        assert engine.get("a", pool, 11, index, exclusive=False) == text_page(index + 10)
    engine.check_invariants()


@pytest.mark.parametrize("persistent", [False, True])
def test_destroy_pool_frees_pages_and_never_reuses_the_id(persistent: bool) -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=persistent)
    engine.put("a", pool, 1, 1, text_page(1))
    engine.destroy_pool("a", pool)
    with pytest.raises(NoSuchPool):
        engine.get("a", pool, 1, 1)
    again = engine.new_pool("a", persistent=persistent)
    assert again == pool + 1  # the old handle can never reach the new pool
    with pytest.raises(NoSuchPool):
        engine.get("a", pool, 1, 1)
    assert engine.get("a", again, 1, 1) is None
    stats = engine.statistics()
    assert stats.pages == 0 and stats.memory_used_bytes == 0
    engine.check_invariants()


# --- encodings ----------------------------------------------------------------------


@pytest.mark.parametrize("fill", [0, 1, 0x80, 0xFF])
def test_same_filled_pages_take_no_pam_space(fill: int) -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True)
    engine.put("a", pool, 1, 1, bytes([fill]) * PAGE)
    stats = engine.statistics()
    assert stats.same_filled_pages == 1
    assert stats.stored_bytes == 0 and stats.memory_used_bytes == 0
    assert stats.original_bytes == PAGE
    assert engine.get("a", pool, 1, 1) == bytes([fill]) * PAGE


def test_nearly_same_filled_page_is_not_same_filled() -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True)
    page = bytes(PAGE - 1) + b"\1"
    engine.put("a", pool, 1, 1, page)
    assert engine.statistics().same_filled_pages == 0
    assert engine.get("a", pool, 1, 1) == page


def test_incompressible_page_is_stored_raw() -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True, codec="lz4")
    engine.put("a", pool, 1, 1, random_page(3))
    stats = engine.statistics()
    assert stats.raw_pages == 1 and stats.stored_bytes == PAGE
    assert engine.get("a", pool, 1, 1) == random_page(3)


class SizedCodec:
    """Compresses every page to exactly ``size`` bytes (remembering the page)."""

    name = "sized"

    def __init__(self, size: int) -> None:
        self.size = size
        self.pages: dict[bytes, bytes] = {}

    def compress(self, data: bytes) -> bytes:
        blob = len(self.pages).to_bytes(4, "little").ljust(self.size, b"\0")
        self.pages[blob] = bytes(data)
        return blob

    def decompress(self, data: bytes, size: int) -> bytes:
        page = self.pages[data]
        assert len(page) == size
        return page


@pytest.mark.parametrize(("compressed", "raw"), [(3584, False), (3585, True), (100, False)])
def test_raw_rule_at_seven_eighths(compressed: int, raw: bool) -> None:
    codec = SizedCodec(compressed)
    engine = Engine(EngineConfig(default_codec="sized"), FakeClock(), {"sized": codec})
    engine.connect("a")
    pool = engine.new_pool("a", persistent=True)
    engine.put("a", pool, 1, 1, text_page(1))
    stats = engine.statistics()
    assert stats.raw_pages == int(raw)
    assert stats.stored_bytes == (PAGE if raw else compressed)
    assert engine.get("a", pool, 1, 1) == text_page(1)


class ExplodingCodec:
    name = "boom"

    def compress(self, data: bytes) -> bytes:
        raise AssertionError("precompressed data must not be compressed")

    def decompress(self, data: bytes, size: int) -> bytes:
        raise AssertionError("precompressed data must not be decompressed")


def test_precompressed_pool_stores_data_as_given() -> None:
    engine = Engine(EngineConfig(default_codec="boom"), FakeClock(), {"boom": ExplodingCodec()})
    engine.connect("a")
    pool = engine.new_pool("a", precompressed=True, persistent=True)
    blobs = {1: b"x", 2: random_page(1, 100), 3: bytes(PAGE), 4: bytes(2000)}
    for index, blob in blobs.items():
        assert engine.put("a", pool, 1, index, blob) is None
    for index, blob in blobs.items():
        assert engine.get("a", pool, 1, index) == blob
    stats = engine.statistics()
    assert stats.original_bytes == stats.stored_bytes == sum(map(len, blobs.values()))
    assert stats.same_filled_pages == 0 and stats.raw_pages == 0
    for bad in (b"", bytes(PAGE + 1)):
        with pytest.raises(BadLength):
            engine.put("a", pool, 1, 9, bad)
    engine.check_invariants()


def test_larger_page_size() -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True, page_size=16384)
    page = text_page(4, 16384)
    engine.put("a", pool, 1, 1, page)
    assert engine.get("a", pool, 1, 1) == page
    with pytest.raises(BadLength):
        engine.put("a", pool, 1, 1, text_page(4))


# --- rule 8: validation -------------------------------------------------------------


def test_error_map_is_total_and_one_to_one() -> None:
    assert set(ERROR_CLASSES) == set(ErrorCode)
    assert len(set(ERROR_CLASSES.values())) == len(ErrorCode)
    for code, cls in ERROR_CLASSES.items():
        assert issubclass(cls, EngineError) and cls.code is code
    assert set(EngineError.__subclasses__()) == set(ERROR_CLASSES.values())


def test_refusal_matches_the_wire() -> None:
    assert {r.name: r.value for r in Refusal} == {r.name: r.value for r in proto.RefuseReason}


def test_unknown_client_everywhere() -> None:
    engine = make_engine()
    pool = engine.new_pool("a")
    calls: list[Callable[[], object]] = [
        lambda: engine.put("b", pool, 0, 0, text_page(0)),
        lambda: engine.get("b", pool, 0, 0),
        lambda: engine.flush_page("b", pool, 0, 0),
        lambda: engine.flush_object("b", pool, 0),
        lambda: engine.new_pool("b"),
        lambda: engine.destroy_pool("b", pool),
        lambda: engine.pool_ids("b"),
        lambda: engine.disconnect("b"),
        lambda: engine.destroy_client("b"),
    ]
    for call in calls:
        with pytest.raises(NoSuchClient):
            call()


@pytest.mark.parametrize("pool_id", [-1, 1, 63, 64, 2**32, 2**70])
def test_unknown_pool_id(pool_id: int) -> None:
    engine = make_engine()
    engine.new_pool("a")
    with pytest.raises(NoSuchPool):
        engine.put("a", pool_id, 0, 0, text_page(0))
    with pytest.raises(NoSuchPool):
        engine.get("a", pool_id, 0, 0)
    with pytest.raises(NoSuchPool):
        engine.flush_page("a", pool_id, 0, 0)
    with pytest.raises(NoSuchPool):
        engine.flush_object("a", pool_id, 0)
    with pytest.raises(NoSuchPool):
        engine.destroy_pool("a", pool_id)


@pytest.mark.parametrize("object_id", [-1, OBJECT_ID_LIMIT, OBJECT_ID_LIMIT * 2])
def test_bad_object_id(object_id: int) -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True)
    with pytest.raises(BadObjectId):
        engine.put("a", pool, object_id, 0, text_page(0))
    with pytest.raises(BadObjectId):
        engine.get("a", pool, object_id, 0)
    with pytest.raises(BadObjectId):
        engine.flush_page("a", pool, object_id, 0)
    with pytest.raises(BadObjectId):
        engine.flush_object("a", pool, object_id)


@pytest.mark.parametrize("index", [-1, INDEX_LIMIT, 2**64])
def test_bad_index(index: int) -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True)
    with pytest.raises(BadIndex):
        engine.put("a", pool, 0, index, text_page(0))
    with pytest.raises(BadIndex):
        engine.get("a", pool, 0, index)
    with pytest.raises(BadIndex):
        engine.flush_page("a", pool, 0, index)


def test_extreme_valid_ids() -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True)
    engine.put("a", pool, OBJECT_ID_LIMIT - 1, INDEX_LIMIT - 1, text_page(9))
    engine.put("a", pool, 0, 0, text_page(8))
    assert engine.get("a", pool, OBJECT_ID_LIMIT - 1, INDEX_LIMIT - 1) == text_page(9)
    assert engine.flush_object("a", pool, OBJECT_ID_LIMIT - 1) == 1
    assert engine.get("a", pool, 0, 0) == text_page(8)


@pytest.mark.parametrize("length", [0, 1, PAGE - 1, PAGE + 1, 2 * PAGE])
def test_bad_length(length: int) -> None:
    engine = make_engine()
    pool = engine.new_pool("a")
    with pytest.raises(BadLength):
        engine.put("a", pool, 0, 0, bytes(length))


def test_an_invalid_put_leaves_the_old_page() -> None:
    engine = make_engine()
    pool = engine.new_pool("a", persistent=True)
    engine.put("a", pool, 1, 1, text_page(1))
    with pytest.raises(BadLength):
        engine.put("a", pool, 1, 1, bytes(PAGE - 1))
    assert engine.get("a", pool, 1, 1) == text_page(1)
    assert engine.statistics().counters.puts_refused == 0


@pytest.mark.parametrize("page_size", [0, 512, 2048, 5000, 4097, 131072, -4096])
def test_bad_page_size(page_size: int) -> None:
    engine = make_engine()
    with pytest.raises(BadArgument):
        engine.new_pool("a", page_size=page_size)
    assert engine.pool_ids("a") == []


@pytest.mark.parametrize("page_size", [4096, 8192, 16384, 32768, 65536])
def test_good_page_sizes(page_size: int) -> None:
    engine = make_engine()
    engine.new_pool("a", page_size=page_size)


def test_unsupported_codec_and_persistent_shared() -> None:
    engine = make_engine()
    with pytest.raises(Unsupported):
        engine.new_pool("a", codec="gzip")
    with pytest.raises(Unsupported):
        engine.new_pool("a", persistent=True, shared_uuid=1)
    assert engine.pool_ids("a") == []


def test_pool_ids_count_up_never_reused_and_open_pools_capped() -> None:
    engine = make_engine(max_pools_per_client=3)
    assert [engine.new_pool("a") for _ in range(3)] == [0, 1, 2]
    with pytest.raises(TooManyPools):
        engine.new_pool("a")
    engine.destroy_pool("a", 1)
    assert engine.pool_ids("a") == [0, 2]
    assert engine.new_pool("a", persistent=True) == 3
    assert engine.pool_ids("a") == [0, 2, 3]
    engine.connect("b")
    assert engine.new_pool("b") == 0  # each name counts its own


def test_pool_ids_survive_the_lease() -> None:
    clock = FakeClock()
    engine = Engine(EngineConfig(), clock)
    engine.connect("a")
    old = engine.new_pool("a", persistent=True)
    engine.put("a", old, 1, 1, text_page(1))
    engine.disconnect("a")
    clock.now += engine.config.lease_s + 1
    assert engine.expire_leases() == ["a"]
    engine.connect("a")
    new = engine.new_pool("a", persistent=True)
    assert new != old
    with pytest.raises(NoSuchPool):
        engine.get("a", old, 1, 1)


def test_pool_ids_run_out_per_name() -> None:
    engine = make_engine(pool_id_limit=2)
    engine.connect("b")
    assert [engine.new_pool("a"), engine.new_pool("a")] == [0, 1]
    engine.destroy_pool("a", 0)
    with pytest.raises(TooManyPools):
        engine.new_pool("a")
    assert engine.new_pool("b") == 0


def test_default_pool_cap() -> None:
    engine = make_engine()
    for expected in range(64):
        assert engine.new_pool("a") == expected
    with pytest.raises(TooManyPools):
        engine.new_pool("a")


def test_default_codec_must_exist() -> None:
    with pytest.raises(ValueError):
        Engine(EngineConfig(default_codec="nope"), FakeClock())


@pytest.mark.parametrize(
    "config",
    [
        {"memory_bytes": 0},
        {"persistent_max": 1.5},
        {"persistent_max": 0.5, "persistent_accept": 0.6},
        {"persistent_accept": 0.0},
        {"lease_s": -1.0},
        {"max_pools_per_client": 0},
    ],
)
def test_config_validation(config: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EngineConfig(**config)  # type: ignore[arg-type]


def test_default_codec_applies() -> None:
    engine = make_engine(default_codec="zstd")
    pool = engine.new_pool("a")
    (stats,) = engine.statistics().pool_stats
    assert stats.codec == "zstd" and stats.pool_id == pool
