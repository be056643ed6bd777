"""tmem client library: talk to a tmemd daemon from Python.

Layers (README, "Architecture"): ``_core`` is a sans-IO protocol core
(builds requests, matches replies in order, turns them into values or typed
exceptions) over ``tmem.proto``'s one decoder; ``_sync`` (``Client``, over
blocking sockets) and
``_async`` (``AsyncClient``, an asyncio protocol for asyncio or uvloop) move
its bytes.  ``Pool``/``AsyncPool`` are pool objects with put/get/flush and
pipelined batch forms.  A ``Client`` may be shared by threads: each call
borrows one of at most ``max_connections`` connections (``_connections``);
``Retry`` (``_retry``) says which failed calls are tried again; a pool object
raises ``PoolGone`` once its pool is gone or the daemon is another instance
(``server_id``).  ``client.mapping(name)`` (``_mapping``) stores values of
any size under str/bytes keys in a named pool.  ``tmem.client.testing`` has
in-memory fakes with the same API for users' tests.

    with Client("127.0.0.1:7400", client_name="web-1") as client:
        pool = client.new_pool(persistent=True)
        if pool.put(object_id=7, index=0, page=b"x" * 4096):
            assert pool.get(7, 0) == b"x" * 4096
"""

from __future__ import annotations

from tmem.proto import RefuseReason

from ._async import AsyncClient
from ._errors import (
    STATUS_TO_EXCEPTION,
    AuthFailed,
    BadArgument,
    BadFlags,
    BadLength,
    BadMagic,
    BadOpcode,
    BadPageSize,
    BadPool,
    BadSpecVersion,
    BadVersion,
    Forbidden,
    FrameTooLarge,
    FramingError,
    NotAuthenticated,
    PoolGone,
    Refused,
    ServerBusy,
    ServerDead,
    ServerError,
    ServerInternalError,
    ServerTimeout,
    TmemConnectionError,
    TmemError,
    TmemProtocolError,
    TmemTimeout,
    TooManyPools,
    Unsupported,
)
from ._mapping import MAPPING_PAGE_SIZE, AsyncMapping, Mapping
from ._pool import AsyncPool, Pool
from ._retry import (
    DEFAULT_RETRY,
    NO_RETRY,
    Backoff,
    ConstantBackoff,
    ExponentialBackoff,
    NoBackoff,
    Retry,
)
from ._spec import CODEC_NAMES, PAM_NAMES, PoolInfo
from ._sync import Client

__all__ = [
    "CODEC_NAMES",
    "DEFAULT_RETRY",
    "MAPPING_PAGE_SIZE",
    "NO_RETRY",
    "PAM_NAMES",
    "STATUS_TO_EXCEPTION",
    "AsyncClient",
    "AsyncMapping",
    "AsyncPool",
    "AuthFailed",
    "Backoff",
    "BadArgument",
    "BadFlags",
    "BadLength",
    "BadMagic",
    "BadOpcode",
    "BadPageSize",
    "BadPool",
    "BadSpecVersion",
    "BadVersion",
    "Client",
    "ConstantBackoff",
    "ExponentialBackoff",
    "Forbidden",
    "FrameTooLarge",
    "FramingError",
    "Mapping",
    "NoBackoff",
    "NotAuthenticated",
    "Pool",
    "PoolGone",
    "PoolInfo",
    "RefuseReason",
    "Refused",
    "Retry",
    "ServerBusy",
    "ServerDead",
    "ServerError",
    "ServerInternalError",
    "ServerTimeout",
    "TmemConnectionError",
    "TmemError",
    "TmemProtocolError",
    "TmemTimeout",
    "TooManyPools",
    "Unsupported",
]
