"""Pool descriptions and the checks the client makes before sending anything.

The server validates every field (PROTOCOL.md §13); the client checks again so
that a caller's mistake raises ``ValueError``/``TypeError`` at the call site,
with nothing sent and the connection untouched, instead of coming back as a
server error one round trip later.  The checks run on every put and get, so
they are a handful of comparisons: ``operator.index`` (accepts any integer
type, rejects floats) and two range tests.

``PoolInfo`` is what a ``Pool`` object knows about its pool: enough to check
pages locally (page size, precompressed) and to describe itself.  It comes
from NEW_POOL's arguments, or from CONTROL ``list_pools`` when re-attaching.
"""

from __future__ import annotations

import operator
import re
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, SupportsIndex

from tmem.proto import (
    CLIENT_NAME_CHARS,
    DEFAULT_PAGE_SIZE,
    INDEX_LIMIT,
    MAX_CLIENT_NAME_CHARS,
    OBJECT_ID_LIMIT,
    CodecId,
    PamId,
    PoolSpec,
    Status,
    decode_pool_flags,
    encode_pool_flags,
    is_client_name,
)

from ._errors import BadPool

__all__ = [
    "CODEC_NAMES",
    "MAX_CLIENT_NAME_CHARS",
    "PAM_NAMES",
    "Page",
    "PoolInfo",
    "check_client_name",
    "check_handle",
    "check_object_id",
    "check_page",
    "codec_id",
    "default_client_name",
    "find_pool",
    "info_from_listing",
    "info_from_spec",
    "new_pool_arguments",
    "pam_id",
    "parse_address",
    "pool_spec",
    "uuid_int",
]

#: A page as callers may pass it: any contiguous bytes-like object.
Page = bytes | bytearray | memoryview

#: Client names go into logs and metric labels, so the daemon keeps them short
#: and printable (``tmem.proto.is_client_name``); the same rule here reports a
#: bad name before connecting.
_NAME_UNSAFE_RE = re.compile(f"[^{CLIENT_NAME_CHARS}]")
#: Shared pools are named by a 128-bit UUID (Xen's tmem ABI).
UUID_LIMIT = 1 << 128

#: Codec names accepted by ``new_pool(codec=...)``; None means the daemon's default.
CODEC_NAMES: Mapping[str, CodecId] = {
    "none": CodecId.NONE,
    "lzo": CodecId.LZO,
    "lz4": CodecId.LZ4,
    "zstd": CodecId.ZSTD,
}
#: PAM names accepted by ``new_pool(pam=...)``; None means the daemon's default.
PAM_NAMES: Mapping[str, PamId] = {
    "zbud": PamId.ZBUD,
    "xvmalloc": PamId.XVMALLOC,
    "zsmalloc": PamId.ZSMALLOC,
}


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """What the client knows about one of its pools."""

    pool_id: int
    page_size: int = DEFAULT_PAGE_SIZE
    persistent: bool = False
    shared: bool = False
    precompressed: bool = False
    #: Codec name ("lzo", ...) or None for the daemon's default.
    codec: str | None = None
    #: PAM name ("zbud", "xvmalloc", "zsmalloc") or None for the daemon's default.
    pam: str | None = None
    #: HELLO's ``server_id`` of the daemon instance the pool was made (or
    #: re-attached) on; None from a daemon that sends none.  The pool id is
    #: only meaningful on that instance.
    server_id: str | None = None


def check_client_name(name: str) -> str:
    """``name`` if the daemon would accept it, else ``ValueError``."""
    if not isinstance(name, str):
        raise TypeError(f"client_name must be a str, not {type(name).__name__}")
    if not is_client_name(name):
        raise ValueError(
            f"client_name {name!r} must be 1-{MAX_CLIENT_NAME_CHARS} characters"
            f" of [{CLIENT_NAME_CHARS}]"
        )
    return name


def default_client_name() -> str:
    """This host's name, made acceptable: a tmem client is a host (PROTOCOL.md §1)."""
    name = _NAME_UNSAFE_RE.sub("-", socket.gethostname())[:MAX_CLIENT_NAME_CHARS]
    return name or "localhost"


