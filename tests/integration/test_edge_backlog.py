"""Clients that pipeline GETs and never read cannot grow the daemon: the
replies waiting for them stay within the reply backlog (``tmemd.server``:
``WRITE_BUFFER_HIGH_BYTES`` per connection, ``MAX_REPLY_BACKLOG_BYTES`` in
all, plus one frame per connection), whatever the page size, and every reply
still arrives, in order and whole, once they read."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from tmem.client import Client
from tmem.proto import RESPONSE_HEADER_BYTES, Opcode, Request, Status, encode
from tmemd.server import MAX_REPLY_BACKLOG_BYTES

from ..conftest import Daemon
from .rawwire import RawConn

PAGE_BYTES = 64 << 10
PAGES = 8
CONNECTIONS = 4
GETS_PER_CONNECTION = 2000
#: RSS the test allows beyond the backlog: allocator slack and the decoders'
#: unread requests (a few hundred KiB per connection).
SLACK_BYTES = 4 << 20
#: What the allocator keeps of the replies: freed reply buffers are reused,
#: not returned, so RSS grows by up to twice the bytes that were queued
#: (deploy/README.md, "Memory").
ALLOCATOR_FACTOR = 2
#: Time for the daemon to answer what it read (it does so at once).
SETTLE_S = 1.0


def _pipeline(conn: RawConn, pool_id: int) -> None:
    for start in range(0, GETS_PER_CONNECTION, 200):
        conn.send_raw(
            b"".join(
                encode(
                    Request(
                        Opcode.GET_PAGE, request_id=i, pool_id=pool_id, object_id=1, index=i % PAGES
                    )
                )
                for i in range(start, start + 200)
            )
        )


def test_unread_replies_stay_within_the_backlog(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory("--memory", "64MiB", "--idle-timeout", "120")
    pages = [os.urandom(PAGE_BYTES) for _ in range(PAGES)]
    with Client(daemon.address, client_name="reader") as client:
        pool = client.new_pool(persistent=True, codec="none", page_size=PAGE_BYTES)
        for index, page in enumerate(pages):
            assert pool.put(1, index, page)
        conns = [RawConn((daemon.host, daemon.port)) for _ in range(CONNECTIONS)]
        for conn in conns:
            assert conn.hello("reader").status == Status.OK
            conn.sock.settimeout(60.0)  # a sender blocks while the daemon holds back
        before = daemon.rss_bytes()
        senders = [threading.Thread(target=_pipeline, args=(c, pool.pool_id)) for c in conns]
        for thread in senders:
            thread.start()
        # The requests are small enough for the sockets' buffers: the senders
        # finish, and the daemon has read every one within a moment.
        for thread in senders:
            thread.join(timeout=10.0)
        time.sleep(SETTLE_S)
        during = daemon.rss_bytes()
        frame = RESPONSE_HEADER_BYTES + PAGE_BYTES
        bound = ALLOCATOR_FACTOR * (MAX_REPLY_BACKLOG_BYTES + CONNECTIONS * frame) + SLACK_BYTES
        assert during - before <= bound, (during - before, bound)
        # A reading client is not starved by the stalled ones.
        assert pool.get(1, 0) == pages[0]
        for conn in conns:
            for i in range(GETS_PER_CONNECTION):
                resp = conn.recv()
                assert (resp.request_id, resp.status) == (i, Status.OK)
                assert resp.payload == pages[i % PAGES]
            conn.close()
        for thread in senders:
            thread.join()
