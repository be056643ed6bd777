"""The ``tmem::`` fsspec layer against the real daemon.

Sources are fsspec's own ``file`` and ``memory`` filesystems; pandas and
pyarrow read Parquet through the layer; the daemon is stopped or frozen in
the middle of a read; random ranged reads are compared byte for byte with
the source (hypothesis); two client names share a dataset's cache through
a shared pool, which an administrator authorizes as with an auth file.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tmem.client import Client
from tmem.client.cleancache import TmemFileSystem, shared_pool_uuid

from ..conftest import Daemon
from .authfile import write_auth

BS = 4096
#: A loaded 2-core CI box may take a while to answer; the layer's default
#: (1 s) is for production, where a stall should cost little.
TEST_TIMEOUT_S = 10.0
TOKENS = {"alice": "a-token", "bob": "b-token", "ops": "o-token"}


def options(daemon: Daemon, name: str, **more: Any) -> dict[str, Any]:
    return {
        "server": daemon.address,
        "client_name": name,
        "block_size": BS,
        "timeout": TEST_TIMEOUT_S,
        "skip_instance_cache": True,
        **more,
    }


def layer(url: str, daemon: Daemon, name: str, **more: Any) -> tuple[TmemFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url, tmem=options(daemon, name, **more))
    assert isinstance(fs, TmemFileSystem)
    return fs, path


def write(path: Path, data: bytes) -> None:
    """Replace ``path`` as most tools do: a new file renamed over the old."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_file_source_ranges_and_hits(daemon: Daemon, tmp_path: Path) -> None:
    data = random.Random(1).randbytes(10 * BS + 123)
    write(tmp_path / "f.bin", data)
    fs, path = layer(f"tmem::file://{tmp_path}/f.bin", daemon, "reader")
    assert fs.cat_file(path) == data
    assert fs.stats()["misses"] == 11 and fs.stats()["stored"] == 11
    with fs.open(path, "rb") as f:
        f.seek(5 * BS - 7)
        assert f.read(BS) == data[5 * BS - 7 : 6 * BS - 7]
        assert f.read() == data[6 * BS - 7 :]
    # Blocks 4-5, then 5-10: a read past the held blocks asks for all it covers.
    assert fs.stats()["hits"] == 8 and fs.stats()["misses"] == 11
    assert fs.stats()["errors"] == 0


def test_memory_source_and_a_changed_file(daemon: Daemon) -> None:
    memory = fsspec.filesystem("memory")
    memory.pipe_file("/tmem-it/changing", b"A" * (3 * BS))
    try:
        fs, path = layer("tmem::memory://tmem-it/changing", daemon, "reader")
        assert fs.cat_file(path) == b"A" * (3 * BS)
        assert fs.stats()["stored"] == 3
        assert fs.cat_file(path) == b"A" * (3 * BS)
        assert fs.stats()["hits"] == 3  # the old version is in the cache
        memory.pipe_file("/tmem-it/changing", b"B" * (3 * BS))  # same size
        assert fs.cat_file(path) == b"B" * (3 * BS)
        with fs.open(path, "rb") as f:
            assert f.read() == b"B" * (3 * BS)
    finally:
        memory.rm_file("/tmem-it/changing")


def test_a_rewritten_local_file_is_never_served_from_old_blocks(
    daemon: Daemon, tmp_path: Path
) -> None:
    target = tmp_path / "data.bin"
    fs, path = layer(f"tmem::file://{target}", daemon, "reader")
    for generation in range(5):
        data = random.Random(generation).randbytes(4 * BS)
        write(target, data)
        assert fs.cat_file(path) == data
        fs.stats()  # the blocks are stored before the next version is written
        assert fs.cat_file(path, BS, 3 * BS) == data[BS : 3 * BS]
    assert fs.stats()["hits"] == 10


def test_pandas_reads_parquet_through_tmem(daemon: Daemon, tmp_path: Path) -> None:
    rng = random.Random(2)
    frame = pd.DataFrame(
        {
            "package": [f"pkg-{rng.randrange(500)}" for _ in range(20_000)],
            "size": [rng.randrange(1 << 30) for _ in range(20_000)],
            "ratio": [rng.random() for _ in range(20_000)],
        }
    )
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=5_000)
    url = f"tmem::file://{tmp_path}/t.parquet"
    storage = {"tmem": options(daemon, "pandas", skip_instance_cache=False)}
    assert pd.read_parquet(url, storage_options=storage).equals(frame)
    fs, _ = fsspec.core.url_to_fs(url, **storage)  # the same (cached) instance
    first = fs.stats()
    assert first["misses"] > 0 and first["stored"] == first["misses"]
    assert pd.read_parquet(url, storage_options=storage).equals(frame)
    second = fs.stats()
    assert second["misses"] == first["misses"] and second["hits"] > first["hits"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(0, 9 * BS),
    reads=st.lists(st.tuples(st.integers(-10 * BS, 10 * BS), st.integers(0, 3 * BS)), max_size=8),
)
def test_random_ranged_reads_match_the_source(
    daemon: Daemon, tmp_path: Path, size: int, reads: list[tuple[int, int]]
) -> None:
    data = random.Random(size).randbytes(size)
    write(tmp_path / f"r{size}.bin", data)
    fs, path = layer(f"tmem::file://{tmp_path}/r{size}.bin", daemon, "hypo")
    with fs.open(path, "rb") as f:
        for start, length in reads:
            assert fs.cat_file(path, start, start + length) == data[start : start + length]
            offset = min(max(start, 0), size)
            f.seek(offset)
            assert f.read(length) == data[offset : offset + length]
    assert fs.stats()["errors"] == 0


