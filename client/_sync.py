"""The blocking client: ``ClientCore`` over a small pool of TCP connections.

Connection life cycle.  ``Client(...)`` only checks its arguments; sockets
are opened lazily by calls (or by ``connect()``), so building a client never
fails because a daemon is down (as pymemcache and redis-py).  Opening means:
TCP connect with ``timeout``, TCP_NODELAY (one small request must not wait
for Nagle), optional TLS, then HELLO; the reply is kept in ``server_info``
and its ``server_id`` names the daemon instance.

Threads.  A ``Client`` may be shared by any number of threads.  Each call
borrows a connection from the client's ``ConnectionPool`` (``_connections``:
at most ``max_connections``) for the whole call, a batch included, so its
requests and replies never interleave with another call's; see that
module for why a pool rather than a lock, and for what ``close()`` does
while other threads are in a call.

Any error while sending or reading closes that connection (pymemcache's
rule): a timeout, a reset, a garbled or unexpected reply, a framing error
reported by the server, even KeyboardInterrupt mid-read.  A reply that
might still be on its way would otherwise be read as the answer to the next
request.  A command error (e.g. ``BadPool``) is a whole, in-step reply and
leaves the connection in the pool.  The client's pools live on in the
daemon for its lease, so the next connection finds them.

Retries.  ``retry=`` (``tmem.client.Retry``) says which failed calls are
tried again on a fresh connection, and after how long (``_retry`` says
which calls are safe to retry and why).  Before a pool's request is sent,
the connection's ``server_id`` is compared with the pool's: a connection to
another daemon instance raises ``PoolGone`` instead.

Every method waits for its reply; nothing is fire-and-forget.  Batches
(``Pool.put_many``/``get_many``) write half a window of requests per
``sendmsg`` and read replies as they come, with at most
``window_for(page_size)`` requests in flight, so a batch of any length
streams without filling both ends' socket buffers.  ``timeout`` bounds each
socket operation (connect, each send, each receive) and the wait for a free
connection, not a whole batch.
"""

from __future__ import annotations

import dataclasses
import ssl as _ssl
import time
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from tmem.proto import RefuseReason

from ._base import ClientBase
from ._connections import (
    DEFAULT_MAX_CONNECTIONS,
    RECV_BUFFER_BYTES,
    Connection,
    ConnectionPool,
)
from ._core import BatchCall, Call, ClientCore, window_for
from ._mapping import MAPPING_PAGE_SIZE, Mapping, open_mapping
from ._pool import Handle, Pool, PutItem, check_same_server
from ._retry import DEFAULT_RETRY, Retry, retries_get
from ._spec import (
    Page,
    PoolInfo,
    find_pool,
    info_from_spec,
    pool_spec,
)

__all__ = ["RECV_BUFFER_BYTES", "Client"]

T = TypeVar("T")
X = TypeVar("X")


