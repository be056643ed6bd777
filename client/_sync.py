"""The blocking client: ``ClientCore`` over one TCP socket.

Connection life cycle.  ``Client(...)`` only checks its arguments; the
socket is opened lazily by the first call (or by ``connect()``), so building
a client never fails because a daemon is down (as pymemcache and redis-py).
Opening means: TCP connect with ``timeout``, TCP_NODELAY (one small request
must not wait for Nagle), optional TLS, then HELLO; the reply is kept in
``server_info``.

Any error while sending or reading closes the connection (pymemcache's
rule): a timeout, a reset, a garbled or unexpected reply, a framing error
reported by the server, even KeyboardInterrupt mid-read.  A reply that
might still be on its way would otherwise be read as the answer to the next
request.  The next call opens a new connection and says HELLO again; the
client's pools live on in the daemon for its lease.  A command error (e.g.
``BadPool``) is a whole, in-step reply and leaves the connection open.

Every method waits for its reply; nothing is fire-and-forget.  Batches
(``Pool.put_many``/``get_many``) write half a window of requests per
``sendmsg`` and read replies as they come, with at most
``window_for(page_size)`` requests in flight, so a batch of any length
streams without filling both ends' socket buffers.

``timeout`` bounds each socket operation (connect, each send, each
receive), not a whole batch.  A ``Client`` is not thread-safe: use one per
thread (it is cheap), or a lock.
"""

from __future__ import annotations

import socket
import ssl as _ssl
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypeVar

from tmem.proto import RefuseReason

from ._base import ClientBase
from ._core import BatchCall, Call, ClientCore, window_for, window_plan
from ._errors import TmemConnectionError, TmemError, TmemTimeout
from ._mapping import MAPPING_PAGE_SIZE, Mapping, open_mapping
from ._pool import Handle, Pool, PutItem
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

#: Size of the receive buffer reused by every read: 256 KiB takes a burst
#: of 64 replies of 4 KiB in one system call.
RECV_BUFFER_BYTES = 256 << 10
#: Most buffers passed to one ``sendmsg`` (Linux's IOV_MAX is 1024); larger
#: writes are joined into one buffer instead.
MAX_SEND_BUFFERS = 1024


