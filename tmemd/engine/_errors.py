"""Typed outcomes of engine calls: refusals (values) and errors (exceptions).

Two kinds of "no", kept apart on purpose:

* A **refusal** is a normal outcome of a valid put: the engine chose not to
  store the page (no memory, the persistent share is full, ...).  ``put``
  *returns* a ``Refusal``; tmem clients expect refusals and fall back to disk.
  The names and values equal ``tmem.proto.RefuseReason`` (a test pins this),
  so the server forwards ``int(refusal)`` without a table, yet the engine
  never imports the wire format.
* An **error** means the request itself was wrong (an unknown pool id, an
  object id out of range, a page of the wrong length).  The engine *raises*
  an ``EngineError`` subclass whose ``code`` names it; ``ERROR_CLASSES`` maps
  every ``ErrorCode`` to its class, one to one (a test checks the map is
  total), so the server maps codes to wire statuses in one table.

Every check happens before any state changes, so an error never leaves a
half-done operation behind (Xen tmem's XSA-15 was an unchecked pool id).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

__all__ = [
    "ERROR_CLASSES",
    "BadArgument",
    "BadIndex",
    "BadLength",
    "BadObjectId",
    "EngineError",
    "ErrorCode",
    "Forbidden",
    "NoSuchClient",
    "NoSuchPool",
    "Refusal",
    "TooManyPools",
    "Unsupported",
]


class Refusal(enum.IntEnum):
    """Why a put was not stored (same names and values as the wire's RefuseReason)."""

    UNSPECIFIED = 0
    #: Memory is full and no ephemeral page could be evicted to make room.
    NO_MEMORY = 1
    #: Persistent pages reached ``persistent_max`` of memory, or the accept
    #: line for a client alone in the share (``_policy``).
    PERSISTENT_FULL = 2
    #: The client's cap on persistent stored bytes would be passed.
    CLIENT_PERSISTENT_CAP = 3
    #: The client's cap on total stored bytes would be passed even after
    #: evicting its own ephemeral pages.
    CLIENT_TOTAL_CAP = 4
    #: The client is frozen by an administrator.
    FROZEN = 5
    #: An ephemeral put the policy chose not to keep.
    POLICY = 6
    #: The persistent share is full and the client holds its fair share of it
    #: (``_policy``), while other clients hold persistent pages too.
    PERSISTENT_FAIR_SHARE = 7


class ErrorCode(enum.IntEnum):
    """One code per ``EngineError`` subclass."""

    NO_SUCH_POOL = 1
    BAD_OBJECT_ID = 2
    BAD_INDEX = 3
    BAD_LENGTH = 4
    BAD_ARGUMENT = 5
    TOO_MANY_POOLS = 6
    FORBIDDEN = 7
    NO_SUCH_CLIENT = 8
    UNSUPPORTED = 9


class EngineError(Exception):
    """A request the engine rejected; nothing was changed."""

    code: ClassVar[ErrorCode]


class NoSuchPool(EngineError):
    """The pool id is not open for this client (never created, destroyed, or another
    client's id: pool ids are per-client namespaces)."""

    code = ErrorCode.NO_SUCH_POOL


class BadObjectId(EngineError):
    """The object id is outside [0, 2**192)."""

    code = ErrorCode.BAD_OBJECT_ID


class BadIndex(EngineError):
    """The page index is outside [0, 2**32)."""

    code = ErrorCode.BAD_INDEX


class BadLength(EngineError):
    """The page is not the pool's page size (or, in a precompressed pool, is empty
    or longer than a page)."""

    code = ErrorCode.BAD_LENGTH


class BadArgument(EngineError):
    """An argument is out of range: a page size, a UUID, a shared pool joined with
    flags that differ from the pool's, a disconnect without a connect, a weight
    or cap out of range."""

    code = ErrorCode.BAD_ARGUMENT


class TooManyPools(EngineError):
    """The client already has ``max_pools_per_client`` pools open."""

    code = ErrorCode.TOO_MANY_POOLS


class Forbidden(EngineError):
    """The client may not join this shared pool: it neither created it nor was
    authorized with ``authorize_shared``."""

    code = ErrorCode.FORBIDDEN


class NoSuchClient(EngineError):
    """The client is unknown (the server must ``connect`` it first; an
    administrator may name only live or configured clients)."""

    code = ErrorCode.NO_SUCH_CLIENT


class Unsupported(EngineError):
    """A valid request this engine does not serve: an unknown codec, a persistent
    shared pool."""

    code = ErrorCode.UNSUPPORTED


ERROR_CLASSES: Mapping[ErrorCode, type[EngineError]] = MappingProxyType(
    {
        cls.code: cls
        for cls in (
            NoSuchPool,
            BadObjectId,
            BadIndex,
            BadLength,
            BadArgument,
            TooManyPools,
            Forbidden,
            NoSuchClient,
            Unsupported,
        )
    }
)