def codec_id(codec: str | CodecId | None) -> CodecId:
    """The wire codec selector for a ``new_pool(codec=...)`` argument."""
    if codec is None:
        return CodecId.DEFAULT
    if isinstance(codec, CodecId):
        return codec
    try:
        return CODEC_NAMES[codec]
    except (KeyError, TypeError):
        raise ValueError(
            f"codec must be None or one of {sorted(CODEC_NAMES)}, not {codec!r}"
        ) from None


def pam_id(pam: str | PamId | None) -> PamId:
    """The wire PAM selector for a ``new_pool(pam=...)`` argument."""
    if pam is None:
        return PamId.DEFAULT
    if isinstance(pam, PamId):
        return pam
    try:
        return PAM_NAMES[pam]
    except (KeyError, TypeError):
        raise ValueError(f"pam must be None or one of {sorted(PAM_NAMES)}, not {pam!r}") from None


def uuid_int(shared_uuid: uuid.UUID | str | int) -> int:
    """A shared pool's UUID as the 128-bit integer the wire carries (never 0)."""
    if isinstance(shared_uuid, uuid.UUID):
        value = shared_uuid.int
    elif isinstance(shared_uuid, str):
        value = uuid.UUID(shared_uuid).int
    else:
        value = operator.index(shared_uuid)
    if not 0 < value < UUID_LIMIT:
        raise ValueError(f"shared_uuid must be a non-zero 128-bit value, not {shared_uuid!r}")
    return value


def new_pool_arguments(
    persistent: bool,
    shared_uuid: uuid.UUID | str | int | None,
    codec: str | None,
    page_size: int,
    precompressed: bool,
    pam: str | None,
) -> dict[str, Any]:
    """``new_pool``'s pool arguments by name, for ``pool_spec`` (or for a
    client of several servers, which makes the pool on each)."""
    return {
        "persistent": persistent,
        "shared_uuid": shared_uuid,
        "codec": codec,
        "page_size": page_size,
        "precompressed": precompressed,
        "pam": pam,
    }


def pool_spec(
    *,
    persistent: bool = False,
    shared_uuid: uuid.UUID | str | int | None = None,
    codec: str | CodecId | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    precompressed: bool = False,
    pam: str | PamId | None = None,
) -> tuple[PoolSpec, int | None]:
    """The checked ``PoolSpec`` and UUID (or None) of ``new_pool``'s arguments.

    Raises ``ValueError`` for what the server would refuse anyway: a
    persistent shared pool, a page size that is not 4 KiB times a power of
    two up to 64 KiB, an unknown codec or PAM name, a zero or oversized UUID.
    """
    uuid_value = None if shared_uuid is None else uuid_int(shared_uuid)
    if persistent and uuid_value is not None:
        raise ValueError("shared pools are ephemeral only (persistent=True with shared_uuid)")
    spec = PoolSpec(
        persistent=bool(persistent),
        shared=uuid_value is not None,
        precompressed=bool(precompressed),
        page_size=operator.index(page_size),
        codec=codec_id(codec),
        pam=pam_id(pam),
    )
    encode_pool_flags(spec)  # raises LocalProtocolError (a ValueError) on a bad page size
    return spec, uuid_value


def info_from_spec(pool_id: int, spec: PoolSpec, server_id: str | None = None) -> PoolInfo:
    """The ``PoolInfo`` of a pool just created from ``spec`` on ``server_id``."""
    codec = None if spec.codec is CodecId.DEFAULT else spec.codec.name.lower()
    pam = None if spec.pam is PamId.DEFAULT else spec.pam.name.lower()
    return PoolInfo(
        pool_id,
        spec.page_size,
        spec.persistent,
        spec.shared,
        spec.precompressed,
        codec,
        pam,
        server_id,
    )


def check_object_id(object_id: SupportsIndex) -> int:
    """``object_id`` as an int in [0, 2**192), else ``TypeError``/``ValueError``."""
    value = operator.index(object_id)
    if not 0 <= value < OBJECT_ID_LIMIT:
        raise ValueError(f"object_id {value} is not in [0, 2**192)")
    return value


def check_handle(object_id: SupportsIndex, index: SupportsIndex) -> tuple[int, int]:
    """``(object_id, index)`` as checked ints."""
    oid = check_object_id(object_id)
    idx = operator.index(index)
    if not 0 <= idx < INDEX_LIMIT:
        raise ValueError(f"index {idx} is not in [0, 2**32)")
    return oid, idx


