"""Named pools and their object listing: the engine calls, ``ObjectListing``'s
SCAN guarantee across resizes, and the ``open_pool``/``list_objects`` control
commands over a real engine (no sockets).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tmem.proto import PoolSpec, Status, encode_pool_flags
from tmemd._control import MAX_LIST_OBJECTS, run_control
from tmemd._session import HandlerContext, RequestError, Session
from tmemd.engine import BadArgument, Engine, EngineConfig, Unsupported
from tmemd.engine._listing import MAX_LOAD, MIN_BUCKETS, MOVE_BUCKETS_PER_CALL, ObjectListing

PAGE = 4096


def make_engine() -> Engine:
    engine = Engine(EngineConfig(memory_bytes=8 << 20, default_codec="none"), lambda: 0.0)
    engine.connect("a")
    engine.connect("b")
    return engine


def full_scan(listing: ObjectListing, count: int = 7, max_buckets: int = 5) -> list[int]:
    out: list[int] = []
    cursor = 0
    for _ in range(100_000):
        ids, cursor = listing.scan(cursor, count, max_buckets)
        out.extend(ids)
        if cursor == 0:
            return out
    raise AssertionError("the scan did not end")


def test_scan_returns_every_id_once_when_nothing_changes() -> None:
    listing = ObjectListing()
    ids = [random.Random(1).getrandbits(192) for _ in range(1000)] + list(range(500))
    for oid in ids:
        listing.add(oid)
    assert len(listing) == len(ids)
    seen = full_scan(listing)
    assert sorted(seen) == sorted(ids)


def test_scan_of_an_empty_listing_ends_at_once() -> None:
    listing = ObjectListing()
    assert listing.scan(0, 10, MIN_BUCKETS) == ([], 0)


@pytest.mark.parametrize("seed", range(5))
def test_scan_keeps_its_guarantee_while_the_table_grows_and_shrinks(seed: int) -> None:
    """Ids present from start to end are returned; nothing never present is."""
    rng = random.Random(seed)
    listing = ObjectListing()
    stable = {rng.getrandbits(192) for _ in range(300)}
    churn: set[int] = set()
    for oid in stable:
        listing.add(oid)
    ever = set(stable)
    seen: set[int] = set()
    cursor = 0
    for step in range(100_000):
        ids, cursor = listing.scan(cursor, 5, 3)
        seen.update(ids)
        if cursor == 0:
            break
        # Grow past a doubling, then shrink past a halving, mid-scan.
        adding = step % 200 < 100
        for _ in range(40):
            if adding:
                oid = rng.getrandbits(192)
                churn.add(oid)
                ever.add(oid)
                listing.add(oid)
            elif churn:
                listing.remove(churn.pop())
    assert stable <= seen
    assert seen <= ever


def test_a_resize_is_spread_over_later_calls() -> None:
    listing = ObjectListing()
    first = MAX_LOAD * MIN_BUCKETS + 1
    for oid in range(first):
        listing.add(oid)
    assert listing._old is not None  # moving, a few buckets per call
    assert sorted(full_scan(listing)) == list(range(first))
    listing.remove(0)
    assert sorted(full_scan(listing)) == list(range(1, first))
    for oid in range(first, first + MIN_BUCKETS // MOVE_BUCKETS_PER_CALL):
        listing.add(oid)
    assert listing._old is None
    assert len(listing) == len(listing.ids()) == first + MIN_BUCKETS // MOVE_BUCKETS_PER_CALL - 1


def test_listing_shrinks_back() -> None:
    listing = ObjectListing()
    for oid in range(10_000):
        listing.add(oid)
    for oid in range(10_000):
        listing.remove(oid)
    assert len(listing) == 0
    assert listing.scan(0, 10, 10_000) == ([], 0)


def test_named_pool_is_reopened_by_name() -> None:
    engine = make_engine()
    first = engine.new_pool("a", persistent=True, name="sessions")
    other = engine.new_pool("a", persistent=True)
    assert engine.new_pool("a", persistent=True, name="sessions") == first
    assert other != first
    # Names are per client.
    assert engine.new_pool("b", persistent=True, name="sessions") == 0
    stats = {(p.client, p.pool_id): p.name for p in engine.statistics().pool_stats}
    assert stats[("a", first)] == "sessions"
    assert stats[("a", other)] is None


@pytest.mark.parametrize(
    "flags",
    [
        {"persistent": False},
        {"persistent": True, "page_size": 8192},
        {"persistent": True, "precompressed": True},
        {"persistent": True, "codec": "lz4"},
        {"persistent": True, "pam": "xvmalloc"},
    ],
)
def test_named_pool_with_other_flags_is_bad_argument(flags: dict[str, Any]) -> None:
    config = EngineConfig(
        memory_bytes=8 << 20, default_codec="none", ephemeral_pam="zbud", persistent_pam="zbud"
    )
    engine = Engine(config, lambda: 0.0)
    engine.connect("a")
    engine.new_pool("a", persistent=True, codec="none", pam="zsmalloc", name="m")
    assert engine.new_pool("a", persistent=True, name="m") == 0
    with pytest.raises(BadArgument):
        engine.new_pool("a", name="m", **flags)


def test_destroyed_name_is_free_again() -> None:
    engine = make_engine()
    pool_id = engine.new_pool("a", persistent=True, name="m")
    engine.put("a", pool_id, 5, 0, b"x" * PAGE)
    engine.destroy_pool("a", pool_id)
    again = engine.new_pool("a", persistent=True, name="m")
    assert engine.get("a", again, 5, 0) is None
    assert engine.list_objects("a", again, 0, 10, MIN_BUCKETS) == ([], 0)


def test_shared_pool_cannot_be_named() -> None:
    engine = make_engine()
    with pytest.raises(BadArgument):
        engine.new_pool("a", shared_uuid=7, name="m")


def test_listing_follows_puts_flushes_and_evictions() -> None:
    engine = Engine(EngineConfig(memory_bytes=1 << 20, default_codec="none"), lambda: 0.0)
    engine.connect("a")
    pool_id = engine.new_pool("a", name="cache")
    rng = random.Random(3)
    for oid in range(600):  # ephemeral, more than fits: evictions
        engine.put("a", pool_id, oid, oid % 3, rng.randbytes(PAGE))
    engine.flush_object("a", pool_id, 599)
    engine.flush_page("a", pool_id, 598, 598 % 3)
    engine.check_invariants()
    listed: set[int] = set()
    cursor = 0
    while True:
        ids, cursor = engine.list_objects("a", pool_id, cursor, 50, 50)
        listed.update(ids)
        if cursor == 0:
            break
    held = {oid for oid in range(600) if engine.get("a", pool_id, oid, oid % 3, False)}
    assert listed == held
    assert 0 < len(held) < 598


def test_unnamed_pool_keeps_no_listing() -> None:
    engine = make_engine()
    pool_id = engine.new_pool("a", persistent=True)
    with pytest.raises(Unsupported):
        engine.list_objects("a", pool_id, 0, 10, 10)


# --- the control commands -----------------------------------------------------------------


def control(engine: Engine, **body: Any) -> dict[str, Any]:
    ctx = HandlerContext(engine=engine, lease_s=60.0, max_request_payload=1 << 20)
    return run_control(ctx, Session("p", "a"), body)


def control_status(engine: Engine, **body: Any) -> Status:
    with pytest.raises(RequestError) as info:
        control(engine, **body)
    return info.value.status


PERSISTENT = encode_pool_flags(PoolSpec(persistent=True))


def test_open_pool_and_list_objects_over_control() -> None:
    engine = make_engine()
    reply = control(engine, cmd="open_pool", name="m", flags=PERSISTENT)
    pool_id = reply["pool_id"]
    assert control(engine, cmd="open_pool", name="m", flags=PERSISTENT) == {"pool_id": pool_id}
    big = (1 << 192) - 1
    engine.put("a", pool_id, big, 0, b"y" * PAGE)
    engine.put("a", pool_id, 1, 3, b"z" * PAGE)
    objects: list[str] = []
    cursor = 0
    while True:
        reply = control(engine, cmd="list_objects", pool_id=pool_id, cursor=cursor, count=1)
        objects += reply["objects"]
        cursor = reply["cursor"]
        if cursor == 0:
            break
    assert sorted(objects) == [f"{1:048x}", "f" * 48]
    pools = control(engine, cmd="list_pools")["pools"]
    assert [p["name"] for p in pools] == ["m"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"cmd": "open_pool", "flags": PERSISTENT}, Status.BAD_ARGUMENT),
        ({"cmd": "open_pool", "name": "a b", "flags": PERSISTENT}, Status.BAD_ARGUMENT),
        ({"cmd": "open_pool", "name": "x" * 65, "flags": PERSISTENT}, Status.BAD_ARGUMENT),
        ({"cmd": "open_pool", "name": "m"}, Status.BAD_ARGUMENT),
        ({"cmd": "open_pool", "name": "m", "flags": 0x01000008}, Status.BAD_FLAGS),
        ({"cmd": "open_pool", "name": "m", "flags": 0x02000001}, Status.BAD_SPEC_VERSION),
        ({"cmd": "open_pool", "name": "m", "flags": 0x01000002}, Status.BAD_ARGUMENT),
        ({"cmd": "list_objects", "pool_id": 9}, Status.BAD_POOL),
        ({"cmd": "list_objects"}, Status.BAD_ARGUMENT),
        ({"cmd": "list_objects", "pool_id": 0, "cursor": -1}, Status.BAD_ARGUMENT),
        ({"cmd": "list_objects", "pool_id": 0, "cursor": 1 << 64}, Status.BAD_ARGUMENT),
        ({"cmd": "list_objects", "pool_id": 0, "count": 0}, Status.BAD_ARGUMENT),
        ({"cmd": "list_objects", "pool_id": 0, "count": MAX_LIST_OBJECTS + 1}, Status.BAD_ARGUMENT),
    ],
)
def test_control_errors(body: dict[str, Any], status: Status) -> None:
    engine = make_engine()
    engine.new_pool("a", persistent=True, name="m")
    assert control_status(engine, **body) == status


def test_list_objects_of_an_unnamed_pool_is_unsupported() -> None:
    engine = make_engine()
    pool_id = engine.new_pool("a", persistent=True)
    assert control_status(engine, cmd="list_objects", pool_id=pool_id) == Status.UNSUPPORTED


def test_open_pool_with_other_flags_is_bad_argument() -> None:
    engine = make_engine()
    control(engine, cmd="open_pool", name="m", flags=PERSISTENT)
    ephemeral = encode_pool_flags(PoolSpec())
    assert control_status(engine, cmd="open_pool", name="m", flags=ephemeral) == (
        Status.BAD_ARGUMENT
    )
