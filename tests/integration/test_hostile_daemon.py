"""Hostile peers against the real daemon (docs/multi-tenancy.md, bad input): wrong or
missing credentials, ops before HELLO, a flood beside a quiet client,
slow-loris senders and thousands of connections opened and dropped.

Each case checks three things: the bad peer gets a clear error (or is cut
off), nothing anyone stored is lost, and the daemon keeps serving.  Every
loop is bounded by a count, and every wait by a socket timeout or a
bounded poll; latencies are printed (run with ``-s``), never asserted.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from tmem.client import AuthFailed, Client
from tmem.proto import Opcode, Request, ResponseDecoder, Status, encode

from ..conftest import Daemon
from . import authfile
from .rawwire import RawConn, error_of

PAGE = 4096
TOKENS = {"quiet": "q-token", "flood": "f-token", "web": "w-token", "ops": "o-token"}
#: Flood bounds: pages pushed (8x the arena below) and seconds, whichever ends first.
FLOOD_PAGES = 8192
FLOOD_MAX_S = 20.0
FLOOD_BATCH = 64
#: The quiet client's work during the flood: at least and at most this many rounds.
QUIET_ROUNDS_MIN = 50
QUIET_ROUNDS_MAX = 3000
QUIET_EPHEMERAL_PAGES = 64
QUIET_PERSISTENT_PAGES = 32
#: Bounded polls: 0.1 s apart, at most this many (10 s).
POLLS = 100
#: Connections for the churn test: one by one, then in bursts.
SEQUENTIAL_CONNECTIONS = 1000
BURSTS, BURST_SIZE = 5, 200


def write_auth(tmp_path: Path) -> Path:
    return authfile.write_auth(tmp_path, TOKENS)


def raw_page(seed: int) -> bytes:
    return random.Random(seed).randbytes(PAGE)


def connect(daemon: Daemon, name: str, timeout: float = 10.0) -> Client:
    return Client(daemon.address, client_name=name, token=TOKENS[name], timeout=timeout)


@pytest.fixture
def start(daemon_factory: Callable[..., Daemon], tmp_path: Path) -> Callable[..., Daemon]:
    auth = str(write_auth(tmp_path))
    return lambda *flags: daemon_factory("--auth-file", auth, *flags)


# --- credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hello",
    [
        {"client": "web", "token": "wrong"},
        {"client": "web"},
        {"client": "web", "token": ""},
        {"client": "nobody", "token": "w-token"},
        {"client": "ops", "token": "w-token"},
        {"client": "web", "token": "w-token" + "\x00"},
    ],
)
def test_wrong_credentials_get_auth_failed_and_the_door(
    start: Callable[..., Daemon], hello: dict[str, str]
) -> None:
    daemon = start()
    with RawConn((daemon.host, daemon.port)) as conn:
        resp = conn.call(Opcode.HELLO, payload=msgpack.packb(hello))
        assert resp.status == Status.AUTH_FAILED, error_of(resp)
        assert msgpack.unpackb(resp.payload)["error"] == "unknown client or wrong token"
        assert conn.is_closed_by_peer()
    with connect(daemon, "web") as web:
        web.ping()


def test_every_op_before_hello_is_refused_and_reveals_nothing(start: Callable[..., Daemon]) -> None:
    daemon = start()
    with connect(daemon, "web") as web:
        pool = web.new_pool(persistent=True)
        assert pool.put(1, 1, raw_page(1))
    with RawConn((daemon.host, daemon.port)) as conn:
        for op in (
            Opcode.PUT_PAGE,
            Opcode.GET_PAGE,
            Opcode.FLUSH_PAGE,
            Opcode.FLUSH_OBJECT,
            Opcode.NEW_POOL,
            Opcode.DESTROY_POOL,
            Opcode.CONTROL,
        ):
            payload = raw_page(2) if op == Opcode.PUT_PAGE else b""
            resp = conn.call(op, pool_id=0, object_id=1, index=1, payload=payload)
            assert resp.status == Status.NOT_AUTHENTICATED, (op, error_of(resp))
        assert conn.call(Opcode.PING).status == Status.OK  # the connection lives
    with connect(daemon, "web") as web:
        assert web.pool(0).get(1, 1) == raw_page(1)


def test_a_second_hello_cannot_change_identity(start: Callable[..., Daemon]) -> None:
    daemon = start()
    with RawConn((daemon.host, daemon.port)) as conn:
        assert conn.hello("web", TOKENS["web"]).status == Status.OK
        resp = conn.hello("ops", TOKENS["ops"])
        assert resp.status == Status.BAD_ARGUMENT, error_of(resp)
        body = msgpack.packb({"cmd": "list_clients"})
        assert conn.call(Opcode.CONTROL, payload=body).status == Status.FORBIDDEN


def test_auth_failed_through_the_client_library(start: Callable[..., Daemon]) -> None:
    daemon = start()
    with (
        Client(daemon.address, client_name="web", token="nope") as client,
        pytest.raises(AuthFailed),
    ):
        client.ping()


# --- a flood beside a quiet client -----------------------------------------------------------


def flood(daemon: Daemon, started: threading.Event, errors: list[BaseException]) -> None:
    try:
        with connect(daemon, "flood", timeout=30) as client:
            pool = client.new_pool()
            deadline = time.monotonic() + FLOOD_MAX_S
            for base in range(0, FLOOD_PAGES, FLOOD_BATCH):
                pool.put_many([(0, base + i, raw_page(10_000 + base + i)) for i in range(64)])
                started.set()
                if time.monotonic() > deadline:
                    break
    except BaseException as exc:  # re-raised by the test
        errors.append(exc)
    finally:
        started.set()


def test_a_flood_leaves_a_quiet_client_correct(start: Callable[..., Daemon]) -> None:
    daemon = start("--memory", "4MiB")
    with connect(daemon, "quiet") as quiet:
        cache, swap = quiet.new_pool(), quiet.new_pool(persistent=True)
        assert all(cache.put_many([(0, i, raw_page(i)) for i in range(QUIET_EPHEMERAL_PAGES)]))
        assert all(
            swap.put_many([(0, i, raw_page(500 + i)) for i in range(QUIET_PERSISTENT_PAGES)])
        )
        started, errors = threading.Event(), list[BaseException]()
        flooder = threading.Thread(target=flood, args=(daemon, started, errors))
        flooder.start()
        started.wait(timeout=30)
        latencies, rounds, misses = [], 0, 0
        while (flooder.is_alive() or rounds < QUIET_ROUNDS_MIN) and rounds < QUIET_ROUNDS_MAX:
            data = raw_page(100_000 + rounds)
            t0 = time.perf_counter()
            stored = cache.put(1, rounds % 16, data)
            got = cache.get(1, rounds % 16, exclusive=False)
            kept = swap.get(0, rounds % QUIET_PERSISTENT_PAGES)
            latencies.append(time.perf_counter() - t0)
            assert got == data or (got is None and not stored), "wrong bytes for an ephemeral get"
            misses += got is None
            assert kept == raw_page(500 + rounds % QUIET_PERSISTENT_PAGES), "persistent page lost"
            rounds += 1
        flooder.join(timeout=60)
        assert not flooder.is_alive() and not errors, errors
        # Fairness: the flood evicted only its own pages; the quiet ones all stayed.
        pages = cache.get_many([(0, i) for i in range(QUIET_EPHEMERAL_PAGES)], exclusive=False)
        assert pages == [raw_page(i) for i in range(QUIET_EPHEMERAL_PAGES)]
        with connect(daemon, "ops") as ops:
            rows = {c["name"]: c for c in ops.control("list_clients")["clients"]}
        assert rows["flood"]["counters"]["pages_evicted"] > 0
        assert rows["quiet"]["counters"]["pages_evicted"] == 0
    ms = sorted(x * 1e3 for x in latencies)
    print(
        f"\nquiet rounds during the flood: {rounds}, misses {misses}; round trip of "
        f"put+get+get: median {statistics.median(ms):.2f} ms, "
        f"p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms, max {ms[-1]:.2f} ms"
    )


# --- slow senders ------------------------------------------------------------------------------


def closed_within(sock: socket.socket, rounds: int, step: Callable[[], None]) -> bool:
    """Run ``step`` up to ``rounds`` times, stopping as soon as the peer closes."""
    decoder = ResponseDecoder()
    for _ in range(rounds):
        readable, _, _ = select.select([sock], [], [], 0.25)
        if readable:
            try:
                data = sock.recv(1 << 16)
            except ConnectionResetError:
                return True
            if not data:
                return True
            decoder.feed(data)
            frame = decoder.next_frame()
            assert getattr(frame, "status", Status.TIMEOUT) == Status.TIMEOUT
            continue
        try:
            step()
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


@pytest.mark.parametrize("kind", ["half_header", "header_without_payload", "dribble"])
def test_slow_loris_is_cut_off(start: Callable[..., Daemon], kind: str) -> None:
    daemon = start("--header-timeout", "1")
    frame = encode(Request(Opcode.PING, request_id=9))
    put = encode(Request(Opcode.PUT_PAGE, request_id=9, pool_id=0, payload=raw_page(0)))
    with connect(daemon, "web") as web, socket.create_connection((daemon.host, daemon.port)) as s:
        pool = web.new_pool(persistent=True)
        if kind == "half_header":
            s.sendall(frame[:20])
            step: Callable[[], None] = web.ping
        elif kind == "header_without_payload":
            s.sendall(put[:100])
            step = web.ping
        else:
            dribble = iter(put)
            step = lambda: s.sendall(bytes([next(dribble)]))  # noqa: E731 - one byte per round
        # At most 60 rounds of 0.25 s (15 s); the daemon cuts the peer off after ~1-1.5 s.
        assert closed_within(s, 60, step), "the slow sender was never cut off"
        assert pool.put(0, 0, raw_page(1)) and pool.get(0, 0) == raw_page(1)


# --- connection churn ------------------------------------------------------------------------


def open_sockets(daemon: Daemon) -> int:
    fd_dir = f"/proc/{daemon.proc.pid}/fd"
    count = 0
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            count += os.readlink(f"{fd_dir}/{fd}").startswith("socket:")
    return count


def hello_frame(name: str) -> bytes:
    body = msgpack.packb({"client": name, "token": TOKENS[name]})
    return encode(Request(Opcode.HELLO, request_id=1, payload=body))


def churn_one(address: tuple[str, int], i: int) -> None:
    """One short-lived connection, in one of four manners."""
    with socket.create_connection(address, timeout=10) as sock:
        if i % 4 == 1:
            sock.sendall(hello_frame("web"))
            assert sock.recv(1 << 16)
        elif i % 4 == 2:
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        elif i % 4 == 3:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_thousands_of_connections_opened_and_dropped(start: Callable[..., Daemon]) -> None:
    daemon = start("--memory", "8MiB")
    address = (daemon.host, daemon.port)
    with connect(daemon, "quiet") as quiet:
        pool = quiet.new_pool(persistent=True)
        assert all(pool.put_many([(0, i, raw_page(i)) for i in range(32)]))
    baseline = open_sockets(daemon)
    for i in range(SEQUENTIAL_CONNECTIONS):
        churn_one(address, i)
    for burst in range(BURSTS):
        socks = [socket.create_connection(address, timeout=10) for _ in range(BURST_SIZE)]
        for i, sock in enumerate(socks):
            if i % 2:
                sock.sendall(hello_frame("web"))
        for i, sock in enumerate(socks):
            if i % 2:
                assert sock.recv(1 << 16), f"no HELLO reply in burst {burst}"
            if i % 3 == 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
    for _ in range(POLLS):
        if open_sockets(daemon) <= baseline:
            break
        time.sleep(0.1)
    assert open_sockets(daemon) <= baseline, "the daemon kept connections open"
    with connect(daemon, "ops") as ops, connect(daemon, "quiet") as quiet:
        rows = {c["name"]: c for c in ops.control("list_clients")["clients"]}
        assert rows["web"]["connections"] == 0
        assert quiet.pool(0).get_many([(0, i) for i in range(32)]) == [
            raw_page(i) for i in range(32)
        ]


def test_connections_over_the_limit_are_turned_away(start: Callable[..., Daemon]) -> None:
    daemon = start("--max-connections", "20")
    address = (daemon.host, daemon.port)
    held = [RawConn(address) for _ in range(20)]
    try:
        for conn in held:
            assert conn.hello("web", TOKENS["web"]).status == Status.OK
        with RawConn(address) as extra:
            # The daemon answers BUSY (a frame not tied to any request) and closes.
            assert extra.recv().status == Status.BUSY
            assert extra.is_closed_by_peer()
        assert held[0].call(Opcode.PING).status == Status.OK
    finally:
        for conn in held:
            conn.close()
    for _ in range(POLLS):
        with RawConn(address) as conn:
            if conn.hello("quiet", TOKENS["quiet"]).status == Status.OK:
                break
        time.sleep(0.1)
    with connect(daemon, "quiet") as quiet:
        quiet.ping()
