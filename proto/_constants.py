"""Every number of the tmem wire protocol, in one place.

Opcode numbers follow Xen's tmem ABI (``xen/include/public/tmem.h``) so that
anyone who knows that interface reads our traces without a table; the numbers
that Xen did not have (HELLO, PING) sit above Xen's range.  Pool flags keep
Xen's bit layout too (PERSIST bit 0, SHARED bit 1, page-size shift in bits
4-7, spec version in bits 24-31); we add PRECOMPRESSED in bit 2, a codec
selector in bits 8-11 and a PAM selector in bits 12-15, all in bits Xen left
reserved.  All other bits are reserved and must be zero: a peer that sets
them gets ``Status.BAD_FLAGS``.

Each limit says why it has that value; the decoder enforces the length
limits as soon as a header is complete (h2 checked late and paid for it).
"""

from __future__ import annotations

import enum
import struct
from typing import Final

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FRAMING_ERRORS",
    "INDEX_LIMIT",
    "MAX_PAGE_SHIFT",
    "MAX_REQUEST_PAYLOAD_BYTES",
    "MAX_RESPONSE_PAYLOAD_BYTES",
    "NO_OPCODE",
    "NO_POOL",
    "OBJECT_ID_LIMIT",
    "PROTOCOL_VERSION",
    "REQUEST_HEADER",
    "REQUEST_HEADER_BYTES",
    "REQUEST_MAGIC",
    "RESPONSE_HEADER",
    "RESPONSE_HEADER_BYTES",
    "RESPONSE_MAGIC",
    "SPEC_VERSION",
    "CodecId",
    "GetFlags",
    "Opcode",
    "PamId",
    "PoolFlags",
    "RefuseReason",
    "Status",
    "page_size_from_flags",
]

# --- framing -------------------------------------------------------------

#: First byte of every request.  0xA7 is not printable ASCII, so a peer that
#: talks HTTP, RESP or the memcached text protocol to us is rejected on its
#: first byte instead of after a long bogus length.
REQUEST_MAGIC: Final = 0xA7
#: First byte of every response; distinct from the request magic so that a
#: capture can be decoded without knowing which side sent it.
RESPONSE_MAGIC: Final = 0xA8
#: Version of the framing (header layout).  Bumped only on an incompatible
#: header change; the decoder refuses any other value.
PROTOCOL_VERSION: Final = 1
#: Version of the tmem pool ABI carried in pool flags bits 24-31 (Xen: 1).
SPEC_VERSION: Final = 1

#: Request header, little-endian, 48 bytes:
#: magic u8, version u8, opcode u8, flags u8, request_id u32, pool_id u32,
#: index u32, object_id as three u64 (least significant first), arg u32,
#: payload_length u32.
REQUEST_HEADER: Final = struct.Struct("<BBBBIIIQQQII")
REQUEST_HEADER_BYTES: Final = REQUEST_HEADER.size

#: Response header, little-endian, 16 bytes:
#: magic u8, version u8, opcode u8, status u8, request_id u32, value u32,
#: payload_length u32.
RESPONSE_HEADER: Final = struct.Struct("<BBBBIII")
RESPONSE_HEADER_BYTES: Final = RESPONSE_HEADER.size

#: The largest request payload: the biggest page (64 KiB, page shift 4) or a
#: control body.  1 MiB leaves control bodies room while bounding what one
#: malicious header can make the server buffer.
MAX_REQUEST_PAYLOAD_BYTES: Final = 1 << 20
#: The largest response payload: a page or a control reply (a full listing
#: of many clients and pools runs to a few MiB).  Bounds a client's buffer.
MAX_RESPONSE_PAYLOAD_BYTES: Final = 64 << 20

#: pool_id value meaning "no pool" (requests that do not address a pool).
NO_POOL: Final = 0xFFFFFFFF
#: opcode of a framing-error response whose request header was unreadable
#: (bad magic or version): no Opcode has this value.
NO_OPCODE: Final = 0xFF
#: object ids are 192-bit unsigned integers (three u64 as in Xen's later ABI).
OBJECT_ID_LIMIT: Final = 1 << 192
#: page indexes are 32-bit unsigned integers.
INDEX_LIMIT: Final = 1 << 32

# --- pages ---------------------------------------------------------------

#: Page size when the pool flags' page-size field is 0 (Xen: PAGE_SHIFT 12).
DEFAULT_PAGE_SIZE: Final = 4096
#: Largest page-size shift accepted (4096 << 4 = 64 KiB pages); bounds the
#: payload of a put and matches the largest base page of common CPUs.
MAX_PAGE_SHIFT: Final = 4


class Opcode(enum.IntEnum):
    """Request opcodes; values 0-7 are Xen tmem's ``TMEM_*`` numbers."""

    CONTROL = 0
    NEW_POOL = 1
    DESTROY_POOL = 2
    PUT_PAGE = 4
    GET_PAGE = 5
    FLUSH_PAGE = 6
    FLUSH_OBJECT = 7
    #: Identify (and authenticate) the client; must be the first request.
    HELLO = 16
    #: Round trip with no effect; for liveness checks and latency floors.
    PING = 17


