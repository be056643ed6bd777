"""The ``tmem::`` layer without a daemon: block rules, identity, and the
page cache's rule that nothing on the tmem side ever fails a read.

The filesystem runs over fsspec's ``memory`` filesystem with
``tmem.client.testing.FakeClient`` as its client; the real daemon is in
tests/integration/test_cleancache.py.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from tmem.client import TmemConnectionError
from tmem.client._blocks import (
    check_block_size,
    file_object_id,
    file_version,
    missing_runs,
    pad_block,
    shared_pool_uuid,
)
from tmem.client._pagecache import RETRY_AFTER_S, PageCache
from tmem.client.cleancache import TmemFileSystem
from tmem.client.testing import FakeClient

BS = 4096


@pytest.fixture
def memfs() -> MemoryFileSystem:
    fs = MemoryFileSystem(skip_instance_cache=True)
    fs.store = {}
    fs.pseudo_dirs = [""]
    return fs


def layer(source: Any, client: Any = None, **options: Any) -> TmemFileSystem:
    return TmemFileSystem(
        fs=source,
        client=client if client is not None else FakeClient(client_name="unit"),
        block_size=BS,
        skip_instance_cache=True,
        **options,
    )


def test_missing_runs() -> None:
    page = b"p"
    assert missing_runs([]) == []
    assert missing_runs([page, page]) == []
    assert missing_runs([None, None]) == [(0, 2)]
    assert missing_runs([None, page, None, None, page, None]) == [(0, 1), (2, 2), (5, 1)]


def test_block_sizes_and_padding() -> None:
    assert [check_block_size(1 << s) for s in range(12, 17)] == [4096, 8192, 16384, 32768, 65536]
    for bad in (0, 2048, 5000, 131072):
        with pytest.raises(ValueError):
            check_block_size(bad)
    assert pad_block(b"ab", 4) == b"ab\0\0" and pad_block(b"abcd", 4) == b"abcd"


def test_version_changes_with_content_metadata() -> None:
    base = {"name": "/a", "size": 10, "mtime": 1.0, "type": "file"}
    assert file_version(base) == file_version(dict(base))
    assert file_version(base) != file_version({**base, "mtime": 2.0})
    assert file_version(base) != file_version({**base, "size": 11})
    # Only a size: the whole info() is the version, so any change counts.
    assert file_version({"size": 1, "x": 1}) != file_version({"size": 1, "x": 2})
    ids = {
        file_object_id("file", "/a", "v1"),
        file_object_id("file", "/a", "v2"),
        file_object_id("memory", "/a", "v1"),
        file_object_id("file", "/av", "1"),  # length-prefixed: no ambiguity
    }
    assert len(ids) == 4 and all(0 <= i < 1 << 192 for i in ids)


def test_shared_pool_uuid_depends_on_name_and_block_size() -> None:
    assert shared_pool_uuid("ds", BS) == shared_pool_uuid("ds", BS)
    assert isinstance(shared_pool_uuid("ds", BS), uuid.UUID)
    assert shared_pool_uuid("ds", BS) != shared_pool_uuid("ds", 65536)
    assert shared_pool_uuid("ds", BS) != shared_pool_uuid("ds2", BS)
    with pytest.raises(ValueError):
        shared_pool_uuid("", BS)


def test_reads_match_the_source_and_hit_the_second_time(memfs: MemoryFileSystem) -> None:
    data = bytes(range(256)) * 70  # 17920 bytes: 4 full blocks and a short one
    memfs.pipe_file("/d/f", data)
    fs = layer(memfs)
    assert fs.cat_file("/d/f") == data
    assert fs.stats()["misses"] == 5 and fs.stats()["stored"] == 5
    for start, end in [(0, 1), (4095, 4097), (100, 17920), (16384, None), (-10, None), (5, 5)]:
        assert fs.cat_file("/d/f", start, end) == data[start:end]
    assert fs.stats()["misses"] == 5  # everything after the first read was a hit
    with fs.open("/d/f", "rb") as f:
        f.seek(4000)
        assert f.read(200) == data[4000:4200]
        assert f.read(10) == data[4200:4210]  # from the blocks the file holds
        assert f.read() == data[4210:]


def test_a_changed_file_is_read_anew(memfs: MemoryFileSystem) -> None:
    memfs.pipe_file("/f", b"a" * 5000)
    fs = layer(memfs)
    assert fs.cat_file("/f") == b"a" * 5000
    assert fs.stats()["stored"] == 2
    memfs.pipe_file("/f", b"b" * 5000)
    assert fs.cat_file("/f") == b"b" * 5000


def test_writes_and_metadata_go_to_the_source(memfs: MemoryFileSystem) -> None:
    fs = layer(memfs)
    with fs.open("/w", "wb") as f:
        f.write(b"written")
    assert memfs.cat_file("/w") == b"written"
    assert fs.info("/w")["size"] == 7 and fs.ls("/", detail=False) == ["/w"]
    fs.rm_file("/w")
    assert not memfs.exists("/w")


class BrokenClient:
    """A client whose daemon is gone: every call raises a connection error."""

    def __init__(self) -> None:
        self.calls = 0

    def new_pool(self, **kwargs: Any) -> Any:
        self.calls += 1
        raise TmemConnectionError("cannot connect")


def test_a_dead_daemon_is_counted_and_set_aside(memfs: MemoryFileSystem) -> None:
    memfs.pipe_file("/f", b"x" * 9000)
    broken = BrokenClient()
    fs = layer(memfs, client=broken)
    now = [100.0]
    fs.cache._clock = lambda: now[0]
    for _ in range(3):
        assert fs.cat_file("/f") == b"x" * 9000
    assert broken.calls == 1  # set aside after the first failure
    assert fs.stats()["errors"] == 1 and fs.stats()["bypassed"] == 9
    now[0] += RETRY_AFTER_S
    assert fs.cat_file("/f", 0, 10) == b"x" * 10
    assert broken.calls == 2 and fs.stats()["errors"] == 2


def test_a_page_of_the_wrong_length_is_never_data() -> None:
    client = FakeClient(client_name="unit")
    cache = PageCache(client, 8192, None)
    cache.put(7, [(0, b"y" * 8192)])
    cache.drain()
    # Another user of the pool may hold the same handle with another pool's
    # page size; the cache checks the length of every page it returns.
    wrong = PageCache(client, 4096, None)
    wrong._pool = cache._pool
    assert wrong.get(7, [0]) == [None] and wrong.stats.errors == 1


def test_evicted_blocks_are_read_from_the_source(memfs: MemoryFileSystem) -> None:
    data = bytes(range(256)) * 64  # 4 blocks
    memfs.pipe_file("/big", data)
    fs = layer(memfs, client=FakeClient(client_name="unit", capacity_pages=2))
    assert fs.cat_file("/big") == data
    assert fs.stats()["stored"] == 4  # stats() waits for the puts behind the read
    assert fs.cat_file("/big") == data
    assert fs.stats()["hits"] == 2 and fs.stats()["misses"] == 6


def test_chained_url_options_reach_the_layer(memfs: MemoryFileSystem) -> None:
    shared_memory = fsspec.filesystem("memory")  # the one a URL reaches
    shared_memory.pipe_file("/tmem-unit-url", b"via url")
    fake = FakeClient(client_name="unit")
    with fsspec.open(
        "tmem::memory://tmem-unit-url", "rb", tmem={"client": fake, "block_size": BS, "pool": "ds"}
    ) as f:
        assert f.read() == b"via url"
        assert isinstance(f.fs, TmemFileSystem) and f.fs.block_size == BS
        assert f.fs.cache.shared_uuid == shared_pool_uuid("ds", BS)
    shared_memory.rm_file("/tmem-unit-url")
    with pytest.raises(ValueError):
        TmemFileSystem(fs=memfs, block_size=1000, client=fake)


def test_files_of_one_dataset_share_one_filesystem_object() -> None:
    fake = FakeClient(client_name="unit")
    first, _ = fsspec.core.url_to_fs("tmem::memory://ds/a", tmem={"client": fake})
    second, _ = fsspec.core.url_to_fs("tmem::memory://ds/b", tmem={"client": fake})
    assert first is second


def test_one_page_cache_per_set_of_options_in_a_process(memfs: MemoryFileSystem) -> None:
    def make(**options: Any) -> TmemFileSystem:
        return TmemFileSystem(fs=memfs, server="127.0.0.1:9", skip_instance_cache=True, **options)

    # fsspec makes a filesystem object per thread: they share one connection and pool.
    first, second = make(client_name="a"), make(client_name="a")
    assert first is not second and first.cache is second.cache
    assert make(client_name="b").cache is not first.cache
    assert make(client_name="a", pool="ds").cache is not first.cache
    assert make(client_name="a", block_size=BS).cache is not first.cache


def test_a_forked_child_gets_its_own_page_cache(memfs: MemoryFileSystem) -> None:
    parent = TmemFileSystem(fs=memfs, server="127.0.0.1:9", skip_instance_cache=True)
    pid = os.fork()
    if pid == 0:  # the child must not share its parent's socket
        child = TmemFileSystem(fs=memfs, server="127.0.0.1:9", skip_instance_cache=True)
        os._exit(0 if child.cache is not parent.cache else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