def check_page(info: PoolInfo, page: Page) -> Page:
    """``page`` as a flat bytes-like object of a length the pool accepts."""
    if not isinstance(page, bytes | bytearray):
        try:
            view = memoryview(page)
        except TypeError:
            raise TypeError(f"page must be bytes-like, not {type(page).__name__}") from None
        page = view if view.format == "B" and view.ndim == 1 else view.cast("B")
    size = len(page)
    if info.precompressed:
        if not 0 < size <= info.page_size:
            raise ValueError(
                f"precompressed page of {size} bytes: pool {info.pool_id} takes 1 to "
                f"{info.page_size} bytes"
            )
    elif size != info.page_size:
        raise ValueError(
            f"page of {size} bytes: pool {info.pool_id} takes pages of exactly {info.page_size}"
        )
    return page


def _codec_name(value: Any) -> str | None:
    """A listing's codec field (a name, a CodecId number or None) as a name."""
    if value is None or isinstance(value, str):
        return None if value in (None, "", "default") else str(value)
    try:
        codec = CodecId(int(value))
    except (TypeError, ValueError):
        return None
    return None if codec is CodecId.DEFAULT else codec.name.lower()


def info_from_listing(entry: Mapping[str, Any]) -> PoolInfo:
    """A ``PoolInfo`` from one entry of CONTROL ``list_pools``.

    Uses the raw pool ``flags`` word when the daemon lists it; otherwise the
    named fields (``persistent`` or ``kind``, ``shared``, ``page_size``,
    ``codec``, ``precompressed``), each defaulting as NEW_POOL does.
    """
    pool_id = int(entry["pool_id"])
    codec = _codec_name(entry.get("codec"))
    flags = entry.get("flags")
    if isinstance(flags, int):
        spec = decode_pool_flags(flags)
        return PoolInfo(
            pool_id,
            spec.page_size,
            spec.persistent,
            spec.shared,
            spec.precompressed,
            codec if codec is not None else _codec_name(int(spec.codec)),
        )
    persistent = entry.get("persistent")
    if persistent is None:
        persistent = entry.get("kind") == "persistent"
    return PoolInfo(
        pool_id=pool_id,
        page_size=int(entry.get("page_size", DEFAULT_PAGE_SIZE)),
        persistent=bool(persistent),
        shared=bool(entry.get("shared", False)),
        precompressed=bool(entry.get("precompressed", False)),
        codec=codec,
    )


def find_pool(listing: Mapping[str, Any], pool_id: int, client_name: str) -> PoolInfo:
    """The ``PoolInfo`` of ``pool_id`` in a ``list_pools`` reply, else ``BadPool``."""
    pool_id = operator.index(pool_id)
    for entry in listing.get("pools", ()):
        if not isinstance(entry, Mapping):
            continue
        if entry.get("pool_id") == pool_id and entry.get("client", client_name) == client_name:
            return info_from_listing(entry)
        # A shared pool is listed once, under its owner's id; a member finds
        # its own id for it in ``members`` ([client, pool_id] pairs).
        members = entry.get("members") or ()
        if any(list(member) == [client_name, pool_id] for member in members):
            return info_from_listing({**entry, "pool_id": pool_id})
    raise BadPool(Status.BAD_POOL, f"client {client_name!r} has no pool {pool_id}")


def parse_address(address: str | tuple[str, int]) -> tuple[str, int]:
    """``(host, port)`` from ``"host:port"``, ``"[v6addr]:port"`` or a tuple."""
    if isinstance(address, tuple):
        host, port = address
    elif isinstance(address, str):
        host, sep, port_text = address.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"address {address!r} is not 'host:port'")
        host, port = host.removeprefix("[").removesuffix("]"), int(port_text)
    else:
        raise TypeError(f"address must be 'host:port' or (host, port), not {address!r}")
    if not isinstance(host, str) or not host:
        raise ValueError(f"address {address!r} has no host")
    port = operator.index(port)
    if not 0 < port < 1 << 16:
        raise ValueError(f"port {port} of address {address!r} is out of range")
    return host, port
