"""cleancache for data applications: ``tmem::``, an fsspec caching layer.

Linux's cleancache kept clean file pages that the kernel dropped, so that
the next read of the file came from compressed far memory instead of the
disk.  ``TmemFileSystem`` does that for files read through fsspec (pandas,
pyarrow, dask, xarray): chained in front of any fsspec filesystem as
fsspec's own ``blockcache::`` is, it keeps the blocks it reads in a tmemd
ephemeral pool, where the next reader, on this host or another, finds
them::

    fsspec.open("tmem::s3://bucket/key.parquet", "rb",
                tmem={"server": "host:7470", "client_name": "etl-3"})
    pd.read_parquet("tmem::file:///data/x.parquet",
                    storage_options={"tmem": {"pool": "x-dataset"}})

fsspec finds the class through the ``fsspec.specs`` entry point ``tmem``
(both pyproject files declare it).  docs/cleancache.md is the user's page.

How a read goes (``read_blocks``): the range is widened to whole blocks;
the blocks are asked of the pool in one pipelined, non-exclusive batch
(the pages stay for the next reader); each contiguous run of missing blocks
is one ranged read of the source, all runs in one ``cat_ranges`` call (an
async source fetches them concurrently); the fetched blocks go back to the
pool in one ``put_many`` batch, stored behind the reader by a worker
thread (``_pagecache``).  Block identity, the short last block and
shared-pool names are in ``_blocks``; the rule that the cache never fails
a read is in ``_pagecache``.  An open file keeps the blocks of its last
read, so small sequential reads cost one batch per block, not per read.

Writes, listings and metadata go straight to the source: the layer caches
reads only, and a write changes the file's version, so the blocks of the
old content are never read again.
"""

from __future__ import annotations

import logging
import os
import ssl as _ssl
import threading
import uuid
import weakref
from collections.abc import Hashable, Mapping
from typing import Any, cast

from fsspec import AbstractFileSystem, filesystem
from fsspec.implementations.chained import ChainedFileSystem
from fsspec.spec import AbstractBufferedFile

from ._blocks import (
    DEFAULT_BLOCK_SIZE,
    check_block_size,
    file_object_id,
    file_version,
    missing_runs,
    pad_block,
    shared_pool_uuid,
)
from ._cluster import DNS_PREFIX, server_key
from ._pagecache import CacheStats, PageCache, PoolMaker
from ._spec import parse_address
from ._sync import Client

__all__ = [
    "CACHE_TIMEOUT_S",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_SERVER",
    "CacheStats",
    "PoolMaker",
    "TmemFile",
    "TmemFileSystem",
    "shared_pool_uuid",
]

log = logging.getLogger("tmem.client.cleancache")

#: ``make run``'s address.
DEFAULT_SERVER = "127.0.0.1:7470"
#: Socket timeout of the cache's own client: a page batch on a LAN answers
#: in milliseconds, and a stopped daemon must cost a read little more than
#: this once (then the cache is set aside, see ``_pagecache``).
CACHE_TIMEOUT_S = 1.0


