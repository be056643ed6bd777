"""Daemon RSS while clients pipeline GETs and never read the replies.

Starts ``tmemd`` on loopback, stores a few incompressible pages in one
persistent pool per page size, then opens ``--connections`` raw sockets that
each send ``--gets`` GET_PAGE frames without reading a byte back.  Prints
the daemon's RSS (VmRSS from /proc) before and while the replies wait, and
then reads every reply on every connection to check that each one still
arrives, in order, with the right bytes.  The reply bytes the daemon may
hold are bounded (deploy/README.md, "Memory"): the growth printed here
should stay within that bound whatever the page size.

    .venv/bin/python bench/reply_backlog.py --page-sizes 4096 65536
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import threading
import time
from pathlib import Path

from tmem.bench._peers import start_server
from tmem.bench._proc import rss_bytes
from tmem.client import Client
from tmem.proto import Opcode, Request, Response, ResponseDecoder, Status, encode
from tmemd.config import parse_size

#: Pages stored per pool; GETs cycle over them.
PAGES = 16
#: Frames per sendall: a pipelining client's burst.
BURST_FRAMES = 256


def hello(sock: socket.socket, decoder: ResponseDecoder) -> None:
    sock.sendall(encode(Request(Opcode.HELLO, request_id=0, payload=b"\x81\xa6client\xa5bench")))
    if read_reply(sock, decoder).status != Status.OK:
        raise RuntimeError("HELLO refused")


def read_reply(sock: socket.socket, decoder: ResponseDecoder) -> Response:
    while True:
        frame = decoder.next_frame()
        if isinstance(frame, Response):
            return frame
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError("daemon closed the connection")
        decoder.feed(data)


def pipeline_gets(sock: socket.socket, pool_id: int, gets: int) -> None:
    """Send ``gets`` GETs without reading (blocks while the daemon stops reading)."""
    for start in range(0, gets, BURST_FRAMES):
        sock.sendall(
            b"".join(
                encode(
                    Request(
                        Opcode.GET_PAGE,
                        request_id=i + 1,
                        pool_id=pool_id,
                        object_id=1,
                        index=i % PAGES,
                    )
                )
                for i in range(start, min(start + BURST_FRAMES, gets))
            )
        )


def check_replies(
    sock: socket.socket, decoder: ResponseDecoder, gets: int, pages: list[bytes]
) -> None:
    for expect in range(1, gets + 1):
        resp = read_reply(sock, decoder)
        if resp.request_id != expect or resp.payload != pages[(expect - 1) % PAGES]:
            raise RuntimeError(f"wrong reply {resp}, expected request {expect}")


def run(page_size: int, args: argparse.Namespace, workdir: Path) -> None:
    daemon = start_server("tmemd", workdir, parse_size(args.memory), codec="none")
    proc, port = daemon.proc, daemon.port
    try:
        pages = [os.urandom(page_size) for _ in range(PAGES)]
        with Client(("127.0.0.1", port), client_name="bench") as client:
            pool = client.new_pool(persistent=True, codec="none", page_size=page_size)
            for index, page in enumerate(pages):
                pool.put(1, index, page)
            socks = []
            decoders = [ResponseDecoder() for _ in range(args.connections)]
            for decoder in decoders:
                sock = socket.create_connection(("127.0.0.1", port))
                hello(sock, decoder)
                socks.append(sock)
            time.sleep(0.5)
            idle = rss_bytes(proc.pid)
            t0 = time.monotonic()
            senders = [
                threading.Thread(target=pipeline_gets, args=(sock, pool.pool_id, args.gets))
                for sock in socks
            ]
            for thread in senders:
                thread.start()
            time.sleep(args.settle)
            stalled = rss_bytes(proc.pid)
            for sock, decoder in zip(socks, decoders, strict=True):
                check_replies(sock, decoder, args.gets, pages)
                sock.close()
            for thread in senders:
                thread.join()
            after = rss_bytes(proc.pid)
            elapsed = time.monotonic() - t0
        print(
            f"page {page_size:>6} B  connections {args.connections}  "
            f"GETs sent {args.gets * args.connections:>7}  RSS idle {idle / 2**20:7.1f} MiB  "
            f"with unread replies "
            f"{stalled / 2**20:7.1f} MiB  growth {(stalled - idle) / 2**20:7.1f} MiB  "
            f"every reply then read and checked ({elapsed:.1f} s), "
            f"RSS then {after / 2**20:.1f} MiB",
            flush=True,
        )
    finally:
        daemon.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--page-sizes", type=int, nargs="+", default=[4096, 65536])
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--gets", type=int, default=5000, help="GETs per connection")
    p.add_argument("--memory", default="256MiB")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before reading RSS")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for page_size in args.page_sizes:
            run(page_size, args, Path(tmp))


if __name__ == "__main__":
    main()
