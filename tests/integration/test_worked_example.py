"""PROTOCOL.md section 14, replayed against the real daemon byte for byte,
and the TIMEOUT vector against what the daemon sends on a stalled frame.

The example is parsed out of PROTOCOL.md itself (``worked_example_blocks``):
each client block is sent as it stands, and each server block must be
exactly what comes back.  Two things differ per run and are taken from the
reply instead: the HELLO greeting's ``server_id`` (random per daemon
instance, PROTOCOL.md section 11.2) is spliced into the expected bytes, and
the elided pages are one test page in both directions.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from tmem.proto import NO_OPCODE, Opcode, Status

from ..conftest import Daemon
from ..unit.test_proto_spec import PROTO_DIR, worked_example_blocks
from .rawwire import READ_TIMEOUT_S, RawConn

PAGE = bytes(range(256)) * 16
#: The greeting's ``server_id`` entry: msgpack key, then a 32-byte str header.
SERVER_ID_KEY = b"\xa9server_id\xd9\x20"
SERVER_ID_BYTES = 32


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def with_server_id(expected: bytes, got: bytes) -> bytes:
    """``expected`` with its greeting's ``server_id`` replaced by the one in ``got``."""
    at = expected.find(SERVER_ID_KEY)
    if at < 0:
        return expected
    start = at + len(SERVER_ID_KEY)
    end = start + SERVER_ID_BYTES
    assert got[at:start] == SERVER_ID_KEY, got
    return expected[:start] + got[start:end] + expected[end:]


def test_the_worked_example_is_what_the_daemon_sends(daemon: Daemon) -> None:
    blocks = worked_example_blocks(PAGE)
    assert [direction for direction, _ in blocks] == ["→", "←"] * 5
    with RawConn((daemon.host, daemon.port)) as conn:
        for direction, data in blocks:
            if direction == "→":
                conn.send_raw(data)
                continue
            got = recv_exactly(conn.sock, len(data))
            assert got == with_server_id(data, got), (data.hex(" "), got.hex(" "))
        assert conn.is_closed_by_peer()  # after the framing error


def vector_bytes(name: str) -> bytes:
    text = (PROTO_DIR / "vectors" / f"{name}.hex").read_text()
    return bytes.fromhex("".join(line.split("#")[0] for line in text.splitlines()))


def test_the_timeout_vector_is_what_the_daemon_sends(
    daemon_factory: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon = daemon_factory("--header-timeout", "0.5")
    expected = vector_bytes("resp_err_timeout")
    assert expected[2:4] == bytes((NO_OPCODE, Status.TIMEOUT))
    with RawConn((daemon.host, daemon.port)) as conn:
        conn.send_raw(bytes((0xA7, 1, Opcode.PING)))  # a header begun, never finished
        start = time.monotonic()
        got = recv_exactly(conn.sock, len(expected))
        assert time.monotonic() - start < READ_TIMEOUT_S
        assert got == expected, got.hex(" ")
        assert conn.is_closed_by_peer()