class Client(ClientBase):
    """A blocking tmem client for one daemon, safe to share between threads.

    ``address`` is ``"host:port"`` or ``(host, port)``; ``client_name``
    defaults to this host's name (pools belong to the name, not to the
    connection); ``token`` is sent in HELLO when the daemon asks for one;
    ``timeout`` (seconds, None for none) bounds each socket operation;
    ``ssl`` is an ``ssl.SSLContext`` for TLS; ``max_connections`` bounds
    the connections that threads sharing the client use at once;
    ``retry`` is the ``Retry`` policy (None: no retries).  Use as a context
    manager or call ``close()``.
    """

    def __init__(
        self,
        address: str | tuple[str, int],
        client_name: str | None = None,
        token: str | None = None,
        timeout: float | None = 5.0,
        ssl: _ssl.SSLContext | None = None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        retry: Retry | None = DEFAULT_RETRY,
    ) -> None:
        super().__init__(address, client_name, token, timeout, ssl, retry)
        self._connections = ConnectionPool(self._new_connection, max_connections, timeout)

    @property
    def max_connections(self) -> int:
        """The most connections this client opens at once."""
        return self._connections.max_connections

    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still fail on next use)."""
        return self._connections.size > 0

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- connection -------------------------------------------------------------

    def connect(self) -> None:
        """Open a connection and say HELLO now (otherwise the first call does)."""
        self._run(lambda conn: None, retry=False)

    def close(self) -> None:
        """Close the connections (busy ones as their calls end); the client
        may be used again later and then opens new ones."""
        self._connections.close()

    def _new_connection(self) -> Connection:
        return Connection(self.address, self.client_name, self._token, self.timeout, self._ssl)

    def _run(self, operation: Callable[[Connection], T], retry: bool = True) -> T:
        """``operation`` on a connection of this thread's own, opened (HELLO
        said) first; tried again as ``self.retry`` says when ``retry``."""
        failures = 0
        connections = self._connections
        while True:
            try:
                conn = connections.acquire()
                try:
                    conn.core()
                    self.server_info = conn.server_info
                    return operation(conn)
                finally:
                    connections.release(conn)
            except Exception as exc:
                failures += 1
                delay = self.retry.delay_s(failures, exc) if retry else None
                if delay is None:
                    raise
            time.sleep(delay)

    def _exchange(self, build: Callable[[ClientCore], Call[T]], retry: bool = False) -> T:
        """One request, one reply."""
        return self._run(lambda conn: conn.exchange(build), retry)

    def _pool_exchange(
        self, info: PoolInfo, build: Callable[[ClientCore], Call[T]], retry: bool = True
    ) -> T:
        """One request of pool ``info``, sent only on a connection to its daemon instance."""

        def operation(conn: Connection) -> T:
            check_same_server(info, conn.server_id)
            return conn.exchange(build)

        return self._run(operation, retry)

    def _pool_batch(
        self,
        info: PoolInfo,
        items: Sequence[X],
        build: Callable[[ClientCore, Sequence[X]], BatchCall[T]],
        retry: bool = True,
    ) -> list[T]:
        """A pipelined batch of pool ``info`` on one connection (see ``Connection.batch``)."""
        if not items:
            return []

        def operation(conn: Connection) -> list[T]:
            check_same_server(info, conn.server_id)
            return conn.batch(items, build, window_for(info.page_size))

        return self._run(operation, retry)

    # --- client operations ------------------------------------------------------

    def ping(self) -> None:
        """A round trip with no effect (connects first if needed)."""
        self._exchange(lambda core: core.ping(), retry=True)

    def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Run a CONTROL command; returns the reply map."""
        return self._exchange(lambda core: core.control(cmd, args))

    def stats(self) -> dict[str, Any]:
        """This client's statistics (CONTROL ``stats``)."""
        return self.control("stats")

    def list_pools(self) -> list[dict[str, Any]]:
        """This client name's pools (CONTROL ``list_pools``)."""
        return list(self.control("list_pools").get("pools", []))

    def new_pool(
        self,
        persistent: bool = False,
        shared_uuid: uuid.UUID | str | int | None = None,
        codec: str | None = None,
        page_size: int = 4096,
        precompressed: bool = False,
        pam: str | None = None,
    ) -> Pool:
        """Create a pool.  ``shared_uuid`` (uuid.UUID, str or int) makes it a
        shared ephemeral pool; ``codec`` is None (the daemon's default),
        "none", "lzo", "lz4" or "zstd"; ``pam`` is None (the daemon's
        default for the pool's kind), "zbud", "xvmalloc" or "zsmalloc"."""
        spec, uuid_value = pool_spec(
            persistent=persistent,
            shared_uuid=shared_uuid,
            codec=codec,
            page_size=page_size,
            precompressed=precompressed,
            pam=pam,
        )
        pool_id, server_id = self._run(
            lambda conn: (conn.exchange(lambda core: core.new_pool(spec, uuid_value)),
                          conn.server_id),
            retry=False,
        )  # fmt: skip
        return Pool(self, info_from_spec(pool_id, spec, server_id))

    def pool(self, pool_id: int) -> Pool:
        """Re-attach to a pool this client name created earlier (e.g. before
        a reconnect or a restart of this process); ``BadPool`` if none.

        The pool object belongs to the daemon instance that answers now
        (``server_id``): after a daemon restart the same id may be another,
        new pool, so re-attach by id only to ids this instance gave you.
        """
        listing, server_id = self._run(
            lambda conn: (conn.exchange(lambda core: core.control("list_pools", {})),
                          conn.server_id),
            retry=True,
        )  # fmt: skip
        info = find_pool(listing, pool_id, self.client_name)
        return Pool(self, dataclasses.replace(info, server_id=server_id))

    def mapping(
        self, name: str, *, persistent: bool = True, page_size: int = MAPPING_PAGE_SIZE
    ) -> Mapping:
        """The mapping ``name`` of this client name: a ``MutableMapping`` of
        str/bytes keys to values of any size (``tmem.client.Mapping``); any
        process of the same client name reattaches to it by name."""
        return open_mapping(self, name, persistent=persistent, page_size=page_size)

    # --- PoolBackend hooks (used by Pool) ---------------------------------------

    def _pool_put(
        self, info: PoolInfo, object_id: int, index: int, page: Page
    ) -> RefuseReason | None:
        return self._pool_exchange(info, lambda core: core.put(info, object_id, index, page))

    def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        return self._pool_exchange(
            info,
            lambda core: core.get(info, object_id, index, exclusive),
            retries_get(info, exclusive),
        )

    def _pool_put_many(self, info: PoolInfo, items: Sequence[PutItem]) -> list[RefuseReason | None]:
        return self._pool_batch(info, items, lambda core, chunk: core.put_batch(info, chunk))

    def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]:
        return self._pool_batch(
            info,
            items,
            lambda core, chunk: core.get_batch(info, chunk, exclusive),
            retries_get(info, exclusive),
        )

    def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool:
        return self._pool_exchange(info, lambda core: core.flush_page(info, object_id, index))

    def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int:
        return self._pool_exchange(info, lambda core: core.flush_object(info, object_id))

    def _pool_destroy(self, info: PoolInfo) -> None:
        self._pool_exchange(info, lambda core: core.destroy_pool(info.pool_id), retry=False)
