"""The metrics HTTP endpoint on a real loopback socket, on asyncio and uvloop.

Each test runs the server in-process on its own loop, talks to it with raw
sockets (so malformed requests can be sent), and fails if anything reached
the loop's exception handler.  Waits are bounded by ``IO_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import uvloop
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from tmemd._metrics_http import (
    MAX_METRICS_CONNECTIONS,
    MAX_REQUEST_HEAD_BYTES,
    parse_request_line,
    start_metrics_server,
)
from tmemd.engine import Engine, EngineConfig
from tmemd.metrics import ServerStats, TmemdCollector

#: Bound on every socket operation in these tests.
IO_TIMEOUT_S = 10.0

Scenario = Callable[[int, dict[str, Any]], Awaitable[None]]


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_factory(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[], asyncio.AbstractEventLoop]]:
    yield asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop


def make_registry() -> CollectorRegistry:
    engine = Engine(EngineConfig(memory_bytes=1 << 20), clock=time.monotonic)
    engine.connect("alice")
    registry = CollectorRegistry()
    registry.register(
        TmemdCollector(engine.statistics, lambda: ServerStats(0, 0, 0, 0, 0, (), time.time()))
    )
    return registry


def run(loop_factory: Callable[[], asyncio.AbstractEventLoop], scenario: Scenario) -> None:
    """Start the endpoint, run ``scenario(port, state)``, close, check for loop errors."""
    errors: list[dict[str, Any]] = []
    state: dict[str, Any] = {"ready": True}

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        server, port = await start_metrics_server(
            "127.0.0.1", 0, make_registry(), ready=lambda: bool(state["ready"])
        )
        state["server"] = server
        try:
            await scenario(port, state)
        finally:
            server.close()
            await server.wait_closed()

    loop = loop_factory()
    try:
        loop.run_until_complete(asyncio.wait_for(main(), 60))
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    assert not errors, errors


async def exchange(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``, read until the server closes; return (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), IO_TIMEOUT_S)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    assert int(headers["content-length"]) == len(body) or raw.startswith(b"HEAD")
    return status, headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n".encode()


def test_parse_request_line() -> None:
    assert parse_request_line(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == ("GET", "/metrics")
    assert parse_request_line(b"GET /metrics HTTP/1.0\r\n\r\n") == ("GET", "/metrics")
    assert parse_request_line(b"GET /metrics\r\n\r\n") is None
    assert parse_request_line(b"GET  /metrics HTTP/1.1\r\n\r\n") is None
    assert parse_request_line(b"GET metrics HTTP/1.1\r\n\r\n") is None
    assert parse_request_line(b"GET /m\xff HTTP/1.1\r\n\r\n") is None
    assert parse_request_line(b"\x16\x03\x01 TLS hello\r\n\r\n") is None


def test_metrics_healthz_readyz(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    async def scenario(port: int, state: dict[str, Any]) -> None:
        status, headers, body = await exchange(port, get("/metrics"))
        assert status == 200
        assert headers["content-type"].startswith("text/plain; version=0.0.4")
        assert headers["connection"] == "close"
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert {"tmemd_clients", "tmemd_op_duration_seconds", "tmemd_ops"} <= names
        status, _, body = await exchange(port, get("/metrics?name[]=tmemd_clients"))
        assert status == 200 and b"tmemd_clients 1.0" in body
        assert (await exchange(port, get("/healthz")))[::2] == (200, b"ok\n")
        assert (await exchange(port, get("/readyz")))[0] == 200
        state["ready"] = False
        assert (await exchange(port, get("/readyz")))[0] == 503
        assert (await exchange(port, get("/healthz")))[0] == 200

    run(loop_factory, scenario)


def test_errors(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    async def scenario(port: int, state: dict[str, Any]) -> None:
        assert (await exchange(port, get("/")))[0] == 404
        assert (await exchange(port, get("/metrics/x")))[0] == 404
        status, headers, _ = await exchange(port, get("/metrics", "POST"))
        assert status == 405 and headers["allow"] == "GET"
        status, headers, body = await exchange(port, get("/metrics", "HEAD"))
        assert status == 405 and body == b""
        assert (await exchange(port, b"garbage\r\n\r\n"))[0] == 400
        huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * MAX_REQUEST_HEAD_BYTES + b"\r\n\r\n"
        assert (await exchange(port, huge))[0] == 431

    run(loop_factory, scenario)


def test_peer_that_leaves_early_or_sends_nothing(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def scenario(port: int, state: dict[str, Any]) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metr")
        await writer.drain()
        writer.close()  # half a head, then gone: the server must just close
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        # The server still answers afterwards.
        assert (await exchange(port, get("/healthz")))[0] == 200

    run(loop_factory, scenario)


def test_connection_limit(loop_factory: Callable[[], asyncio.AbstractEventLoop]) -> None:
    async def scenario(port: int, state: dict[str, Any]) -> None:
        # Hold the maximum with stalled half requests, then one more is closed
        # at once with no answer; once they go, service resumes.
        held = []
        for _ in range(MAX_METRICS_CONNECTIONS):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\n")
            held.append((reader, writer))
        deadline = time.monotonic() + IO_TIMEOUT_S
        while len(state["server"]._app.tasks) < MAX_METRICS_CONNECTIONS:
            assert time.monotonic() < deadline, "the server did not accept the connections"
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(get("/healthz"))
        try:
            answer = await asyncio.wait_for(reader.read(), IO_TIMEOUT_S)
        except ConnectionResetError:
            answer = b""  # closed with our request unread: the kernel resets
        assert answer == b""
        writer.close()
        for _r, w in held:
            w.close()
        deadline = time.monotonic() + IO_TIMEOUT_S
        while True:
            try:
                if (await exchange(port, get("/healthz")))[0] == 200:
                    break
            except (ValueError, IndexError, ConnectionError):
                pass  # refused while the held ones were still being torn down
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)

    run(loop_factory, scenario)


def test_slow_peer_is_dropped_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import tmemd._metrics_http as http

    monkeypatch.setattr(http, "REQUEST_TIMEOUT_S", 0.3)

    async def scenario(port: int, state: dict[str, Any]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # never finishes the head
        assert await asyncio.wait_for(reader.read(), IO_TIMEOUT_S) == b""
        writer.close()

    run(asyncio.new_event_loop, scenario)


def test_blocking_client_sees_the_same() -> None:
    """A plain blocking socket (as Prometheus' Go client would behave)."""

    async def scenario(port: int, state: dict[str, Any]) -> None:
        def fetch() -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT_S) as sock:
                sock.sendall(get("/metrics"))
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                return b"".join(chunks)

        data = await asyncio.get_running_loop().run_in_executor(None, fetch)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"\r\n\r\n# HELP tmemd_" in data

    run(uvloop.new_event_loop, scenario)
