"""SpillStore against a real tmemd: refused and unreachable writes land in
the fallback and every value reads back; zict composition as dask uses it."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path

import zict

from tests.conftest import Daemon
from tmem.client import Client
from tmem.client.frontswap import SpillStore


def test_refused_spill_lands_in_the_fallback_and_reads_back(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon = daemon_factory("--memory", "2MiB", "--codec", "none")
    values = {f"k{i}": os.urandom(20_000 + i) for i in range(120)}  # ~2.5 MB: more than fits
    with Client(daemon.address, client_name="spiller") as client:
        store = SpillStore(client, "spill", tmp_path / "fallback")
        for key, value in values.items():
            store[key] = value
        stats = store.stats()
        assert stats["far_writes"] > 0, stats
        assert stats["fallback_writes"] > 0 and stats["refused"] > 0, stats
        assert stats["far_keys"] + stats["fallback_keys"] == len(values)
        assert len(store) == len(values) and set(store) == set(values)
        for key, value in values.items():
            assert store[key] == value
        # A second store on the same name (another process of this client)
        # finds every value, wherever it went.
        again = SpillStore(client, "spill", tmp_path / "fallback")
        assert set(again) == set(values)
        assert all(again[k] == v for k, v in values.items())
        for key in list(values)[::2]:
            del store[key]
            del values[key]
        assert set(store) == set(values)
        assert all(store[k] == v for k, v in values.items())


def test_spill_with_the_daemon_gone_lands_in_the_fallback(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon = daemon_factory("--memory", "64MiB")
    with Client(daemon.address, client_name="spiller", timeout=2.0) as client:
        store = SpillStore(client, "spill", tmp_path / "fallback")
        store["before"] = b"b" * 10_000
        assert store.stats()["far_keys"] == 1
        assert daemon.stop() == 0
        store["after"] = b"a" * 10_000  # cannot reach tmemd: the fallback takes it
        assert store["after"] == b"a" * 10_000
        stats = store.stats()
        assert stats["unreachable"] >= 1 and stats["fallback_keys"] == 1


def test_spill_store_made_while_the_daemon_is_down(tmp_path: Path) -> None:
    with Client("127.0.0.1:1", client_name="spiller", timeout=1.0) as client:
        store = SpillStore(client, "spill", tmp_path / "fallback")
        store["x"] = b"value"
        assert store["x"] == b"value" and store.stats()["fallback_keys"] == 1


def test_zict_buffer_composition(daemon: Daemon, tmp_path: Path) -> None:
    with Client(daemon.address, client_name="zict-user") as client:
        store = SpillStore(client, "buffer", tmp_path / "fallback")
        buffer: zict.Buffer[str, object] = zict.Buffer(
            fast={},
            slow=zict.Func(pickle.dumps, pickle.loads, store),
            n=200_000,
            weight=lambda k, v: len(pickle.dumps(v)),
        )
        model = {f"obj{i}": {"i": i, "blob": os.urandom(10_000)} for i in range(100)}
        buffer.update(model)
        assert len(store) > 50  # most went to the slow side, that is to tmemd
        assert store.stats()["far_keys"] == len(store)
        assert {k: buffer[k] for k in model} == model
