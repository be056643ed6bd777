"""How ``client.mapping()`` lays a value out in pages (pure: no I/O).

Keys.  A key is ``str`` or ``bytes``; it is *tagged* (``b"s"`` + UTF-8, or
``b"b"`` + the bytes) so that ``"a"`` and ``b"a"`` are two keys.  Its
**base** is BLAKE2b-192 of the tagged key, keyed with the mapping's name
(so two mappings of one client spread their keys independently), read as a
little-endian integer with the low bit cleared.  A key owns two objects of
the pool, its **slots**: ``base`` and ``base | 1``.  The tagged key is
stored in the value's head page, so a reader compares it and never serves
another key's value when two keys' bases collide.

Values.  Generation ``g`` of a key lives whole in slot ``g & 1``: page 0 is
the **head** (``HEAD``: magic, key length, generation, a random write id,
value length, CRC-32 of the value; then the tagged key and the first bytes
of the value), pages 1.. are **data pages** (``DATA``: generation and write
id, then the value's next bytes).  The pool is PRECOMPRESSED with codec
NONE, so a page is stored as sent and may be shorter than the page size:
the last page carries no padding, and a small value is one short page.

Why two slots: tmem flushes the old copy of a page whose replacement is
refused (PROTOCOL.md section 6.5), so rewriting the pages of the current
value in place could destroy it.  A writer writes the next generation into
the *other* slot (data pages first, the head last: a head in a persistent
pool commits a complete value), and only then flushes the old slot.  A
reader takes the highest generation whose head, data pages, write ids and
checksum all agree; anything less is skipped, never served in part.

Worked example (page size 4096, key ``"k"``, a 5000-byte value, first
write): tagged key ``b"sk"`` (2 bytes); the head holds its 40-byte header,
the key and 4054 value bytes, one data page its 16-byte header and the other
946: two pages in slot 1 (generation 1).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DATA",
    "HEAD",
    "HEAD_MAGIC",
    "MAX_KEY_BYTES",
    "Head",
    "Key",
    "base_of",
    "checksum",
    "join_value",
    "key_of",
    "page_count",
    "parse_head",
    "split_value",
    "tag_key",
]

#: What a mapping's keys may be.
Key = str | bytes
#: Head page header: magic, tagged-key length (u32), generation, write id,
#: value length (u64 each), CRC-32 of the value (u32) and 4 reserved bytes.
HEAD = struct.Struct("<4sIQQQII")
#: Data page header: generation and write id, as in the head.
DATA = struct.Struct("<QQ")
#: Marks a head page of format version 1 (a page of anything else is no head).
HEAD_MAGIC = b"tmM1"
#: Longest tagged key: a head must hold its header and key on the smallest
#: page (4 KiB) with room left for value bytes.
MAX_KEY_BYTES = 1024
#: Digest size of a key's base: the object id is 192 bits (PROTOCOL.md section 3).
_BASE_BYTES = 24


def tag_key(key: Key) -> bytes:
    """The key as stored: a type tag and its bytes; ``TypeError``/``ValueError``
    for a key that is not ``str``/``bytes`` or is too long."""
    if isinstance(key, str):
        tagged = b"s" + key.encode("utf-8")
    elif isinstance(key, bytes):
        tagged = b"b" + key
    else:
        raise TypeError(f"mapping keys are str or bytes, not {type(key).__name__}")
    if len(tagged) > MAX_KEY_BYTES:
        raise ValueError(f"key of {len(tagged) - 1} bytes; at most {MAX_KEY_BYTES - 1}")
    return tagged


def key_of(tagged: bytes) -> Key:
    """The key a tagged key stands for."""
    return tagged[1:].decode("utf-8") if tagged[:1] == b"s" else tagged[1:]


def base_of(name_key: bytes, tagged: bytes) -> int:
    """The key's base object id (low bit clear); ``name_key`` is the mapping's
    name as bytes (at most 64, BLAKE2b's key limit)."""
    digest = hashlib.blake2b(tagged, digest_size=_BASE_BYTES, key=name_key).digest()
    return int.from_bytes(digest, "little") & ~1


def checksum(value: bytes | memoryview) -> int:
    """CRC-32 of a value: catches corrupted bytes; mixed writes are caught by
    the write ids (CRC-32 runs several times faster than BLAKE2b:
    docs/bench/micro.md)."""
    return zlib.crc32(value)


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed head page."""

    tagged_key: bytes
    generation: int
    write_id: int
    length: int
    crc: int
    #: The value bytes the head itself carries.
    first: bytes


def _capacities(page_size: int, key_bytes: int) -> tuple[int, int]:
    return page_size - HEAD.size - key_bytes, page_size - DATA.size


def page_count(page_size: int, key_bytes: int, length: int) -> int:
    """Pages of a value of ``length`` bytes under a tagged key of ``key_bytes``."""
    head_room, data_room = _capacities(page_size, key_bytes)
    rest = max(0, length - head_room)
    return 1 + (rest + data_room - 1) // data_room


def split_value(
    page_size: int, tagged: bytes, generation: int, write_id: int, value: memoryview
) -> list[bytes]:
    """The pages of a value: the head first, then the data pages."""
    head_room, data_room = _capacities(page_size, len(tagged))
    length = len(value)
    header = HEAD.pack(HEAD_MAGIC, len(tagged), generation, write_id, length, checksum(value), 0)
    pages = [b"".join((header, tagged, value[:head_room]))]
    data_header = DATA.pack(generation, write_id)
    for start in range(head_room, length, data_room):
        pages.append(data_header + value[start : start + data_room])
    return pages


def parse_head(page: bytes | None) -> Head | None:
    """The head a page holds, or None if it is none (a miss, a foreign or
    truncated page)."""
    if page is None or len(page) < HEAD.size:
        return None
    magic, key_bytes, generation, write_id, length, crc, _ = HEAD.unpack_from(page)
    if magic != HEAD_MAGIC or not 0 < key_bytes <= len(page) - HEAD.size:
        return None
    start = HEAD.size + key_bytes
    return Head(page[HEAD.size : start], generation, write_id, length, crc, page[start:])


def join_value(head: Head, data_pages: Sequence[bytes | None]) -> bytes | None:
    """The whole value from its head and data pages, or None if any page is
    missing, from another write, of the wrong length, or the checksum fails."""
    parts: list[bytes | memoryview] = [head.first]
    expect = DATA.pack(head.generation, head.write_id)
    for page in data_pages:
        if page is None or page[: DATA.size] != expect:
            return None
        parts.append(memoryview(page)[DATA.size :])
    value = b"".join(parts)
    if len(value) != head.length or checksum(value) != head.crc:
        return None
    return value
