"""Connections without HELLO cannot lock authenticated clients out: they are
closed ``--hello-timeout`` seconds after connecting whatever they send (PING
does not extend the deadline), at most ``--max-unauthenticated`` of them are
kept (the oldest makes room for a new one), and a real client connects and
works through a flood of them."""

from __future__ import annotations

import time
from collections.abc import Callable

from tmem.client import Client
from tmem.proto import Opcode, Status

from ..conftest import Daemon
from .rawwire import RawConn

PAGE = bytes(range(256)) * 16
FLOOD = 20
HELLO_TIMEOUT_S = 2.0
#: The daemon's sweeper enforces timeouts with up to half a second of slack;
#: a loaded CI box adds more.
ENFORCE_SLACK_S = 4.0
#: Time for the daemon to accept connections the kernel has completed.
ACCEPT_S = 0.5


def pings(conn: RawConn) -> bool:
    """True if ``conn`` still answers a PING (False once the daemon closed it)."""
    try:
        rid = conn.send(Opcode.PING)
        resp = conn.recv()
    except OSError:
        return False
    return resp.request_id == rid and resp.status == Status.OK


def test_ping_only_flood_cannot_lock_out_a_client(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory(
        "--max-connections",
        "8",
        "--max-unauthenticated",
        "4",
        "--hello-timeout",
        str(HELLO_TIMEOUT_S),
    )
    flood = [RawConn((daemon.host, daemon.port)) for _ in range(FLOOD)]
    time.sleep(ACCEPT_S)  # let the daemon accept them all (the kernel already did)
    alive = [conn for conn in flood if pings(conn)]
    assert 0 < len(alive) <= 4, len(alive)
    with Client(daemon.address, client_name="real") as client:
        pool = client.new_pool()
        assert pool.put(1, 0, PAGE)
        # PINGs every 0.2 s do not keep a socket without HELLO open.
        deadline = time.monotonic() + HELLO_TIMEOUT_S + ENFORCE_SLACK_S
        while alive and time.monotonic() < deadline:
            alive = [conn for conn in alive if pings(conn)]
            time.sleep(0.2)
        assert not alive, f"{len(alive)} sockets without HELLO outlived --hello-timeout"
        # The authenticated client is past any HELLO deadline and still served.
        assert pool.get(1, 0) == PAGE
        client.ping()
    for conn in flood:
        conn.close()
    assert "no HELLO in time" in daemon.log()
    assert "too many connections without HELLO" in daemon.log()
