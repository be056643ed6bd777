"""Saving the engine's pools to a byte stream, and restoring them from one.

What: ``dump_state`` writes the persistent pools (and, if asked, the
ephemeral ones) of an engine as one stream: the clients, their settings
and pool-id counters, every pool's identity (owner, members and ids, flags,
page size, codec, PAM, a trained zstd dictionary) and every page *as
stored*: the compressed blob the PAM holds, its encoding and its handle.
``load_state`` rebuilds them in a fresh engine.  Both take a ``write`` or
``read`` callable, so the engine does no file I/O: the daemon's
``tmemd/_statedir.py`` owns the files, their atomic replacement and fsync.

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
from typing import TYPE_CHECKING, Any

from ._errors import EngineError, Refusal
from ._state import (
    DICT_TRAINED,
    ENC_BIG,
    ENC_COMPRESSED,
    ENC_MASK,
    ENC_RAW,
    ENC_SAME,
    VALUE_SHIFT,
    Pool,
)
from ._tenancy import ClientLimits, ClientSettings

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "PAGES_CHUNK_BYTES",
    "RestoreSummary",
    "SaveSummary",
    "StateError",
    "StateTooBig",
    "dump_state",
    "load_state",
]

MAGIC = b"TMEMSNAP"
#: Bumped on any change a reader of the old format would misread.
FORMAT_VERSION = 1
#: Bytes of page records per ``PAGES`` section: the unit of checksum and of
#: the writer's buffer (4 MiB: ~1000 pages, one write call, and a damaged
#: byte is found within 4 MiB).
PAGES_CHUNK_BYTES = 4 << 20
#: Longest section payload a reader accepts: a chunk plus one page of 64 KiB
#: and its record (a chunk is closed after the record that passes the
#: limit); META is JSON of the clients and pools, far below this.
MAX_SECTION_BYTES = PAGES_CHUNK_BYTES + (1 << 17)

KIND_META = 1
KIND_PAGES = 2
KIND_END = 3
_KIND_NAMES = {KIND_META: "META", KIND_PAGES: "PAGES", KIND_END: "END"}

_HEADER = struct.Struct("<8sHHI")
_SECTION = struct.Struct("<BxxxII")
_CHUNK = struct.Struct("<II")
_RECORD = struct.Struct("<QQQIBI")
_U64 = (1 << 64) - 1
_ENCODINGS = (ENC_COMPRESSED, ENC_RAW, ENC_SAME)


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
        self.bytes = _HEADER.size
        write(_HEADER.pack(MAGIC, FORMAT_VERSION, 0, 0))

    def section(self, kind: int, payload: bytes) -> None:
        head = _SECTION.pack(kind, len(payload), 0)[:-4]
        crc = zlib.crc32(payload, zlib.crc32(head))
        self._write(head + crc.to_bytes(4, "little"))
        self._write(payload)
        self.sections += 1
        self.bytes += _SECTION.size + len(payload)


def _pool_meta(key: int, pool: Pool) -> dict[str, Any]:
    codec = pool.codec
    dictionary = getattr(codec, "dictionary", None) if pool.dictionary == DICT_TRAINED else None
    return {
        "key": key,
        "owner": pool.owner,
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
    fills = engine._fills
    pack = _RECORD.pack
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
                out.section(KIND_PAGES, _CHUNK.pack(key, count) + b"".join(parts))
                stored += size - count * _RECORD.size
                pages += count
                parts, size, count = [], 0, 0
        if count:
            out.section(KIND_PAGES, _CHUNK.pack(key, count) + b"".join(parts))
            stored += size - count * _RECORD.size
            pages += count
    end = {"pages": pages, "stored_bytes": stored, "sections": out.sections + 1}
    out.section(KIND_END, json.dumps(end, sort_keys=True).encode())
    return SaveSummary(len(pools), pages, stored, out.bytes)


# --- restoring -------------------------------------------------------------------


def _settings(entry: dict[str, Any]) -> ClientSettings:
    limits = ClientLimits(entry["weight"], entry["persistent_cap"], entry["total_cap"])
    return ClientSettings(limits, entry["codec"], bool(entry["frozen"]))


class _Restorer:
    """Rebuilds clients and pools from META, then pages section by section."""

    def __init__(self, engine: Engine, meta: dict[str, Any]) -> None:
        if meta["format"] != FORMAT_VERSION:
            raise StateError(f"META says format {meta['format']}, expected {FORMAT_VERSION}")
        self._engine = engine
        self.extra = dict(meta["extra"])
        share = engine._share
        need = int(meta["persistent_stored_bytes"])
        if need > share.max_bytes:
            raise StateTooBig(
                f"the state holds {need} bytes of persistent pages; the persistent share "
                f"of this memory is {share.max_bytes} bytes"
            )
        registry = engine._registry
        self.clients = [registry.adopt_client(str(name)) for name in meta["clients"]]
        self._pools: dict[int, Pool] = {}
        for entry in meta["pools"]:
            pool = self._pool(entry)
            registry.adopt_pool(pool)
            self._pools[int(entry["key"])] = pool
        registry.restore_pool_id_counters(
            {str(n): int(c) for n, c in meta["pool_id_counters"].items()}
        )
        for uuid, names in meta["authorized"].items():
            for name in names:
                registry.authorize_shared(int(uuid, 16), str(name))
        self._settings = {str(n): _settings(e) for n, e in meta["settings"].items()}
        self.seen = self.seen_bytes = 0

    def _pool(self, entry: dict[str, Any]) -> Pool:
        engine = self._engine
        members = {str(name): int(pool_id) for name, pool_id in entry["members"].items()}
        owner = str(entry["owner"])
        persistent = bool(entry["persistent"])
        codec_name = str(entry["codec"])
        if codec_name not in engine._codecs:
            raise StateError(f"pool {entry['key']}: codec {codec_name!r} is not available")
        page_size = int(entry["page_size"])
        uuid = entry["shared_uuid"]
        pool = Pool(
            engine._registry.client(owner),
            members[owner],
            persistent=persistent,
            shared_uuid=None if uuid is None else int(uuid, 16),
            precompressed=bool(entry["precompressed"]),
            page_size=page_size,
            codec_name=codec_name,
            codec=engine._codecs[codec_name],
            space=engine._memory.space_for(persistent, str(entry["pam"])),
            ledger=engine._ledger,
        )
        pool.creator = str(entry["creator"])
        pool.members = members
        if entry["dictionary"] is not None:
            engine._memory.adopt_dictionary(pool, base64.b64decode(entry["dictionary"]))
        return pool

    def pages(self, payload: bytes, section: int) -> None:
        """Restore one PAGES section."""
        what = f"section {section} (PAGES)"
        try:
            key, count = _CHUNK.unpack_from(payload)
            pool = self._pools[key]
            offset = _CHUNK.size
            for _ in range(count):
                lo, mid, hi, index, encoding, length = _RECORD.unpack_from(payload, offset)
                offset += _RECORD.size
                blob = payload[offset : offset + length]
                offset += length
                if len(blob) != length or not _fits(pool, encoding, length):
                    raise StateError(f"{what}: a bad page record at byte {offset - length}")
                self._page(pool, lo | mid << 64 | hi << 128, index, encoding, blob)
        except (struct.error, KeyError) as exc:
            raise StateError(f"{what}: bad chunk ({exc!r})") from None
        if offset != len(payload):
            raise StateError(f"{what}: {len(payload) - offset} bytes after its last record")

    def _page(self, pool: Pool, object_id: int, index: int, encoding: int, blob: bytes) -> None:
        self.seen += 1
        self.seen_bytes += len(blob)
        if pool.index.get(object_id, index):
            raise StateError(f"page ({object_id}, {index}) of pool {pool.pool_id} saved twice")
        refusal = self._engine._restore_page(pool, object_id, index, blob, encoding)
        if refusal is None:
            return
        if pool.persistent:
            raise StateTooBig(
                f"persistent page {self.seen} of the state does not fit in this memory "
                f"({Refusal(refusal).name})"
            )

    def finish(self) -> RestoreSummary:
        """Apply the saved settings (after the pages: see the module docstring)."""
        tenancy = self._engine._tenancy
        for name, settings in self._settings.items():
            tenancy.restore(name, settings)
        # Ephemeral pages may also have been evicted by later ones: count what is there.
        pages = sum(len(pool.index) for pool in self._pools.values())
        return RestoreSummary(
            pools=len(self._pools),
            pages=pages,
            stored_bytes=sum(p.stored_bytes for p in self._pools.values()),
            clients=len(self.clients),
            ephemeral_pages_dropped=self.seen - pages,
            extra=self.extra,
        )


def _fits(pool: Pool, encoding: int, length: int) -> bool:
    """Whether a record's encoding and length can be a page of ``pool``."""
    if encoding == ENC_SAME:
        return length == 1 and not pool.precompressed
    if encoding == ENC_RAW:
        return length == pool.page_size and not pool.precompressed
    return encoding == ENC_COMPRESSED and 0 < length <= pool.page_size


