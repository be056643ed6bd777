"""A tiny asyncio HTTP/1.1 endpoint for ``/metrics``, ``/healthz`` and ``/readyz``.

Why not prometheus_client's ``start_http_server``: it serves from a thread,
and a scrape would then call ``engine.statistics()`` concurrently with the
event loop that mutates the engine.  Here the registry is *collected* on the
daemon's own loop, one callback between requests, so the snapshot is
consistent without a lock (the engine is synchronous and never yields);
only the *formatting* of the already built, never again mutated families
goes to a worker thread, because it is the costly half.

Theory of operation: one request per connection.  The handler reads the
request head (request line and headers, bounded by ``MAX_REQUEST_HEAD_BYTES``
and ``REQUEST_TIMEOUT_S``), answers, and closes (``Connection: close``).
Prometheus scrapes every few seconds, so a TCP handshake per scrape costs
nothing, and a server that never keeps a connection cannot be held open by a
slow or hostile peer beyond one timeout.  At most
``MAX_METRICS_CONNECTIONS`` connections are served at once; more are closed
on accept.

Access: ``/metrics`` names clients and pools, so ``--metrics-auth FILE``
makes it answer only requests carrying ``Authorization: Bearer TOKEN`` with
the file's token (compared with ``hmac.compare_digest``, so the time taken
says nothing about how much of a guess was right), 401 otherwise, as
Prometheus' ``authorization`` scrape setting sends it; ``/healthz`` and
``/readyz`` say nothing about tenants and stay open for probes.  TLS (and
client certificates) come from an ``ssl`` context, as for the protocol port.

Routes: ``GET /metrics`` (text exposition 0.0.4 of the registry passed in),
``GET /healthz`` (200 while the loop runs: if it answers, the loop is
alive), ``GET /readyz`` (200 when ``ready()`` is true, else 503).  Other
paths answer 404, other methods 405, a malformed or oversized head 400 or
431.  A request body is never read (GET has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import ssl as _ssl
from collections.abc import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = [
    "MAX_METRICS_CONNECTIONS",
    "MAX_REQUEST_HEAD_BYTES",
    "REQUEST_TIMEOUT_S",
    "MetricsServer",
    "bearer_token_of",
    "parse_request_line",
    "start_metrics_server",
]

log = logging.getLogger("tmemd.metrics")

#: Request line plus headers.  Prometheus sends ~300 bytes; 8 KiB is the
#: common server default (nginx, h11) and bounds what a peer can make us hold.
MAX_REQUEST_HEAD_BYTES = 8192
#: Time to receive a whole request head, and to flush the reply.  A scraper
#: on the same network sends its head in one packet; 10 s only stops peers
#: that connect and stall (slow loris).
REQUEST_TIMEOUT_S = 10.0
#: Concurrent connections served.  A few Prometheus replicas, a health
#: checker and an operator's curl need a handful; 16 bounds the memory a
#: flood of connections can pin.
MAX_METRICS_CONNECTIONS = 16

_TEXT = "text/plain; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

Response = tuple[int, str, bytes]


class _Collected(Collector):
    """Already collected families, in the shape ``generate_latest`` reads."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def _response_bytes(status: int, content_type: str, body: bytes, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "Cache-Control: no-store\r\n"
    )
    if status == 405:
        head += "Allow: GET\r\n"
    if status == 401:
        head += 'WWW-Authenticate: Bearer realm="tmemd"\r\n'
    return (head + "\r\n").encode("ascii") + (b"" if head_only else body)


