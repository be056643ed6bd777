"""Saving the engine's pools to a byte stream, and restoring them from one.

What: ``dump_state`` writes the persistent pools (and, if asked, the
ephemeral ones) of an engine as one stream: the clients, their settings
and pool-id counters, every pool's identity (owner, members and ids, flags,
page size, codec, PAM, a trained zstd dictionary) and every page *as
stored*: the compressed blob the PAM holds and its encoding, under its
handle (object id, index).  ``_restore.load_state`` rebuilds them in a
fresh engine.  Both take a ``write`` or ``read`` callable, so the engine
does no file I/O: the daemon's ``tmemd/_statedir.py`` owns the files,
their atomic replacement and fsync.

Why pages, not frames: the arena's used frames and the PAMs' tables would
copy faster, but they tie a saved state to one PAM layout and one arena
size, and a restart is often for an upgrade or a new ``--memory``.  Pages
as stored cost one ``load`` and one ``store`` each (no codec runs either
way: a page is never recompressed) and restore into any arena and any PAM.
``bench/warm_restart.py`` measures both directions.

Format (all integers little-endian)::

    header   magic "TMEMSNAP" | u16 format version | u16 0 | u32 0
    section  u8 kind | 3 bytes 0 | u32 payload length | u32 CRC-32 | payload

The CRC covers the section's kind, length and payload.  The first section
is ``META`` (UTF-8 JSON: the identities above, totals, and the caller's
``extra`` map, where the daemon keeps its ``server_id``); then ``PAGES``
sections of at most ``PAGES_CHUNK_BYTES`` each: u32 pool key, u32 record
count, then per page u64 x 3 object id, u32 index, u8 encoding, u32 length
and the blob (the fill byte of a same-filled page); the last is ``END``
(JSON: pages and blob bytes written, sections written), so a stream cut at a
section boundary is told apart from a whole one.  Persistent pools' pages
come first.  A reader refuses a bad magic, another version, a short
section, a CRC mismatch, an unknown kind or totals that disagree, with a
``StateError`` naming the section and what is wrong.

Restoring into less memory: every persistent page must fit, or the whole
restore is refused (``StateTooBig``): a persistent page is a promise the
daemon made, and a client must never find a hole where its swap page was.
Ephemeral pages that do not fit are dropped and counted (they are a cache).
Clients come back with no connection and their lease starting at restore
time; settings are applied after the pages, so caps lowered after a page
was stored do not refuse it now.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ._state import (
    DICT_TRAINED,
    ENC_BIG,
    ENC_MASK,
    ENC_SAME,
    VALUE_SHIFT,
    Pool,
)
from ._tenancy import ClientSettings

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = [
    "CHUNK",
    "FORMAT_VERSION",
    "HEADER",
    "KIND_END",
    "KIND_META",
    "KIND_NAMES",
    "KIND_PAGES",
    "MAGIC",
    "MAX_SECTION_BYTES",
    "PAGES_CHUNK_BYTES",
    "RECORD",
    "SECTION",
    "RestoreSummary",
    "SaveSummary",
    "StateError",
    "StateTooBig",
    "dump_state",
]

MAGIC: Final = b"TMEMSNAP"
#: Bumped on any change a reader of the old format would misread.
FORMAT_VERSION: Final = 1
#: Bytes of page records per ``PAGES`` section: the unit of checksum and of
#: the writer's buffer (4 MiB: ~1000 pages, one write call, and a damaged
#: byte is found within 4 MiB).
PAGES_CHUNK_BYTES: Final = 4 << 20
#: Longest section payload a reader accepts: a chunk plus one page of 64 KiB
#: and its record (a chunk is closed after the record that passes the
#: limit); META is JSON of the clients and pools, far below this.
MAX_SECTION_BYTES: Final = PAGES_CHUNK_BYTES + (1 << 17)

KIND_META: Final = 1
KIND_PAGES: Final = 2
KIND_END: Final = 3
KIND_NAMES: Final = {KIND_META: "META", KIND_PAGES: "PAGES", KIND_END: "END"}

HEADER: Final = struct.Struct("<8sHHI")
SECTION: Final = struct.Struct("<BxxxII")
CHUNK: Final = struct.Struct("<II")
RECORD: Final = struct.Struct("<QQQIBI")
_U64: Final = (1 << 64) - 1


class StateError(Exception):
    """A saved state cannot be used: damaged, of another version, or inconsistent."""


class StateTooBig(StateError):
    """The saved persistent pages do not fit in this engine's memory."""


@dataclass(frozen=True, slots=True)
class SaveSummary:
    """What ``dump_state`` wrote."""

    pools: int
    pages: int
    #: Bytes of blobs written: the stored size of the pages (as the PAM holds them).
    stored_bytes: int
    #: Bytes of the whole stream.
    stream_bytes: int


