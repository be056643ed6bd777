"""SIGTERM drains: the daemon stops accepting, answers what it read, answers
BUSY to what comes after for at most ``--drain-timeout`` seconds, then
closes; a client sees its answers or ``ServerBusy``, whole frames and then
the end of the stream, never a reset in the middle of a reply; the daemon
exits 0 within the grace period."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest

from tmem.client import Client, ServerBusy
from tmem.proto import Opcode, Request, Status, encode

from ..conftest import Daemon
from .rawwire import RawConn

PAGE = bytes(range(256)) * 16
DRAIN_TIMEOUT_S = 3.0
#: Exit may lag the grace period by the loop's shutdown and a loaded box.
EXIT_SLACK_S = 3.0
PIPELINED = 200


def test_sigterm_answers_busy_then_closes(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory("--drain-timeout", str(DRAIN_TIMEOUT_S))
    outcomes: list[str] = []
    started = threading.Event()

    def client_activity() -> None:
        with Client(daemon.address, client_name="worker") as client:
            pool = client.new_pool(persistent=True)
            for i in range(1_000_000):
                try:
                    assert pool.put(1, i % 64, PAGE)
                    assert pool.get(1, i % 64) == PAGE
                except ServerBusy:
                    outcomes.append("busy")
                    return  # a real client retries elsewhere or later
                except Exception as exc:
                    outcomes.append(repr(exc))
                    return
                started.set()

    worker = threading.Thread(target=client_activity)
    worker.start()
    pipeliner = RawConn((daemon.host, daemon.port))
    assert pipeliner.hello("pipeliner").status == Status.OK
    assert started.wait(10.0)
    daemon.proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    worker.join(timeout=DRAIN_TIMEOUT_S + EXIT_SLACK_S)
    assert outcomes == ["busy"], outcomes
    # A pipelined burst sent during the drain: every frame answered whole, BUSY.
    ids = [pipeliner.send(Opcode.PING) for _ in range(PIPELINED)]
    for rid in ids:
        resp = pipeliner.recv()
        assert (resp.request_id, resp.status) == (rid, Status.BUSY)
    # New connections are refused: the daemon stopped listening.
    with pytest.raises(OSError):
        socket.create_connection((daemon.host, daemon.port), timeout=1.0).close()
    # The pipeliner stays connected: the daemon closes it at the end of the
    # grace period, cleanly (EOF, not a reset), and exits 0.
    pipeliner.sock.settimeout(DRAIN_TIMEOUT_S + EXIT_SLACK_S)
    assert pipeliner.sock.recv(1) == b""
    assert daemon.proc.wait(timeout=DRAIN_TIMEOUT_S + EXIT_SLACK_S) == 0
    assert time.monotonic() - t0 <= DRAIN_TIMEOUT_S + EXIT_SLACK_S
    pipeliner.close()


def test_sigterm_exits_at_once_when_clients_leave(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory("--drain-timeout", "30")
    with Client(daemon.address, client_name="brief") as client:
        client.ping()
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 10


def test_sigterm_with_a_client_that_stopped_reading(
    daemon_factory: Callable[..., Daemon],
) -> None:
    """Replies a client never reads cannot hold the daemon past the grace period."""
    daemon = daemon_factory("--drain-timeout", "1")
    page = bytes(range(256)) * 256
    with Client(daemon.address, client_name="stuck") as client:
        pool = client.new_pool(persistent=True, codec="none", page_size=len(page))
        assert pool.put(1, 0, page)
        stuck = RawConn((daemon.host, daemon.port))
        assert stuck.hello("stuck").status == Status.OK
        burst = b"".join(
            encode(Request(Opcode.GET_PAGE, request_id=i, pool_id=pool.pool_id, object_id=1))
            for i in range(2000)
        )
        stuck.send_raw(burst)  # 2000 replies of 64 KiB: far more than any buffer
    time.sleep(0.5)
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(timeout=1 + EXIT_SLACK_S + 2) == 0
    assert time.monotonic() - t0 <= 1 + EXIT_SLACK_S + 2
    stuck.close()


def test_requests_read_before_sigterm_are_served(daemon_factory: Callable[..., Daemon]) -> None:
    """GETs waiting behind replies their client had not read yet when SIGTERM
    came were read before it: they are served, and only later requests get BUSY."""
    daemon = daemon_factory("--drain-timeout", "10")
    page = bytes(range(256)) * 256
    gets = 500  # 500 replies of 64 KiB: far past the reply backlog
    with Client(daemon.address, client_name="slow") as client:
        pool = client.new_pool(persistent=True, codec="none", page_size=len(page))
        assert pool.put(1, 0, page)
        slow = RawConn((daemon.host, daemon.port))
        assert slow.hello("slow").status == Status.OK
        slow.send_raw(
            b"".join(
                encode(Request(Opcode.GET_PAGE, request_id=i, pool_id=pool.pool_id, object_id=1))
                for i in range(gets)
            )
        )
    time.sleep(0.5)
    daemon.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    for i in range(gets):
        resp = slow.recv()
        assert (resp.request_id, resp.status, resp.payload == page) == (i, Status.OK, True)
    assert slow.call(Opcode.PING).status == Status.BUSY
    slow.close()
    assert daemon.proc.wait(timeout=10) == 0
