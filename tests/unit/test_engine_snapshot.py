"""Saving and restoring an engine (``tmemd.engine._snapshot``) without files.

A state of every kind of pool (persistent, ephemeral, shared, 8 KiB pages
stored in pieces, same-filled and raw pages, precompressed pages, a zstd
pool with a trained dictionary) goes through a byte stream and must come
back identical: the same pages under the same handles and pool ids, the
same settings, the same shared-pool members and authorizations, with the
engine's invariants intact.  Damaged streams (cut anywhere, a flipped byte,
another version, trailing bytes) and a state too big for the new memory are
refused with ``StateError``.
"""

from __future__ import annotations

import io
import random
import struct

import pytest

from tmemd.engine import (
    ClientLimits,
    Engine,
    EngineConfig,
    StateError,
    StateTooBig,
    make_codecs,
)
from tmemd.engine._snapshot import FORMAT_VERSION, MAGIC

PAGE = 4096
Key = tuple[str, int, int, int]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(memory: int = 32 << 20, clock: Clock | None = None, dictionary: int = 0) -> Engine:
    config = EngineConfig(
        memory_bytes=memory,
        lease_s=60.0,
        ephemeral_pam="zbud",
        persistent_pam="zsmalloc",
        dictionary_bytes=dictionary,
    )
    return Engine(config, clock=clock or Clock(), codecs=make_codecs(3))


def _corpus() -> bytes:
    rnd = random.Random(0)
    words = [b"tmem", b"page", b"swap", b"cache", b"pool", b"frame", b"zbud", b"index"]
    return b" ".join(rnd.choice(words) + str(rnd.randrange(99)).encode() for _ in range(1 << 17))


#: Text that compresses about 3:1; pages are slices of it at random offsets.
CORPUS = _corpus()


def text_page(rnd: random.Random, size: int = PAGE) -> bytes:
    start = rnd.randrange(len(CORPUS) - size)
    return CORPUS[start : start + size]


def fill(engine: Engine, rnd: random.Random) -> dict[Key, bytes]:
    """Clients a (two pools and a shared one), b (persistent 8 KiB pages and
    a member of the shared pool), c (precompressed); every page kind."""
    engine.connect("a")
    engine.connect("b")
    engine.connect("c")
    pages: dict[Key, bytes] = {}
    a_per = engine.new_pool("a", persistent=True)
    a_eph = engine.new_pool("a", codec="lz4")
    b_big = engine.new_pool("b", persistent=True, page_size=2 * PAGE, codec="none")
    engine.authorize_shared(77, "b")
    engine.authorize_shared(78, "c")
    engine.authorize_shared(77, "a")
    engine.authorize_shared(77, "b")
    shared_a = engine.new_pool("a", shared_uuid=77)
    engine.new_pool("b", shared_uuid=77)
    c_pre = engine.new_pool("c", persistent=True, precompressed=True)
    for i in range(300):
        oid = rnd.randrange(1 << 192) if i % 50 == 0 else i // 7
        for client, pool, size in (("a", a_per, PAGE), ("a", a_eph, PAGE), ("a", shared_a, PAGE)):
            page = bytes([i % 3]) * size if i % 10 == 0 else text_page(rnd, size)
            if i % 17 == 0:
                page = rnd.randbytes(size)
            assert engine.put(client, pool, oid, i, page) is None
            pages[(client, pool, oid, i)] = page
        big = rnd.randbytes(2 * PAGE) if i % 2 else text_page(rnd, 2 * PAGE)
        assert engine.put("b", b_big, oid, i, big) is None
        pages[("b", b_big, oid, i)] = big
        pre = rnd.randbytes(1 + i % 4000)
        assert engine.put("c", c_pre, oid, i, pre) is None
        pages[("c", c_pre, oid, i)] = pre
    engine.freeze("b")
    engine.set_client_limits("a", ClientLimits(300, None, 16 << 20))
    engine.set_client_codec("c", "zstd")
    return pages


def roundtrip(engine: Engine, new: Engine, *, ephemeral: bool) -> bytes:
    out = io.BytesIO()
    saved = engine.save_state(out.write, ephemeral=ephemeral, extra={"server_id": "ab" * 16})
    data = out.getvalue()
    assert saved.stream_bytes == len(data)
    restored = new.restore_state(io.BytesIO(data).read)
    assert restored.extra == {"server_id": "ab" * 16}
    if not ephemeral:
        assert restored.pages == saved.pages
    new.check_invariants()
    return data


def read_all(engine: Engine, pages: dict[Key, bytes]) -> int:
    """How many pages read back wrong (a kept get: the state stays as it is)."""
    return sum(
        engine.get(c, p, o, i, exclusive=False) != page for (c, p, o, i), page in pages.items()
    )


def test_every_pool_kind_comes_back_byte_identical() -> None:
    engine = make()
    pages = fill(engine, random.Random(1))
    new = make()
    roundtrip(engine, new, ephemeral=True)
    assert read_all(new, pages) == 0
    for name in ("a", "b", "c"):
        assert new.pool_ids(name) == engine.pool_ids(name)
        assert new.client_settings(name) == engine.client_settings(name)
    old, got = engine.statistics(), new.statistics()
    assert got.pages == old.pages
    assert [(p.client, p.pool_id, p.pages, p.stored_bytes) for p in got.pool_stats] == [
        (p.client, p.pool_id, p.pages, p.stored_bytes) for p in old.pool_stats
    ]
    new.check_invariants()