def test_daemon_stopped_mid_read(daemon: Daemon, tmp_path: Path) -> None:
    data = random.Random(3).randbytes(16 * BS)
    write(tmp_path / "f.bin", data)
    fs, path = layer(f"tmem::file://{tmp_path}/f.bin", daemon, "reader")
    with fs.open(path, "rb") as f:
        assert f.read(8 * BS) == data[: 8 * BS]
        assert daemon.stop() == 0
        assert f.read() == data[8 * BS :]
        f.seek(0)
        assert f.read() == data
    assert fs.cat_file(path) == data
    assert fs.stats()["errors"] >= 1 and fs.stats()["bypassed"] > 0


def test_frozen_daemon_costs_one_short_timeout(daemon: Daemon, tmp_path: Path) -> None:
    data = random.Random(4).randbytes(16 * BS)
    write(tmp_path / "f.bin", data)
    fs, path = layer(f"tmem::file://{tmp_path}/f.bin", daemon, "reader", timeout=0.3)
    assert fs.cat_file(path, 0, 4 * BS) == data[: 4 * BS]
    assert fs.stats()["stored"] == 4  # nothing left to store when it freezes
    daemon.proc.send_signal(signal.SIGSTOP)
    try:
        began = time.monotonic()
        for start in range(0, 16 * BS, BS):
            assert fs.cat_file(path, start, start + BS) == data[start : start + BS]
        elapsed = time.monotonic() - began
    finally:
        daemon.proc.send_signal(signal.SIGCONT)
    assert fs.stats()["errors"] == 1  # then set aside: 15 reads went to the source
    assert elapsed < 5.0, f"16 reads took {elapsed:.1f}s with the daemon frozen"


@pytest.fixture
def auth_daemon(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> Daemon:
    auth = write_auth(tmp_path, TOKENS, admin="ops")
    return daemon_factory("--memory", "64MiB", "--auth-file", str(auth))


def test_shared_pool_across_client_names(auth_daemon: Daemon, tmp_path: Path) -> None:
    uuid = shared_pool_uuid("packages-dataset", BS)
    with Client(auth_daemon.address, client_name="ops", token=TOKENS["ops"]) as ops:
        for name in ("alice", "bob"):
            ops.control("authorize_shared", client=name, uuid=uuid.hex)
    data = random.Random(5).randbytes(12 * BS + 5)
    write(tmp_path / "shared.bin", data)
    url = f"tmem::file://{tmp_path}/shared.bin"
    shared = {"pool": "packages-dataset"}
    alice, path = layer(url, auth_daemon, "alice", token=TOKENS["alice"], **shared)
    bob, _ = layer(url, auth_daemon, "bob", token=TOKENS["bob"], **shared)
    assert alice.cat_file(path) == data
    assert alice.stats()["misses"] == 13 and alice.stats()["stored"] == 13
    assert bob.cat_file(path) == data
    assert bob.stats()["hits"] == 13 and bob.stats()["misses"] == 0
    assert alice.cat_file(path) == data  # shared gets keep the pages
    assert alice.stats()["hits"] == 13
    # Another block size is another pool: nothing shared, nothing wrong.
    carol, _ = layer(url, auth_daemon, "alice", token=TOKENS["alice"], block_size=8192, **shared)
    assert carol.cat_file(path) == data and carol.stats()["hits"] == 0


def test_refused_puts_are_counted_and_reads_stay_right(auth_daemon: Daemon, tmp_path: Path) -> None:
    data = random.Random(6).randbytes(6 * BS)
    write(tmp_path / "f.bin", data)
    fs, path = layer(f"tmem::file://{tmp_path}/f.bin", auth_daemon, "bob", token=TOKENS["bob"])
    assert fs.cat_file(path, 0, 10) == data[:10]  # makes the pool before the freeze
    assert fs.stats()["stored"] == 1
    with Client(auth_daemon.address, client_name="ops", token=TOKENS["ops"]) as ops:
        ops.control("freeze", client="bob")
    assert fs.cat_file(path) == data
    assert fs.stats()["refusals"] == 5 and fs.stats()["errors"] == 0
    assert fs.cat_file(path) == data


def test_an_existing_client_can_be_given(daemon: Daemon, tmp_path: Path) -> None:
    data = random.Random(7).randbytes(3 * BS)
    write(tmp_path / "f.bin", data)
    with Client(daemon.address, client_name="mine", timeout=TEST_TIMEOUT_S) as client:
        fs = TmemFileSystem(
            target_protocol="file", client=client, block_size=BS, skip_instance_cache=True
        )
        assert fs.cat_file(str(tmp_path / "f.bin")) == data
        assert fs.stats()["stored"] == 3
        assert fs.cat_file(str(tmp_path / "f.bin")) == data
        assert fs.stats()["hits"] == 3
        assert len(client.list_pools()) == 1
