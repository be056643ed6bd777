"""The blocking and asyncio transports against a tiny fake tmem server.

The fake server is a thread on 127.0.0.1 (port 0) that decodes requests with
``tmem.proto.RequestDecoder`` and answers from a dict, one write per read
burst as the real daemon does.  A test can make it misbehave with a hook that
sees each request first.  Async tests run on asyncio's loop and on uvloop,
and fail if anything reaches the loop's exception handler.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgpack
import pytest
import uvloop

from tmem.client import (
    AsyncClient,
    AuthFailed,
    BadMagic,
    BadPool,
    Client,
    TmemConnectionError,
    TmemProtocolError,
    TmemTimeout,
)
from tmem.proto import (
    NO_POOL,
    Opcode,
    Request,
    RequestDecoder,
    Response,
    Status,
    decode_pool_flags,
    encode,
)

PAGE_COUNT = 1000
CLOSE = object()  # hook result: drop the connection without answering
SILENT = b""  # hook result: answer nothing (the client must time out)


def page_for(i: int) -> bytes:
    return i.to_bytes(4, "little") * 1024


class FakeTmemServer:
    """Answers PING/HELLO/CONTROL/NEW_POOL/PUT/GET/FLUSH from a dict."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.hook: Callable[[Request], object] | None = None
        self.pages: dict[tuple[int, int, int], bytes] = {}
        self.pool_sizes: dict[int, int] = {}
        self.hellos: list[str] = []
        #: Sent in HELLO's reply when set (a daemon instance's id).
        self.server_id: str | None = None
        self.opcodes: list[int] = []
        self.connections = 0
        self.max_burst = 0  # most requests decoded from one recv()
        self.max_unanswered = 0  # most requests received but not yet answered
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._serve_requests(conn)
        except OSError:
            return  # the client reset the connection: that is its right
        finally:
            conn.close()

    def _serve_requests(self, conn: socket.socket) -> None:
        decoder, received, answered = RequestDecoder(), 0, 0
        while data := conn.recv(1 << 16):
            decoder.feed(data)
            requests = decoder.frames()
            received += len(requests)
            self.max_burst = max(self.max_burst, len(requests))
            self.max_unanswered = max(self.max_unanswered, received - answered)
            out: list[bytes] = []
            for request in requests:
                with self._lock:
                    answer = self._answer(request)
                if answer is CLOSE:
                    conn.sendall(b"".join(out))
                    return
                out.append(answer)
            answered += len(requests)
            conn.sendall(b"".join(out))

    def _answer(self, request: Request) -> Any:
        self.opcodes.append(request.opcode)
        if self.hook is not None:
            answer = self.hook(request)
            if answer is not None:
                return answer
        status, value, payload = self._tmem(request)
        return encode(Response(request.opcode, status, request.request_id, value, payload))

    def _tmem(self, req: Request) -> tuple[int, int, bytes]:
        key = (req.pool_id, req.object_id, req.index)
        if req.opcode == Opcode.HELLO:
            self.hellos.append(msgpack.unpackb(req.payload)["client"])
            greeting: dict[str, object] = {"server": "fake", "protocol": 1}
            if self.server_id is not None:
                greeting["server_id"] = self.server_id
            return Status.OK, 0, msgpack.packb(greeting)
        if req.opcode == Opcode.NEW_POOL:
            pool_id = len(self.pool_sizes)
            self.pool_sizes[pool_id] = decode_pool_flags(req.arg).page_size
            return Status.OK, pool_id, b""
        if req.opcode == Opcode.CONTROL:
            pools = [
                {
                    "pool_id": p,
                    "persistent": True,
                    "shared": False,
                    "page_size": size,
                    "codec": "lz4",
                    "pages": 0,
                }
                for p, size in self.pool_sizes.items()
            ]
            return (
                Status.OK,
                0,
                msgpack.packb({"pools": pools, "echo": msgpack.unpackb(req.payload)}),
            )
        if req.opcode == Opcode.PING:
            return Status.OK, 0, b""
        if req.pool_id not in self.pool_sizes:
            return Status.BAD_POOL, 0, msgpack.packb({"error": "no such pool"})
        if req.opcode == Opcode.PUT_PAGE:
            self.pages[key] = bytes(req.payload)
            return Status.OK, 0, b""
        if req.opcode == Opcode.GET_PAGE:
            page = self.pages.get(key)
            return (Status.MISS, 0, b"") if page is None else (Status.OK, 0, page)
        if req.opcode == Opcode.FLUSH_PAGE:
            return Status.OK, int(self.pages.pop(key, None) is not None), b""
        if req.opcode == Opcode.FLUSH_OBJECT:
            doomed = [k for k in self.pages if k[:2] == key[:2]]
            for k in doomed:
                del self.pages[k]
            return Status.OK, len(doomed), b""
        if req.opcode == Opcode.DESTROY_POOL:
            del self.pool_sizes[req.pool_id]
            return Status.OK, 0, b""
        return Status.BAD_OPCODE, 0, b""