def test_ephemeral_pools_stay_behind_unless_asked() -> None:
    engine = make()
    pages = fill(engine, random.Random(2))
    new = make()
    roundtrip(engine, new, ephemeral=False)
    persistent = {key: page for key, page in pages.items() if key[1] == 0}
    assert read_all(new, persistent) == 0
    assert [new.pool_ids(name) for name in "abc"] == [[0], [0], [0]]


def test_trained_dictionary_pages_read_back() -> None:
    engine = make(memory=256 << 20, dictionary=16 << 10)
    engine.connect("z")
    pool = engine.new_pool("z", persistent=True, codec="zstd")
    rnd = random.Random(3)
    pages = {}
    for i in range(17_000):
        pages[("z", pool, 0, i)] = page = text_page(rnd)
        assert engine.put("z", pool, 0, i, page) is None
    engine.maintain()
    assert engine.statistics().pool_stats[0].dictionary
    for i in range(17_000, 17_100):
        pages[("z", pool, 0, i)] = page = text_page(rnd)
        assert engine.put("z", pool, 0, i, page) is None
    new = make(memory=256 << 20, dictionary=16 << 10)
    roundtrip(engine, new, ephemeral=False)
    assert read_all(new, pages) == 0


def test_restored_clients_reattach_within_the_lease_counted_from_restore() -> None:
    engine = make()
    fill(engine, random.Random(4))
    clock = Clock()
    clock.now = 5000.0
    new = make(clock=clock)
    roundtrip(engine, new, ephemeral=False)
    clock.now += 59.0
    assert new.expire_leases() == []
    new.connect("a")  # a reattaches: its lease stops
    clock.now += 2.0
    assert sorted(new.expire_leases()) == ["b", "c"]
    assert new.pool_ids("a") == [0]


def test_restore_needs_a_fresh_engine() -> None:
    engine = make()
    fill(engine, random.Random(5))
    out = io.BytesIO()
    engine.save_state(out.write)
    with pytest.raises(StateError, match="fresh"):
        engine.restore_state(io.BytesIO(out.getvalue()).read)


def saved_bytes(seed: int = 6) -> bytes:
    engine = make()
    fill(engine, random.Random(seed))
    out = io.BytesIO()
    engine.save_state(out.write, ephemeral=True)
    return out.getvalue()


def restore(data: bytes, memory: int = 32 << 20) -> Engine:
    new = make(memory=memory)
    new.restore_state(io.BytesIO(data).read)
    return new


def test_a_stream_cut_anywhere_is_refused() -> None:
    data = saved_bytes()
    rnd = random.Random(7)
    cuts = [0, 5, 20, 25, 40, len(data) - 1, len(data) - 20] + [
        rnd.randrange(len(data)) for _ in range(8)
    ]
    for cut in cuts:
        with pytest.raises(StateError, match=r"truncated|END says"):
            restore(data[:cut])


def test_a_flipped_byte_is_a_checksum_mismatch() -> None:
    data = bytearray(saved_bytes())
    rnd = random.Random(8)
    for _ in range(10):
        at = rnd.randrange(24, len(data))
        damaged = bytearray(data)
        damaged[at] ^= 0x40
        with pytest.raises(StateError, match=r"checksum|length|kind"):
            restore(bytes(damaged))


def test_another_version_and_another_file_are_refused() -> None:
    data = saved_bytes()
    header = struct.pack("<8sHHI", MAGIC, FORMAT_VERSION + 1, 0, 0)
    with pytest.raises(StateError, match=f"version {FORMAT_VERSION + 1}"):
        restore(header + data[len(header) :])
    with pytest.raises(StateError, match="not a tmemd state"):
        restore(b"GIF89a" + data[6:])
    with pytest.raises(StateError, match="after the END"):
        restore(data + b"\0")


def test_a_state_too_big_for_the_memory_is_refused() -> None:
    engine = make(memory=64 << 20)
    engine.connect("a")
    pool = engine.new_pool("a", persistent=True, codec="none")
    rnd = random.Random(9)
    for i in range(4000):
        assert engine.put("a", pool, 0, i, rnd.randbytes(PAGE)) is None
    out = io.BytesIO()
    engine.save_state(out.write)
    with pytest.raises(StateTooBig, match="persistent share"):
        restore(out.getvalue(), memory=16 << 20)
    assert restore(out.getvalue(), memory=32 << 20).statistics().pages == 4000


def test_ephemeral_pages_that_do_not_fit_are_dropped_and_counted() -> None:
    engine = make(memory=64 << 20)
    engine.connect("a")
    pool = engine.new_pool("a", codec="none")
    rnd = random.Random(10)
    for i in range(4000):
        assert engine.put("a", pool, 0, i, rnd.randbytes(PAGE)) is None
    out = io.BytesIO()
    engine.save_state(out.write, ephemeral=True)
    new = make(memory=8 << 20)
    summary = new.restore_state(io.BytesIO(out.getvalue()).read)
    assert summary.ephemeral_pages_dropped > 0
    assert summary.pages + summary.ephemeral_pages_dropped == 4000
    assert new.statistics().pages == summary.pages
    new.check_invariants()


def test_pool_ids_are_not_reused_after_a_restore() -> None:
    engine = make()
    engine.connect("a")
    for _ in range(3):
        engine.new_pool("a", persistent=True)
    engine.destroy_pool("a", 2)
    engine.destroy_pool("a", 0)
    engine.connect("gone")
    engine.destroy_pool("gone", engine.new_pool("gone", persistent=True))
    new = make()
    roundtrip(engine, new, ephemeral=False)
    assert new.pool_ids("a") == [1]
    assert new.new_pool("a", persistent=True) == 3
    new.connect("gone")
    assert new.new_pool("gone") == 1
