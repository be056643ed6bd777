"""Block arithmetic and file identity for the ``tmem::`` caching layer.

The layer (``tmem.client.cleancache``) caches a file as fixed-size blocks,
one tmem page per block, in an ephemeral pool whose page size is the block
size.  This module is the pure part of it, with no I/O, so that its rules
are tested on their own:

* **Which object.**  A file's blocks live under one 192-bit object id, the
  BLAKE2b-192 digest of (protocol, path, version).  The version is built
  from what the source's ``info()`` says about the file's content: an ETag,
  a checksum, a generation, mtime, inode, size, whichever it gives.  A file
  rewritten in place therefore gets a new object id, and its old blocks are
  never read again (the daemon evicts them in time).  When ``info()`` gives
  nothing but the size, the whole ``info()`` is the version: a cache miss
  is cheap, a stale block is a wrong read.  The version is only as good as
  the source's metadata: a same-size rewrite within the source's timestamp
  granularity (ext4 stamps to the jiffy) is invisible to any cache that
  trusts ``info()``, fsspec's own included.
* **Which blocks.**  A byte range [start, end) covers blocks
  ``start // size`` to ``(end - 1) // size``.  The last block of a file is
  usually short: it is padded with zero bytes to a full page when stored
  (a compressing daemon stores the padding for almost nothing) and cut back
  to the file's size, which comes from ``info()``, when read.
* **Which pool.**  A shared pool named by the user (``pool="dataset"``) has
  the UUID ``uuid5(SHARED_POOL_NAMESPACE, "<block size>/<name>")``: every
  host that names the same dataset and block size meets in the same pool,
  and hosts with another block size (whose blocks could not be shared
  anyway) meet in another.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "BLOCK_SIZES",
    "DEFAULT_BLOCK_SIZE",
    "SHARED_POOL_NAMESPACE",
    "VERSION_KEYS",
    "check_block_size",
    "file_object_id",
    "file_version",
    "missing_runs",
    "pad_block",
    "shared_pool_uuid",
]

#: Block sizes a pool can have: tmem page sizes 4096 << s, s = 0..4
#: (PROTOCOL.md §7).
BLOCK_SIZES = (4096, 8192, 16384, 32768, 65536)
#: 64 KiB: the largest page, so a Parquet column chunk of a few MiB is a
#: few dozen pages and one pipelined batch, and a remote source is asked
#: for large ranges.
DEFAULT_BLOCK_SIZE = 65536
#: The namespace of shared-pool UUIDs derived from names (uuid5).
SHARED_POOL_NAMESPACE = uuid.UUID("b1f0c7a2-5d3e-5e8a-9c41-7a6d2f0e3b19")
#: ``info()`` keys that change when a file's content changes, across the
#: common fsspec filesystems (local, memory, s3, gcs, azure, http).
VERSION_KEYS = (
    "ETag",
    "etag",
    "e_tag",
    "md5",
    "checksum",
    "crc32c",
    "VersionId",
    "version_id",
    "generation",
    "mtime",
    "LastModified",
    "last_modified",
    "updated",
    "created",
    "ino",
    "size",
)
#: BLAKE2b personalisation (at most 16 bytes): these ids never equal an id
#: that another use of BLAKE2b-192 in the same pool would make.
_PERSON = b"tmem::cleancache"
#: 192 bits: tmem object ids are three u64 (PROTOCOL.md §1).
_OBJECT_ID_BYTES = 24


def check_block_size(block_size: int) -> int:
    """``block_size`` if it is a tmem page size, else ``ValueError``."""
    if block_size not in BLOCK_SIZES:
        raise ValueError(f"block_size {block_size!r} is not one of {BLOCK_SIZES}")
    return block_size


def file_version(info: Mapping[str, Any]) -> str:
    """A text that changes when the file's content does (see the module doc)."""
    found = [(key, info[key]) for key in VERSION_KEYS if info.get(key) is not None]
    if all(key == "size" for key, _ in found):
        found = sorted((str(key), value) for key, value in info.items())
    return repr(found)


def file_object_id(protocol: str, path: str, version: str) -> int:
    """The 192-bit object id of one version of one file."""
    digest = hashlib.blake2b(digest_size=_OBJECT_ID_BYTES, person=_PERSON)
    for part in (protocol, path, version):
        data = part.encode("utf-8", "surrogateescape")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return int.from_bytes(digest.digest(), "little")


def shared_pool_uuid(name: str, block_size: int) -> uuid.UUID:
    """The UUID of the shared pool that caches dataset ``name``."""
    if not name:
        raise ValueError("a shared pool needs a non-empty name")
    return uuid.uuid5(SHARED_POOL_NAMESPACE, f"{check_block_size(block_size)}/{name}")


def missing_runs(blocks: Sequence[object]) -> list[tuple[int, int]]:
    """The runs of ``None`` in ``blocks`` as (first position, length)."""
    runs: list[tuple[int, int]] = []
    start = -1
    for position, block in enumerate(blocks):
        if block is None and start < 0:
            start = position
        elif block is not None and start >= 0:
            runs.append((start, position - start))
            start = -1
    if start >= 0:
        runs.append((start, len(blocks) - start))
    return runs


def pad_block(block: bytes | memoryview, block_size: int) -> bytes | memoryview:
    """``block`` padded with zero bytes to a whole page."""
    short = block_size - len(block)
    return b"".join((block, bytes(short))) if short else block