class PoolFlags(enum.IntFlag):
    """Bits of the ``arg`` field of NEW_POOL (Xen's TMEM_POOL_* layout)."""

    PERSIST = 1 << 0
    SHARED = 1 << 1
    #: Pages arrive already compressed: stored as they are, never decoded,
    #: and a payload may be shorter than the page size.
    PRECOMPRESSED = 1 << 2


#: Bit offsets and masks of the multi-bit pool-flag fields.
PAGE_SHIFT_OFFSET: Final = 4
PAGE_SHIFT_MASK: Final = 0xF << PAGE_SHIFT_OFFSET
CODEC_OFFSET: Final = 8
CODEC_MASK: Final = 0xF << CODEC_OFFSET
PAM_OFFSET: Final = 12
PAM_MASK: Final = 0xF << PAM_OFFSET
VERSION_OFFSET: Final = 24
VERSION_MASK: Final = 0xFF << VERSION_OFFSET
#: Every pool-flag bit with a meaning; the rest are reserved (must be 0).
POOL_FLAGS_DEFINED: Final = (
    PoolFlags.PERSIST
    | PoolFlags.SHARED
    | PoolFlags.PRECOMPRESSED
    | PAGE_SHIFT_MASK
    | CODEC_MASK
    | PAM_MASK
    | VERSION_MASK
)


def page_size_from_flags(pool_flags: int) -> int:
    """Page size in bytes encoded in pool flags bits 4-7 (0 means 4 KiB)."""
    return DEFAULT_PAGE_SIZE << ((pool_flags & PAGE_SHIFT_MASK) >> PAGE_SHIFT_OFFSET)


class CodecId(enum.IntEnum):
    """Codec selector in pool flags bits 8-11."""

    DEFAULT = 0  # the daemon's --codec
    NONE = 1
    LZO = 2  # LZO1X-1, as zcache
    LZ4 = 3
    ZSTD = 4


class PamId(enum.IntEnum):
    """PAM selector in pool flags bits 12-15: where the pool's pages are packed."""

    DEFAULT = 0  # the daemon's --ephemeral-pam or --persistent-pam
    ZBUD = 1  # two pages per frame, whole-frame eviction
    XVMALLOC = 2  # variable blocks inside frames
    ZSMALLOC = 3  # size classes across spans of frames: the densest


class GetFlags(enum.IntFlag):
    """Bits of the request ``flags`` byte of GET_PAGE (zero for other ops)."""

    #: Remove the page as it is returned (default for private ephemeral pools).
    EXCLUSIVE = 1 << 0
    #: Keep the page (default for persistent and shared pools).
    KEEP = 1 << 1


class Status(enum.IntEnum):
    """Response status.  0-15 are outcomes, 16-63 are command errors (the
    connection lives on), 64 and up are framing errors (the server sends the
    error frame and closes the connection because the stream is out of sync).
    """

    OK = 0
    #: GET_PAGE found no page at that handle.
    MISS = 1
    #: PUT_PAGE not stored; ``value`` carries a ``RefuseReason``.
    REFUSED = 2

    BAD_OPCODE = 16
    BAD_POOL = 17
    BAD_LENGTH = 18
    BAD_FLAGS = 19
    BAD_ARGUMENT = 20
    NOT_AUTHENTICATED = 21
    AUTH_FAILED = 22
    FORBIDDEN = 23
    TOO_MANY_POOLS = 24
    BAD_PAGE_SIZE = 25
    BAD_SPEC_VERSION = 26
    UNSUPPORTED = 27
    BUSY = 28
    INTERNAL_ERROR = 29

    BAD_MAGIC = 64
    BAD_VERSION = 65
    FRAME_TOO_LARGE = 66
    TIMEOUT = 67


#: Statuses after which the server closes the connection.
FRAMING_ERRORS: Final = frozenset(
    {Status.BAD_MAGIC, Status.BAD_VERSION, Status.FRAME_TOO_LARGE, Status.TIMEOUT}
)


class RefuseReason(enum.IntEnum):
    """Why a put was refused; the ``value`` of a REFUSED response."""

    UNSPECIFIED = 0
    #: The arena has no room and nothing may be evicted for this page.
    NO_MEMORY = 1
    #: The persistent share of the arena is reached.
    PERSISTENT_FULL = 2
    #: The client's persistent-bytes cap is reached.
    CLIENT_PERSISTENT_CAP = 3
    #: The client's total-bytes cap is reached.
    CLIENT_TOTAL_CAP = 4
    #: The client is frozen by an administrator.
    FROZEN = 5
    #: An ephemeral put the policy chose not to keep (e.g. would evict hotter pages).
    POLICY = 6
    #: The persistent share is full and this client holds its fair share of it.
    PERSISTENT_FAIR_SHARE = 7