class TmemFileSystem(ChainedFileSystem):  # type: ignore[misc]  # fsspec is untyped
    """A read cache in a tmemd ephemeral pool, layered over another filesystem.

    Options (``tmem={...}`` in a chained URL's storage options):
    ``server`` ("host:port", a list of them, or "dns:NAME:PORT": the cache's
    pool then spans the servers, docs/multi-server.md), ``client_name``,
    ``token``, ``ssl``
    (an ``ssl.SSLContext``, or True for the system's default context),
    ``block_size`` (the pool's page size: 4 to 64 KiB, a power of two,
    default 64 KiB), ``pool`` (None: a private pool of this client; a name:
    the shared pool of that dataset, see ``shared_pool_uuid``), ``timeout``
    (seconds, for the cache's client) and ``client`` (an existing
    ``Client`` to use instead of opening one, or a
    ``tmem.client.testing.FakeClient`` in tests; other threads must not use
    it meanwhile).  The source is ``target_protocol`` with
    ``target_options``, or a filesystem object ``fs``.

    ``stats()`` gives the counters of ``CacheStats``.  Filesystem objects
    of one process with the same cache options share one ``PageCache``
    (connection, pool, counters): fsspec makes one object per thread.
    """

    protocol = "tmem"
    #: fsspec keeps one instance per set of options; the chained path
    #: (``fo``) is not an option, so that every file of a dataset shares one
    #: client and one pool (a private pool per file would soon reach the
    #: daemon's pools-per-client limit).
    _strip_tokenize_options = ("fo",)

    def __init__(
        self,
        target_protocol: str | None = None,
        target_options: Mapping[str, Any] | None = None,
        fs: AbstractFileSystem | None = None,
        server: str | tuple[str, int] | list[str] = DEFAULT_SERVER,
        client_name: str | None = None,
        token: str | None = None,
        ssl: _ssl.SSLContext | bool | None = None,
        block_size: int = DEFAULT_BLOCK_SIZE,
        pool: str | None = None,
        timeout: float = CACHE_TIMEOUT_S,
        client: PoolMaker | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("fo", None)  # the chained path: fsspec passes it, paths come per call
        super().__init__(**kwargs)
        if (fs is None) == (target_protocol is None):
            raise ValueError("give the source as target_protocol or as fs, not both")
        if not isinstance(server, str | tuple | list):
            raise TypeError("server is 'host:port', a list of them or 'dns:NAME:PORT'")
        self.fs = fs if fs is not None else filesystem(target_protocol, **(target_options or {}))
        protocol = self.fs.protocol
        self.target_protocol = protocol if isinstance(protocol, str) else protocol[0]
        self.block_size = check_block_size(block_size)
        shared_uuid = None if pool is None else shared_pool_uuid(pool, block_size)
        if client is not None:
            self.cache = PageCache(client, block_size, shared_uuid)
        else:
            key = (_server_key(server), client_name, token, ssl, timeout, block_size, pool)
            self.cache = _process_cache((os.getpid(), *key), shared_uuid)
        # Paths are the source's (``tmem::`` adds no prefix of its own); fsspec
        # calls the class's ``_strip_protocol`` while parsing a chained URL,
        # so only the instance's is replaced, as fsspec's caching layers do.
        self._strip_protocol = self.fs._strip_protocol

    def stats(self) -> dict[str, int]:
        """Blocks hit, missed, stored, refused and bypassed; failed calls.

        Waits for the blocks still being stored behind the readers, so that
        the counts are complete.
        """
        self.cache.drain()
        return self.cache.stats.as_dict()

    # --- reads, through the cache ----------------------------------------------

    def identity(self, path: str) -> tuple[dict[str, Any], int]:
        """The source's ``info()`` of ``path`` and the object id of this version."""
        info = dict(self.fs.info(path))
        return info, file_object_id(self.target_protocol, path, file_version(info))

    def read_blocks(self, path: str, object_id: int, size: int, first: int, last: int) -> bytes:
        """The bytes of blocks ``first``..``last`` of a file of ``size`` bytes."""
        bs = self.block_size
        found: list[bytes | memoryview | None] = [
            *self.cache.get(object_id, range(first, last + 1))
        ]
        runs = missing_runs(found)
        if runs:
            starts = [(first + at) * bs for at, _ in runs]
            ends = [min((first + at + count) * bs, size) for at, count in runs]
            datas = self.fs.cat_ranges([path] * len(runs), starts, ends, on_error="raise")
            fetched: list[tuple[int, bytes | memoryview]] = []
            for (at, count), start, end, data in zip(runs, starts, ends, datas, strict=True):
                if len(data) != end - start:
                    log.debug("tmem:: %s changed while read; not cached", path)
                    return bytes(self.fs.cat_file(path, first * bs, min((last + 1) * bs, size)))
                view = memoryview(data)  # blocks are views of the source's bytes: no copies
                for k in range(count):
                    found[at + k] = block = view[k * bs : (k + 1) * bs]
                    fetched.append((first + at + k, pad_block(block, bs)))
            self.cache.put(object_id, fetched)
        blocks = cast(list[bytes | memoryview], found)
        blocks[-1] = blocks[-1][: size - last * bs]  # a cached last block is padded
        return b"".join(blocks)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        path = self._strip_protocol(path)
        info, object_id = self.identity(path)
        size = int(info["size"])
        begin, stop, _ = slice(start, end).indices(size)
        if begin >= stop:
            return b""
        first = begin // self.block_size
        data = self.read_blocks(path, object_id, size, first, (stop - 1) // self.block_size)
        offset = first * self.block_size
        return data[begin - offset : stop - offset]

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        if "r" not in mode:
            return self.fs.open(path, mode, block_size, cache_options, autocommit=autocommit)
        info, object_id = self.identity(path)
        return TmemFile(self, path, info, object_id)

    # --- everything else goes to the source ------------------------------------

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        return dict(self.fs.info(self._strip_protocol(path), **kwargs))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        return self.fs.ls(self._strip_protocol(path), detail=detail, **kwargs)

    def ukey(self, path: str) -> str:
        return str(self.fs.ukey(self._strip_protocol(path)))

    def created(self, path: str) -> Any:
        return self.fs.created(self._strip_protocol(path))

    def modified(self, path: str) -> Any:
        return self.fs.modified(self._strip_protocol(path))

    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> None:
        self.fs.pipe_file(self._strip_protocol(path), value, **kwargs)

    def rm_file(self, path: str) -> None:
        self.fs.rm_file(self._strip_protocol(path))

    def rm(self, path: str, recursive: bool = False, maxdepth: int | None = None) -> None:
        self.fs.rm(path, recursive=recursive, maxdepth=maxdepth)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self.fs.mkdir(self._strip_protocol(path), create_parents=create_parents, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.fs.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    def rmdir(self, path: str) -> None:
        self.fs.rmdir(self._strip_protocol(path))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        self.fs.cp_file(self._strip_protocol(path1), self._strip_protocol(path2), **kwargs)

    def mv(self, path1: str, path2: str, **kwargs: Any) -> None:
        self.fs.mv(path1, path2, **kwargs)


#: One ``PageCache`` (one connection, one pool) per set of cache options in
#: this process: fsspec makes a filesystem object per thread, and a
#: private pool per thread would cache a dataset once per thread.  The
#: process id is part of the key: a forked child must not read replies
#: from its parent's socket.
_PROCESS_CACHES: weakref.WeakValueDictionary[tuple[Any, ...], PageCache] = (
    weakref.WeakValueDictionary()
)
_PROCESS_CACHES_LOCK = threading.Lock()


def _server_key(server: str | tuple[str, int] | list[str]) -> Hashable:
    """The servers of a ``server`` option, checked, as part of a cache key
    (and as ``Client`` takes them): one address, a tuple of several, or a
    ``dns:`` name."""
    if isinstance(server, list):
        return tuple(server_key(*parse_address(address)) for address in server)
    if isinstance(server, str) and server.startswith(DNS_PREFIX):
        return server
    return parse_address(server)


def _process_cache(key: tuple[Any, ...], shared_uuid: uuid.UUID | None) -> PageCache:
    """The process's ``PageCache`` for ``key`` (pid, server, name, token,
    ssl, timeout, block size, pool), made on first use."""
    _, address, client_name, token, ssl, timeout, block_size, _ = key
    with _PROCESS_CACHES_LOCK:
        cache = _PROCESS_CACHES.get(key)
        if cache is None:
            context = _ssl.create_default_context() if ssl is True else ssl or None
            client = Client(address, client_name, token, timeout, context)
            cache = _PROCESS_CACHES[key] = PageCache(client, block_size, shared_uuid)
            weakref.finalize(cache, client.close)
        return cache


class TmemFile(AbstractBufferedFile):  # type: ignore[misc]  # fsspec is untyped
    """A file open for reading through ``TmemFileSystem``.

    fsspec's own read-ahead is off (``cache_type="none"``): every read
    comes to ``_fetch_range``, which serves it from the blocks of the last
    read when it can and otherwise reads the blocks that cover it.
    """

    def __init__(self, fs: TmemFileSystem, path: str, info: dict[str, Any], object_id: int) -> None:
        super().__init__(
            fs, path, "rb", block_size=fs.block_size, cache_type="none", size=int(info["size"])
        )
        self.details = info
        self.object_id = object_id
        self._held_start = 0
        self._held = b""

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        held_end = self._held_start + len(self._held)
        if not self._held_start <= start <= end <= held_end:
            bs = self.fs.block_size
            first, last = start // bs, (max(end, start + 1) - 1) // bs
            self._held = self.fs.read_blocks(self.path, self.object_id, self.size, first, last)
            self._held_start = first * bs
        if start == self._held_start and end == self._held_start + len(self._held):
            return self._held  # a read of whole blocks: no copy
        return self._held[start - self._held_start : end - self._held_start]
