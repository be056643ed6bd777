"""SpillStore over a scripted far mapping: where each write goes, nothing lost.

The far side is a dict that can be told to refuse writes or to be
unreachable, so every path of the store is driven without a daemon; the
integration tests run the same store against a real tmemd.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tmem.client import Refused, TmemConnectionError
from tmem.client.frontswap import SpillStore


class ScriptedFar(MutableMapping[Any, bytes]):
    """A far mapping that refuses or fails on command."""

    def __init__(self) -> None:
        self.data: dict[Any, bytes] = {}
        self.refuse = False
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise TmemConnectionError("daemon down (scripted)")

    def __setitem__(self, key: Any, value: bytes) -> None:
        self._check()
        if self.refuse:
            raise Refused("persistent share full (scripted)")
        self.data[key] = bytes(value)

    def __getitem__(self, key: Any) -> bytes:
        self._check()
        return self.data[key]

    def __delitem__(self, key: Any) -> None:
        self._check()
        del self.data[key]

    def __iter__(self) -> Iterator[Any]:
        self._check()
        return iter(list(self.data))

    def __len__(self) -> int:
        return len(self.data)


class FakeSource:
    def __init__(self) -> None:
        self.mappings: dict[str, ScriptedFar] = {}

    def mapping(self, name: str, *, persistent: bool = True) -> ScriptedFar:
        assert persistent
        return self.mappings.setdefault(name, ScriptedFar())


def make(tmp_path: Path) -> tuple[SpillStore, ScriptedFar]:
    source = FakeSource()
    store = SpillStore(source, "spill", tmp_path / "fallback")
    return store, source.mappings["spill"]


def test_writes_go_to_tmemd_while_it_takes_them(tmp_path: Path) -> None:
    store, far = make(tmp_path)
    store["a"] = b"1" * 10
    assert far.data == {"a": b"1" * 10}
    assert store["a"] == b"1" * 10
    assert list((tmp_path / "fallback").iterdir()) == []
    stats = store.stats()
    assert (stats["far_writes"], stats["far_bytes"], stats["fallback_writes"]) == (1, 10, 0)


@pytest.mark.parametrize("failure", ["refuse", "down"])
def test_a_failed_write_lands_in_the_fallback(tmp_path: Path, failure: str) -> None:
    store, far = make(tmp_path)
    setattr(far, failure, True)
    store["a"] = b"value"
    assert far.data == {}
    assert store["a"] == b"value"
    assert "a" in store and list(store) == ["a"] and len(store) == 1
    stats = store.stats()
    assert stats["fallback_writes"] == 1 and stats["fallback_keys"] == 1
    assert stats["refused" if failure == "refuse" else "unreachable"] == 1
    setattr(far, failure, False)
    store["a"] = b"again"  # tmemd takes it now: the fallback copy goes
    assert far.data == {"a": b"again"} and store["a"] == b"again"
    assert list((tmp_path / "fallback").iterdir()) == []


def test_a_refused_rewrite_never_serves_the_old_far_copy(tmp_path: Path) -> None:
    store, far = make(tmp_path)
    store["k"] = b"old"
    far.refuse = True
    store["k"] = b"new"
    assert store["k"] == b"new"
    assert "k" not in far.data  # the stale copy was deleted at once


def test_a_stale_far_copy_is_deleted_when_tmemd_answers_again(tmp_path: Path) -> None:
    store, far = make(tmp_path)
    store["k"] = b"old"
    far.down = True
    store["k"] = b"new"  # to the fallback; the old far copy cannot be deleted yet
    assert store["k"] == b"new"
    assert store.stats()["stale_pending"] == 1
    far.down = False
    assert far.data == {"k": b"old"}
    store["other"] = b"x"  # the next write that reaches tmemd sweeps it
    assert far.data == {"other": b"x"}
    assert store.stats()["stale_pending"] == 0
    assert store["k"] == b"new"


def test_delete_and_clear_reach_both_places(tmp_path: Path) -> None:
    store, far = make(tmp_path)
    store["far"] = b"1"
    far.refuse = True
    store["near"] = b"2"
    del store["far"]
    del store["near"]
    assert len(store) == 0 and far.data == {}
    with pytest.raises(KeyError):
        store["far"]
    with pytest.raises(KeyError):
        del store["far"]
    store["x"] = b"3"
    far.refuse = False
    store["y"] = b"4"
    store.clear()
    assert len(store) == 0 and far.data == {}
    assert list((tmp_path / "fallback").iterdir()) == []


def test_a_second_store_on_the_same_name_sees_both_places(tmp_path: Path) -> None:
    source = FakeSource()
    first = SpillStore(source, "shared", tmp_path / "fb")
    first["far"] = b"1"
    source.mappings["shared"].refuse = True
    first["near"] = b"2"
    second = SpillStore(source, "shared", tmp_path / "fb")
    assert sorted(second) == ["far", "near"]
    assert second["far"] == b"1" and second["near"] == b"2"


def test_keys_must_be_str(tmp_path: Path) -> None:
    store, _ = make(tmp_path)
    with pytest.raises(TypeError):
        store[b"bytes"] = b"x"  # type: ignore[index]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "del", "refuse", "down", "up"]),
            st.sampled_from(["a", "b", "c"]),
            st.binary(max_size=64),
        ),
        max_size=40,
    )
)
def test_never_loses_and_never_serves_a_stale_value(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, str, bytes]]
) -> None:
    store, far = make(tmp_path_factory.mktemp("spill"))
    model: dict[str, bytes] = {}
    for op, key, value in steps:
        if op == "set":
            store[key] = value
            model[key] = value
        elif op == "del" and key in model:
            del store[key]
            del model[key]
        elif op == "refuse":
            far.refuse = not far.refuse
        elif op == "down":
            far.down = True
        elif op == "up":
            far.down = False
        far_was_down, far.down = far.down, False  # reads of far values need tmemd
        assert {k: store[k] for k in store} == model
        far.down = far_was_down
