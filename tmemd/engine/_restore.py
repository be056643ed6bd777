"""Reading a saved engine state back (the format and rules are in ``_snapshot``).

``load_state`` checks each section as it comes (length, CRC, kind) and
rebuilds in order: clients (no connection, lease from now), pools under
their saved ids, pool-id counters and authorizations from META; then each
PAGES section's pages, stored as they were (``PageStore.restore_page``: no
codec runs); then, after END has confirmed the totals, the saved settings.
A problem anywhere raises ``StateError`` naming the section and the byte;
the engine is then partly restored and the caller discards it (the daemon
exits), so nothing is ever served from half a state.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import EngineError, Refusal
from ._snapshot import (
    CHUNK,
    FORMAT_VERSION,
    HEADER,
    KIND_END,
    KIND_META,
    KIND_NAMES,
    KIND_PAGES,
    MAGIC,
    MAX_SECTION_BYTES,
    RECORD,
    SECTION,
    RestoreSummary,
    StateError,
    StateTooBig,
)
from ._state import ENC_COMPRESSED, ENC_RAW, ENC_SAME, Pool
from ._tenancy import ClientLimits, ClientSettings

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["load_state"]


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
        now = engine._clock()
        self.clients = [registry.adopt_client(str(name), now) for name in meta["clients"]]
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
            same_space=engine._memory.same_space,
            ledger=engine._ledger,
            name=None if entry.get("name") is None else str(entry["name"]),
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
            key, count = CHUNK.unpack_from(payload)
            pool = self._pools[key]
            offset = CHUNK.size
            for _ in range(count):
                lo, mid, hi, index, encoding, length = RECORD.unpack_from(payload, offset)
                offset += RECORD.size
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
        refusal = self._engine._pages.restore_page(pool, object_id, index, blob, encoding)
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
        head = self._exact(HEADER.size, "the header")
        magic, version, _, _ = HEADER.unpack(head)
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
        head = self._exact(SECTION.size, f"the header of {what}")
        kind, length, crc = SECTION.unpack(head)
        if kind not in KIND_NAMES:
            raise StateError(f"{what} at byte {self.offset - SECTION.size}: unknown kind {kind}")
        if length > MAX_SECTION_BYTES:
            raise StateError(f"{what}: length {length} is over {MAX_SECTION_BYTES}")
        payload = self._exact(length, f"{what} ({KIND_NAMES[kind]})")
        if zlib.crc32(payload, zlib.crc32(head[:-4])) != crc:
            raise StateError(
                f"checksum mismatch in {what} ({KIND_NAMES[kind]}) at byte "
                f"{self.offset - length - SECTION.size}"
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
        raise StateError(f"section 0 is {KIND_NAMES[kind]}, expected META")
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