class Client(ClientBase):
    """A blocking tmem client for one daemon.

    ``address`` is ``"host:port"`` or ``(host, port)``; ``client_name``
    defaults to this host's name (pools belong to the name, not to the
    connection); ``token`` is sent in HELLO when the daemon asks for one;
    ``timeout`` (seconds, None for none) bounds each socket operation;
    ``ssl`` is an ``ssl.SSLContext`` for TLS.  Use as a context manager or
    call ``close()``.
    """

    def __init__(
        self,
        address: str | tuple[str, int],
        client_name: str | None = None,
        token: str | None = None,
        timeout: float | None = 5.0,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(address, client_name, token, timeout, ssl)
        self._sock: socket.socket | None = None
        self._core: ClientCore | None = None
        self._buffer = bytearray(RECV_BUFFER_BYTES)
        self._view = memoryview(self._buffer)

    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still fail on next use)."""
        return self._core is not None

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
        """Open the connection and say HELLO now (otherwise the first call does)."""
        self._connected_core()

    def close(self) -> None:
        """Close the connection (if any); the client may be used again later."""
        sock, self._sock, self._core = self._sock, None, None
        if sock is not None:
            sock.close()

    def _open_socket(self) -> socket.socket:
        where = f"{self._host}:{self._port}"
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self.timeout)
        except TimeoutError as exc:
            raise TmemTimeout(f"connecting to {where} timed out after {self.timeout}s") from exc
        except OSError as exc:
            raise TmemConnectionError(f"cannot connect to {where}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._host)
        except OSError as exc:
            sock.close()
            raise TmemConnectionError(f"cannot set up the connection to {where}: {exc}") from exc
        return sock

    def _connected_core(self) -> ClientCore:
        if self._core is not None:
            return self._core
        self._sock = self._open_socket()
        core = self._core = ClientCore(self.client_name, self._token)
        call = core.hello()
        self._transfer(core, call)
        try:
            self.server_info = call.result()
        except BaseException:
            self.close()
            raise
        return core

    # --- moving bytes -----------------------------------------------------------

    def _transfer(self, core: ClientCore, until: Call[Any] | None) -> None:
        """Send what ``core`` has queued; then read until ``until`` completes.

        Any error closes the connection; OS errors become TmemConnectionError
        (TmemTimeout for timeouts).
        """
        try:
            chunks = core.data_to_send()
            if chunks:
                self._send(chunks)
            while until is not None and not until.done:
                self._receive(core)
        except TmemError:
            self.close()
            raise
        except TimeoutError as exc:
            self.close()
            raise TmemTimeout(
                f"no reply from {self._host}:{self._port} within {self.timeout}s"
            ) from exc
        except OSError as exc:
            self.close()
            raise TmemConnectionError(f"connection to {self._host}:{self._port}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        if core.error is not None:
            self.close()

    def _send(self, chunks: list[bytes | bytearray | memoryview]) -> None:
        sock = self._sock
        assert sock is not None
        if self._ssl is not None or len(chunks) > MAX_SEND_BUFFERS:
            sock.sendall(b"".join(chunks))
            return
        while True:
            sent = sock.sendmsg(chunks)
            done = 0
            while done < len(chunks) and sent >= len(chunks[done]):
                sent -= len(chunks[done])
                done += 1
            if done == len(chunks):
                return
            chunks = [memoryview(chunks[done])[sent:], *chunks[done + 1 :]]

    def _receive(self, core: ClientCore) -> None:
        sock = self._sock
        assert sock is not None
        count = sock.recv_into(self._buffer)
        if count == 0:
            core.connection_lost(None)
        else:
            core.receive_data(self._view[:count])

    def _exchange(self, build: Callable[[ClientCore], Call[T]]) -> T:
        """One request, one reply."""
        core = self._connected_core()
        call = build(core)
        self._transfer(core, call)
        return call.result()

    def _batch(
        self,
        items: Sequence[X],
        build: Callable[[ClientCore, Sequence[X]], BatchCall[T]],
        window: int,
    ) -> list[T]:
        """Pipelined requests in chunks of half a window, at most a window in
        flight (``window_plan``); replies in order."""
        if not items:
            return []
        core = self._connected_core()
        calls: list[BatchCall[T]] = []
        for start, stop, wait_chunk in window_plan(len(items), window):
            if wait_chunk >= 0:
                self._transfer(core, calls[wait_chunk])
            calls.append(build(core, items[start:stop]))
            self._transfer(core, None)
        self._transfer(core, calls[-1])
        return [value for call in calls for value in call.result()]

    # --- client operations ------------------------------------------------------

    def ping(self) -> None:
        """A round trip with no effect (connects first if needed)."""
        self._exchange(lambda core: core.ping())

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
        pool_id = self._exchange(lambda core: core.new_pool(spec, uuid_value))
        return Pool(self, info_from_spec(pool_id, spec))

    def pool(self, pool_id: int) -> Pool:
        """Re-attach to a pool this client name created earlier (e.g. before
        a reconnect or a restart of this process); ``BadPool`` if none."""
        return Pool(self, find_pool(self.control("list_pools"), pool_id, self.client_name))

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
        return self._exchange(lambda core: core.put(info, object_id, index, page))

    def _pool_get(
        self, info: PoolInfo, object_id: int, index: int, exclusive: bool | None
    ) -> bytes | None:
        return self._exchange(lambda core: core.get(info, object_id, index, exclusive))

    def _pool_put_many(self, info: PoolInfo, items: Sequence[PutItem]) -> list[RefuseReason | None]:
        return self._batch(
            items, lambda core, chunk: core.put_batch(info, chunk), window_for(info.page_size)
        )

    def _pool_get_many(
        self, info: PoolInfo, items: Sequence[Handle], exclusive: bool | None
    ) -> list[bytes | None]:
        return self._batch(
            items,
            lambda core, chunk: core.get_batch(info, chunk, exclusive),
            window_for(info.page_size),
        )

    def _pool_flush(self, info: PoolInfo, object_id: int, index: int) -> bool:
        return self._exchange(lambda core: core.flush_page(info, object_id, index))

    def _pool_flush_object(self, info: PoolInfo, object_id: int) -> int:
        return self._exchange(lambda core: core.flush_object(info, object_id))

    def _pool_destroy(self, info: PoolInfo) -> None:
        self._exchange(lambda core: core.destroy_pool(info.pool_id))
