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
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from tmem.proto import RefuseReason

from ._base import Address, ClientBase
from ._cluster import DEFAULT_DEAD_TIMEOUT_S, DEFAULT_DNS_REFRESH_S, Resolver
from ._cluster_sync import SyncCluster
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
    check_handle,
    find_pool,
    info_from_spec,
    new_pool_arguments,
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

    Several servers: ``address`` may be a list of addresses or
    ``"dns:NAME:PORT"`` (resolved by ``resolver(name, port)``, default
    ``getaddrinfo``, every ``dns_refresh`` seconds); a pool then spans the
    servers (docs/multi-server.md).  A server that fails is left alone for
    ``dead_timeout`` seconds; ``raise_on_dead`` makes calls that would go to
    it raise ``ServerDead`` instead of missing (ephemeral pools).  The
    other arguments apply to each server's connections.
    """

    def __init__(
        self,
        address: Address,
        client_name: str | None = None,
        token: str | None = None,
        timeout: float | None = 5.0,
        ssl: _ssl.SSLContext | None = None,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        retry: Retry | None = DEFAULT_RETRY,
        dead_timeout: float = DEFAULT_DEAD_TIMEOUT_S,
        raise_on_dead: bool = False,
        resolver: Resolver | None = None,
        dns_refresh: float = DEFAULT_DNS_REFRESH_S,
    ) -> None:
        super().__init__(
            address, client_name, token, timeout, ssl, retry, dead_timeout, resolver, dns_refresh
        )
        self._connections = ConnectionPool(self._new_connection, max_connections, timeout)
        #: The several-server half (None for one server).
        self._cluster: SyncCluster | None = None
        if self._server_set is not None:
            self._cluster = SyncCluster(
                self._server_set,
                lambda server: Client(
                    server,
                    self.client_name,
                    token,
                    timeout,
                    ssl,
                    max_connections=max_connections,
                    retry=self.retry,
                ),
                raise_on_dead,
            )

    @property
    def max_connections(self) -> int:
        """The most connections this client opens at once."""
        return self._connections.max_connections

    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still fail on next use)."""
        if self._cluster is not None:
            return any(c.connected for c in self._cluster.clients().values())
        return self._connections.size > 0

    @property
    def server_ids(self) -> dict[str, str | None]:
        """Each server's ``server_id`` (None before its first connection)."""
        if self._cluster is None:
            return {self.servers[0]: self.server_id}
        return {s: c.server_id for s, c in self._cluster.clients().items()}

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
        """Open a connection and say HELLO now (otherwise the first call does);
        several servers: to each live one (``ServerDead`` if none answers)."""
        if self._cluster is not None:
            self._cluster.control_each(lambda client: client.connect())
            return
        self._run(lambda conn: None, retry=False)

    def close(self) -> None:
        """Close the connections (busy ones as their calls end); the client
        may be used again later and then opens new ones."""
        if self._cluster is not None:
            self._cluster.close()
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
        """A round trip with no effect (connects first if needed); several
        servers: to each live one (``ServerDead`` if none answers)."""
        if self._cluster is not None:
            self._cluster.control_each(lambda client: client.ping())
            return
        self._exchange(lambda core: core.ping(), retry=True)

    def control(self, cmd: str, **args: Any) -> dict[str, Any]:
        """Run a CONTROL command; returns the reply map.  Several servers:
        see ``docs/multi-server.md`` (``open_pool`` and ``list_objects`` span
        the servers; other commands answer ``{"servers": {address: reply}}``)."""
        if self._cluster is not None:
            return self._cluster.control(cmd, args)
        return self._exchange(lambda core: core.control(cmd, args))

    def stats(self) -> dict[str, Any]:
        """This client's statistics (CONTROL ``stats``)."""
        return self.control("stats")

    def list_pools(self) -> list[dict[str, Any]]:
        """This client name's pools (CONTROL ``list_pools``); several servers:
        every server's, each entry with its ``"server"``."""
        if self._cluster is not None:
            replies = self.control("list_pools")["servers"]
            return [{**p, "server": s} for s, r in replies.items() for p in r.get("pools", [])]
        return list(self.control("list_pools").get("pools", []))

    def new_pool(
        self,
        persistent: bool = False,
        shared_uuid: uuid.UUID | str | int | None = None,
        codec: str | None = None,
        page_size: int = 4096,
        precompressed: bool = False,
        pam: str | None = None,
        replicas: int = 1,
    ) -> Pool:
        """Create a pool.  ``shared_uuid`` (uuid.UUID, str or int) makes it a
        shared ephemeral pool; ``codec`` is None (the daemon's default),
        "none", "lzo", "lz4" or "zstd"; ``pam`` is None (the daemon's
        default for the pool's kind), "zbud", "xvmalloc" or "zsmalloc".
        ``replicas`` (persistent pools on several servers): how many servers
        hold each page (docs/multi-server.md)."""
        args = new_pool_arguments(persistent, shared_uuid, codec, page_size, precompressed, pam)
        if self._cluster is not None:
            return self._cluster.new_pool(replicas, **args)
        if replicas != 1:
            raise ValueError("replicas > 1 needs a client of several servers")
        spec, uuid_value = pool_spec(**args)
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
        Several servers: ids are this client object's own (``BadPool`` for
        any other).
        """
        if self._cluster is not None:
            return Pool(self._cluster, self._cluster.pools.get(pool_id).info)
        listing, server_id = self._run(
            lambda conn: (conn.exchange(lambda core: core.control("list_pools", {})),
                          conn.server_id),
            retry=True,
        )  # fmt: skip
        info = find_pool(listing, pool_id, self.client_name)
        return Pool(self, dataclasses.replace(info, server_id=server_id))

    def locate(self, pool: Pool, object_id: int) -> list[str]:
        """The servers that hold ``object_id`` of ``pool`` now (its replicas,
        top-ranked first); one server: its address."""
        if self._cluster is None:
            return self.servers
        return self._cluster.locate(pool.info, object_id)

    def repair(self, pool: Pool, handles: Iterable[tuple[int, int]]) -> int:
        """Restore the redundancy of a replicated pool's pages: read every
        replica of each ``(object_id, index)`` and write the page back
        where it is missing (e.g. on a server that came back empty);
        returns the copies written.  0 for one server or one replica."""
        if self._cluster is None:
            return 0
        return self._cluster.repair(pool.info, [check_handle(o, i) for o, i in handles])

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