@dataclass(frozen=True, slots=True)
class RestoreSummary:
    """What ``load_state`` restored, and what it dropped (ephemeral pages only)."""

    pools: int
    pages: int
    stored_bytes: int
    clients: int
    ephemeral_pages_dropped: int
    #: The ``extra`` map given to ``dump_state`` (the daemon's identity).
    extra: dict[str, Any]


# --- writing ---------------------------------------------------------------------


class _Writer:
    """Sections out, each with its CRC; counts what it wrote."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self.sections = 0
        self.bytes = HEADER.size
        write(HEADER.pack(MAGIC, FORMAT_VERSION, 0, 0))

    def section(self, kind: int, payload: bytes) -> None:
        head = SECTION.pack(kind, len(payload), 0)[:-4]
        crc = zlib.crc32(payload, zlib.crc32(head))
        self._write(head + crc.to_bytes(4, "little"))
        self._write(payload)
        self.sections += 1
        self.bytes += SECTION.size + len(payload)


def _pool_meta(key: int, pool: Pool) -> dict[str, Any]:
    codec = pool.codec
    dictionary = getattr(codec, "dictionary", None) if pool.dictionary == DICT_TRAINED else None
    return {
        "key": key,
        "owner": pool.owner,
        "name": pool.name,
        "creator": pool.creator,
        "members": pool.members,
        "persistent": pool.persistent,
        "shared_uuid": None if pool.shared_uuid is None else f"{pool.shared_uuid:032x}",
        "precompressed": pool.precompressed,
        "page_size": pool.page_size,
        "codec": pool.codec_name,
        "pam": pool.pam.name,
        "dictionary": None if dictionary is None else base64.b64encode(dictionary).decode(),
        "pages": len(pool.index),
    }


def _settings_meta(settings: ClientSettings) -> dict[str, Any]:
    limits = settings.limits
    return {
        "weight": limits.weight,
        "persistent_cap": limits.persistent_cap,
        "total_cap": limits.total_cap,
        "codec": settings.codec,
        "frozen": settings.frozen,
    }


def _page_records(engine: Engine, pool: Pool) -> Iterator[bytes]:
    """Each page of ``pool`` as one record (its blob exactly as stored)."""
    space = pool.space
    load = space.pam.load
    fills = engine._memory.same_pam.fills
    pack = RECORD.pack
    for object_id, index, token in pool.index.items():
        encoding = token & ENC_MASK
        handle = token >> VALUE_SHIFT
        if encoding == ENC_SAME:
            blob = bytes((fills[handle],))
        elif token & ENC_BIG:
            blob = space.load_big(handle)
        else:
            blob = load(handle)
        head = pack(
            object_id & _U64, object_id >> 64 & _U64, object_id >> 128, index, encoding, len(blob)
        )
        yield head + blob


def dump_state(
    engine: Engine,
    write: Callable[[bytes], object],
    *,
    ephemeral: bool = False,
    extra: dict[str, Any] | None = None,
) -> SaveSummary:
    """Write the engine's persistent pools (and ephemeral ones if asked) to
    ``write``; see the module docstring for the format."""
    registry = engine._registry
    pools = [p for p in registry.pools() if p.persistent or ephemeral]
    pools.sort(key=lambda p: not p.persistent)
    owners = sorted({name for p in pools for name in p.members})
    meta = {
        "format": FORMAT_VERSION,
        "extra": extra or {},
        "clients": owners,
        "settings": {n: _settings_meta(s) for n, s in engine._tenancy.table().items()},
        "pool_id_counters": registry.pool_id_counters(),
        "authorized": {f"{u:032x}": names for u, names in registry.authorizations().items()},
        "pools": [_pool_meta(key, pool) for key, pool in enumerate(pools)],
        "persistent_stored_bytes": sum(p.stored_bytes for p in pools if p.persistent),
    }
    out = _Writer(write)
    out.section(KIND_META, json.dumps(meta, sort_keys=True).encode())
    pages = stored = 0
    for key, pool in enumerate(pools):
        parts: list[bytes] = []
        size = count = 0
        for record in _page_records(engine, pool):
            parts.append(record)
            size += len(record)
            count += 1
            if size >= PAGES_CHUNK_BYTES:
                out.section(KIND_PAGES, CHUNK.pack(key, count) + b"".join(parts))
                stored += size - count * RECORD.size
                pages += count
                parts, size, count = [], 0, 0
        if count:
            out.section(KIND_PAGES, CHUNK.pack(key, count) + b"".join(parts))
            stored += size - count * RECORD.size
            pages += count
    end = {"pages": pages, "stored_bytes": stored, "sections": out.sections + 1}
    out.section(KIND_END, json.dumps(end, sort_keys=True).encode())
    return SaveSummary(len(pools), pages, stored, out.bytes)