def once(answer: object, opcode: Opcode = Opcode.PING) -> Callable[[Request], object]:
    """A hook that misbehaves on the first request with ``opcode`` only."""
    fired: list[Request] = []

    def hook(request: Request) -> object:
        if request.opcode == opcode and not fired:
            fired.append(request)
            return answer(request) if callable(answer) else answer
        return None

    return hook


def is_open(client: Client) -> bool:
    """``client.connected``, read afresh (mypy would narrow the property)."""
    return client.connected


@pytest.fixture
def server() -> Iterator[FakeTmemServer]:
    fake = FakeTmemServer()
    yield fake
    fake.close()


@pytest.fixture
def client(server: FakeTmemServer) -> Iterator[Client]:
    # No retries: these tests pin down what one failed attempt does (the
    # retry policy has its own tests in test_client_retry.py).
    with Client(server.address, client_name="unit-test", timeout=5.0, retry=None) as c:
        yield c


# --- blocking client ----------------------------------------------------------------


def test_lazy_connect_then_hello_first_and_a_round_trip(
    server: FakeTmemServer, client: Client
) -> None:
    assert not client.connected and server.connections == 0
    pool = client.new_pool(persistent=True, codec="lz4")
    assert server.opcodes[:2] == [Opcode.HELLO, Opcode.NEW_POOL]
    assert server.hellos == ["unit-test"] and client.server_info["server"] == "fake"
    assert pool.put(1 << 191, 7, page_for(1)) is True and pool.last_refusal is None
    assert pool.get(1 << 191, 7) == page_for(1)
    assert pool.get(1 << 191, 8) is None
    assert pool.flush(1 << 191, 7) is True and pool.flush(1 << 191, 7) is False
    pool.put_many([(5, i, page_for(i)) for i in range(3)])
    assert pool.flush_object(5) == 3
    client.ping()
    assert client.control("echo", x=1)["echo"] == {"cmd": "echo", "x": 1}
    again = client.pool(pool.pool_id)
    assert (again.pool_id, again.persistent, again.info.codec) == (0, True, "lz4")
    pool.destroy()
    with pytest.raises(BadPool):
        client.pool(pool.pool_id)
    assert server.connections == 1


def test_address_forms() -> None:
    assert Client("[::1]:7400").address == ("::1", 7400)
    assert Client(("localhost", 1)).address == ("localhost", 1)
    for bad in ("nohost", "host:", "host:99999", ":80"):
        with pytest.raises(ValueError):
            Client(bad)


def test_put_many_get_many_pipeline_with_a_bounded_window(
    server: FakeTmemServer, client: Client
) -> None:
    pool = client.new_pool()
    stored = pool.put_many([(9, i, page_for(i)) for i in range(PAGE_COUNT)])
    assert stored == [True] * PAGE_COUNT
    items = [(9, i) for i in range(PAGE_COUNT + 10)]
    pages = pool.get_many(items)
    assert pages == [page_for(i) for i in range(PAGE_COUNT)] + [None] * 10
    assert server.max_burst > 1  # requests did share reads: they were pipelined
    assert server.max_unanswered <= 256
    assert pool.put_many([]) == [] and pool.get_many([]) == []


def test_a_bad_item_stops_a_batch_before_anything_is_sent(
    server: FakeTmemServer, client: Client
) -> None:
    pool = client.new_pool()
    with pytest.raises(ValueError):
        pool.put_many([(1, 0, page_for(0)), (1, 1, b"short")])
    with pytest.raises(ValueError):
        pool.get_many([(1, 0), (1, -1)])
    assert Opcode.PUT_PAGE not in server.opcodes and Opcode.GET_PAGE not in server.opcodes


def test_command_errors_keep_the_connection(server: FakeTmemServer, client: Client) -> None:
    pool = client.new_pool()
    server.pool_sizes.clear()
    with pytest.raises(BadPool, match="no such pool"):
        pool.get(1, 1)
    with pytest.raises(BadPool):
        pool.get_many([(1, i) for i in range(5)])
    assert client.connected
    client.ping()
    assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"\x00" * 16, TmemProtocolError),  # garbled
        (lambda r: encode(Response(r.opcode, Status.OK, r.request_id + 1)), TmemProtocolError),
        (CLOSE, TmemConnectionError),
        (encode(Response(0xFF, Status.BAD_MAGIC, 0, 0, msgpack.packb({"error": "x"}))), BadMagic),
    ],
)
def test_an_error_while_reading_closes_and_the_next_call_reconnects(
    server: FakeTmemServer, client: Client, answer: object, error: type
) -> None:
    client.ping()
    server.hook = once(answer)
    with pytest.raises(error):
        client.ping()
    assert not client.connected
    client.ping()
    assert is_open(client)
    assert server.connections == 2 and server.hellos == ["unit-test"] * 2


