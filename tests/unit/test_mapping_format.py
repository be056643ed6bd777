"""``client.mapping()`` without a daemon: the page format (``_mapping_format``)
and the operations over ``FakeClient`` (collisions, refusals, listing)."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tmem.client import Refused, RefuseReason
from tmem.client import _mapping_ops as ops
from tmem.client._mapping_format import (
    DATA,
    HEAD,
    MAX_KEY_BYTES,
    base_of,
    join_value,
    key_of,
    page_count,
    parse_head,
    split_value,
    tag_key,
)
from tmem.client.testing import AsyncFakeClient, FakeClient, FakeServer

NAME = b"m"


def pages_of(
    value: bytes, page_size: int = 4096, key: bytes = b"sk", generation: int = 3
) -> list[bytes]:
    return split_value(page_size, key, generation, 77, memoryview(value))


def test_keys_are_typed() -> None:
    assert tag_key("a") == b"sa" and tag_key(b"a") == b"ba"
    assert base_of(NAME, tag_key("a")) != base_of(NAME, tag_key(b"a"))
    assert key_of(tag_key("é")) == "é" and key_of(tag_key(b"\xff")) == b"\xff"
    assert base_of(NAME, b"sa") & 1 == 0
    assert base_of(b"other", b"sa") != base_of(NAME, b"sa")
    assert base_of(NAME, b"sa") < 1 << 192
    with pytest.raises(TypeError):
        tag_key(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tag_key(b"x" * MAX_KEY_BYTES)


@pytest.mark.parametrize("page_size", [4096, 65536])
@pytest.mark.parametrize("length", [0, 1, 4046, 4047, 4096, 4096 * 3 + 5, 200_000])
def test_split_and_join_round_trip(page_size: int, length: int) -> None:
    value = os.urandom(length)
    pages = pages_of(value, page_size)
    assert len(pages) == page_count(page_size, 2, length)
    assert all(0 < len(page) <= page_size for page in pages)
    head = parse_head(pages[0])
    assert head is not None
    assert (head.tagged_key, head.generation, head.write_id, head.length) == (b"sk", 3, 77, length)
    assert join_value(head, pages[1:]) == value


def test_worked_example_of_the_module_docstring() -> None:
    pages = pages_of(b"v" * 5000)
    assert [len(p) for p in pages] == [4096, DATA.size + 946]
    assert (HEAD.size, DATA.size) == (40, 16)


@given(st.binary(max_size=20_000), st.sampled_from([4096, 8192]))
def test_round_trip_property(value: bytes, page_size: int) -> None:
    pages = pages_of(value, page_size)
    head = parse_head(pages[0])
    assert head is not None and join_value(head, pages[1:]) == value


def test_a_value_with_a_missing_page_is_never_served() -> None:
    pages = pages_of(os.urandom(10_000))
    head = parse_head(pages[0])
    assert head is not None
    assert join_value(head, [pages[1], None]) is None
    assert join_value(head, pages[1:2]) is None  # short: a page too few


def test_a_page_of_another_write_is_never_served() -> None:
    value = os.urandom(10_000)
    mine = pages_of(value)
    other = split_value(4096, b"sk", 3, 78, memoryview(value))  # same generation, other write
    head = parse_head(mine[0])
    assert head is not None
    assert join_value(head, [mine[1], other[2]]) is None


def test_a_checksum_mismatch_is_never_served() -> None:
    pages = pages_of(os.urandom(10_000))
    corrupt = bytearray(pages[2])
    corrupt[-1] ^= 1
    head = parse_head(pages[0])
    assert head is not None
    assert join_value(head, [pages[1], bytes(corrupt)]) is None
    bad_head = bytearray(pages[0])
    bad_head[-1] ^= 1
    head = parse_head(bytes(bad_head))
    assert head is not None and join_value(head, pages[1:]) is None


@pytest.mark.parametrize("page", [None, b"", b"x" * 47, b"x" * 4096, b"tmM1" + b"\xff" * 60])
def test_anything_but_a_head_is_no_head(page: bytes | None) -> None:
    assert parse_head(page) is None


# --- the operations over FakeClient ------------------------------------------------------


def test_mapping_over_the_fake_client() -> None:
    m = FakeClient().mapping("m", page_size=4096)
    m["a"] = b"str key"
    m[b"a"] = bytearray(b"bytes key")
    m["big"] = memoryview(b"z" * 50_000)
    assert m["a"] == b"str key" and m[b"a"] == b"bytes key" and m["big"] == b"z" * 50_000
    assert sorted(m, key=repr) == sorted(["a", b"a", "big"], key=repr)
    assert len(m) == 3 and "a" in m and "b" not in m
    m["a"] = b""
    assert m["a"] == b""
    del m["a"]
    with pytest.raises(KeyError):
        m["a"]
    with pytest.raises(KeyError):
        del m["a"]
    m.update({"x": b"1"}, y=b"2")
    assert m.get_many(["x", "y", "nope"]) == {"x": b"1", "y": b"2"}
    m.clear()
    assert len(m) == 0
    with pytest.raises(TypeError):
        m["s"] = "text"  # type: ignore[assignment]


def test_each_overwrite_leaves_one_slot() -> None:
    client = FakeClient()
    m = client.mapping("m", page_size=4096)
    for i in range(5):
        m["k"] = bytes([i]) * 9000
        assert m["k"] == bytes([i]) * 9000
        assert client.list_pools()[0]["pages"] == 3  # one generation's pages


def test_delete_clears_the_pages_of_an_interrupted_write() -> None:
    client = FakeClient()
    m = client.mapping("m", page_size=4096)
    m["k"] = b"v" * 9000  # generation 1, in slot 1
    base = m._layout.base(tag_key("k"))
    assert m.pool.put(base, 5, b"left by a writer that died")  # slot 0, no head
    assert m["k"] == b"v" * 9000
    del m["k"]
    assert client.list_pools()[0]["pages"] == 0


def test_a_hash_collision_is_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    m = FakeClient().mapping("m", page_size=4096)
    monkeypatch.setattr(ops.Layout, "base", lambda self, tagged: 1 << 100)
    m["a"] = b"value of a"
    with pytest.raises(KeyError):
        m["b"]  # same objects, another key: never a's value
    with pytest.raises(Refused) as info:
        m["b"] = b"value of b"
    assert info.value.reason is None and info.value.keys == ("b",)
    assert m["a"] == b"value of a"
    with pytest.raises(KeyError):
        del m["b"]
    assert m["a"] == b"value of a"


def test_a_refused_write_keeps_the_old_value() -> None:
    server = FakeServer(capacity_pages=6)
    client = FakeClient(server=server)
    m = client.mapping("m", page_size=4096)
    m["k"] = b"old" * 3000  # 3 pages
    with pytest.raises(Refused) as info:
        m["k"] = b"new" * 5000  # 4 more pages do not fit
    assert info.value.reason == RefuseReason.NO_MEMORY and info.value.keys == ("k",)
    assert m["k"] == b"old" * 3000
    assert client.list_pools()[0]["pages"] == 3  # the half-written slot was flushed
    m["k"] = b"fits" * 1000
    assert m["k"] == b"fits" * 1000


def test_set_many_stores_what_fits_and_names_the_rest() -> None:
    m = FakeClient(server=FakeServer(capacity_pages=5)).mapping("m", page_size=4096)
    with pytest.raises(Refused) as info:
        m.set_many({"small": b"s", "big": b"b" * 20_000})
    assert info.value.keys == ("big",)
    assert m["small"] == b"s" and "big" not in m


def test_a_second_client_of_the_same_name_reattaches() -> None:
    server = FakeServer()
    FakeClient(server=server, client_name="app").mapping("m")["k"] = b"v"
    assert FakeClient(server=server, client_name="app").mapping("m")["k"] == b"v"
    assert "k" not in FakeClient(server=server, client_name="other").mapping("m")


def test_async_mapping_over_the_fake_client() -> None:
    async def scenario() -> None:
        m = await AsyncFakeClient().mapping("m", page_size=4096)
        await m.set("a", b"x" * 10_000)
        await m.set_many([(b"b", b"y"), ("c", b"")])
        assert await m.get("a") == b"x" * 10_000
        assert await m.get("nope", b"default") == b"default"
        assert await m.contains("c") and not await m.contains("nope")
        assert await m.count() == 3
        assert sorted([key async for key in m], key=repr) == sorted(["a", b"b", "c"], key=repr)
        assert await m.get_many(["a", "c"]) == {"a": b"x" * 10_000, "c": b""}
        assert await m.delete("a") and not await m.delete("a")
        await m.clear()
        assert await m.keys() == []

    asyncio.run(scenario())
