"""A slow reader: a peer that asks for pages and never reads the replies.

A raw connection says HELLO, stores one page and pipelines GETs of it
(each reply a 4 KiB page) without reading a byte, until the daemon stops
reading from it (its backpressure: past ``WRITE_BUFFER_HIGH_BYTES`` of
queued replies, server.py) and the kernel's buffers are full, or
``REQUESTS`` were sent.  Meanwhile a well-behaved client keeps putting and
getting its own pages.  Reported: the daemon's RSS growth while the slow
reader holds its replies (bounded by the write buffer, not by what was
asked), and the other client's operations and slowest one (it must be
served all along, every page right).
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass

import msgpack

from tmem.client import Client
from tmem.proto import Opcode, PoolSpec, Request, encode, encode_pool_flags

from ._harness import DaemonProcess

__all__ = ["RSS_GROWTH_BOUND_BYTES", "SlowTotals", "slow_reader"]

PAGE = 4096
#: GETs the slow reader sends at most: 256 MiB of replies asked for.
REQUESTS = 65_536
#: Frames per ``send``; a send that blocks this long means the daemon stopped reading.
SEND_BATCH = 256
SEND_TIMEOUT_S = 2.0
#: The well-behaved client's work while the slow reader holds its replies.
OTHER_CLIENT_S = 3.0


#: The slow reader's page: any 4 KiB that is not same-filled.
_PAGE_BYTES = bytes(range(256)) * (PAGE // 256)
#: RSS the daemon may grow by while the slow reader holds its replies: the
#: write buffer's high mark (4 MiB) plus one read burst's replies (a 64 KiB
#: read of GETs asks for ~5.4 MiB) and the socket buffers, with margin.
RSS_GROWTH_BOUND_BYTES = 32 << 20


@dataclass
class SlowTotals:
    requests_sent: int = 0
    replies_asked_bytes: int = 0
    rss_growth_bytes: int = 0
    other_ops: int = 0
    other_wrong: int = 0
    other_slowest_s: float = 0.0


def _stall(address: tuple[str, int], totals: SlowTotals) -> socket.socket:
    sock = socket.create_connection(address, timeout=SEND_TIMEOUT_S)
    hello = msgpack.packb({"client": "slow", "token": None})
    flags = encode_pool_flags(PoolSpec(persistent=True))
    sock.sendall(
        encode(Request(Opcode.HELLO, request_id=1, payload=hello))
        + encode(Request(Opcode.NEW_POOL, request_id=2, arg=flags))
        + encode(Request(Opcode.PUT_PAGE, request_id=3, payload=_PAGE_BYTES))
    )
    get = encode(Request(Opcode.GET_PAGE, request_id=4, flags=2))
    try:
        while totals.requests_sent < REQUESTS:
            sock.sendall(get * SEND_BATCH)
            totals.requests_sent += SEND_BATCH
    except TimeoutError:
        pass  # the daemon stopped reading: its backpressure works
    totals.replies_asked_bytes = totals.requests_sent * PAGE
    return sock


def slow_reader(daemon: DaemonProcess, seed: int) -> SlowTotals:
    totals = SlowTotals()
    rng = random.Random(seed)
    base = daemon.rss_bytes()
    sock = _stall(("127.0.0.1", daemon.port), totals)
    try:
        with Client(daemon.address, client_name="polite", timeout=30.0) as client:
            pool = client.new_pool(persistent=True)
            end = time.monotonic() + OTHER_CLIENT_S
            while time.monotonic() < end:
                data = rng.randbytes(PAGE)
                t0 = time.monotonic()
                pool.put(0, totals.other_ops % 64, data)
                got = pool.get(0, totals.other_ops % 64)
                totals.other_slowest_s = max(totals.other_slowest_s, time.monotonic() - t0)
                totals.other_wrong += got != data
                totals.other_ops += 1
        totals.rss_growth_bytes = max(0, daemon.rss_bytes() - base)
    finally:
        sock.close()
    return totals