def test_timeout_raises_closes_and_reconnects(server: FakeTmemServer) -> None:
    server.hook = once(SILENT)
    with Client(server.address, client_name="slow", timeout=1.0, retry=None) as client:
        with pytest.raises(TmemTimeout):
            client.ping()
        assert not client.connected
        client.ping()
    assert server.connections == 2


def test_refused_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        address = probe.getsockname()[:2]
    with pytest.raises(TmemConnectionError, match="cannot connect"):
        Client(address, client_name="x").ping()


def test_auth_failure_is_raised_and_not_connected(server: FakeTmemServer) -> None:
    body = msgpack.packb({"error": "wrong token"})
    server.hook = lambda r: (
        encode(Response(r.opcode, Status.AUTH_FAILED, r.request_id, 0, body))
        if r.opcode == Opcode.HELLO
        else None
    )
    client = Client(server.address, client_name="intruder", token="guess")
    with pytest.raises(AuthFailed, match="wrong token"):
        client.connect()
    assert not client.connected


def test_requests_use_no_pool_for_pool_less_ops(server: FakeTmemServer, client: Client) -> None:
    seen: list[Request] = []
    server.hook = lambda r: seen.append(r)
    client.ping()
    client.stats()
    assert [r.pool_id for r in seen] == [NO_POOL] * 3


# --- asyncio client (default loop and uvloop) -------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    runner = asyncio.run if request.param == "asyncio" else uvloop.run

    def run_checked(test: Callable[[], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            errors: list[dict[str, Any]] = []
            asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
            result = await test()
            await asyncio.sleep(0.01)  # let transports finish closing
            assert not errors, errors
            return result

        return runner(main())

    return run_checked


def test_async_round_trip_and_batches(server: FakeTmemServer, run: Any) -> None:
    async def body() -> None:
        async with AsyncClient(server.address, client_name="async-1") as client:
            pool = await client.new_pool(page_size=8192)
            page = b"p" * 8192
            assert await pool.put(1, 2, page) and await pool.get(1, 2) == page
            assert await pool.flush(1, 2) and await pool.flush_object(1) == 0
            items = [(3, i, page_for(i) * 2) for i in range(PAGE_COUNT)]
            assert await pool.put_many(items) == [True] * PAGE_COUNT
            got = await pool.get_many([(3, i) for i in range(PAGE_COUNT)])
            assert got == [page_for(i) * 2 for i in range(PAGE_COUNT)]
            assert (await client.pool(pool.pool_id)).page_size == 8192
            await client.ping()
            await pool.destroy()

    run(body)
    assert server.connections == 1 and server.max_burst > 1
    assert server.max_unanswered <= 128  # window_for(8192)


def test_async_concurrent_callers_share_one_pipelined_connection(
    server: FakeTmemServer, run: Any
) -> None:
    async def body() -> list[bytes | None]:
        async with AsyncClient(server.address, client_name="async-2") as client:
            pool = await client.new_pool()
            await asyncio.gather(*(pool.put(4, i, page_for(i)) for i in range(200)))
            return await asyncio.gather(*(pool.get(4, i) for i in range(200)))

    assert run(body) == [page_for(i) for i in range(200)]
    assert server.connections == 1 and server.max_burst > 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [(b"\xa8" * 16, TmemProtocolError), (CLOSE, TmemConnectionError), (SILENT, TmemTimeout)],
)
def test_async_reading_errors_close_and_reconnect(
    server: FakeTmemServer, run: Any, answer: object, error: type
) -> None:
    async def body() -> None:
        async with AsyncClient(
            server.address, client_name="async-3", timeout=1.0, retry=None
        ) as client:
            await client.ping()
            server.hook = once(answer)
            with pytest.raises(error):
                await client.ping()
            assert not client.connected
            await client.ping()

    run(body)
    assert server.connections == 2 and server.hellos == ["async-3"] * 2


def test_async_cancelled_caller_leaves_the_stream_in_step(server: FakeTmemServer, run: Any) -> None:
    gate = threading.Event()

    def slow_first_get(request: Request) -> None:
        if request.opcode == Opcode.GET_PAGE and request.index == 0:
            gate.wait(5)
        return None

    async def body() -> bytes | None:
        async with AsyncClient(server.address, client_name="async-4") as client:
            pool = await client.new_pool()
            await pool.put(1, 0, page_for(0))
            await pool.put(1, 1, page_for(1))
            server.hook = slow_first_get
            task = asyncio.ensure_future(pool.get(1, 0, exclusive=False))
            await asyncio.sleep(0.05)
            task.cancel()
            gate.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await pool.get(1, 1)

    assert run(body) == page_for(1)
    assert server.connections == 1


def test_async_refused_connection(run: Any) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        address = probe.getsockname()[:2]

    async def body() -> None:
        with pytest.raises(TmemConnectionError, match="cannot connect"):
            await AsyncClient(address, client_name="x").connect()

    run(body)