class _MetricsHttp:
    """Routes one parsed request; holds what the routes need."""

    def __init__(
        self,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        bearer_token: str | None = None,
    ) -> None:
        self.registry = registry
        self.ready = ready
        self.bearer_token = None if bearer_token is None else bearer_token.encode()
        #: Handler tasks in flight, so that closing the server can end them.
        self.tasks: set[asyncio.Task[None]] = set()

    async def route(self, method: str, target: str, token: bytes | None = None) -> Response:
        path = target.split("?", 1)[0]
        if path not in ("/metrics", "/healthz", "/readyz"):
            return 404, _TEXT, b"not found\n"
        if method != "GET":
            return 405, _TEXT, b"only GET\n"
        if path == "/metrics" and not self.authorized(token):
            return 401, _TEXT, b"bearer token required (--metrics-auth)\n"
        if path == "/healthz":
            return 200, _TEXT, b"ok\n"
        if path == "/readyz":
            if self.ready():
                return 200, _TEXT, b"ready\n"
            return 503, _TEXT, b"not ready\n"
        try:
            body = await self._exposition()
        except Exception:
            # A bug in a collector must not take the daemon down with it; the
            # scrape fails visibly (Prometheus marks the target unhealthy).
            log.exception("metrics collection failed")
            return 500, _TEXT, b"collection failed; see the daemon log\n"
        return 200, CONTENT_TYPE_PLAIN_0_0_4, body

    def authorized(self, token: bytes | None) -> bool:
        """True without ``--metrics-auth``, else when ``token`` is its token."""
        if self.bearer_token is None:
            return True
        # compare_digest on equal-typed bytes: its time depends on the
        # lengths only, never on where a guess first differs.
        return hmac.compare_digest(token or b"", self.bearer_token)

    async def _exposition(self) -> bytes:
        """Collect on the loop (a consistent snapshot), format in a worker thread.

        Formatting is the costly part (a few times the collection,
        docs/bench/micro.md) and reads only the frozen families, so it may
        leave the loop; the loop then keeps serving pages, sharing the GIL
        in 5 ms slices.
        """
        families = _Collected(list(self.registry.collect()))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, generate_latest, families)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self.tasks) >= MAX_METRICS_CONNECTIONS or task is None:
            writer.close()
            return
        self.tasks.add(task)
        try:
            await asyncio.wait_for(self._answer(reader, writer), REQUEST_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            pass  # the peer stalled or left: nothing to answer
        finally:
            self.tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            writer.write(_response_bytes(431, _TEXT, b"request head too large\n", False))
            await writer.drain()
            return
        except asyncio.IncompleteReadError:
            return  # closed before a whole head: nothing to answer
        request = parse_request_line(head)
        if request is None:
            status, ctype, body, method = 400, _TEXT, b"bad request line\n", "GET"
        else:
            method, target = request
            status, ctype, body = await self.route(method, target, bearer_token_of(head))
        # RFC 9110: a HEAD reply carries the headers of GET but no body.
        writer.write(_response_bytes(status, ctype, body, method == "HEAD"))
        await writer.drain()


def parse_request_line(head: bytes) -> tuple[str, str] | None:
    """(method, target) of an HTTP/1.x request head, or None if malformed."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
        return None
    try:
        return parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None


def bearer_token_of(head: bytes) -> bytes | None:
    """The token of an ``Authorization: Bearer TOKEN`` header in a request head."""
    for line in head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


class MetricsServer(asyncio.AbstractServer):
    """The listening server plus its handlers: closing it ends both.

    Python 3.11's ``Server.close`` stops accepting but leaves handlers
    running; a scraper stalled at shutdown would then outlive the loop.
    """

    def __init__(self, server: asyncio.Server, app: _MetricsHttp) -> None:
        self._server = server
        self._app = app

    def close(self) -> None:
        self._server.close()
        for task in list(self._app.tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        await self._server.wait_closed()
        await asyncio.gather(*self._app.tasks, return_exceptions=True)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._server.get_loop()

    def is_serving(self) -> bool:
        return self._server.is_serving()

    async def start_serving(self) -> None:
        await self._server.start_serving()

    async def serve_forever(self) -> None:
        await self._server.serve_forever()


async def start_metrics_server(
    host: str,
    port: int,
    registry: CollectorRegistry,
    ready: Callable[[], bool],
    *,
    bearer_token: str | None = None,
    ssl: _ssl.SSLContext | None = None,
) -> tuple[asyncio.AbstractServer, int]:
    """Listen on ``host:port`` (0 picks a free port); return the server and bound port.

    ``bearer_token`` (``--metrics-auth``) is required on ``/metrics``; ``ssl``
    serves the port over TLS.  The caller closes the returned server
    (``close()`` then ``wait_closed()``) on shutdown.
    """
    app = _MetricsHttp(registry, ready, bearer_token)
    server = await asyncio.start_server(
        app.serve,
        host,
        port,
        limit=MAX_REQUEST_HEAD_BYTES,
        reuse_address=True,
        ssl=ssl,
        ssl_handshake_timeout=REQUEST_TIMEOUT_S if ssl is not None else None,
    )
    bound = int(server.sockets[0].getsockname()[1])
    return MetricsServer(server, app), bound
