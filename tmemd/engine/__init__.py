"""The tmem engine: synchronous, deterministic, pure Python.

The engine implements tmem's semantics (docs/design.md §3) over clients,
pools, a per-pool page index, codecs and a PAM (page-addressable memory).
It imports neither asyncio nor the wire format: the server edge calls it
from its event loop, passing a clock and (optionally) codecs and PAMs in;
every call does work proportional to the request (a few microseconds plus
the codec), never a scan over unrelated pages.  Calls return plain values
(``put`` returns ``None`` or a ``Refusal``; ``get`` returns bytes or
``None``) and raise ``EngineError`` subclasses for invalid requests.

Reading order: ``_engine`` (the public calls, and which collaborator each
goes to), ``_pages`` (the put/get/flush paths), ``_freeing`` (removing
pages and their accounting), ``_registry`` (clients, pool-id namespaces,
shared pools, leases), ``_policy`` (fair eviction and the persistent
share), ``_tenancy`` (per-client weights, caps, freeze), ``_snapshot`` and
``_restore`` (saving and restoring pools), ``_state`` (live objects and the
page token format), ``_index`` (the compact page index), ``_ledger`` (where
metadata is charged), ``_memory`` (the arena, its spaces, maintenance),
``_space`` (per-handle LRU and reverse map), ``codecs``, ``pam`` (every
PAM: the interface, ``BytesPam``, the same-filled store, the arena PAMs)
and ``_stats``.
"""

from __future__ import annotations

from ._config import (
    DEFAULT_PAGE_BYTES,
    DEFAULT_WEIGHT,
    INDEX_LIMIT,
    MAX_PAGE_BYTES,
    MAX_POOLS_PER_CLIENT,
    MAX_WEIGHT,
    MIN_PAGE_BYTES,
    OBJECT_ID_LIMIT,
    PAM_NAMES,
    UUID_LIMIT,
    EngineConfig,
)
from ._engine import Engine
from ._errors import (
    ERROR_CLASSES,
    BadArgument,
    BadIndex,
    BadLength,
    BadObjectId,
    EngineError,
    ErrorCode,
    Forbidden,
    NoSuchClient,
    NoSuchPool,
    Refusal,
    TooManyPools,
    Unsupported,
)
from ._policy import MAX_EVICTIONS_PER_PUT
from ._snapshot import RestoreSummary, SaveSummary, StateError, StateTooBig
from ._state import Eviction
from ._stats import ClientStats, EngineStats, OpCounters, PoolStats
from ._tenancy import MAX_FLUSH_PAGES_PER_CALL, ClientLimits, ClientSettings
from .codecs import CODECS, Codec, make_codecs
from .pam import BYTES_PAM_OVERHEAD, BytesPam, Pam, PamFull, PamStats

__all__ = [
    "BYTES_PAM_OVERHEAD",
    "CODECS",
    "DEFAULT_PAGE_BYTES",
    "DEFAULT_WEIGHT",
    "ERROR_CLASSES",
    "INDEX_LIMIT",
    "MAX_EVICTIONS_PER_PUT",
    "MAX_FLUSH_PAGES_PER_CALL",
    "MAX_PAGE_BYTES",
    "MAX_POOLS_PER_CLIENT",
    "MAX_WEIGHT",
    "MIN_PAGE_BYTES",
    "OBJECT_ID_LIMIT",
    "PAM_NAMES",
    "UUID_LIMIT",
    "BadArgument",
    "BadIndex",
    "BadLength",
    "BadObjectId",
    "BytesPam",
    "ClientLimits",
    "ClientSettings",
    "ClientStats",
    "Codec",
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineStats",
    "ErrorCode",
    "Eviction",
    "Forbidden",
    "NoSuchClient",
    "NoSuchPool",
    "OpCounters",
    "Pam",
    "PamFull",
    "PamStats",
    "PoolStats",
    "Refusal",
    "RestoreSummary",
    "SaveSummary",
    "StateError",
    "StateTooBig",
    "TooManyPools",
    "Unsupported",
    "make_codecs",
]