# --- reading ---------------------------------------------------------------------


class _Reader:
    """Sections in, checked; ``what`` names the position for error messages."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self.offset = 0
        self.index = 0
        head = self._exact(_HEADER.size, "the header")
        magic, version, _, _ = _HEADER.unpack(head)
        if magic != MAGIC:
            raise StateError(f"not a tmemd state (magic {magic!r}, expected {MAGIC!r})")
        if version != FORMAT_VERSION:
            raise StateError(
                f"state format version {version}; this tmemd reads version {FORMAT_VERSION}"
            )

    def _exact(self, size: int, what: str) -> bytes:
        data = self._read(size)
        if len(data) != size:
            raise StateError(f"truncated: {what} at byte {self.offset} is cut short")
        self.offset += size
        return data

    def at_end(self) -> bool:
        """Whether the stream ends here."""
        return not self._read(1)

    def section(self) -> tuple[int, bytes]:
        what = f"section {self.index}"
        head = self._exact(_SECTION.size, f"the header of {what}")
        kind, length, crc = _SECTION.unpack(head)
        if kind not in _KIND_NAMES:
            raise StateError(f"{what} at byte {self.offset - _SECTION.size}: unknown kind {kind}")
        if length > MAX_SECTION_BYTES:
            raise StateError(f"{what}: length {length} is over {MAX_SECTION_BYTES}")
        payload = self._exact(length, f"{what} ({_KIND_NAMES[kind]})")
        if zlib.crc32(payload, zlib.crc32(head[:-4])) != crc:
            raise StateError(
                f"checksum mismatch in {what} ({_KIND_NAMES[kind]}) at byte "
                f"{self.offset - length - _SECTION.size}"
            )
        self.index += 1
        return kind, payload


def _json(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise StateError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise StateError(f"{what} is not a JSON object")
    return value


def load_state(engine: Engine, read: Callable[[int], bytes]) -> RestoreSummary:
    """Restore a stream written by ``dump_state`` into ``engine``, which must
    hold no client yet.  Raises ``StateError`` (``StateTooBig``) and leaves
    the engine partly restored: the caller discards it."""
    if engine._registry.clients:
        raise StateError("the engine holds clients already; restore into a fresh one")
    reader = _Reader(read)
    kind, payload = reader.section()
    if kind != KIND_META:
        raise StateError(f"section 0 is {_KIND_NAMES[kind]}, expected META")
    meta = _json(payload, "META")
    try:
        restorer = _Restorer(engine, meta)
    except (KeyError, TypeError, ValueError, EngineError) as exc:
        raise StateError(f"META is inconsistent: {exc!r}") from None
    while True:
        kind, payload = reader.section()
        if kind == KIND_END:
            break
        if kind != KIND_PAGES:
            raise StateError(f"section {reader.index - 1} is a second META")
        restorer.pages(payload, reader.index - 1)
    end = _json(payload, "END")
    got = {"pages": restorer.seen, "stored_bytes": restorer.seen_bytes, "sections": reader.index}
    if any(end.get(k) != v for k, v in got.items()):
        raise StateError(f"END says {end}, but the stream holds {got}")
    if not reader.at_end():
        raise StateError(f"bytes after the END section at byte {reader.offset}")
    return restorer.finish()
